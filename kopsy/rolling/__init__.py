"""Rolling updates: replace a cluster's instances that run an old launch-template version.

One module one job: ``surge`` (kops' maxSurge/maxUnavailable arithmetic), ``selection`` (which
instances need replacing, and the dry-run table), ``actions`` (the AWS calls of a roll: tag,
detach, terminate, deregister), ``drain`` (cordon and drain over SSH on a control plane),
``etcd_guard`` (snapshot and member removal before a control plane goes), ``progress`` (events
and the time estimate) and ``engine`` (the order of it all). Nothing here prints: the CLI
renders the events. docs/rolling-update.md describes the whole run.
"""

"""Operator tools that read (never change) a cluster: ``dump`` for bug reports, and the
least-privilege policy an operator needs (``operator_policy``)."""

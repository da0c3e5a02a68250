"""``kopsy export kubecfg``: an admin kubeconfig for a cluster, signed locally by its CA."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import click

from kopsy.cli.context import DURATION, aws_clients, open_cluster_store, resolve_cluster_name
from kopsy.errors import CloudError, UsageError


@click.group(name="export")
def command() -> None:
    """Export cluster credentials."""


@command.command("kubecfg")
@click.argument("name", required=False, metavar="[NAME]")
@click.option("--admin", is_flag=True,
              help="Export an admin certificate signed by the cluster CA (kubeadm:cluster-admins group).")
@click.option("--ttl", type=DURATION, default="18h", show_default=True, metavar="DURATION",
              help="Lifetime of the admin certificate, e.g. 18h, 30m.")
@click.option("--kubeconfig", "kubeconfig", metavar="PATH",
              help="Kubeconfig file to merge into (default: $KUBECONFIG, else ~/.kube/config).")
def kubecfg(name: str | None, admin: bool, ttl: float, kubeconfig: str | None) -> None:
    """Merge an admin context for cluster NAME into your kubeconfig and make it current.

    \b
    The certificate is signed locally with the CA kept in the state store, so this works
    before the cluster is reachable; it expires after --ttl.
    """
    from kopsy import kubeconfig as kc
    from kopsy.cloud.aws.endpoint import find_api_endpoint
    from kopsy.masked import Secret

    if not admin:
        raise UsageError("kopsy only exports admin credentials: add --admin (and optionally --ttl 18h)")
    if ttl <= 0:
        raise UsageError("--ttl must be positive, e.g. --ttl 18h")
    # The target first: a kubeconfig that cannot be used (a FIFO, a device, a folder, not YAML)
    # is refused before anything is asked of AWS or the store.
    path = kc.choose_path(kubeconfig, os.environ.get("KUBECONFIG"), Path.home())
    kc.check_target(path)
    store = open_cluster_store()
    cluster_name = resolve_cluster_name(store, name)
    cluster, _ = store.get_cluster(cluster_name)
    api_host = find_api_endpoint(aws_clients(cluster.region), cluster_name)
    if not api_host:
        raise CloudError(
            f'cluster "{cluster_name}" has no API load balancer yet; run "kopsy update cluster {cluster_name} --yes" '
            f"first, then export again"
        )
    creds = kc.admin_credentials(
        cluster_name,
        api_host=api_host,
        ca_cert_pem=store.get_object(cluster_name, "pki/ca.crt"),
        ca_key_pem=Secret(store.get_object(cluster_name, "pki/ca.key")),
        ttl=dt.timedelta(seconds=ttl),
    )
    kc.export(path, creds)
    expires = creds.expires.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    click.echo(f'kubeconfig {path}: context "{cluster_name}" is now current (server {creds.server}, '
               f"admin certificate valid until {expires})")

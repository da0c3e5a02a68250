"""``kopsy backup etcd [NAME]``: take an etcd snapshot now, over SSH on a control plane
(the same on-instance command the rolling update calls; docs/disaster-recovery.md)."""

from __future__ import annotations

import click

from kopsy.cli.context import aws_clients, open_cluster_store, resolve_cluster_name, strip_cluster_word
from kopsy.cli.output import OUTPUT_FORMATS, emit


@click.group("backup")
def command() -> None:
    """Take backups of a cluster (etcd)."""


@command.command("etcd")
@click.argument("args", nargs=-1, metavar="[NAME]")
@click.option("-o", "--output", type=OUTPUT_FORMATS, default="table", show_default=True)
@click.option("--ssh-config", type=click.Path(dir_okay=False, exists=True), envvar="KOPSY_SSH_CONFIG", show_envvar=True,
              metavar="PATH", help="OpenSSH config to resolve hosts with (default ~/.ssh/config).")
def backup_etcd(args: tuple[str, ...], output: str, ssh_config: str | None) -> None:
    """Snapshot etcd into the state store now (backups/etcd/<timestamp>/)."""
    from kopsy.cli.validate import ssh_settings
    from kopsy.cloud.aws.groups import read_groups
    from kopsy.etcd.remote import connect_control_plane, snapshot
    from kopsy.remote import SSHConnector
    from kopsy.validate.checks import cluster_instances

    store = open_cluster_store()
    name = resolve_cluster_name(store, strip_cluster_word(args))
    _, (cluster, _), groups = store.read_spec(name)
    igs = [ig for ig, _ in groups]
    clients = aws_clients(cluster.region or None)
    instances = cluster_instances(igs, read_groups(clients, name), name)
    settings = ssh_settings(cluster, ssh_user=None, ssh_key=None, ssh_config=ssh_config, bastion=None,
                            connect_timeout=10.0, command_timeout=600.0)
    connector = SSHConnector(settings)
    try:
        conn, inst = connect_control_plane(connector, instances)
        with conn:
            snap = snapshot(conn)
    finally:
        connector.close()
    if output == "table":
        click.echo(f"etcd snapshot {snap.timestamp} of {name} stored (revision {snap.revision}, {snap.size} bytes, "
                   f"taken on {inst.id})")
        click.echo(f"  restore it with: kopsy restore etcd {name} --backup {snap.timestamp}")
    else:
        emit({"timestamp": snap.timestamp, "key": snap.key, "revision": snap.revision, "size": snap.size,
              "sha256": snap.sha256, "instance": inst.id}, output)

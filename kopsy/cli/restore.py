"""``kopsy restore etcd [NAME] --backup TIMESTAMP [--yes]``: put an etcd snapshot back onto
every control plane (kopsy/etcd/restore.py; docs/disaster-recovery.md). Without --yes it
prints the plan and the downtime and changes nothing."""

from __future__ import annotations

import click

from kopsy.cli.context import aws_clients, open_cluster_store, resolve_cluster_name, strip_cluster_word
from kopsy.cli.context import DURATION
from kopsy.errors import ValidationFailed


@click.group("restore")
def command() -> None:
    """Restore a cluster from a backup (etcd)."""


@command.command("etcd")
@click.argument("args", nargs=-1, metavar="[NAME]")
@click.option("--backup", "backup_ts", required=True, metavar="TIMESTAMP",
              help="The snapshot to restore (kopsy get etcd-backups lists them).")
@click.option("--yes", "-y", is_flag=True, help="Restore (without it, only show what would happen).")
@click.option("--wait", type=DURATION, default="15m", show_default=True, metavar="DURATION",
              help="How long to wait for validate to pass afterwards.")
@click.option("--ssh-config", type=click.Path(dir_okay=False, exists=True), envvar="KOPSY_SSH_CONFIG", show_envvar=True,
              metavar="PATH", help="OpenSSH config to resolve hosts with (default ~/.ssh/config).")
@click.option("--force-unlock", is_flag=True, help="Take the cluster lock even if another run holds it.")
def restore_etcd(args: tuple[str, ...], backup_ts: str, yes: bool, wait: float, ssh_config: str | None,
                 force_unlock: bool) -> None:
    """Restore etcd of a cluster from one of its snapshots (the API is down meanwhile)."""
    from kopsy.cli.validate import ssh_settings
    from kopsy.cloud.aws.groups import read_groups
    from kopsy.etcd.backups import find_backup
    from kopsy.etcd.restore import Progress, members_of, plan_lines, run_restore, wait_valid
    from kopsy.remote import SSHConnector
    from kopsy.validate import validate_cluster
    from kopsy.validate.checks import cluster_instances

    store = open_cluster_store()
    name = resolve_cluster_name(store, strip_cluster_word(args))
    cluster, _ = store.get_cluster(name)
    backup = find_backup(store, name, backup_ts)
    igs = [ig for ig, _ in store.list_instance_groups(name)]
    clients = aws_clients(cluster.region or None)
    members = members_of(cluster_instances(igs, read_groups(clients, name), name))
    for line in plan_lines(name, backup.timestamp, backup.revision, members):
        click.echo(line)
    if not yes:
        click.echo("Must specify --yes to restore")
        return
    settings = ssh_settings(cluster, ssh_user=None, ssh_key=None, ssh_config=ssh_config, bastion=None,
                            connect_timeout=10.0, command_timeout=900.0)

    def progress_line(step: str, member: object, skipped: bool) -> None:
        click.echo(f"  {step:<12} {getattr(member, 'instance_id', member)}{'  (done before, skipped)' if skipped else ''}")

    with store.lock(name, "restore etcd", force_unlock=force_unlock):
        connector = SSHConnector(settings)
        progress = Progress(store, name)
        try:
            run_restore(progress, backup.timestamp, members, lambda m: connector.connect(m.address), on_step=progress_line)
        finally:
            connector.close()
        click.echo(f"etcd restored on {len(members)} control plane(s); waiting up to {int(wait)}s for validate")

        def valid() -> bool:
            return validate_cluster(name, igs, clients, SSHConnector(settings)).valid

        if not wait_valid(valid, wait):
            raise ValidationFailed(f"etcd of {name} was restored from {backup.timestamp}, but validate did not pass "
                                   f"within {int(wait)}s: run kopsy validate cluster {name} to see why "
                                   f"(the restore record stays until it does; re-running resumes)")
        progress.finish()
    click.echo(f"Cluster {name} restored from etcd snapshot {backup.timestamp} and valid.")

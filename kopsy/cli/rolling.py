"""``kopsy rolling-update cluster [NAME]``: replace instances whose launch template changed.

kops' flags and defaults. Without --yes it prints kops' table (``-o json``: the same as
``{"groups": [...]}``) and exits 0. With --yes it holds the cluster lock and runs
``kopsy.rolling.engine``; each step goes to stderr with the instance, its node and the batch,
and an estimate of the time left. docs/rolling-update.md tells the whole story.

``roll_flags`` and ``rolling_update`` are shared with ``kopsy upgrade cluster --roll``, which
runs the same roll (its flags declared once, here).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from kopsy.cli.context import DURATION, aws_clients, open_cluster_store, options, resolve_cluster_name, strip_cluster_word
from kopsy.cli.output import dump_json, table
from kopsy.errors import UsageError

F = TypeVar("F", bound=Callable[..., Any])

# The flags of a roll that ``upgrade cluster --roll`` passes through (not which groups, --force or --cloudonly:
# the upgrade decides those). Declared once; both commands apply them with ``roll_flags``.
_ROLL_FLAGS = (
    click.option("--max-surge", metavar="N|P%", help="Instances launched ahead of draining (default: the spec's rollingUpdate, else 1)."),
    click.option("--max-unavailable", metavar="N|P%", help="Instances out of service at once (default: the spec's, else 0)."),
    click.option("--drain-timeout", type=DURATION, default="15m", show_default=True, metavar="DURATION"),
    click.option("--validation-timeout", type=DURATION, default="15m", show_default=True, metavar="DURATION"),
    click.option("--validate-count", type=click.IntRange(min=1), default=2, show_default=True,
                 help="Consecutive passing validations after each batch."),
    click.option("--interval", type=DURATION, default="15s", show_default=True, metavar="DURATION",
                 help="Time between validations."),
    click.option("--fail-on-drain-error", type=click.BOOL, default=True, is_flag=False, flag_value=True, show_default=True,
                 metavar="[true|false]", help="Stop when a drain fails (false: go on and say so)."),
    click.option("--force-unlock", is_flag=True, help="Take the cluster lock even if another (dead) run holds it."),
    click.option("--ssh-user", metavar="USER", help="Login user (beats the ssh config's User; default ubuntu)."),
    click.option("--ssh-key", type=click.Path(dir_okay=False, exists=True), metavar="PATH", help="Private key."),
    click.option("--ssh-config", type=click.Path(dir_okay=False, exists=True), envvar="KOPSY_SSH_CONFIG", show_envvar=True,
                 metavar="PATH", help="OpenSSH config to resolve hosts with (default ~/.ssh/config)."),
    click.option("--bastion", metavar="[USER@]HOST[:PORT]", help="Reach instances through this jump host."),
)


def roll_flags(f: F) -> F:
    """Add the shared roll flags to a command (its function takes them as keyword arguments)."""
    for option in reversed(_ROLL_FLAGS):
        f = option(f)
    return f


@dataclass(frozen=True)
class RollFlags:
    """The values of ``roll_flags``: how to roll, whatever is rolled."""

    max_surge: str | None = None
    max_unavailable: str | None = None
    drain_timeout: float = 900.0
    validation_timeout: float = 900.0
    validate_count: int = 2
    interval: float = 15.0
    fail_on_drain_error: bool = True
    force_unlock: bool = False
    ssh_user: str | None = None
    ssh_key: str | None = None
    ssh_config: str | None = None
    bastion: str | None = None

    def check(self) -> None:
        """Usage errors before anything is read."""
        from kopsy.rolling import surge

        if self.max_surge is not None:
            surge.check(self.max_surge, "--max-surge")
        if self.max_unavailable is not None:
            surge.check(self.max_unavailable, "--max-unavailable")
        for flag, value in (("--interval", self.interval), ("--drain-timeout", self.drain_timeout),
                            ("--validation-timeout", self.validation_timeout)):
            if value <= 0:
                raise UsageError(f"{flag} must be more than 0s")


def parse_roles(text: str) -> list[str]:
    """``--instance-group-roles``: kops' role names, case-insensitive (Master is ControlPlane)."""
    roles = [r.strip() for r in text.split(",") if r.strip()]
    known_roles = {"controlplane": "ControlPlane", "master": "ControlPlane", "node": "Node", "bastion": "Bastion"}
    bad = [r for r in roles if r.lower() not in known_roles]
    if bad:
        raise UsageError(f"--instance-group-roles: {', '.join(bad)} is not a role; use ControlPlane, Node or Bastion")
    return [known_roles[r.lower()] for r in roles]


@click.command("rolling-update", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("args", nargs=-1, metavar="[cluster] [NAME]")
@click.option("--yes", "-y", is_flag=True, help="Replace the instances (without it, only show what would be).")
@click.option("--instance-group", "instance_groups", multiple=True, metavar="NAME", help="Only this group (repeatable).")
@click.option("--instance-group-roles", default="", metavar="ROLES", help="Only groups of these roles: ControlPlane,Node,Bastion.")
@click.option("--cloudonly", is_flag=True, help="No drain and no validation: for a cluster that is already broken.")
@click.option("--force", is_flag=True, help="Replace every instance, up to date or not.")
@roll_flags
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def command(args: tuple[str, ...], yes: bool, instance_groups: tuple[str, ...], instance_group_roles: str,
            cloudonly: bool, force: bool, output: str, **flags: Any) -> None:
    """Replace the instances of a cluster that run an old launch-template version.

    \b
    Order: bastions, control planes (one at a time), node groups. Per instance: cordon,
    drain, terminate (the group launches a replacement), validate. With a surge, the
    replacements boot before anything is drained.

    \b
      kopsy rolling-update cluster demo.example.com          # what would be replaced
      kopsy rolling-update cluster --yes --max-surge 25%
      kopsy rolling-update cluster --instance-group nodes --force --cloudonly --yes
    """
    settings = RollFlags(**flags)
    settings.check()
    roles = parse_roles(instance_group_roles)
    opts = options()
    store = open_cluster_store(opts)
    name = resolve_cluster_name(store, strip_cluster_word(args), opts)
    rolling_update(store, name, settings, yes=yes, instance_groups=instance_groups, roles=roles, force=force,
                   cloudonly=cloudonly, output=output)


def rolling_update(store: Any, name: str, flags: RollFlags, *, yes: bool, instance_groups: Sequence[str] = (),
                   roles: Sequence[str] = (), force: bool = False, cloudonly: bool = False, output: str = "table",
                   coredns: bool = False) -> int:
    """The command's work, for it and for ``upgrade --roll``: the dry-run table, or the roll
    under the cluster lock. Returns how many instances were replaced (0: nothing to do).
    ``coredns``: also when nothing is left to replace, check CoreDNS against the newest control
    plane's kubeadm (the roll does it after its first control plane; a rerun after a kill may
    find nothing left to roll)."""
    from kopsy.rolling.engine import Roller, RollOptions
    from kopsy.rolling.selection import TABLE_HEADER, filter_groups, table_rows

    _, (cluster, _), groups = store.read_spec(name)
    igs = [ig for ig, _ in groups]
    missing = sorted(set(instance_groups) - {ig.name for ig in igs})
    if missing:
        raise UsageError(f"instance group(s) {', '.join(missing)} not found in cluster {name}; it has: "
                         f"{', '.join(ig.name for ig in igs)}")
    clients = aws_clients(cluster.region or None)
    run_opts = RollOptions(force=force, cloudonly=cloudonly, max_surge=flags.max_surge, max_unavailable=flags.max_unavailable,
                           drain_timeout=flags.drain_timeout, validation_timeout=flags.validation_timeout,
                           validate_count=flags.validate_count, interval=flags.interval,
                           fail_on_drain_error=flags.fail_on_drain_error)
    roller = Roller(name, igs, clients, run_opts, cluster_rolling=dict(cluster.rolling_update),
                    kubernetes_version=cluster.kubernetes_version)

    def selected() -> list[Any]:
        return filter_groups(roller.plans(force=force), list(instance_groups), list(roles))

    plans = selected()
    pending = sum(p.pending for p in plans)
    if not yes:
        if output == "json":
            click.echo(dump_json({"groups": [p.as_dict() for p in plans]}))
        else:
            click.echo(table(TABLE_HEADER, table_rows(plans)))
            click.echo("No rolling-update required." if not pending else "Must specify --yes to rolling-update.")
        return 0

    if not cloudonly:
        connect_remote(roller, cluster, name, igs, clients, flags)
    roller.on_event = _render
    started = time.monotonic()
    with store.lock(name, "rolling-update cluster", force_unlock=flags.force_unlock):
        plans = selected()  # fresh facts under the lock
        if not any(p.pending for p in plans):
            if coredns and not cloudonly:
                roller.sync_coredns()
            if output == "json":
                click.echo(dump_json({"groups": [p.as_dict() for p in plans], "replaced": []}))
            else:
                click.echo("No rolling-update required.")
            return 0
        result = roller.run(plans)
    took = time.monotonic() - started
    if output == "json":
        click.echo(dump_json({"replaced": result.replaced, "drained": result.drained, "warnings": result.warnings,
                              "seconds": round(took, 1)}))
    else:
        click.echo(f"Rolling update of cluster {name} done: {len(result.replaced)} instance(s) replaced, "
                   f"{len(result.drained)} drained, in {took:.0f}s.")
    return len(result.replaced)


def _render(event: Any) -> None:
    from kopsy.rolling.progress import fmt_eta

    where = " ".join(p for p in (
        event.group,
        f"[batch {event.batch}]" if event.batch else "",
        event.instance,
        f"({event.node})" if event.node else "",
    ) if p)
    eta = f" ({fmt_eta(event.eta)})" if event.step in ("detach", "terminate", "wait", "batch-done") else ""
    now = time.time()
    click.echo(f"{time.strftime('%H:%M:%S', time.localtime(now))}.{int(now % 1 * 10)} {event.step:<10} {where}: {event.message}{eta}", err=True)


def connect_remote(roller: Any, cluster: Any, name: str, igs: list[Any], clients: Any, flags: RollFlags) -> None:
    """Give the roller its SSH side: kubectl on a control plane, the etcd guard, CoreDNS, validation."""
    from kopsy.cli.validate import ssh_settings
    from kopsy.cloud.aws.groups import read_groups
    from kopsy.errors import SSHError
    from kopsy.remote import SSHConnection, SSHConnector
    from kopsy.rolling.drain import Kube
    from kopsy.spec.model import ROLE_CONTROL_PLANE
    from kopsy.validate import validate_cluster
    from kopsy.validate.engine import ssh_address

    bastion = flags.bastion
    settings = ssh_settings(cluster, ssh_user=flags.ssh_user, ssh_key=flags.ssh_key, ssh_config=flags.ssh_config,
                            bastion=bastion, connect_timeout=10.0, command_timeout=60.0)
    def connect(avoid: str) -> SSHConnection:
        """A control plane other than node ``avoid`` when one answers, else ``avoid`` itself.
        A connector per call: it reads the ssh config when made, and replacements are new hosts."""
        connector = SSHConnector(settings)
        cps = [i for i in read_groups(clients, name).instances.values() if i.role == ROLE_CONTROL_PLANE and i.state == "running"]
        cps.sort(key=lambda i: (i.private_dns == avoid, i.id))
        last: SSHError | None = None
        for inst in cps:
            try:
                return connector.connect(ssh_address(inst, private=bool(bastion)))
            except SSHError as exc:
                click.echo(f"Note: control plane {inst.id} ({inst.private_dns}) cannot be reached over SSH: {exc}", err=True)
                last = exc
        raise last or SSHError(f"no running control plane of {name} to run kubectl on")

    roller.kube = Kube(connect)
    roller.connect_control_plane = connect
    roller.connect_instance = lambda inst: SSHConnector(settings).connect(ssh_address(inst, private=bool(bastion)))
    roller.validate = lambda: validate_cluster(name, igs, clients, SSHConnector(settings), diagnose=False)

"""``kopsy validate [cluster] [NAME]``: flags, the --wait loop, output and exit codes.

The engine (``kopsy.validate``) returns a result; this module decides what it means: print it,
poll again under ``--wait``, and exit 0 when valid, 1 when not (``ValidationFailed``), 2 on
usage errors.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kopsy.cli.context import (
    DURATION,
    LOOPBACK_NETWORKS,
    aws_clients,
    local_emulation,
    open_cluster_store,
    options,
    resolve_cluster_name,
    strip_cluster_word,
)
from kopsy.cli.output import OUTPUT_FORMATS, emit, table
from kopsy.errors import HostKeyChanged, KopsyError, UsageError, ValidationFailed

if TYPE_CHECKING:
    from kopsy.remote import SSHSettings
    from kopsy.spec.model import Cluster, InstanceGroup
    from kopsy.validate.result import ValidationResult



@click.command("validate", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("args", nargs=-1, metavar="[cluster] [NAME]")
@click.option("-o", "--output", type=OUTPUT_FORMATS, default="table", show_default=True, help="Output format.")
@click.option("--wait", type=DURATION, default=None, metavar="DURATION",
              help="Poll until valid or this long has passed (e.g. 10m).")
@click.option("--interval", type=DURATION, default="10s", show_default=True, metavar="DURATION",
              help="Time between polls under --wait.")
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True,
              help="Consecutive successful validations required under --wait.")
@click.option("--ssh-user", metavar="USER", help="Login user (beats the ssh config's User; default ubuntu).")
@click.option("--ssh-key", type=click.Path(dir_okay=False, exists=True), metavar="PATH",
              help="Private key (beats IdentityFile; default: the key the cluster was created with).")
@click.option("--ssh-config", type=click.Path(dir_okay=False, exists=True), envvar="KOPSY_SSH_CONFIG", show_envvar=True,
              metavar="PATH", help="OpenSSH config to resolve hosts with (default ~/.ssh/config).")
@click.option("--bastion", metavar="[USER@]HOST[:PORT]",
              help="Reach instances by their private addresses through this jump host.")
@click.option("--connect-timeout", type=DURATION, default="10s", show_default=True, metavar="DURATION",
              help="Per-host SSH connect/handshake timeout.")
@click.option("--command-timeout", type=DURATION, default="30s", show_default=True, metavar="DURATION",
              help="Per-command timeout on a host.")
@click.option("--parallelism", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Broken instances diagnosed at once.")
def command(
    args: tuple[str, ...],
    output: str,
    wait: float | None,
    interval: float,
    count: int,
    ssh_user: str | None,
    ssh_key: str | None,
    ssh_config: str | None,
    bastion: str | None,
    connect_timeout: float,
    command_timeout: float,
    parallelism: int,
) -> None:
    """Check that every node of a cluster is up and Ready, and say why when one is not.

    \b
    Reads the instances from AWS, asks a control plane over SSH for its nodes and
    kube-system pods, and SSHes to each instance that has not joined (or is NotReady) to
    report its bootstrap phase, error and log. Host keys are kept per cluster in
    ~/.kopsy/known_hosts/NAME.

    \b
      kopsy validate cluster demo.example.com
      kopsy validate --wait 10m -o json
    """
    if count > 1 and wait is None:
        raise UsageError("--count needs --wait (it counts consecutive successful polls)")
    for flag, value in (("--interval", interval), ("--connect-timeout", connect_timeout),
                        ("--command-timeout", command_timeout)):
        if value <= 0:
            raise UsageError(f"{flag} must be more than 0s")
    if ssh_key:
        _check_private_key(ssh_key)
    debug = options().debug
    if debug:  # paramiko's own log (handshakes, channel failures) on stderr
        import logging

        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("debug: %(name)s: %(message)s"))
        logging.getLogger("paramiko").addHandler(handler)
        logging.getLogger("paramiko").setLevel(logging.INFO)
    if bastion:
        from kopsy.errors import SSHError
        from kopsy.remote import parse_hop

        if len(bastion) > 300 or not bastion.isprintable():
            raise UsageError("--bastion: give [user@]host[:port] (a host name is at most 253 characters, printable)")
        try:
            parse_hop(bastion)
        except SSHError as exc:
            raise UsageError(f"--bastion: {exc.message}") from exc
        except ValueError as exc:  # e.g. a label IDNA cannot encode
            raise UsageError(f"--bastion: {bastion[:60]!r} is not a host name ({exc})") from None
    store = open_cluster_store()
    name = resolve_cluster_name(store, strip_cluster_word(args))
    validate(store, name, output=output, wait=wait, interval=interval, count=count, ssh_user=ssh_user, ssh_key=ssh_key,
             ssh_config=ssh_config, bastion=bastion, connect_timeout=connect_timeout, command_timeout=command_timeout,
             parallelism=parallelism, debug=debug)


def validate(store: Any, name: str, *, output: str = "table", wait: float | None = None, interval: float = 10.0,
             count: int = 1, ssh_user: str | None = None, ssh_key: str | None = None, ssh_config: str | None = None,
             bastion: str | None = None, connect_timeout: float = 10.0, command_timeout: float = 30.0,
             parallelism: int = 16, debug: bool = False) -> ValidationResult:
    """The command's work, for it and for ``upgrade --roll``: validate (polling under ``wait``),
    print the result, and raise ``ValidationFailed`` when the cluster is not valid."""
    _, (cluster, _), groups = store.read_spec(name)
    igs = [ig for ig, _ in groups]
    settings = ssh_settings(cluster, ssh_user=ssh_user, ssh_key=ssh_key, ssh_config=ssh_config, bastion=bastion,
                            connect_timeout=connect_timeout, command_timeout=command_timeout)
    clients = aws_clients(cluster.region or None)

    noted: set[str] = set()  # a note (a bastion found, a host key learnt) is said once, not every poll

    def once() -> ValidationResult:
        from kopsy.remote import SSHConnector
        from kopsy.validate import validate_cluster

        result = validate_cluster(name, igs, clients, SSHConnector(settings), parallelism=parallelism)
        for notice in result.notices:
            if notice not in noted:
                noted.add(notice)
                click.echo(f"Note: {notice}", err=True)
        if debug:
            click.echo(f"debug: this validation opened {result.ssh_connections} SSH connection(s)", err=True)
        return result

    if wait is None:
        result = once()
    else:
        result = _poll(once, wait=wait, interval=interval, count=count)
    _print(result, cluster, igs, output)
    if not result.valid:
        waited = f" within {_fmt(wait)}" if wait is not None else ""
        raise ValidationFailed(
            f"cluster {name} is not ready{waited}: {len(result.failures)} validation error(s)", result=result
        )
    return result


def _check_private_key(path: str) -> None:
    """--ssh-key must be a readable, regular, text private-key file (a binary file or a FIFO is
    refused here, with its name, rather than deep inside the SSH library)."""
    from kopsy.localfiles import PRIVATE_KEY_LIMIT, LocalFileError, read_regular

    try:
        data = read_regular(Path(path).expanduser(), PRIVATE_KEY_LIMIT, "SSH key")
    except LocalFileError as exc:
        raise UsageError(f"--ssh-key: {exc.message}") from None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise UsageError(f"--ssh-key: {path} is not an SSH private key (binary content)") from None
    if "PRIVATE KEY-----" not in text:
        raise UsageError(f"--ssh-key: {path} is not an SSH private key (no '-----BEGIN ... PRIVATE KEY-----' block)")


def ssh_settings(cluster: Cluster, *, ssh_user: str | None, ssh_key: str | None, ssh_config: str | None,
                 bastion: str | None, connect_timeout: float, command_timeout: float) -> SSHSettings:
    """Flags + environment + files -> explicit settings for the SSH layer (which reads none of them)."""
    from kopsy.remote import SSHSettings
    from kopsy.spec.model import SSH_KEY_ANNOTATION

    home = Path.home()
    config: Path | None = Path(ssh_config).expanduser() if ssh_config else home / ".ssh" / "config"
    if config is not None and not ssh_config and not config.is_file():
        config = None
    fallback: list[Path] = []
    recorded = cluster.annotations.get(SSH_KEY_ANNOTATION, "")
    if recorded:  # docs/validate.md ("SSH"): the private key lives beside the public key given at create time
        fallback.append(Path(recorded[:-4] if recorded.endswith(".pub") else recorded).expanduser())
    fallback += [home / ".ssh" / "id_ed25519", home / ".ssh" / "id_rsa"]
    return SSHSettings(
        known_hosts=home / ".kopsy" / "known_hosts" / cluster.name.replace("/", "_"),
        config_path=config,
        user=ssh_user,
        key_path=Path(ssh_key).expanduser() if ssh_key else None,
        fallback_keys=tuple(fallback),
        bastion=bastion,
        connect_timeout=connect_timeout,
        command_timeout=command_timeout,
        allow_agent=bool(os.environ.get("SSH_AUTH_SOCK")),
        allowed_networks=LOOPBACK_NETWORKS if local_emulation() else (),
    )


def _poll(run: Callable[[], ValidationResult], *, wait: float, interval: float, count: int) -> ValidationResult:
    """Validate until ``count`` consecutive successes or the deadline, with a progress line per poll."""
    start = time.monotonic()
    deadline = start + wait
    successes = 0
    attempt = 0
    last: ValidationResult | None = None
    while True:
        attempt += 1
        try:
            last = run()
            summary = last.summary()
            successes = successes + 1 if last.valid else 0
        except HostKeyChanged:
            raise  # waiting will not make a changed key trustworthy
        except KopsyError as exc:
            if time.monotonic() >= deadline:
                raise
            successes, summary = 0, f"validation could not run: {exc.message}"
        if successes >= count:
            assert last is not None
            return last
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if last is None:
                raise KopsyError(f"validation never completed within {_fmt(wait)}: {summary}")
            return last
        pause = min(interval, remaining)
        need = f" ({successes}/{count} consecutive successes)" if count > 1 and successes else ""
        click.echo(f"[{_fmt(time.monotonic() - start)}] attempt {attempt}: {summary}{need}; "
                   f"next check in {_fmt(pause)}, {_fmt(remaining)} left", err=True)
        time.sleep(pause)


def _fmt(seconds: float) -> str:
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60}m"
    if s >= 60:
        return f"{s // 60}m{s % 60}s" if s % 60 else f"{s // 60}m"
    return f"{seconds:.1f}s" if seconds < 10 and seconds != int(seconds) else f"{s}s"


def _print(result: ValidationResult, cluster: Cluster, igs: list[InstanceGroup], output: str) -> None:
    if output != "table":
        emit(result.to_dict(), output)
        return
    click.echo(f"Validating cluster {cluster.name}\n")
    click.echo("INSTANCE GROUPS")
    click.echo(table(["NAME", "ROLE", "MACHINETYPE", "MIN", "MAX", "SUBNETS"],
                     [[ig.name, ig.role, ig.machine_type, ig.min_size, ig.max_size, ",".join(ig.subnets)]
                      for ig in igs]))
    click.echo("\nNODE STATUS")
    click.echo(table(["NAME", "ROLE", "READY"],
                     [[n.name, "control-plane" if n.role == "ControlPlane" else "node", n.ready]
                      for n in result.nodes]))
    if result.failures:
        click.echo("\nVALIDATION ERRORS")
        click.echo(table(["KIND", "NAME", "MESSAGE"], [[f.type, f.name, f.message] for f in result.failures]))
        for f in result.failures:
            if f.details:
                click.echo(f"\n{f.type} {f.name}:")
                for line in f.details:
                    click.echo(f"  {line}")
        click.echo("\nValidation failed")
    else:
        click.echo(f"\nYour cluster {cluster.name} is ready")

"""``kopsy sandbox up|down|status|env``: a LOCAL EMULATION of AWS and of the cluster's machines.

The hidden commands (``_moto``, ``_supervise``) are the sandbox's own processes; they live here
because this is where kopsy reads the environment and exits, and run as
``python -m kopsy.cli.sandbox ...`` without loading kopsy's full command table. (The node shell,
run by sshd on every SSH command, is the stdlib-only ``kopsy/sandbox/nodeshell.py``.)
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import sys
from pathlib import Path

import click

DEFAULT_DIR = "~/.kopsy/sandbox"
dir_option = click.option(
    "--dir", "directory", default=DEFAULT_DIR, show_default=True, metavar="DIR",
    envvar="KOPSY_SANDBOX_DIR", help="Where the sandbox keeps its state, logs and ssh config.",
)


def _layout(directory: str):  # type: ignore[no-untyped-def]
    from kopsy.sandbox.layout import Layout

    return Layout.at(Path(directory).expanduser())


def _exports(env: dict[str, str]) -> str:
    lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    return "\n".join(lines + ["unset AWS_PROFILE"])


@click.group()
def command() -> None:
    """Run a LOCAL EMULATION of AWS (moto) with SSH-reachable node stand-ins, on 127.0.0.1.

    \b
      kopsy sandbox up
      eval "$(kopsy sandbox env)"
      kopsy create cluster demo.example.com --zones us-east-1a ...
      kopsy sandbox down
    """


@command.command()
@dir_option
@click.option("--region", default="us-east-1", show_default=True, help="Region the emulated cloud pretends to be.")
@click.option("--boot-time", type=click.FloatRange(0, 600), default=None, metavar="SECONDS",
              help="Seconds from launch until an instance has joined (default 1; its boot phases pass in between).")
def up(directory: str, region: str, boot_time: float | None) -> None:
    """Start the moto server, the state-store bucket and the node supervisor."""
    import signal

    from kopsy.sandbox import control

    _ensure_sshd()
    # A plain SIGTERM/SIGHUP would end this process between two steps and leave moto and the
    # supervisor running detached: as an exception, it goes through up's clean-up like Ctrl-C.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupted)
    info, already = control.up(
        _layout(directory), python=sys.executable, user=getpass.getuser(), base_env=dict(os.environ), region=region,
        boot_time=boot_time,
    )
    click.echo(control.NOTICE)
    if already:
        click.echo(f"Sandbox running in {info.dir} (endpoint {info.endpoint}, node supervisor pid {info.supervisor_pid}).")
    else:
        click.echo(f"Sandbox ready in {info.ready_seconds:.1f}s in {info.dir}.")
        click.echo(f"  AWS endpoint:  {info.endpoint} (moto server, pid {info.moto_pid})")
        click.echo(f"  State store:   {info.state_store} (versioned, encrypted)")
        ssm = "and via Canonical's SSM parameter" if info.ssm_parameter else "(Canonical's SSM parameter is NOT available)"
        click.echo(f"  Ubuntu 24.04:  via DescribeImages {ssm}")
        click.echo(f"  Nodes:         one OpenSSH sshd per running instance on 127.x.y.z:{info.ssh_port} "
                   f"(supervisor pid {info.supervisor_pid}), ssh config {info.ssh_config}")
    click.echo("")
    click.echo("# Use it in this shell with:  eval \"$(kopsy sandbox env" + _dir_flag(directory) + ")\"")
    click.echo(_exports(info.environment()))


def _interrupted(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _ensure_sshd() -> None:
    """The node stand-ins are real OpenSSH daemons: install Debian's openssh-server when it is
    missing and we may (root with apt-get); otherwise control.up explains what to install."""
    import shutil
    import subprocess

    from kopsy.sandbox import sshd

    if sshd.find_sshd() is not None or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    click.echo("Installing OpenSSH's sshd (Debian package openssh-server) for the node stand-ins ...", err=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "openssh-server"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            from kopsy.sandbox import SandboxError

            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise SandboxError(f"installing openssh-server failed ({' '.join(argv)}: {last}); install it by hand and re-run")


def _dir_flag(directory: str) -> str:
    return "" if directory == DEFAULT_DIR else f" --dir {shlex.quote(directory)}"


@command.command()
@dir_option
def env(directory: str) -> None:
    """Print export lines for the sandbox (use: eval "$(kopsy sandbox env)")."""
    from kopsy.sandbox import SandboxError, control

    info = control.load(_layout(directory))
    if info is None:
        raise SandboxError(f"no sandbox is running in {directory}; start one with: kopsy sandbox up")
    click.echo(f"# {control.NOTICE}")
    click.echo(_exports(info.environment()))


@command.command()
@dir_option
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(directory: str, output: str) -> None:
    """Say what runs: moto, the supervisor, and each node's sshd."""
    from dataclasses import asdict

    from kopsy.sandbox import SandboxError, control

    st = control.status(_layout(directory))
    if output == "json":
        click.echo(json.dumps({
            "running": st.running,
            "sandbox": asdict(st.info) if st.info else None,
            "processes": [asdict(p) for p in st.processes],
            "nodes": st.nodes,
        }, indent=1))
        return
    if st.info is None:
        raise SandboxError(f"no sandbox in {directory}; start one with: kopsy sandbox up")
    click.echo(control.NOTICE)
    click.echo(f"Sandbox in {st.info.dir}: {'running' if st.running else 'NOT running properly (run kopsy sandbox down, then up)'}")
    for p in st.processes:
        click.echo(f"  {p.name:<16} pid {p.pid:<8} {'running' if p.running else 'stopped'}")
    click.echo(f"  endpoint {st.info.endpoint}, state store {st.info.state_store}")
    click.echo(f"Nodes: {len(st.nodes)}")
    for iid, n in st.nodes.items():
        click.echo(f"  {iid:<20} {n['state']:<8} {n['address'] + ':' + str(n['port']):<21} pid {n['pid'] or '-':<8} {n['role'] or '-':<12} {n['cluster'] or '-'}  {' '.join(n['hosts'])}")
    if not st.running:
        sys.exit(1)


@command.command()
@dir_option
def down(directory: str) -> None:
    """Stop everything the sandbox started (moto, supervisor, every sshd)."""
    from kopsy.sandbox import SandboxError, control

    report = control.down(_layout(directory))
    if report.info is None:
        click.echo(f"No sandbox running in {directory}.")
        return
    click.echo(f"kopsy sandbox (LOCAL EMULATION) in {report.info.dir} stopped: {len(report.stopped)} process(es) ended"
               f" ({', '.join(map(str, report.stopped)) or 'none were running'}).")
    if report.survivors:
        raise SandboxError(f"processes {report.survivors} did not stop; end them by pid (kill -9 PID)")


@command.command("stop-node")
@dir_option
@click.argument("instance_id")
def stop_node(directory: str, instance_id: str) -> None:
    """Stop one node's sshd, as if its machine went down (a fault to test validate with)."""
    from kopsy.sandbox import control

    control.node_action(_layout(directory), "stop-node", instance_id)
    click.echo(f"{instance_id}: sshd stopped; the node now counts as down (LOCAL EMULATION)")


@command.command("start-node")
@dir_option
@click.argument("instance_id")
def start_node(directory: str, instance_id: str) -> None:
    """Start a stopped node's sshd again."""
    from kopsy.sandbox import control

    control.node_action(_layout(directory), "start-node", instance_id)
    click.echo(f"{instance_id}: sshd started")


# --- the sandbox's own processes (hidden) -----------------------------------------------------


@command.command("_moto", hidden=True)
@click.option("--port", type=int, required=True)
def moto(port: int) -> None:
    from kopsy.sandbox import images, motoserver

    motoserver.serve("127.0.0.1", port, images.SSM_PARAMETERS)


@command.command("_supervise", hidden=True)
@click.option("--dir", "directory", required=True)
def supervise(directory: str) -> None:
    import logging
    import signal

    from kopsy.sandbox import SandboxError, control, procs, sshd
    from kopsy.sandbox.facts import CloudReader
    from kopsy.sandbox.supervisor import Supervisor, SupervisorConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    layout = _layout(directory)
    info = control.load(layout)
    sshd_path = sshd.find_sshd()
    if info is None or sshd_path is None:
        raise SandboxError(f"no sandbox state in {directory} (or no sshd)")
    sshd_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), procs.MARKER: info.id}
    config = SupervisorConfig(
        layout, sshd_path, sys.executable, info.user, info.ssh_port, info.id, sshd_env, endpoint=info.endpoint,
        boot_time=info.boot_time,
        etcd_backup_interval=_etcd_backup_interval(),
    )
    sup = Supervisor(config, CloudReader(control.sandbox_clients(info.endpoint, info.region)))
    signal.signal(signal.SIGTERM, lambda *_: sup.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: sup.stopping.set())
    sup.run()


def _etcd_backup_interval() -> float:
    """KOPSY_SANDBOX_ETCD_BACKUP_INTERVAL (seconds): emulated etcd snapshots that often, instead of
    the spec's interval, so a demo sees backups at once (docs/sandbox.md)."""
    raw = os.environ.get("KOPSY_SANDBOX_ETCD_BACKUP_INTERVAL", "")
    try:
        return max(0.0, float(raw)) if raw else 0.0
    except ValueError:
        return 0.0


if __name__ == "__main__":
    command(prog_name="kopsy sandbox")

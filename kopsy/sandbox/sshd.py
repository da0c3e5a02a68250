"""One real OpenSSH sshd per emulated instance, and the ssh config that maps instances to them.

Each instance gets its own loopback address (127.x.y.z, derived from the sandbox and instance
ids so it is stable across supervisor restarts), its own host key, an ``authorized_keys`` with
the cluster's key, and ``ForceCommand`` set to the node shell, so every command a client runs is
answered by the sandbox rather than by this machine. Settings follow FIELD-NOTES.md: without
``UsePAM no`` / ``StrictModes no`` / a large ``MaxStartups`` sshd refuses keys under /tmp or drops
parallel connections.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from kopsy.sandbox import procs

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")


@dataclass
class NodeServer:
    instance_id: str
    address: str
    port: int
    directory: Path
    proc: subprocess.Popen[bytes] | None = None
    down: bool = False  # the stand-in machine is down: its sshd exited or was stopped on purpose
    listening: bool = False
    keys: tuple[str, ...] = ()
    hosts: tuple[str, ...] = field(default_factory=tuple)  # public IP, private IP, private DNS name
    jump: str | None = None  # a private-only instance: its bastion's public IP (ProxyJump)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.poll() is None else None


def find_sshd() -> str | None:
    for path in SSHD_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return None


def loopback_address(salt: str, instance_id: str, taken: Iterable[str], port: int) -> str:
    """A free 127.x.y.z for this instance: hashed from (salt, id), re-hashed on collision.

    Never 127.0.0.x, where moto and other local services live.
    """
    used = set(taken)
    for attempt in range(64):
        h = hashlib.sha256(f"{salt}/{instance_id}/{attempt}".encode()).digest()
        addr = f"127.{64 + h[0] % 128}.{h[1]}.{1 + h[2] % 254}"
        if addr not in used and _bindable(addr, port):
            return addr
    raise OSError(f"no free loopback address for {instance_id}")


def _bindable(addr: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((addr, port))
        except OSError:
            return False
    return True


def write_host_key(path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def write_authorized_keys(node: NodeServer, keys: tuple[str, ...]) -> None:
    """sshd reads this file on every login, so updating it needs no restart."""
    tmp = node.directory / "authorized_keys.tmp"
    tmp.write_text("".join(k + "\n" for k in keys))
    tmp.replace(node.directory / "authorized_keys")
    node.keys = keys


def sshd_config(node: NodeServer, force_command: str) -> str:
    d = node.directory
    return "\n".join(
        [
            f"# kopsy sandbox stand-in for {node.instance_id} (LOCAL EMULATION)",
            f"ListenAddress {node.address}:{node.port}",
            f"HostKey {_quoted(d / 'ssh_host_ed25519_key')}",
            f"PidFile {_quoted(d / 'sshd.pid')}",
            f"AuthorizedKeysFile {_quoted(d / 'authorized_keys')}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "MaxStartups 200:30:300",
            "MaxSessions 64",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "PermitTTY no",
            "LogLevel INFO",
            # sshd runs ForceCommand through the login shell; Debian's bash then sources ~/.bashrc
            # for every command unless it is already a nested shell (SHLVL >= 1), which costs a
            # slow interactive setup (pyenv init here) per command.
            "SetEnv SHLVL=1",
            f"ForceCommand {force_command}",
            "",
        ]
    )


def _quoted(path: Path) -> str:
    """sshd_config splits arguments on spaces: a sandbox dir such as "/home/a b/.kopsy" needs quotes."""
    return f'"{path}"'


def start(node: NodeServer, *, sshd: str, force_command: str, env: Mapping[str, str]) -> None:
    """Write the node's files and start its sshd in the foreground (``-D``), supervised by us."""
    node.directory.mkdir(parents=True, exist_ok=True)
    key = node.directory / "ssh_host_ed25519_key"
    if not key.exists():
        write_host_key(key)
    cfg = node.directory / "sshd_config"
    cfg.write_text(sshd_config(node, force_command))
    if not (node.directory / "authorized_keys").exists():
        write_authorized_keys(node, node.keys)
    with open(node.directory / "sshd.log", "ab") as log:
        node.proc = subprocess.Popen(
            [sshd, "-D", "-e", "-f", str(cfg)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            close_fds=True,
        )
    node.down = False
    node.listening = False


def stop(node: NodeServer, timeout: float = 3.0) -> None:
    """Stop the listener and the per-connection sshds it forked (they would outlive it)."""
    stop_many([node], timeout)


def stop_many(nodes: list[NodeServer], timeout: float = 3.0) -> None:
    """Stop several nodes at once: signal every listener, then wait, so 100 take one grace period."""
    running = [n for n in nodes if n.proc is not None and n.proc.poll() is None]
    sessions = procs.descendants(*(n.proc.pid for n in running if n.proc is not None))
    for n in running:
        if n.proc is not None:
            n.proc.terminate()
    deadline = time.monotonic() + timeout
    for n in running:
        if n.proc is None:
            continue
        try:
            n.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            n.proc.kill()
            n.proc.wait(timeout)
    procs.stop(procs.still_running(sessions), grace=timeout)
    for n in nodes:
        if n.proc is not None and n.proc.poll() is None:
            continue  # cannot happen after kill+wait; keep the handle rather than lose the pid
        n.proc = None
        n.listening = False


def listening_sockets() -> set[tuple[str, int]]:
    """Every IPv4 TCP socket in LISTEN state, from /proc/net/tcp (no probe connections: each
    connection to an sshd would fork a pre-auth child)."""
    out: set[tuple[str, int]] = set()
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        parts = line.split()
        if len(parts) > 3 and parts[3] == "0A":
            hexaddr, hexport = parts[1].split(":")
            ip = socket.inet_ntoa(bytes.fromhex(hexaddr)[::-1])
            out.add((ip, int(hexport, 16)))
    return out


def render_ssh_config(
    nodes: Iterable[NodeServer], *, user: str, identity_files: Mapping[str, str], clusters: Mapping[str, str],
    launched: Mapping[str, str],
) -> str:
    """The OpenSSH config (docs/sandbox.md, "SSH config"): each instance's addresses -> its loopback sshd.

    Private addresses are unique only inside one VPC, and moto hands out the same ones in every
    VPC: an address two instances share goes to the newest of them (a comment says so), since
    ssh would otherwise silently use whichever block comes first.
    """
    nodes = list(nodes)
    owner: dict[str, str] = {}
    for n in sorted(nodes, key=lambda n: (launched.get(n.instance_id, ""), n.instance_id), reverse=True):
        for h in n.hosts:
            owner.setdefault(h, n.instance_id)
    lines = [
        "# kopsy sandbox: LOCAL EMULATION, not AWS. Maps emulated instances to their loopback sshd.",
        "# Written by the sandbox node supervisor; rewritten as instances come and go.",
        "",
    ]
    for n in sorted(nodes, key=lambda n: n.instance_id):
        mine = [h for h in n.hosts if owner.get(h) == n.instance_id]
        shadowed = [h for h in n.hosts if owner.get(h) != n.instance_id]
        if not mine:
            continue
        cluster = clusters.get(n.instance_id, "")
        lines.append(f"# {n.instance_id}" + (f" ({cluster})" if cluster else ""))
        if shadowed:
            lines.append(f"# also has {' '.join(shadowed)}, now mapped to a newer instance in another VPC")
        lines.append("Host " + " ".join(mine))
        lines.append(f"    HostName {n.address}")
        lines.append(f"    Port {n.port}")
        lines.append(f"    User {user}")
        if n.jump:  # only a private address: reachable from outside through the bastion alone
            lines.append(f"    ProxyJump {n.jump}")
        if cluster and identity_files.get(cluster):
            lines.append(f"    IdentityFile {_quoted(Path(identity_files[cluster]))}")
        lines.append("")
    return "\n".join(lines)


def force_command(python: str, socket_id: str, instance_id: str) -> str:
    """``python -I -S nodeshell.py``: isolated and without site-packages, the shell starts fastest."""
    shell = Path(__file__).with_name("nodeshell.py")
    return " ".join(shlex.quote(a) for a in (python, "-I", "-S", str(shell), socket_id, instance_id))

"""The one SSH doorway of kopsy (paramiko).

Every SSH connection kopsy opens goes through ``SSHConnector.connect``; paramiko and socket
errors are translated into ``SSHError`` / ``HostKeyChanged`` here and nowhere else.

Why this is more than ``SSHClient.connect``:

- paramiko never reads ``~/.ssh/config``. We look each host up with ``paramiko.SSHConfig``
  (HostName, Port, User, IdentityFile, ProxyCommand, ProxyJump, HostKeyAlias) so that a user's
  bastion setup -- or the sandbox's loopback mapping -- works as it does for ``ssh``.
- paramiko parses ``ProxyJump`` but does not act on it: we open the jump connection ourselves
  and hand a ``direct-tcpip`` channel to the next hop as its socket. The destination's
  HostName/Port come from the *local* config, as OpenSSH does.
- Host keys live in a known-hosts file per cluster. A new key is recorded (trust on first use)
  and reported once; a changed key is refused with an explanation -- never ``AutoAddPolicy``.

Precedence, documented in docs/validate.md:
user: ``--ssh-user`` > ssh-config ``User`` > ``ubuntu``;
key: ``--ssh-key`` > ssh-config ``IdentityFile`` > the cluster's key > ``~/.ssh/id_ed25519``, ``~/.ssh/id_rsa``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import paramiko

from kopsy.errors import HostKeyChanged, SSHError

# paramiko logs failures (e.g. "Secsh channel 5 open FAILED") that we translate and report
# ourselves; without a handler Python's last-resort handler would print them to stderr, and
# only the CLI prints. The CLI may still attach a handler (e.g. for --debug).
logging.getLogger("paramiko").addHandler(logging.NullHandler())

DEFAULT_USER = "ubuntu"
MAX_JUMP_DEPTH = 8


class SSHUnreachable(SSHError):
    """The host could not be reached at all (no route, refused, timed out, jump host could not connect)."""


@dataclass(frozen=True)
class SSHSettings:
    """Everything needed to reach hosts; gathered by the CLI from flags, environment and files."""

    known_hosts: Path
    config_path: Path | None = None
    user: str | None = None  # --ssh-user: beats the ssh config
    key_path: Path | None = None  # --ssh-key: beats the ssh config
    fallback_keys: tuple[Path, ...] = ()  # the cluster's key, then ~/.ssh/id_ed25519, ~/.ssh/id_rsa
    bastion: str | None = None
    connect_timeout: float = 10.0
    command_timeout: float = 30.0
    allow_agent: bool = False
    default_user: str = DEFAULT_USER


@dataclass(frozen=True)
class Endpoint:
    """Where an alias really goes, after the ssh config has been applied."""

    alias: str
    hostname: str
    port: int
    user: str
    key_files: tuple[Path, ...]
    proxy_command: str | None = None
    proxy_jump: str | None = None
    host_key_alias: str | None = None

    @property
    def known_hosts_name(self) -> str:
        """The name a key is recorded under, as OpenSSH writes it."""
        if self.host_key_alias:
            return self.host_key_alias
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    def describe(self) -> str:
        target = f"{self.user}@{self.hostname}:{self.port}"
        return target if self.alias == self.hostname else f"{self.alias} ({target})"


@dataclass(frozen=True)
class CommandResult:
    command: str
    exit_status: int  # -1 when the command did not finish
    stdout: str
    stderr: str
    error: str | None = None  # set when the command timed out or its channel broke

    @property
    def ok(self) -> bool:
        return self.error is None and self.exit_status == 0


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint, so users can compare with ``ssh-keygen -l``."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class KnownHosts:
    """A cluster's known-hosts file (OpenSSH format): trust on first use, refuse a changed key.

    Shared by the threads of one run, so reads and appends hold a lock; new keys are appended
    one line at a time so a crash never loses keys recorded before.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._keys = paramiko.HostKeys()
        if path.exists():
            from kopsy.localfiles import SSH_CONFIG_LIMIT, LocalFileError, read_text

            try:
                read_text(path, SSH_CONFIG_LIMIT, "known-hosts file")  # a regular UTF-8 file within the cap
                self._keys.load(str(path))
            except LocalFileError as exc:
                raise SSHError(f"{exc.message}; fix or remove it") from None
            except (OSError, ValueError, paramiko.SSHException, paramiko.hostkeys.InvalidHostKey) as exc:
                raise SSHError(
                    f"the known-hosts file {path} has an entry kopsy cannot read "
                    f"({' '.join(str(exc).split())[:100]}); fix or remove that line"
                ) from None
        self.notices: list[str] = []

    def known(self, name: str) -> dict[str, paramiko.PKey]:
        with self._lock:
            entry = self._keys.lookup(name)
            return dict(entry) if entry else {}

    def record(self, name: str, key: paramiko.PKey) -> None:
        with self._lock:
            if self._keys.check(name, key):
                return
            self._keys.add(name, key.get_name(), key)
            from kopsy.localfiles import make_private_dirs

            make_private_dirs(self.path.parent)  # 0700 whatever the umask
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as fh:
                fh.write(f"{name} {key.get_name()} {key.get_base64()}\n")
            self.notices.append(
                f"recorded the host key of {name} ({key.get_name()} {fingerprint(key)}) in {self.path} "
                f"(trust on first use; a different key later will be refused)"
            )

    def drain_notices(self) -> list[str]:
        with self._lock:
            out, self.notices = self.notices, []
            return out


class _TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """paramiko calls this only for hosts with no recorded key: record it (and say so)."""

    def __init__(self, known: KnownHosts, name: str) -> None:
        self.known = known
        self.name = name

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        recorded = self.known.known(self.name)
        if recorded:
            # A key of another type than the one recorded: not a first use. OpenSSH would ask;
            # accepting it would let anyone bypass the changed-key check by offering a new type.
            raise paramiko.BadHostKeyException(hostname, key, next(iter(recorded.values())))
        self.known.record(self.name, key)


def _read_config(path: Path | None) -> paramiko.SSHConfig:
    if path is None:
        return paramiko.SSHConfig()
    from kopsy.localfiles import SSH_CONFIG_LIMIT, LocalFileError, read_text

    if not path.exists():
        raise SSHError(f"ssh config {path} does not exist; fix --ssh-config/KOPSY_SSH_CONFIG")
    try:
        text = read_text(path, SSH_CONFIG_LIMIT, "ssh config")
    except LocalFileError as exc:
        raise SSHError(f"{exc.message}; fix --ssh-config/KOPSY_SSH_CONFIG") from None
    # Bounded: paramiko's matching is slow on huge patterns, and 'Match exec' would run a command
    # at every lookup; kopsy reads the config, it does not execute it.
    for number, line in enumerate(text.splitlines(), 1):
        if len(line) > MAX_SSH_CONFIG_LINE:
            raise SSHError(f"ssh config {path} line {number} is {len(line)} characters long (limit {MAX_SSH_CONFIG_LINE}); fix it")
        words = line.strip().lower().replace("=", " ").split()
        if words[:1] == ["match"] and "exec" in words:
            raise SSHError(f"ssh config {path} line {number}: 'Match exec' is not supported (kopsy does not run commands from it)")
    try:
        return paramiko.SSHConfig.from_text(text)
    except (ValueError, paramiko.SSHException) as exc:
        raise SSHError(f"cannot read ssh config {path}: {exc}") from exc


MAX_SSH_CONFIG_LINE = 4096


def parse_hop(hop: str) -> tuple[str, str | None, int | None]:
    """'user@host:port' -> (host, user, port), as in ProxyJump and --bastion."""
    try:
        return _parse_hop_unchecked(hop)
    except ValueError as exc:
        raise SSHError(f"jump host {hop!r} is not [USER@]HOST[:PORT] (the port must be a number)") from exc


def _parse_hop_unchecked(hop: str) -> tuple[str, str | None, int | None]:
    user = None
    if "@" in hop:
        user, hop = hop.rsplit("@", 1)
    port = None
    if hop.startswith("["):  # [ipv6]:port
        host, _, rest = hop[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
        return host, user, port
    if hop.count(":") == 1:
        hop, p = hop.split(":")
        port = int(p)
    return hop, user, port


class _ProxyCommand(paramiko.ProxyCommand):
    """paramiko's ProxyCommand, but a proxy that exits is noticed at once (paramiko keeps polling
    its closed stdout until the banner timeout) and is reported with its own error output, and a
    closed proxy is reaped rather than left as a zombie."""

    def recv(self, size: int) -> bytes:
        start = time.monotonic()
        buffer = b""
        stdout = self.process.stdout
        assert stdout is not None  # paramiko opens it as a pipe
        try:
            while len(buffer) < size:
                wait = None
                if self.timeout is not None:
                    wait = self.timeout - (time.monotonic() - start)
                    if wait <= 0:
                        if buffer:
                            return buffer
                        raise socket.timeout()
                ready, _, _ = select.select([stdout], [], [], wait)
                if ready:
                    data = os.read(stdout.fileno(), size - len(buffer))
                    if not data:
                        if buffer:
                            return buffer
                        raise paramiko.ProxyCommandFailure(" ".join(self.cmd), self._exit_reason())
                    buffer += data
            return buffer
        except OSError as exc:
            if isinstance(exc, socket.timeout):
                raise
            raise paramiko.ProxyCommandFailure(" ".join(self.cmd), exc.strerror or str(exc)) from exc

    def _exit_reason(self) -> str:
        try:
            code = self.process.wait(timeout=1)
        except Exception:
            return "closed its output"
        err = self.process.stderr.read().decode(errors="replace").strip().splitlines() if self.process.stderr else []
        return f"exited with status {code}" + (f": {err[-1]}" if err else "")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=2)
            except Exception:
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


class SSHConnection:
    """One authenticated SSH connection; runs several commands as separate exec channels."""

    def __init__(self, client: paramiko.SSHClient, endpoint: Endpoint, settings: SSHSettings,
                 jumps: Sequence[SSHConnection] = ()) -> None:
        self.client = client
        self.endpoint = endpoint
        self.settings = settings
        self._jumps = list(jumps)

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        return self.run_many([command], timeout)[0]

    def run_many(self, commands: Sequence[str], timeout: float | None = None) -> list[CommandResult]:
        """Start every command on its own channel at once, then collect them (one round trip, not N)."""
        limit = timeout if timeout is not None else self.settings.command_timeout
        deadline = time.monotonic() + limit
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise SSHUnreachable(f"the connection to {self.endpoint.describe()} was closed")
        channels: list[tuple[str, Any]] = []
        try:
            for cmd in commands:
                try:
                    chan = transport.open_session(timeout=self.settings.connect_timeout)
                    chan.exec_command(cmd)
                except (paramiko.SSHException, OSError, EOFError) as exc:
                    raise SSHError(f"cannot run a command on {self.endpoint.describe()}: {_reason(exc)}") from exc
                channels.append((cmd, chan))
            return [_collect(cmd, chan, deadline, limit) for cmd, chan in channels]
        finally:
            for _, chan in channels:
                chan.close()

    def open_tunnel(self, host: str, port: int) -> Any:
        """A direct-tcpip channel from this host to host:port: the socket of the next hop."""
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise SSHUnreachable(f"the jump connection to {self.endpoint.describe()} was closed")
        try:
            return transport.open_channel(
                "direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=self.settings.connect_timeout
            )
        except paramiko.ChannelException as exc:
            raise SSHUnreachable(
                f"jump host {self.endpoint.alias} could not connect to {host}:{port} ({exc.text or exc.code})"
            ) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHUnreachable(
                f"jump host {self.endpoint.alias} could not open a tunnel to {host}:{port}: {_reason(exc)}"
            ) from exc

    def close(self) -> None:
        self.client.close()
        for jump in reversed(self._jumps):
            jump.close()

    def __enter__(self) -> SSHConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _collect(command: str, chan: Any, deadline: float, limit: float) -> CommandResult:
    out, err = bytearray(), bytearray()
    try:
        for buf, recv in ((out, chan.recv), (err, chan.recv_stderr)):
            while True:
                chan.settimeout(max(0.01, deadline - time.monotonic()))
                data = recv(65536)
                if not data:
                    break
                buf.extend(data)
        while not chan.exit_status_ready():
            if not chan.status_event.wait(max(0.01, deadline - time.monotonic())) and time.monotonic() >= deadline:
                raise socket.timeout()
        status = chan.recv_exit_status()
        return CommandResult(command, status, out.decode(errors="replace"), err.decode(errors="replace"))
    except socket.timeout:
        return CommandResult(command, -1, out.decode(errors="replace"), err.decode(errors="replace"),
                             error=f"did not finish within {limit:g}s")
    except (paramiko.SSHException, OSError, EOFError) as exc:
        return CommandResult(command, -1, out.decode(errors="replace"), err.decode(errors="replace"),
                             error=_reason(exc))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is sshd running and the port open?)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class SSHConnector:
    """Opens SSH connections for one run: resolves hosts, keeps the known-hosts, counts connections.

    Thread-safe: the validate fan-out calls ``connect`` from several threads, sharing one
    bastion connection.
    """

    def __init__(self, settings: SSHSettings) -> None:
        self.settings = settings
        self.config = _read_config(settings.config_path)
        self.known_hosts = KnownHosts(settings.known_hosts)
        self._lock = threading.Lock()
        self._bastion: SSHConnection | None = None
        self._bastion_lock = threading.Lock()
        self.connections_opened = 0

    # -- resolution -------------------------------------------------------------------------

    def resolve(self, alias: str, *, user: str | None = None, port: int | None = None, hop: bool = False) -> Endpoint:
        """Apply the ssh config (and the flags, which win) to an alias.

        ``hop`` marks a jump host or the bastion: there the ssh config's User beats ``--ssh-user``
        (as ``ssh -l`` only names the destination's user), and a user written into the hop wins.
        """
        cfg = self.config.lookup(alias)
        hostname = str(cfg.get("hostname", alias))
        try:
            cfg_port = int(cfg.get("port", 22))
        except ValueError as exc:
            raise SSHError(f"ssh config: Port for {alias} is not a number: {cfg.get('port')!r}") from exc
        # A user written into a ProxyJump/--bastion hop ("admin@bastion") is explicit and wins there.
        if hop:
            chosen_user = user or cfg.get("user") or self.settings.user or self.settings.default_user
        else:
            chosen_user = user or self.settings.user or cfg.get("user") or self.settings.default_user
        if self.settings.key_path is not None:
            keys: tuple[Path, ...] = (self.settings.key_path,)
        else:
            configured = tuple(Path(os.path.expanduser(p)) for p in cfg.get("identityfile", []))
            keys = tuple(dict.fromkeys(configured + self.settings.fallback_keys))
        jump = cfg.get("proxyjump")
        command = cfg.get("proxycommand")
        return Endpoint(
            alias=alias,
            hostname=hostname,
            port=port or cfg_port,
            user=str(chosen_user),
            key_files=keys,
            proxy_command=None if not command or command.lower() == "none" else str(command),
            proxy_jump=None if not jump or jump.lower() == "none" else str(jump),
            host_key_alias=cfg.get("hostkeyalias"),
        )

    # -- connecting -------------------------------------------------------------------------

    def connect(self, alias: str, *, via: SSHConnection | None = None) -> SSHConnection:
        """Connect to ``alias``. Route: ssh-config ProxyCommand > ProxyJump > ``via`` > bastion > direct."""
        return self._connect(alias, via=via, depth=0)

    def _connect(self, alias: str, *, via: SSHConnection | None, depth: int,
                 user: str | None = None, port: int | None = None, use_bastion: bool = True,
                 hop: bool = False) -> SSHConnection:
        if depth > MAX_JUMP_DEPTH:
            raise SSHError(f"more than {MAX_JUMP_DEPTH} jump hosts reaching {alias}: is there a ProxyJump loop in the ssh config?")
        ep = self.resolve(alias, user=user, port=port, hop=hop)
        jumps: list[SSHConnection] = []
        sock: Any
        try:
            if ep.proxy_command:
                try:
                    sock = _ProxyCommand(ep.proxy_command)
                except (paramiko.SSHException, OSError) as exc:
                    raise SSHUnreachable(f"cannot reach {ep.describe()}: ProxyCommand failed: {_reason(exc)}") from exc
            elif ep.proxy_jump:
                hop_via: SSHConnection | None = None
                for hop_spec in ep.proxy_jump.split(","):
                    host, hop_user, hop_port = parse_hop(hop_spec.strip())
                    hop_conn = self._connect(host, via=hop_via, depth=depth + 1, user=hop_user, port=hop_port,
                                             use_bastion=False, hop=True)
                    jumps.append(hop_conn)
                    hop_via = hop_conn
                assert hop_via is not None
                sock = hop_via.open_tunnel(ep.hostname, ep.port)
            elif via is not None:
                sock = via.open_tunnel(ep.hostname, ep.port)
            elif use_bastion and self.settings.bastion and alias != self.settings.bastion:
                sock = self.bastion().open_tunnel(ep.hostname, ep.port)
            else:
                sock = self._tcp(ep)
            client = self._handshake(ep, sock)
        except BaseException:
            for j in reversed(jumps):
                j.close()
            raise
        with self._lock:
            self.connections_opened += 1
        return SSHConnection(client, ep, self.settings, jumps)

    def bastion(self) -> SSHConnection:
        """The one shared connection to ``--bastion``, opened on first use."""
        assert self.settings.bastion
        with self._bastion_lock:
            if self._bastion is None:
                host, user, port = parse_hop(self.settings.bastion)
                self._bastion = self._connect(host, via=None, depth=1, user=user, port=port, use_bastion=False,
                                              hop=True)
            return self._bastion

    def close(self) -> None:
        with self._bastion_lock:
            if self._bastion is not None:
                self._bastion.close()
                self._bastion = None

    def _tcp(self, ep: Endpoint) -> socket.socket:
        try:
            return socket.create_connection((ep.hostname, ep.port), timeout=self.settings.connect_timeout)
        except (socket.timeout, TimeoutError) as exc:
            raise SSHUnreachable(
                f"cannot reach {ep.describe()}: no answer within {self.settings.connect_timeout:g}s "
                f"(instance down, or a security group/firewall blocks port {ep.port}?)"
            ) from exc
        except OSError as exc:
            raise SSHUnreachable(f"cannot reach {ep.describe()}: {_reason(exc)}") from exc

    def _handshake(self, ep: Endpoint, sock: Any) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        name = ep.known_hosts_name
        for keytype, key in self.known_hosts.known(name).items():
            client.get_host_keys().add(name, keytype, key)
        client.set_missing_host_key_policy(_TrustOnFirstUse(self.known_hosts, name))
        keys = [str(p) for p in ep.key_files if p.is_file()]
        if self.settings.key_path is not None and not keys:
            sock.close()
            raise SSHError(f"SSH key {self.settings.key_path} does not exist; fix --ssh-key")
        if not keys and not self.settings.allow_agent:
            sock.close()
            tried = ", ".join(str(p) for p in ep.key_files) or "none"
            raise SSHError(
                f"no SSH private key found to log in to {ep.describe()} (tried {tried}); pass --ssh-key PATH "
                f"or set IdentityFile in the ssh config"
            )
        t = self.settings.connect_timeout
        # paramiko names the host "[host]:port" itself; with HostKeyAlias we pass the alias as the
        # host and port 22 so the recorded name is the alias, as OpenSSH does.
        host_arg, port_arg = (ep.host_key_alias, 22) if ep.host_key_alias else (ep.hostname, ep.port)
        try:
            client.connect(
                host_arg, port=port_arg, username=ep.user, key_filename=cast(Any, keys or None), sock=sock,
                # paramiko's ``timeout`` bounds the key exchange wait; kept above the banner timeout so a
                # silent host fails as a banner timeout instead of a later, vaguer "No existing session".
                timeout=t + 1, banner_timeout=t, auth_timeout=t, channel_timeout=t,
                allow_agent=self.settings.allow_agent, look_for_keys=False,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyChanged(
                f"REFUSED: the host key of {ep.describe()} has CHANGED: {self.known_hosts.path} records "
                f"{exc.expected_key.get_name()} {fingerprint(exc.expected_key)}, the host now shows "
                f"{exc.key.get_name()} {fingerprint(exc.key)}. Someone may be intercepting the connection, "
                f"or the instance was replaced (a new instance at the same address has a new key). If you know "
                f"it was replaced, forget the old key with: ssh-keygen -R '{name}' -f {self.known_hosts.path} "
                f"and run validate again"
            ) from exc
        except paramiko.PasswordRequiredException as exc:
            client.close()
            raise SSHError(
                f"the SSH key for {ep.describe()} is encrypted; add it to ssh-agent or pass an unencrypted --ssh-key"
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise SSHError(
                f"{ep.describe()} refused to log in user {ep.user!r} with key(s) {', '.join(keys) or '(agent)'}; "
                f"pass --ssh-user/--ssh-key, or set User/IdentityFile in the ssh config"
            ) from exc
        except paramiko.ProxyCommandFailure as exc:
            client.close()
            raise SSHUnreachable(f"cannot reach {ep.describe()}: ProxyCommand {exc.command!r} {exc.error}") from exc
        except (socket.timeout, TimeoutError) as exc:
            client.close()
            raise SSHUnreachable(f"cannot reach {ep.describe()}: the SSH handshake timed out after {t:g}s") from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            if isinstance(exc.__context__, (socket.timeout, TimeoutError)):  # paramiko wraps banner timeouts
                raise SSHUnreachable(
                    f"cannot reach {ep.describe()}: the SSH handshake timed out after {t:g}s (no SSH banner: "
                    f"host overloaded, or not sshd on that port?)"
                ) from exc
            raise SSHUnreachable(f"cannot reach {ep.describe()}: SSH handshake failed: {_reason(exc)}") from exc
        return client


__all__ = [
    "CommandResult",
    "Endpoint",
    "KnownHosts",
    "SSHConnection",
    "SSHConnector",
    "SSHSettings",
    "SSHUnreachable",
    "fingerprint",
    "parse_hop",
]

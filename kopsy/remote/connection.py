"""SSH connections (paramiko): connect through jump hosts, run commands with timeouts.

Every SSH connection kopsy opens goes through ``SSHConnector.connect``; paramiko and socket
errors are translated into ``SSHError`` / ``HostKeyChanged`` here and nowhere else.

paramiko parses ``ProxyJump`` but does not act on it: we open the jump connection ourselves
and hand a ``direct-tcpip`` channel to the next hop as its socket. The destination's
HostName/Port come from the *local* config, as OpenSSH does.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import paramiko

from kopsy.errors import HostKeyChanged, SSHError
from kopsy.remote.config import Endpoint, SSHSettings, SSHUnreachable, check_allowed, parse_hop, read_config, resolve
from kopsy.remote.known_hosts import KnownHosts, TrustOnFirstUse, fingerprint
from kopsy.remote.proxy import ProxyCommand

# paramiko logs failures (e.g. "Secsh channel 5 open FAILED") that we translate and report
# ourselves; without a handler Python's last-resort handler would print them to stderr, and
# only the CLI prints. The CLI may still attach a handler (e.g. for --debug).
logging.getLogger("paramiko").addHandler(logging.NullHandler())

MAX_JUMP_DEPTH = 8


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
        host = check_allowed(self.settings, "the jump target", host, port)
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
        self.config = read_config(settings.config_path)
        self.known_hosts = KnownHosts(settings.known_hosts)
        self._lock = threading.Lock()
        self._bastion: SSHConnection | None = None
        self._bastion_lock = threading.Lock()
        self.connections_opened = 0

    # -- resolution -------------------------------------------------------------------------

    def resolve(self, alias: str, *, user: str | None = None, port: int | None = None, hop: bool = False) -> Endpoint:
        """Apply the ssh config (and the flags, which win) to an alias (see ``config.resolve``)."""
        return resolve(self.config, self.settings, alias, user=user, port=port, hop=hop)

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
                    sock = ProxyCommand(ep.proxy_command)
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

    def use_bastion(self, host: str) -> bool:
        """Route through ``host`` (a bastion found by its tags) unless a bastion was given
        already, which wins; True when ``host`` is now the bastion."""
        import dataclasses

        with self._bastion_lock:
            if self.settings.bastion:
                return False
            self.settings = dataclasses.replace(self.settings, bastion=host)
            return True

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
        address = check_allowed(self.settings, ep.alias, ep.hostname, ep.port)
        try:
            return socket.create_connection((address, ep.port), timeout=self.settings.connect_timeout)
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
        client.set_missing_host_key_policy(TrustOnFirstUse(self.known_hosts, name))
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

"""Where a host really is: the ssh config lookup, jump-host specs and the settings of a run.

paramiko never reads ``~/.ssh/config``; we look each host up with ``paramiko.SSHConfig``
(HostName, Port, User, IdentityFile, ProxyCommand, ProxyJump, HostKeyAlias) so that a user's
bastion setup -- or the sandbox's loopback mapping -- works as it does for ``ssh``.

Precedence, documented in docs/validate.md:
user: ``--ssh-user`` > ssh-config ``User`` > ``ubuntu``;
key: ``--ssh-key`` > ssh-config ``IdentityFile`` > the cluster's key > ``~/.ssh/id_ed25519``, ``~/.ssh/id_rsa``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import paramiko

from kopsy.errors import SSHError

DEFAULT_USER = "ubuntu"


class SSHUnreachable(SSHError):
    """The host could not be reached at all (no route, refused, timed out, jump host could not
    connect), or may not be (outside ``SSHSettings.allowed_networks``)."""


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
    # Non-empty: connect only to addresses in these networks, and refuse any other (fail closed).
    # The CLI sets loopback when the AWS endpoint is a local emulation, whose instance addresses
    # (moto hands out real internet addresses) are nobody's machines.
    allowed_networks: tuple[str, ...] = ()


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


MAX_SSH_CONFIG_LINE = 4096


def read_config(path: Path | None) -> paramiko.SSHConfig:
    """The OpenSSH config at ``path`` (an empty one for None), or an ``SSHError`` saying what is wrong.

    Bounded: paramiko's matching is slow on huge patterns, and 'Match exec' would run a command
    at every lookup; kopsy reads the config, it does not execute it."""
    if path is None:
        return paramiko.SSHConfig()
    from kopsy.localfiles import SSH_CONFIG_LIMIT, LocalFileError, read_text

    if not path.exists():
        raise SSHError(f"ssh config {path} does not exist; fix --ssh-config/KOPSY_SSH_CONFIG")
    try:
        text = read_text(path, SSH_CONFIG_LIMIT, "ssh config")
    except LocalFileError as exc:
        raise SSHError(f"{exc.message}; fix --ssh-config/KOPSY_SSH_CONFIG") from None
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



def resolve(config: paramiko.SSHConfig, settings: SSHSettings, alias: str, *, user: str | None = None,
            port: int | None = None, hop: bool = False) -> Endpoint:
    """Apply the ssh config (and the flags, which win) to an alias.

    ``hop`` marks a jump host or the bastion: there the ssh config's User beats ``--ssh-user``
    (as ``ssh -l`` only names the destination's user), and a user written into the hop wins.
    """
    cfg = config.lookup(alias)
    hostname = str(cfg.get("hostname", alias))
    try:
        cfg_port = int(cfg.get("port", 22))
    except ValueError as exc:
        raise SSHError(f"ssh config: Port for {alias} is not a number: {cfg.get('port')!r}") from exc
    # A user written into a ProxyJump/--bastion hop ("admin@bastion") is explicit and wins there.
    if hop:
        chosen_user = user or cfg.get("user") or settings.user or settings.default_user
    else:
        chosen_user = user or settings.user or cfg.get("user") or settings.default_user
    if settings.key_path is not None:
        keys: tuple[Path, ...] = (settings.key_path,)
    else:
        configured = tuple(Path(os.path.expanduser(p)) for p in cfg.get("identityfile", []))
        keys = tuple(dict.fromkeys(configured + settings.fallback_keys))
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


def check_allowed(settings: SSHSettings, what: str, host: str, port: int) -> str:
    """The address to connect to for ``host``, checked against ``settings.allowed_networks``:
    resolved once here (the connection then goes to exactly this address), refused when outside."""
    if not settings.allowed_networks:
        return host
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise SSHUnreachable(f"cannot resolve {what} {host}: {exc}") from exc
    networks = [ipaddress.ip_network(n, strict=False) for n in settings.allowed_networks]
    addresses = [str(info[4][0]) for info in infos]
    outside = [a for a in addresses if not any(ipaddress.ip_address(a) in n for n in networks)]
    if outside or not addresses:
        raise SSHUnreachable(
            f"refusing to connect to {what} {host} ({', '.join(outside or addresses)}): the AWS endpoint is a local "
            f"emulation, so only {', '.join(settings.allowed_networks)} is reached; an emulated instance's address "
            f"leads to no machine of yours. Map it in the ssh config the emulation provides, and re-run"
        )
    return addresses[0]

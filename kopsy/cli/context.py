"""What every command shares: global options, and how the store, cluster and region are resolved.

This is the only place (with the commands themselves) that reads the environment.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kopsy.errors import ClusterNotFound, UsageError

if TYPE_CHECKING:
    from kopsy.cloud.aws.session import AwsClients
    from kopsy.state.clusters import ClusterStore

STATE_HELP = "pass --state s3://BUCKET[/PREFIX] (or file:///PATH) or set KOPSY_STATE_STORE"


@dataclass
class Options:
    state: str | None
    cluster_name: str | None
    debug: bool


def options() -> Options:
    return click.get_current_context().find_root().obj  # type: ignore[no-any-return]


def default_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")


def local_emulation() -> bool:
    """Whether the AWS endpoint (``AWS_ENDPOINT_URL``) is on this machine: the sandbox, or any
    local emulation. Its instances' addresses then lead to nobody's machines, so SSH is held to
    loopback (fail closed): docs/validate.md, "SSH"."""
    import ipaddress
    from urllib.parse import urlparse

    url = os.environ.get("AWS_ENDPOINT_URL", "")
    host = urlparse(url).hostname if url else None
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def aws_clients(region: str | None = None) -> AwsClients:
    """The run's clients for ``region``: one per region per process, so the state store and the
    cloud calls of a command share a boto3 session instead of resolving credentials twice."""
    return _clients_for(region or default_region())


@functools.lru_cache(maxsize=None)
def _clients_for(region: str) -> AwsClients:
    from kopsy.cloud.aws.session import CONNECT_TIMEOUT, READ_TIMEOUT, RETRY_BUDGET, AwsClients

    clients = AwsClients(
        region,
        connect_timeout=_seconds("KOPSY_AWS_CONNECT_TIMEOUT", CONNECT_TIMEOUT),
        read_timeout=_seconds("KOPSY_AWS_READ_TIMEOUT", READ_TIMEOUT),
        retry_budget=_seconds("KOPSY_AWS_RETRY_BUDGET", RETRY_BUDGET),
        on_wait=lambda message: click.echo(f"Waiting: {message}", err=True),
        models_cache=_models_cache(),
    )
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    clients.budget.endpoint = f"the AWS endpoint {endpoint}" if endpoint else "AWS"
    log = os.environ.get("KOPSY_AWS_CALL_LOG")
    if log:  # test and benchmark hook: one line "service operation" per API call
        _log_calls(clients, log)
    return clients


def _models_cache() -> Path | None:
    """Where botocore models trimmed to kopsy's operations are kept (kopsy/cloud/aws/models.py):
    ``$XDG_CACHE_HOME/kopsy`` or ``~/.cache/kopsy``; ``KOPSY_TRIMMED_MODELS=0`` turns them off, and
    so does ``AWS_DATA_PATH`` (models of the user's own come first, as botocore has it)."""
    if os.environ.get("KOPSY_TRIMMED_MODELS", "").strip().lower() in ("0", "false", "no"):
        return None
    if os.environ.get("AWS_DATA_PATH", "").strip():
        return None
    return cache_dir()


def cache_dir() -> Path:
    """kopsy's cache: ``$XDG_CACHE_HOME/kopsy`` or ``~/.cache/kopsy`` (trimmed botocore models,
    compiled user-data templates, rendered user-data and addons). Only derived data: removing it
    costs the next run some CPU."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "kopsy"


def _seconds(variable: str, default: float) -> float:
    """A tuning knob in seconds from the environment (documented in docs/reliability.md)."""
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{variable}={text[:40]!r} is not a number of seconds") from None
    if not 0 < value <= 3600:
        raise UsageError(f"{variable}={text[:40]!r}: use a number of seconds between 0 and 3600")
    return value


def _log_calls(clients: AwsClients, path: str) -> None:
    import threading

    lock = threading.Lock()

    def record(service: str, operation: str) -> None:
        with lock, open(path, "a") as fh:
            fh.write(f"{service} {operation}\n")

    clients.on_call(record)


def state_url(opts: Options | None = None) -> str:
    opts = opts or options()
    if not opts.state:
        raise UsageError(f"no state store given: {STATE_HELP}")
    return opts.state  # open_store normalises it; messages echo exactly what was given


def open_cluster_store(opts: Options | None = None) -> ClusterStore:
    """The ClusterStore behind --state / KOPSY_STATE_STORE."""
    from kopsy.state import open_store
    from kopsy.state.clusters import ClusterStore

    url = state_url(opts)
    clients = aws_clients() if url.startswith("s3://") else None
    return ClusterStore(open_store(url, clients=clients), on_warning=warn)


def warm_clients(store: ClusterStore, *jobs: str | Callable[[], object], region: str | None = None) -> None:
    """Get a command ready off its critical path: the state store's client first, alone (the
    first call, the lock or the spec, needs it and nothing else); then ``jobs`` in order on a
    thread (services' clients in ``region``, imports) while that call waits on the network.
    ``delete``'s describes start ~20 ms sooner for it. Nothing for a file:// store."""
    if store.url.startswith("file://"):
        return
    aws_clients().client("s3")
    aws_clients(region).prewarm(*jobs)


def warn(message: str) -> None:
    """One ``Warning:`` line on stderr (messages carrying store values are made printable below)."""
    shown = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in message)
    click.echo(f"Warning: {shown}", err=True)


def resolve_cluster_name(store: ClusterStore, name: str | None, opts: Options | None = None) -> str:
    """Positional NAME, else --name/KOPSY_CLUSTER_NAME, else the only cluster in the store."""
    opts = opts or options()
    chosen = name or opts.cluster_name
    if chosen:
        return chosen
    clusters = store.list_clusters()
    if len(clusters) == 1:
        return clusters[0]
    if not clusters:
        raise ClusterNotFound("(none given)", []) from None
    raise UsageError(
        f"which cluster? name it as an argument or with --name/KOPSY_CLUSTER_NAME; clusters in this store: "
        f"{', '.join(clusters)}"
    )


def strip_cluster_word(args: tuple[str, ...], noun: str = "cluster") -> str | None:
    """``kopsy update cluster NAME`` and ``kopsy update NAME`` and ``kopsy update`` all mean the same."""
    rest = list(args)
    if rest and rest[0] == noun:
        rest.pop(0)
    if len(rest) > 1:
        raise UsageError(f"expected at most one cluster name, got {' '.join(rest)}")
    return rest[0] if rest else None


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str) -> float:
    """'10m', '1h30m', '45s', '90' (seconds) -> seconds."""
    text = text.strip()
    shown = text if len(text) <= 30 else text[:30] + "..."
    if len(text) > 30:  # hundreds of digits would overflow a timedelta further on
        raise UsageError(f"{shown!r} is not a duration like 10m, 90s or 1h30m (too long)")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        value = float(text)
    else:
        m = _DURATION.fullmatch(text)
        if not text or not m or not any(m.groups()):
            raise UsageError(f"{shown!r} is not a duration like 10m, 90s or 1h30m")
        h, mins, s = m.groups()
        value = int(h or 0) * 3600 + int(mins or 0) * 60 + float(s or 0)
    if value > MAX_DURATION:
        raise UsageError(f"{shown!r} is longer than {MAX_DURATION // 86400} days")
    return value


MAX_DURATION = 366 * 86400


class Duration(click.ParamType):
    """A click type for --wait/--interval/--ttl style flags (value in seconds)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return parse_duration(str(value))
        except UsageError as exc:
            self.fail(exc.message, param, ctx)


DURATION = Duration()

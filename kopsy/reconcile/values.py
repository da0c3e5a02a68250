"""The values the engine moves between its stages: desired and actual resources, references
between them, and the per-run contexts kinds read facts and apply changes through.

This is the engine's vocabulary, so it lives with the engine (``kopsy/reconcile/``). It imports
nothing of kopsy's, which is what lets the resource kinds below (``kopsy/cloud/aws/``) use it
without the engine's modules: a kind speaks in these values and names no other kind.

Desired resources refer to others with ``Ref`` (resolved to ids at plan and apply time) and
compute values that need other resources' outputs with ``Deferred`` (e.g. user-data needs
the load balancer's DNS name). A value not known until apply is ``UNKNOWN``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kopsy.cloud.aws.session import AwsClients


class _Unknown:
    """A value only known after apply (a new resource's id, a new template version)."""

    def __repr__(self) -> str:
        return "(known after apply)"

    __str__ = __repr__


UNKNOWN: Any = _Unknown()

Key = tuple[str, str]  # (kind, name)


@dataclass(frozen=True)
class Ref:
    """A reference to another resource's output (``id`` by default)."""

    kind: str
    name: str
    attr: str = "id"

    @property
    def key(self) -> Key:
        return (self.kind, self.name)


@dataclass(frozen=True)
class Deferred:
    """A value computed from other resources' outputs once they are all known."""

    refs: tuple[Ref, ...]
    fn: Callable[..., Any] = field(compare=False)
    label: str = "computed"


@dataclass
class Desired:
    """One resource as the spec wants it. ``name`` is its Name tag (unique within the kind)."""

    kind: str
    name: str
    fields: dict[str, Any]
    tags: dict[str, str] = field(default_factory=dict)
    extra_deps: tuple[Key, ...] = ()
    late_deps: tuple[Key, ...] = ()  # needed only by the kind's ``finish`` step (see ``Kind.late_fields``)

    @property
    def key(self) -> Key:
        return (self.kind, self.name)

    def deps(self) -> set[Key]:
        """Every resource this one needs first: the targets of its refs plus explicit extras."""
        early, late = self.split_deps(())
        return early | late

    def split_deps(self, late_fields: tuple[str, ...]) -> tuple[set[Key], set[Key]]:
        """(what the create needs, what only the finish step needs) for a kind whose ``late_fields``
        are set after the create."""
        early: set[Key] = set(self.extra_deps)
        late: set[Key] = set(self.late_deps)
        for name, value in self.fields.items():
            (late if name in late_fields else early).update(ref.key for ref in iter_refs(value))
        return early, late - early


@dataclass
class Actual:
    """One resource as AWS has it (parsed facts). ``fields`` use ids for references."""

    kind: str
    name: str
    id: str
    fields: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> Key:
        return (self.kind, self.name)


def iter_refs(value: Any) -> list[Ref]:
    if isinstance(value, Ref):
        return [value]
    if isinstance(value, Deferred):
        return list(value.refs)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [r for v in value for r in iter_refs(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in iter_refs(v)]
    return []


def iter_values(value: Any) -> list[Any]:
    """Every scalar inside a field value (through lists, tuples, sets and dicts)."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return [x for v in value for x in iter_values(v)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in iter_values(v)]
    return [value]


def resolve(value: Any, outputs: Mapping[Key, Mapping[str, Any]]) -> Any:
    """Replace refs by the outputs they point at (``UNKNOWN`` where not known yet)."""
    if isinstance(value, Ref):
        return outputs.get(value.key, {}).get(value.attr, UNKNOWN)
    if isinstance(value, Deferred):
        args = [resolve(r, outputs) for r in value.refs]
        if any(a is UNKNOWN for a in args):
            return UNKNOWN
        return value.fn(*args)
    if isinstance(value, (list, tuple)):
        return type(value)(resolve(v, outputs) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(resolve(v, outputs) for v in value)
    if isinstance(value, dict):
        return {k: resolve(v, outputs) for k, v in value.items()}
    return value


def contains_unknown(value: Any) -> bool:
    if value is UNKNOWN:
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(contains_unknown(v) for v in value)
    if isinstance(value, dict):
        return any(contains_unknown(v) for v in value.values())
    return False


class Facts:
    """Raw describe answers for one run, fetched at most once each (kinds may share one call)."""

    def __init__(self, clients: AwsClients, cluster: str, *, detail: bool = True, sweep: bool = False) -> None:
        self.clients = clients
        self.cluster = cluster
        self.detail = detail  # False: only what delete needs (ids, references), no extra describes
        # True (delete's inventory): everything tagged for the cluster by either tag scheme, what
        # Kubernetes' controllers made included (``tags.belongs``); False: the ownership tag.
        self.sweep = sweep
        self._cache: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def once(self, key: str, fetch: Callable[[], Any]) -> Any:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._cache:
                self._cache[key] = fetch()
            return self._cache[key]


class ApplyContext:
    """What create/modify/delete need: clients, the cluster name, a time budget for retries,
    and a place for follow-up calls that no dependent has to wait for."""

    def __init__(self, clients: AwsClients, cluster: str, *, retry_timeout: float = 120.0) -> None:
        self.clients = clients
        self.cluster = cluster
        self.retry_timeout = retry_timeout
        self._pool: Any = None
        self._followups: list[tuple[Key, Any]] = []
        self._guard = threading.Lock()

    def follow_up(self, key: Key, fn: Callable[[], None]) -> None:
        """Run ``fn`` for resource ``key`` after its create returns, without holding back its
        dependents: for settings none of them needs (a VPC's DNS hostnames, a subnet's public-IP
        default), so they cost no latency period on the critical path. Failures are reported
        against ``key`` when the apply ends; a rerun then sees the setting differ and fixes it."""
        if self._pool is None:
            fn()
            return
        with self._guard:
            self._followups.append((key, self._pool.submit(fn)))

    def start_follow_ups(self, workers: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="follow-up")

    def finish_follow_ups(self) -> dict[Key, BaseException]:
        """Wait for every follow-up; the first error per resource."""
        errors: dict[Key, BaseException] = {}
        if self._pool is None:
            return errors
        for key, fut in self._followups:
            exc = fut.exception()
            if exc is not None and key not in errors:
                errors[key] = exc
        self._pool.shutdown(wait=True)
        self._pool = None
        return errors

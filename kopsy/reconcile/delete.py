"""Delete everything a cluster owns in AWS, and nothing else.

Discovery uses only the cluster's tags, by both schemes (``kubernetes.io/cluster/<name>=owned``
and ``KubernetesCluster=<name>``, which Kubernetes' controllers use too), and kopsy's
deterministic IAM names, checked against their tags; service by service, so it works with the
state store gone. Deletion reuses
the update engine's dependency graph in reverse: each resource is deleted after everything that
refers to it, independent ones in parallel, retrying ``DependencyViolation`` until the deadline.
Afterwards the cloud is searched again; whatever still carries the tag is reported, never hidden.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kopsy.cloud.aws.registry import ALL_KINDS, KINDS
from kopsy.cloud.aws.session import AwsClients
from kopsy.parallel import parallel
from kopsy.reconcile.apply import ApplyResult, Event, apply_plan, change_deps
from kopsy.reconcile.changes import Change, Plan
from kopsy.reconcile.planner import gather_facts
from kopsy.reconcile.values import Actual, ApplyContext, Key

MAX_ROUNDS = 5


def inventory(clients: AwsClients, cluster: str) -> list[Actual]:
    """Every resource in ``clients.region`` that carries ``cluster``'s ownership tag, by kind
    order: what kopsy made and what Kubernetes' controllers made for the cluster alike. A kind
    says which of its resources need a delete of their own (``Kind.needs_delete``)."""
    facts = gather_facts(clients, cluster, ALL_KINDS, detail=False, sweep=True)
    found: list[Actual] = []
    for kind in ALL_KINDS:
        found += [a for a in sorted(facts.get(kind.kind, []), key=lambda a: a.name) if kind.needs_delete(a)]
    return found


def delete_plan(cluster: str, resources: list[Actual]) -> Plan:
    """One delete per resource, except kinds with a batch API: one change for all of them.
    What AWS removes with another resource being deleted is left out (``Kind.goes_with``):
    a round trip less."""
    changes: list[Change] = []
    batches: dict[str, list[Actual]] = {}
    deleting = {a.id: a for a in resources}
    for a in resources:
        if KINDS[a.kind].goes_with(a, deleting):
            continue
        if KINDS[a.kind].batch_delete:
            batches.setdefault(a.kind, []).append(a)
        else:
            changes.append(Change("delete", a.kind, a.name, a.id, actual=a))
    for kind, items in batches.items():
        ids = ",".join(a.id for a in items)
        changes.append(Change("delete", kind, f"{len(items)} {kind.lower()}(s)", ids, actual=items[0], batch=tuple(items)))
    return Plan(cluster, changes)


@dataclass
class DeleteResult:
    deleted: list[Change] = field(default_factory=list)
    remaining: list[Actual] = field(default_factory=list)
    errors: dict[Key, str] = field(default_factory=dict)  # last error per remaining resource, by (kind, id)
    rounds: int = 0
    beside: Any = None  # what ``beside_search`` returned beside the last search (None: it never ran)

    @property
    def ok(self) -> bool:
        return not self.remaining


def delete_resources(
    clients: AwsClients,
    cluster: str,
    *,
    timeout: float = 600.0,
    workers: int = 20,
    on_event: Event | None = None,
    beside_search: Callable[[], Any] | None = None,
) -> DeleteResult:
    """Delete, re-discover and repeat (a few rounds, within ``timeout``) until nothing is left.

    ``beside_search`` runs beside every search after a round (its instances are gone by then),
    and the last one's result is kept in ``DeleteResult.beside``: the caller's own next read
    (delete's listing of the state objects) costs no round trip of its own after the final search.
    """
    deadline = time.monotonic() + timeout
    result = DeleteResult()
    resources = inventory(clients, cluster)
    while resources and result.rounds < MAX_ROUNDS and time.monotonic() < deadline:
        result.rounds += 1
        plan = delete_plan(cluster, resources)
        ctx = ApplyContext(clients, cluster, retry_timeout=max(1.0, deadline - time.monotonic()))
        applied = apply_plan(plan, ctx, outputs={}, workers=workers, on_event=on_event, deadline=deadline)
        result.deleted.extend(applied.done)
        result.errors = _reasons(plan, applied, out_of_time=time.monotonic() > deadline)
        # Re-discover: instances an ASG launched meanwhile, or things AWS had not released yet.
        if beside_search is None:
            resources = inventory(clients, cluster)
        else:
            resources, result.beside = parallel(lambda f: f(), [lambda: inventory(clients, cluster), beside_search],
                                                name="search")
        if not applied.done:
            break  # no progress this round: another round would fail the same way
    result.remaining = resources
    return result


def _reasons(plan: Plan, applied: ApplyResult, *, out_of_time: bool) -> dict[Key, str]:
    """Why each resource of the round is still there, by (kind, id): the last error of its
    delete, or for one never attempted, what it was waiting for (a failed delete or the deadline)."""
    def members(c: Change) -> tuple[Actual, ...]:
        return c.batch or ((c.actual,) if c.actual is not None else ())

    reasons: dict[Key, str] = {}
    for c, e in applied.failed:
        for a in members(c):
            reasons[(a.kind, a.id)] = str(e)
    deps = change_deps(plan.changes)
    stuck = {c.key: c for c, _ in applied.failed} | {c.key: c for c in applied.skipped}
    for c in applied.skipped:
        blockers = sorted(f"{stuck[k].kind}/{stuck[k].name}" for k in deps.get(c.key, set()) if k in stuck)
        why = (f"not attempted: waits for {', '.join(blockers[:3])} to be deleted first" if blockers
               else "not attempted: --wait ran out" if out_of_time else "not attempted")
        for a in members(c):
            reasons[(a.kind, a.id)] = why
    return reasons

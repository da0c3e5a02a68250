"""Facts in, plan out: read every kind's resources (read-only, in parallel), then diff.

``gather_facts`` is the only stage that talks to AWS; ``diff`` is a pure function of the
desired resources and the facts, which is what the golden tests exercise.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.kind import Kind
from kopsy.cloud.aws.registry import ALL_KINDS, KINDS, MANAGED_KINDS
from kopsy.cloud.aws.session import AwsClients
from kopsy.parallel import parallel
from kopsy.reconcile.changes import Change, FieldChange, NoOp, Plan, short
from kopsy.reconcile.values import Actual, Desired, Facts, Key, contains_unknown, iter_values, resolve


def gather_facts(
    clients: AwsClients, cluster: str, kinds: Iterable[Kind] = MANAGED_KINDS, detail: bool = True, sweep: bool = False,
) -> dict[str, list[Actual]]:
    """Every resource of ``cluster`` per kind, discovered by its ownership tag (or IAM name);
    with ``sweep``, by either tag scheme (``Facts.sweep``). Every kind's search at once: they
    wait on the network, and a kind left waiting for a free thread cost ``delete`` (22 kinds on
    20 threads) a latency period of its own."""
    facts = Facts(clients, cluster, detail=detail, sweep=sweep)
    kinds = list(kinds)
    return dict(parallel(lambda k: (k.kind, k.find(facts)), kinds, workers=len(kinds), name="facts"))


def managed_only(cluster: str, facts: dict[str, list[Actual]]) -> dict[str, list[Actual]]:
    """The part of ``facts`` kopsy manages: what carries kopsy's own mark. The cluster's broad
    ownership tag is also on what Kubernetes' controllers create (the cloud-controller-manager's
    load balancers and ``k8s-elb-`` groups, the EBS CSI driver's volumes): ``update`` neither
    changes nor deletes those; ``delete`` sweeps them by the broad tag."""
    return {kind: [a for a in items if T.is_managed(a.tags, cluster)] for kind, items in facts.items()}


def _referenced(facts: dict[str, list[Actual]]) -> dict[str, int]:
    """How often each id appears in other resources' fields (a subnet names its VPC, ...)."""
    counts: dict[str, int] = {}
    for items in facts.values():
        for a in items:
            for v in iter_values(a.fields):
                if isinstance(v, str) and v != a.id:
                    counts[v] = counts.get(v, 0) + 1
    return counts


def _links(a: Actual, known_ids: set[str]) -> int:
    """How many other known resources this one's fields name (associations, attachments)."""
    return sum(1 for v in iter_values(a.fields) if isinstance(v, str) and v != a.id and v in known_ids)


def _index(items: list[Actual], refs: dict[str, int], known_ids: set[str]) -> tuple[dict[Key, Actual], list[Actual]]:
    """By key. When a name appears twice (a create repeated after its answer was lost), keep the
    copy others refer to (the VPC holding the subnets), then the one wired up most (the route
    table with the associations, the attached gateway), then the first by id; the rest is extra."""
    by_key: dict[Key, Actual] = {}
    extra: list[Actual] = []
    for a in sorted(items, key=lambda a: (-refs.get(a.id, 0), -_links(a, known_ids), a.id)):
        if a.key in by_key:
            extra.append(a)
        else:
            by_key[a.key] = a
    return by_key, extra


def diff(cluster: str, desired: list[Desired], facts: dict[str, list[Actual]], warnings: list[str] | None = None) -> Plan:
    """Compare desired against actual, kind by kind in dependency order.

    Refs are resolved against what is known at plan time: a resource that will be created (or a
    launch-template version that will be added) makes the values that depend on it
    "(known after apply)", so its dependents show the change they will get.
    """
    plan = Plan(cluster, [], [], list(warnings or []))
    outputs: dict[Key, dict[str, Any]] = {}
    actual: dict[Key, Actual] = {}
    facts = managed_only(cluster, facts)
    refs = _referenced(facts)
    known_ids = {a.id for items in facts.values() for a in items}
    for kind in MANAGED_KINDS:
        by_key, extra = _index(facts.get(kind.kind, []), refs, known_ids)
        actual.update(by_key)
        for a in extra:
            plan.changes.append(Change("delete", a.kind, a.name, a.id, notes=("duplicate of another resource with this name",), actual=a))
        for key, a in by_key.items():
            outputs[key] = dict(a.outputs)

    order = {k.kind: i for i, k in enumerate(ALL_KINDS)}
    wanted = {d.key for d in desired}
    for d in sorted(desired, key=lambda d: order[d.kind]):
        kind = KINDS[d.kind]
        fields = {k: resolve(v, outputs) for k, v in d.fields.items()}
        have = actual.get(d.key)
        if have is None:
            shown = tuple(FieldChange(f, None, v) for f, v in fields.items() if f not in kind.quiet_fields)
            plan.changes.append(Change("create", d.kind, d.name, None, shown, desired=d))
            outputs[d.key] = {}
            continue
        changed: list[FieldChange] = []
        for f, want in fields.items():
            if f in kind.create_only:
                continue
            old = have.fields.get(f)
            if contains_unknown(want) or not kind.same(f, want, have):
                if f in kind.immutable:
                    plan.warnings.append(
                        f"{d.kind}/{d.name}: {f} cannot be changed in place ({_s(old)} -> {_s(want)}); "
                        f"it keeps its current value"
                    )
                    continue
                changed.append(FieldChange(f, old, want))
        if changed:
            names = {c.field for c in changed}
            plan.changes.append(
                Change("modify", d.kind, d.name, have.id, tuple(changed), tuple(kind.notes(names)), desired=d, actual=have)
            )
            outputs[d.key] = kind.outputs_after_modify(have, names)
        else:
            plan.noops.append(NoOp(d.kind, d.name, have.id, "up to date"))

    for key, a in sorted(actual.items(), key=lambda kv: (-order[kv[0][0]], kv[0][1])):
        if key not in wanted:
            plan.changes.append(Change("delete", a.kind, a.name, a.id, notes=("no longer in the spec",), actual=a))
    return plan


def _s(v: Any) -> str:
    return short(v)

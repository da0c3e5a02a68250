"""The engine (``kopsy/reconcile/``, builders aside) knows no kind by name, and ownership is
one explicit rule: what ``update`` plans is what carries kopsy's mark."""

from __future__ import annotations

import ast
from pathlib import Path

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.registry import ALL_KINDS, KINDS
from kopsy.reconcile.apply import kind_dependents
from kopsy.reconcile.planner import diff, managed_only
from kopsy.reconcile.values import Actual

ENGINE = Path(__file__).resolve().parents[2] / "kopsy" / "reconcile"


def _string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_engine_modules_name_no_kind() -> None:
    """Kind-specific knowledge lives in the kind (``Kind.needs_delete``, ``goes_with``,
    ``quiet_fields``, ...); builders are where the spec meets kinds, so they may name them."""
    engine = [p for p in ENGINE.glob("*.py")]
    assert len(engine) >= 6  # planner, apply, delete, graph, changes, update, ...
    named = {str(p.name): [(line, s) for line, s in _string_constants(p) if s in KINDS] for p in engine}
    assert {p: hits for p, hits in named.items() if hits} == {}


def test_no_delete_after_entry_is_implied_by_depends_on() -> None:
    """``delete_after`` says only what the dependency graph does not already say."""
    hard = kind_dependents(include_soft=False)
    implied = {k.kind: [d for d in k.delete_after if d in hard.get(k.kind, set())] for k in ALL_KINDS}
    assert {k: v for k, v in implied.items() if v} == {}
    unknown = {k.kind: [d for d in k.delete_after if d not in KINDS] for k in ALL_KINDS}
    assert {k: v for k, v in unknown.items() if v} == {}


def _sg(name: str, tags: dict[str, str]) -> Actual:
    return Actual("SecurityGroup", name, f"sg-{abs(hash(name)) % 10**8:08d}", fields={"vpc": "vpc-1", "description": "x"},
                  outputs={"id": "sg"}, tags=tags)


def test_only_what_carries_kopsys_mark_is_managed() -> None:
    cluster = "c.example.com"
    ours = _sg(f"nodes.{cluster}", T.cluster_tags(cluster, f"nodes.{cluster}"))
    ccm = _sg("k8s-elb-abc", {T.ownership_key(cluster): T.OWNED, T.TAG_KUBERNETES_CLUSTER: cluster, "Name": "k8s-elb-abc"})
    other = _sg(f"nodes.{cluster}x", T.cluster_tags(f"{cluster}x", f"nodes.{cluster}x") | {T.ownership_key(cluster): T.OWNED})
    managed = managed_only(cluster, {"SecurityGroup": [ours, ccm, other]})
    assert managed == {"SecurityGroup": [ours]}
    # ... so an empty spec plans the deletion of kopsy's group alone.
    plan = diff(cluster, [], {"SecurityGroup": [ours, ccm, other]})
    assert [(c.action, c.name) for c in plan.changes] == [("delete", f"nodes.{cluster}")]

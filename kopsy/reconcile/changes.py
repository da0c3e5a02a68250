"""Typed plan values: what would change, field by field, or why nothing changes.

The printer (``render``) and the applier (``apply``) both consume these, so the dry run
shows exactly what ``--yes`` will do.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from kopsy.reconcile.values import UNKNOWN, Actual, Desired, Key

Action = Literal["create", "modify", "delete"]


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: Any
    new: Any


@dataclass
class Change:
    action: Action
    kind: str
    name: str
    id: str | None
    fields: tuple[FieldChange, ...] = ()
    notes: tuple[str, ...] = ()
    desired: Desired | None = field(default=None, repr=False, compare=False)
    actual: Actual | None = field(default=None, repr=False, compare=False)
    batch: tuple[Actual, ...] = field(default=(), repr=False, compare=False)  # a batched delete's members

    @property
    def key(self) -> Key:
        """Unique within a plan: deletes carry the id too (a name may exist twice after a failure)."""
        return (self.kind, f"{self.name}#{self.id}") if self.action == "delete" else (self.kind, self.name)

    @property
    def changed(self) -> set[str]:
        return {f.field for f in self.fields}


@dataclass(frozen=True)
class NoOp:
    kind: str
    name: str
    id: str
    reason: str


@dataclass
class Plan:
    cluster: str
    changes: list[Change]
    noops: list[NoOp] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.changes

    def by_action(self, action: Action) -> list[Change]:
        return [c for c in self.changes if c.action == action]


def plain(value: Any) -> Any:
    """A JSON-able, stable form of a field value (sets sorted, bytes summarised)."""
    if value is UNKNOWN:
        return "(known after apply)"
    if isinstance(value, bytes):
        return {"bytes": len(value), "sha256": hashlib.sha256(value).hexdigest()}
    if isinstance(value, (set, frozenset)):
        return sorted((plain(v) for v in value), key=repr)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in sorted(value.items())}
    return value


def short(value: Any) -> str:
    """One-line text form of a value for the plan printer."""
    if value is UNKNOWN:
        return "(known after apply)"
    if value is None:
        return "<none>"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes sha256:{hashlib.sha256(value).hexdigest()[:12]}>"
    if isinstance(value, (set, frozenset)):
        items = sorted((short(v) for v in value))
        return "[" + ", ".join(items) + "]"
    if isinstance(value, tuple):
        parts = ["*" if v is None else short(v) for v in value]
        return "(" + " ".join(parts) + ")"
    if isinstance(value, dict):
        if "Statement" in value:  # an IAM policy: its size and hash say enough
            import json

            text = json.dumps(value, sort_keys=True).encode()
            return f"<policy {len(value['Statement'])} statements sha256:{hashlib.sha256(text).hexdigest()[:12]}>"
        return "{" + ", ".join(f"{k}={short(v)}" for k, v in sorted(value.items())) + "}"
    return str(value)


def change_to_dict(c: Change) -> dict[str, Any]:
    return {
        "action": c.action,
        "kind": c.kind,
        "name": c.name,
        "id": c.id,
        "fields": [{"field": f.field, "old": plain(f.old), "new": plain(f.new)} for f in c.fields],
        "notes": list(c.notes),
    }


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return {
        "cluster": plan.cluster,
        "changes": [change_to_dict(c) for c in plan.changes],
        "unchanged": [{"kind": n.kind, "name": n.name, "id": n.id, "reason": n.reason} for n in plan.noops],
        "warnings": list(plan.warnings),
    }


# --- recorded facts (golden tests): Actual values to and from JSON -------------------------------


def encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$b64": base64.b64encode(value).decode()}
    if isinstance(value, (set, frozenset)):
        return {"$set": sorted((encode(v) for v in value), key=repr)}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$b64"}:
            return base64.b64decode(value["$b64"])
        if set(value) == {"$set"}:
            return frozenset(decode(v) for v in value["$set"])
        if set(value) == {"$tuple"}:
            return tuple(decode(v) for v in value["$tuple"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def actuals_to_json(facts: dict[str, list[Actual]]) -> dict[str, Any]:
    return {
        kind: [{"name": a.name, "id": a.id, "fields": encode(a.fields), "outputs": encode(a.outputs), "tags": a.tags} for a in items]
        for kind, items in facts.items()
    }


def actuals_from_json(doc: dict[str, Any]) -> dict[str, list[Actual]]:
    return {
        kind: [Actual(kind, a["name"], a["id"], decode(a["fields"]), decode(a["outputs"]), dict(a.get("tags", {}))) for a in items]
        for kind, items in doc.items()
    }

"""The plan as text (kops' layout) — returned as a string; the CLI decides where it goes."""

from __future__ import annotations

from kopsy.reconcile.changes import Change, Plan, short

HEADINGS = (("create", "Will create resources:"), ("modify", "Will modify resources:"), ("delete", "Will delete resources:"))


def _block(c: Change) -> list[str]:
    head = f"  {c.kind}/{c.name}"
    if c.action == "delete":
        return [f"{head}\t{c.id}"] + [f"    \t({n})" for n in c.notes]
    lines = [head]
    width = max((len(f.field) for f in c.fields), default=0)
    for f in c.fields:
        value = short(f.new) if c.action == "create" else f"{short(f.old)} -> {short(f.new)}"
        lines.append(f"    \t{(f.field + ':').ljust(width + 1)} {value}")  # kops: "field: old -> new", aligned
        if c.action == "modify" and f.field == "user_data":
            lines += [f"    \t  {k}: {a} -> {b}" for k, a, b in _bootstrap_diff(f.old, f.new)]
    lines += [f"    \tnote: {n}" for n in c.notes]
    return lines


def plan_text(plan: Plan) -> str:
    """``Will create/modify/delete resources:`` sections; empty string for an empty plan."""
    out: list[str] = []
    for action, heading in HEADINGS:
        changes = plan.by_action(action)  # type: ignore[arg-type]
        if not changes:
            continue
        out.append(heading)
        for c in changes:
            out.extend(_block(c))
            out.append("")
    for w in plan.warnings:
        out.append(f"Warning: {w}")
    return "\n".join(out).rstrip("\n") + ("\n" if out else "")


def summary(plan: Plan) -> str:
    counts = {a: len(plan.by_action(a)) for a in ("create", "modify", "delete")}  # type: ignore[arg-type]
    return f"{counts['create']} to create, {counts['modify']} to modify, {counts['delete']} to delete"


def _bootstrap_diff(old: object, new: object) -> list[tuple[str, object, object]]:
    """Which bootstrap settings a user-data change carries (e.g. kubernetesVersion), when both
    sides parse; an empty list otherwise (the hashes above still show that it changed)."""
    if not isinstance(old, bytes) or not isinstance(new, bytes):
        return []
    try:
        from dataclasses import asdict

        from kopsy.bootstrap import parse_user_data

        a, b = asdict(parse_user_data(old)), asdict(parse_user_data(new))
    except Exception:
        return []
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]

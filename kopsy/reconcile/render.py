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
        lines.append(f"    \t{f.field.ljust(width)}  {value}")
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

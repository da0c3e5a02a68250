"""Apply a plan: every change after the changes it depends on, independent ones in parallel.

Ordering rules:
- create/modify of R waits for the creates/modifies of the resources R refers to;
- delete of a resource of kind K waits for every change to kinds that (transitively) depend on
  K, and for deletes of the kinds K must outlive (``delete_after``), so references move away
  before their target disappears. ``delete`` reuses this with a plan made only of deletes.

Deletes are retried on ``DependencyViolation``-style errors until the time budget runs out,
because AWS releases things (network interfaces, addresses) asynchronously.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kopsy.cloud.aws.kind import ApplyContext, Key, contains_unknown, resolve
from kopsy.cloud.aws.registry import ALL_KINDS, KINDS
from kopsy.cloud.aws.retry import is_dependency, is_throttle, retry
from kopsy.errors import CloudError
from kopsy.reconcile.changes import Change, Plan
from kopsy.reconcile.graph import Outcome, Skipped, run_graph


def kind_dependents(include_soft: bool = True) -> dict[str, set[str]]:
    """kind -> every kind that depends on it, directly or through others; without
    ``include_soft``, leaving out mere references (``soft_deps``), which need not be deleted first."""
    direct: dict[str, set[str]] = {k.kind: set() for k in ALL_KINDS}
    for kd in ALL_KINDS:
        for d in kd.depends_on:
            if include_soft or d not in kd.soft_deps:
                direct.setdefault(d, set()).add(kd.kind)
    closed: dict[str, set[str]] = {}

    def walk(kind: str) -> set[str]:
        if kind not in closed:
            closed[kind] = set()
            for dep in direct.get(kind, set()):
                closed[kind] |= {dep} | walk(dep)
        return closed[kind]

    for k in direct:
        walk(k)
    return closed


def change_deps(changes: list[Change]) -> dict[Key, set[Key]]:
    """The dependency graph between the changes of a plan (keys are (kind, name))."""
    keys = {c.key for c in changes}
    every, hard = kind_dependents(True), kind_dependents(False)
    deps: dict[Key, set[Key]] = {}
    for c in changes:
        if c.action == "delete":
            # Wait for changes that move references away (any dependent kind), and for deletes
            # of what really holds this resource (hard dependents, ``delete_after``).
            kind = KINDS[c.kind]
            deps[c.key] = {
                o.key
                for o in changes
                if o.key != c.key
                and (
                    (o.action != "delete" and o.kind in every.get(c.kind, set()))
                    or (o.action == "delete" and (o.kind in hard.get(c.kind, set()) or o.kind in kind.delete_after))
                )
            }
        else:
            assert c.desired is not None
            deps[c.key] = {k for k in c.desired.deps() if k in keys and k != c.key}
    return deps


def levels(changes: list[Change]) -> int:
    """Length of the longest dependency chain: the minimum number of sequential steps."""
    deps = change_deps(changes)
    memo: dict[Key, int] = {}

    def depth(k: Key) -> int:
        if k not in memo:
            memo[k] = 1 + max((depth(d) for d in deps.get(k, set())), default=0)
        return memo[k]

    return max((depth(c.key) for c in changes), default=0)


@dataclass
class ApplyResult:
    done: list[Change] = field(default_factory=list)
    failed: list[tuple[Change, BaseException]] = field(default_factory=list)
    skipped: list[Change] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped


# ("start"|"done"|"failed"|"skipped"|"retry", change, error); "retry": a delete AWS refused for
# now (DependencyViolation, throttling) will be tried again after a backoff.
Event = Callable[[str, Change, "BaseException | None"], None]


def apply_plan(
    plan: Plan,
    ctx: ApplyContext,
    *,
    outputs: dict[Key, dict[str, Any]],
    workers: int = 8,
    on_event: Event | None = None,
    deadline: float | None = None,
) -> ApplyResult:
    """Run the plan's changes. ``outputs`` holds the known outputs of unchanged resources
    (from the facts) and receives those of created/modified ones."""
    lock = threading.Lock()
    by_key = {c.key: c for c in plan.changes}

    def task(c: Change) -> Callable[[], None]:
        kind = KINDS[c.kind]

        def run() -> None:
            if c.action == "delete":
                assert c.actual is not None
                have = c.actual
                budget = ctx.retry_timeout if deadline is None else max(1.0, deadline - time.monotonic())
                members = list(c.batch)
                run_delete = (lambda: kind.delete_many(ctx, members)) if members else (lambda: kind.delete(ctx, have))
                retry(run_delete, when=lambda e: is_dependency(e) or is_throttle(e), timeout=budget,
                      on_retry=(lambda e: on_event("retry", c, e)) if on_event else None)
                return
            assert c.desired is not None
            with lock:
                fields = {k: resolve(v, outputs) for k, v in c.desired.fields.items()}
            if contains_unknown(fields):
                missing = sorted(k for k, v in fields.items() if contains_unknown(v))
                raise CloudError(f"{c.kind}/{c.name}: {', '.join(missing)} still unknown when applying (a dependency was not created)")
            if c.action == "create":
                result = kind.create(ctx, c.desired, fields)
            else:
                assert c.actual is not None
                result = kind.modify(ctx, c.desired, c.actual, fields, c.changed)
            with lock:
                outputs[c.key] = result

        return run

    def started(k: Key) -> None:
        if on_event:
            on_event("start", by_key[k], None)

    def finished(o: Outcome[Key]) -> None:
        if on_event:
            state = "done" if o.ok else "skipped" if isinstance(o.error, Skipped) else "failed"
            on_event(state, by_key[o.key], o.error)

    ctx.start_follow_ups(workers)
    try:
        outcomes = run_graph(
            {c.key: task(c) for c in plan.changes},
            change_deps(plan.changes),
            workers=workers,
            on_start=started,
            on_done=finished,
            should_stop=(lambda: time.monotonic() > deadline) if deadline is not None else None,
        )
    finally:
        late = ctx.finish_follow_ups()
    result = ApplyResult()
    for c in plan.changes:
        o = outcomes[c.key]
        if o.ok and c.key in late:
            o = Outcome(c.key, late[c.key])
            if on_event:
                on_event("failed", c, o.error)
        if o.ok:
            result.done.append(c)
        elif isinstance(o.error, Skipped):
            result.skipped.append(c)
        else:
            assert o.error is not None
            result.failed.append((c, o.error))
    return result

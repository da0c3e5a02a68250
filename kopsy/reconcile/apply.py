"""Apply a plan: every change after the changes it depends on, independent ones in parallel.

Ordering rules:
- create/modify of R waits for the creates/modifies of the resources R refers to; a kind with
  ``late_fields`` is created in two steps (create, then ``finish``), and only the finish waits
  for what those fields refer to (a gateway is created while its VPC is, attached after);
- delete of a resource of kind K waits for every change to kinds that (transitively) depend on
  K, and for deletes of the kinds K must outlive (``delete_after``), so references move away
  before their target disappears. ``delete`` reuses this with a plan made only of deletes.

Deletes are retried on ``DependencyViolation``-style errors until the time budget runs out,
because AWS releases things (network interfaces, addresses) asynchronously.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kopsy.cloud.aws.registry import ALL_KINDS, KINDS
from kopsy.cloud.aws.retry import is_dependency, is_server_error, is_throttle, retry
from kopsy.errors import CloudError
from kopsy.reconcile.changes import Change, Plan
from kopsy.reconcile.graph import Outcome, Skipped, run_graph
from kopsy.reconcile.values import ApplyContext, Key, contains_unknown, resolve


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


@dataclass
class ApplyResult:
    done: list[Change] = field(default_factory=list)
    failed: list[tuple[Change, BaseException]] = field(default_factory=list)
    skipped: list[Change] = field(default_factory=list)
    publish_error: BaseException | None = None  # ``apply_plan(publish=...)`` failed

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped and self.publish_error is None


# ("start"|"done"|"failed"|"skipped"|"retry", change, error); "retry": a delete AWS refused for
# now (DependencyViolation, throttling) will be tried again after a backoff.
Event = Callable[[str, Change, "BaseException | None"], None]


def _finish_key(key: Key) -> tuple[str, str, str]:
    return (key[0], key[1], "finish")


# The graph node of ``apply_plan(publish=...)``: what launch templates pin, put in the store.
_PUBLISH = ("publish", "", "")


def _two_step(c: Change) -> bool:
    """A create of a kind with late fields runs as two graph nodes: create, then finish."""
    return c.action == "create" and bool(KINDS[c.kind].late_fields)


def _graph(changes: list[Change]) -> dict[Hashable, set[Hashable]]:
    """``change_deps`` with each two-step create split: its create needs only the early fields'
    resources, its finish the create and the rest, and everyone else waits for the finish."""
    deps = change_deps(changes)
    split = {c.key for c in changes if _two_step(c)}

    def after(keys: set[Key]) -> set[Hashable]:
        return {_finish_key(k) if k in split else k for k in keys}

    graph: dict[Hashable, set[Hashable]] = {}
    for c in changes:
        if c.key in split:
            assert c.desired is not None
            early, late = c.desired.split_deps(KINDS[c.kind].late_fields)
            graph[c.key] = after(deps[c.key] & early)
            graph[_finish_key(c.key)] = {c.key} | after(deps[c.key] & late)
        else:
            graph[c.key] = after(deps[c.key])
    return graph


def apply_plan(
    plan: Plan,
    ctx: ApplyContext,
    *,
    outputs: dict[Key, dict[str, Any]],
    workers: int = 8,
    on_event: Event | None = None,
    deadline: float | None = None,
    publish: Callable[[], None] | None = None,
) -> ApplyResult:
    """Run the plan's changes. ``outputs`` holds the known outputs of unchanged resources
    (from the facts) and receives those of created/modified ones. ``publish`` (the objects
    instances fetch from the state store and their user-data pins) runs beside the first
    changes, and every change to a kind that ``pins_published`` (launch templates) waits for
    it: no template may pin what is not in the store yet. If it fails, those templates (and
    what needs them) are skipped and ``publish_error`` says why."""
    lock = threading.Lock()
    by_key: dict[Hashable, Change] = {c.key: c for c in plan.changes}
    by_key.update({_finish_key(c.key): c for c in plan.changes if _two_step(c)})

    def known_fields(c: Change, names: Iterable[str]) -> dict[str, Any]:
        assert c.desired is not None
        with lock:  # a snapshot: rendering a Deferred (user-data) then runs outside the lock, in parallel
            known = {k: outputs[k] for k in c.desired.deps() if k in outputs}
        fields = {k: resolve(c.desired.fields[k], known) for k in names}
        if contains_unknown(fields):
            missing = sorted(k for k, v in fields.items() if contains_unknown(v))
            raise CloudError(f"{c.kind}/{c.name}: {', '.join(missing)} still unknown when applying (a dependency was not created)")
        return fields

    def task(c: Change) -> Callable[[], None]:
        kind = KINDS[c.kind]

        def run() -> None:
            if c.action == "delete":
                assert c.actual is not None
                have = c.actual
                budget = ctx.retry_timeout if deadline is None else max(1.0, deadline - time.monotonic())
                members = list(c.batch)
                run_delete = (lambda: kind.delete_many(ctx, members)) if members else (lambda: kind.delete(ctx, have))
                retry(run_delete, when=lambda e: is_dependency(e) or is_throttle(e) or is_server_error(e), timeout=budget,
                      on_retry=(lambda e: on_event("retry", c, e)) if on_event else None)
                return
            assert c.desired is not None
            if c.action == "create":
                fields = known_fields(c, [f for f in c.desired.fields if f not in kind.late_fields or not _two_step(c)])
                result = kind.create(ctx, c.desired, fields)
            else:
                assert c.actual is not None
                result = kind.modify(ctx, c.desired, c.actual, known_fields(c, c.desired.fields), c.changed)
            with lock:
                outputs[c.key] = result

        return run

    def finish_task(c: Change) -> Callable[[], None]:
        def run() -> None:
            assert c.desired is not None
            fields = known_fields(c, c.desired.fields)
            with lock:
                created = dict(outputs[c.key])
            result = KINDS[c.kind].finish(ctx, c.desired, fields, created)
            with lock:
                outputs[c.key] = result

        return run

    tasks: dict[Hashable, Callable[[], None]] = {}
    for c in plan.changes:
        tasks[c.key] = task(c)
        if _two_step(c):
            tasks[_finish_key(c.key)] = finish_task(c)
    graph = _graph(plan.changes)
    if publish is not None:
        tasks[_PUBLISH] = publish
        for c in plan.changes:
            if KINDS[c.kind].pins_published and c.action != "delete":
                graph[c.key].add(_PUBLISH)
    plan_keys = {c.key for c in plan.changes}
    first_step_failed: set[Key] = set()

    def started(k: Hashable) -> None:
        if on_event and k in plan_keys:
            on_event("start", by_key[k], None)

    def finished(o: Outcome[Hashable]) -> None:
        if o.key == _PUBLISH:
            return  # not a change: its error is the result's publish_error
        c = by_key[o.key]
        if o.key == c.key and _two_step(c):
            if o.ok:
                return  # reported when its finish step is done
            first_step_failed.add(c.key)
        elif c.key in first_step_failed:
            return  # the finish step skipped: the create's failure was reported
        if on_event:
            state = "done" if o.ok else "skipped" if isinstance(o.error, Skipped) else "failed"
            on_event(state, c, o.error)

    ctx.start_follow_ups(workers)
    try:
        outcomes = run_graph(
            tasks,
            graph,
            workers=workers,
            on_start=started,
            on_done=finished,
            should_stop=(lambda: time.monotonic() > deadline) if deadline is not None else None,
        )
    finally:
        late = ctx.finish_follow_ups()
    result = ApplyResult(publish_error=outcomes[_PUBLISH].error if publish is not None else None)
    for c in plan.changes:
        o = outcomes[c.key]
        if o.ok and _two_step(c):
            o = Outcome(c.key, outcomes[_finish_key(c.key)].error)
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

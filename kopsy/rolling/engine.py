"""The order of a rolling update: groups, batches, and the steps for each instance.

Groups go bastions, then control planes (one at a time, never surged), then node groups. A
batch of a node group: detach up to maxSurge instances (tagged first; the group launches
their replacements at once), wait until the group is back at its desired size and validates,
cordon and drain the batch, terminate it, and validate ``validate_count`` times in a row.
Instances beyond the surge (maxUnavailable) are drained and terminated in their group without
lowering its desired capacity, and replaced after. Each batch starts from fresh facts, so a
rerun after a kill picks up detached (tagged) instances and marked ones where it stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kopsy.cloud.aws.groups import InstanceFacts, Inventory, read_groups
from kopsy.errors import KopsyError
from kopsy.remote import SSHConnection
from kopsy.rolling import actions
from kopsy.rolling.drain import DrainFailed, Kube
from kopsy.rolling.etcd_guard import snapshot_and_remove
from kopsy.rolling.kubeadm_config import sync_cluster_version, sync_coredns
from kopsy.rolling.progress import Estimator, Event
from kopsy.rolling.selection import ROLE_BASTION, GroupPlan, plan_groups
from kopsy.rolling.surge import DEFAULT_MAX_SURGE, DEFAULT_MAX_UNAVAILABLE, budget
from kopsy.spec.model import ROLE_CONTROL_PLANE, InstanceGroup
from kopsy.validate.result import ValidationResult


class RollFailed(KopsyError):
    pass


@dataclass
class RollOptions:
    force: bool = False
    cloudonly: bool = False
    max_surge: str | None = None  # flag; else the group's spec, else the cluster's, else kops' default
    max_unavailable: str | None = None
    drain_timeout: float = 900.0
    validation_timeout: float = 900.0
    validate_count: int = 2
    interval: float = 15.0
    fail_on_drain_error: bool = True


@dataclass
class RollResult:
    replaced: list[str] = field(default_factory=list)
    drained: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Roller:
    cluster: str
    igs: Sequence[InstanceGroup]
    clients: Any
    options: RollOptions
    cluster_rolling: dict[str, str] = field(default_factory=dict)  # the cluster spec's rollingUpdate
    kubernetes_version: str = ""  # the spec's: kubeadm-config moves to it before a control plane is replaced
    kube: Kube | None = None  # None under --cloudonly
    validate: Callable[[], ValidationResult] | None = None  # None under --cloudonly
    connect_control_plane: Callable[[str], SSHConnection] | None = None  # for the etcd guard
    connect_instance: Callable[[InstanceFacts], SSHConnection] | None = None  # that instance: CoreDNS asks a new control plane
    on_event: Callable[[Event], None] = lambda e: None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    estimator: Estimator = field(default_factory=Estimator)
    result: RollResult = field(default_factory=RollResult)
    _batches_left: dict[str, int] = field(default_factory=dict)
    _coredns_done: bool = False

    # --- facts --------------------------------------------------------------------------------

    def read(self) -> Inventory:
        return read_groups(self.clients, self.cluster)

    def plans(self, inventory: Inventory | None = None, force: bool = False) -> list[GroupPlan]:
        return plan_groups(self.cluster, self.igs, inventory or self.read(), force=force)

    def _settings(self, ig: InstanceGroup) -> tuple[str, str]:
        """Flag, else the group's spec, else the cluster's, else kops' defaults (surge 1, unavailable 0)."""
        def pick(flag: str | None, key: str, default: str) -> str:
            return flag or ig.rolling_update.get(key) or self.cluster_rolling.get(key) or default

        surge = pick(self.options.max_surge, "maxSurge", DEFAULT_MAX_SURGE)
        unavailable = pick(self.options.max_unavailable, "maxUnavailable", DEFAULT_MAX_UNAVAILABLE)
        return str(surge), str(unavailable)

    # --- the run ------------------------------------------------------------------------------

    def run(self, selected: Sequence[GroupPlan]) -> RollResult:
        """Roll every group of ``selected`` (from ``plans``) in order."""
        to_mark = [m.id for p in selected for m in p.need_update if not m.tags.get(actions.TAG_NEEDS_UPDATE)]
        if to_mark:  # a killed --force run must still replace these on a plain rerun
            actions.mark(self.clients, to_mark, "force" if self.options.force else "template")
            self.on_event(Event("mark", "", f"marked {len(to_mark)} instance(s) for replacement"))
        by_name = {ig.name: ig for ig in self.igs}
        for p in selected:
            s, u = self._settings(by_name[p.name])
            b = budget(s, u, p.target, p.pending, control_plane=p.role == ROLE_CONTROL_PLANE)
            self._batches_left[p.name] = math.ceil(p.pending / max(b.batch, 1))
        for p in selected:
            if p.pending:
                self._roll_group(by_name[p.name])
        self.on_event(Event("done", "", f"rolling update finished: {len(self.result.replaced)} instance(s) replaced"))
        return self.result

    def _eta(self) -> float | None:
        return self.estimator.left(sum(self._batches_left.values()))

    def _roll_group(self, ig: InstanceGroup) -> None:
        cp = ig.role == ROLE_CONTROL_PLANE
        batch_no = 0
        unseen_since: float | None = None
        while True:
            inv = self.read()
            plan = next(p for p in self.plans(inv) if p.name == ig.name)
            if not plan.exists:
                raise RollFailed(f"instance group {ig.name} has no Auto Scaling group; run 'kopsy update cluster {self.cluster} --yes' first")
            if not plan.pending:
                self.on_event(Event("group", ig.name, f"instance group {ig.name} is up to date"))
                return
            s, u = self._settings(ig)
            b = budget(s, u, plan.target, plan.pending, control_plane=cp)
            batch_no += 1
            total = batch_no - 1 + math.ceil(plan.pending / max(b.batch, 1))
            label = f"{batch_no}/{total}"
            self._batches_left[ig.name] = total - batch_no + 1
            started = self.clock()
            detached = list(plan.detached)
            new = [m.instance for m in plan.need_update[:max(0, b.surge - len(detached))] if m.instance]
            direct = [m.instance for m in plan.need_update[len(new):len(new) + b.unavailable] if m.instance]
            if not detached and not new and not direct:  # members EC2 does not list running (yet): read again
                unseen_since = unseen_since if unseen_since is not None else self.clock()
                if self.clock() - unseen_since > self.options.validation_timeout:
                    ids = ", ".join(m.id for m in plan.need_update)
                    raise RollFailed(f"instance group {ig.name} lists {ids} but EC2 does not show them running; "
                                     f"start or terminate them, then re-run")
                batch_no -= 1
                self._wait_tick()
                continue
            unseen_since = None
            if new:
                for inst in new:
                    self._say("detach", ig, inst, label, "detaching (its replacement launches now)")
                actions.detach(self.clients, plan.asg, [i.id for i in new])
            old = detached + new
            streak = None
            if old:  # the first validation after the replacements joined: the streak goes on below
                streak = self._wait_ready(ig, label, passes=1, what=f"{len(old)} replacement(s) to join")
            batch = old + direct
            self._drain_all(ig, batch, label, cp)
            if cp:
                self._sync_kubeadm(ig, batch, label)
                self._guard_etcd(ig, batch, label)
            for inst in batch:
                self._say("terminate", ig, inst, label, "terminating")
            actions.terminate_detached(self.clients, [i.id for i in old])
            if direct:
                actions.terminate_in_group(self.clients, [i.id for i in direct])
            self.result.replaced.extend(i.id for i in batch)
            self._wait_gone(ig, [i.id for i in batch], label)
            if direct or streak is None:
                self._wait_ready(ig, label, passes=self.options.validate_count, what="the replacement(s) to join")
            elif self.options.validate_count > 1:  # surged: count on from the pass before the drain
                self._wait_ready(ig, label, passes=self.options.validate_count, what="the cluster to validate",
                                 streak=(1, streak))
            if cp:
                self.sync_coredns(ig.name, label)
            self.estimator.record(self.clock() - started)
            self._batches_left[ig.name] = total - batch_no
            self.on_event(Event("batch-done", ig.name, f"batch {label} of {ig.name} done ({len(batch)} replaced)",
                                batch=label, eta=self._eta()))

    # --- steps --------------------------------------------------------------------------------

    def _say(self, step: str, ig: InstanceGroup, inst: InstanceFacts, label: str, message: str) -> None:
        self.on_event(Event(step, ig.name, message, inst.id, inst.private_dns, label, self._eta()))

    def _drain_all(self, ig: InstanceGroup, batch: list[InstanceFacts], label: str, cp: bool) -> None:
        if self.options.cloudonly or ig.role == ROLE_BASTION or self.kube is None:
            for inst in batch:
                self._say("drain", ig, inst, label, "not drained (--cloudonly)" if self.options.cloudonly else "not a node: no drain")
            return

        def one(inst: InstanceFacts) -> BaseException | None:
            node = inst.private_dns
            try:
                assert self.kube is not None
                self._say("cordon", ig, inst, label, "cordoning")
                self.kube.cordon(node)
                if cp:
                    self._deregister(ig, inst, label)
                self._say("drain", ig, inst, label, "draining")
                self.kube.drain(node, self.options.drain_timeout)
                self.result.drained.append(inst.id)
                self._say("drain", ig, inst, label, "drained")
                return None
            except DrainFailed as exc:
                if not self.options.fail_on_drain_error:
                    warning = f"{exc.message}; going on (--fail-on-drain-error=false)"
                    self.result.warnings.append(warning)
                    self._say("warning", ig, inst, label, warning)
                    return None
                try:
                    self.kube.cordon(node, undo=True)  # type: ignore[union-attr]
                except KopsyError:
                    pass
                return exc
            except KopsyError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=max(1, min(len(batch), 16)), thread_name_prefix="kopsy-drain") as pool:
            errors = [e for e in pool.map(one, batch) if e is not None]
        if errors:
            first = errors[0]
            raise RollFailed(f"{first}; the instance stays in service (uncordoned, not terminated). Fix the cause "
                             f"and re-run 'kopsy rolling-update cluster {self.cluster} --yes' to finish")

    def _deregister(self, ig: InstanceGroup, inst: InstanceFacts, label: str) -> None:
        inv = self.read()
        others = [i for i in inv.instances.values() if i.role == ROLE_CONTROL_PLANE and i.id != inst.id and i.state == "running"]
        group = next((g for g in inv.groups.values() if g.instance_group == ig.name), None)
        tgs = sorted(group.target_groups) if group else []
        if not others or not tgs:
            self._say("deregister", ig, inst, label, "kept behind the API load balancer (no other control plane to serve it)")
            return
        self._say("deregister", ig, inst, label, f"deregistering from {len(tgs)} API target group(s)")
        actions.deregister(self.clients, tgs, inst.id)
        deadline = self.clock() + self.options.drain_timeout
        while actions.still_registered(self.clients, tgs, inst.id):
            if self.clock() > deadline:
                raise RollFailed(f"control plane {inst.id} is still a target of the API load balancer after {int(self.options.drain_timeout)}s")
            self._wait_tick()

    def _guard_etcd(self, ig: InstanceGroup, batch: list[InstanceFacts], label: str) -> None:
        if self.connect_control_plane is None:
            return
        inv = self.read()
        for inst in batch:
            alive = [i for i in inv.instances.values() if i.role == ROLE_CONTROL_PLANE and i.state == "running" and i.id != inst.id]
            self._say("etcd", ig, inst, label, "etcd snapshot" + (", then removing its member" if alive else " (last member: kept)"))
            with self.connect_control_plane(inst.private_dns) as conn:
                snapshot_and_remove(conn, inst.private_dns, remove=bool(alive))

    def _sync_kubeadm(self, ig: InstanceGroup, batch: list[InstanceFacts], label: str) -> None:
        """kubeadm-config and kube-proxy first, so the replacement joins with the new version."""
        if self.connect_control_plane is None or not self.kubernetes_version or self.options.cloudonly:
            return
        with self.connect_control_plane(batch[0].private_dns) as conn:
            for done in sync_cluster_version(conn, self.kubernetes_version):
                self._say("kubeadm", ig, batch[0], label, done)

    def sync_coredns(self, group: str = "", label: str = "") -> None:
        """Once a new-version control plane has joined (and validated): CoreDNS to the image its
        kubeadm deploys, then its rollout. Once per run; ``upgrade --roll`` also calls it after
        a control-plane roll that had nothing left to do, so a rerun after a kill finishes it."""
        if self._coredns_done or self.connect_instance is None or not self.kubernetes_version or self.options.cloudonly:
            return
        inv = self.read()
        stale = {m.id for p in self.plans(inv) for m in p.need_update}
        fresh = [i for i in inv.instances.values() if i.role == ROLE_CONTROL_PLANE and i.state == "running"
                 and i.id not in stale]
        if not fresh:
            return
        newest = max(fresh, key=lambda i: (i.launch_time, i.id))
        self.on_event(Event("coredns", group, f"asking kubeadm on {newest.private_dns} for the CoreDNS image of "
                                              f"v{self.kubernetes_version.lstrip('v')}", newest.id, newest.private_dns, label))
        with self.connect_instance(newest) as conn:
            for done in sync_coredns(conn, newest.private_dns, self.kubernetes_version, self.options.validation_timeout):
                self.on_event(Event("coredns", group, done, newest.id, newest.private_dns, label))
        self._coredns_done = True

    def _wait_tick(self) -> None:
        self.sleep(min(self.options.interval, 0.5))

    def _wait_gone(self, ig: InstanceGroup, ids: list[str], label: str) -> None:
        """Until EC2 no longer lists them running: peaks stay within desired + maxSurge."""
        deadline = self.clock() + self.options.validation_timeout
        while True:
            inv = self.read()
            left = [i for i in ids if i in inv.instances and inv.instances[i].state in ("pending", "running")]
            if not left:
                return
            if self.clock() > deadline:
                raise RollFailed(f"instance(s) {', '.join(left)} still running {int(self.options.validation_timeout)}s after terminating them")
            self._wait_tick()

    def _wait_ready(self, ig: InstanceGroup, label: str, *, passes: int, what: str,
                    streak: tuple[int, float] | None = None) -> float:
        """Until the group is at its desired size with every member running, and (unless
        --cloudonly) validation passes ``passes`` times in a row, ``interval`` apart. ``streak``
        (passes so far, time of the last) continues a run of passes begun before a drain: the
        surged batch validated once its replacements joined, and the cluster only lost cordoned,
        drained instances since. Returns the time of the last pass."""
        deadline = self.clock() + self.options.validation_timeout
        self.on_event(Event("wait", ig.name, f"waiting for {what}", batch=label, eta=self._eta()))
        successes, last = 0, ""
        if streak is not None:
            successes = streak[0]
            self.sleep(max(0.0, streak[1] + self.options.interval - self.clock()))
        while True:
            inv = self.read()
            plan = next(p for p in self.plans(inv) if p.name == ig.name)
            running = [m for m in plan.members if m.lifecycle == "InService" and m.state == "running"]
            if len(running) < plan.target:
                successes, last = 0, f"group {ig.name} has {len(running)} of {plan.target} instances in service"
            elif self.options.cloudonly or self.validate is None:
                return self.clock()
            else:
                problems = scoped_failures(self.validate(), inv, ig.name)
                if not problems:
                    successes += 1
                    self.on_event(Event("validate", ig.name, f"validation passed ({successes}/{passes})", batch=label))
                    if successes >= passes:
                        return self.clock()
                    self.sleep(self.options.interval)
                    continue
                successes, last = 0, problems[0]
            if self.clock() > deadline:
                raise RollFailed(f"instance group {ig.name} did not validate within {int(self.options.validation_timeout)}s: {last}")
            self._wait_tick()


def scoped_failures(result: ValidationResult, inv: Inventory, group: str) -> list[str]:
    """Validation failures that stop a roll of ``group``, as kops scopes them: cluster-wide
    ones, control planes' and this group's; another node group's broken node does not count."""
    owner = {i.id: i for i in inv.instances.values()}
    out = []
    for f in result.failures:
        inst = owner.get(f.instance_id) if f.instance_id else None
        if inst is not None and inst.role != ROLE_CONTROL_PLANE and inst.instance_group != group:
            continue
        if f.type == "InstanceGroup" and f.name != group:
            continue
        out.append(f"{f.type} {f.name}: {f.message}")
    return out

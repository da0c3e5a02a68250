"""Which instances a rolling update replaces, and kops' dry-run table.

An instance needs an update when the launch-template version it was launched from differs
from its group's (``$Latest``/``$Default`` resolved first), when kopsy marked it
(``TAG_NEEDS_UPDATE``: set at the start of a ``--yes`` run, so a killed ``--force`` run still
finishes), or under ``--force``. An instance kopsy detached for a surge (``TAG_DETACHED``) is
no longer in its group but still runs: it is listed apart, and a run finishes it first.
Pure: facts in (``kopsy.cloud.aws.groups.Inventory``), values out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kopsy.cloud.aws.groups import GroupFacts, InstanceFacts, Inventory, Member
from kopsy.cloud.aws.names import asg_name
from kopsy.spec.model import ROLE_CONTROL_PLANE, InstanceGroup

TAG_DETACHED = "kopsy.io/rolling-update-detached"  # value: the time it was detached
TAG_NEEDS_UPDATE = "kopsy.io/needs-update"  # value: why ("force", "template")
ROLE_BASTION = "Bastion"
ROLE_ORDER = {ROLE_BASTION: 0, ROLE_CONTROL_PLANE: 1}  # then node groups
LIVE_LIFECYCLES = ("Pending", "Pending:Wait", "Pending:Proceed", "InService")

# Status names, as kops prints them.
UP_TO_DATE = "UpToDate"
NEEDS_UPDATE = "NeedsUpdate"
DETACHED = "Detached"


@dataclass(frozen=True)
class GroupPlan:
    """One instance group's row of the table, and the instances it replaces (in order)."""

    name: str
    role: str
    asg: str
    min: int
    target: int
    max: int
    members: tuple[Member, ...]  # live members of the Auto Scaling group
    need_update: tuple[Member, ...]
    detached: tuple[InstanceFacts, ...]  # detached by an earlier run, still running
    exists: bool = True
    target_groups: frozenset[str] = field(default_factory=frozenset)

    @property
    def status(self) -> str:
        return NEEDS_UPDATE if self.need_update or self.detached else "Ready"

    @property
    def ready(self) -> int:
        return len(self.members) - len(self.need_update)

    @property
    def pending(self) -> int:
        """Instances this group still has to replace or finish."""
        return len(self.need_update) + len(self.detached)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "status": self.status, "needUpdate": self.pending,
                "ready": self.ready, "min": self.min, "target": self.target, "max": self.max,
                "nodes": len(self.members) + len(self.detached)}


def resolve_version(version: str, template: str, versions: Mapping[str, Mapping[str, str]]) -> str:
    """A group's ``$Latest``/``$Default`` as a number, from ``versions[template]``; else as given."""
    if version.startswith("$"):
        return versions.get(template, {}).get(version, version)
    return version


def needs_update(member: Member, group: GroupFacts, versions: Mapping[str, Mapping[str, str]], force: bool) -> bool:
    if force or (member.instance is not None and member.instance.tags.get(TAG_NEEDS_UPDATE)):
        return True
    want = resolve_version(group.launch_template_version, group.launch_template, versions)
    have = resolve_version(member.launch_template_version, member.launch_template or group.launch_template, versions)
    if not have and member.instance is not None:  # the group's listing lags: the instance's own tags say it
        have = member.instance.launch_template_version
    return bool(have) and (have != want or (member.launch_template or group.launch_template) != group.launch_template)


def plan_groups(cluster: str, igs: Sequence[InstanceGroup], inventory: Inventory, *, force: bool = False,
                versions: Mapping[str, Mapping[str, str]] | None = None) -> list[GroupPlan]:
    """Every instance group's plan, in the order a roll takes them: bastions, control planes,
    then node groups, each by name."""
    versions = versions or {}
    out = []
    for ig in sorted(igs, key=lambda g: (ROLE_ORDER.get(g.role, 2), g.name)):
        name = asg_name(ig.name, cluster)
        group = inventory.groups.get(name)
        in_group = {m.id for m in group.members} if group else set()
        detached = tuple(sorted(
            (i for i in inventory.instances.values()
             if i.instance_group == ig.name and i.tags.get(TAG_DETACHED) and i.id not in in_group
             and i.state in ("pending", "running")),
            key=lambda i: i.id))
        if group is None:
            out.append(GroupPlan(ig.name, ig.role, name, ig.min_size, ig.min_size, ig.max_size, (), (), detached, exists=False))
            continue
        live = tuple(m for m in group.members if m.lifecycle in LIVE_LIFECYCLES)
        stale = tuple(m for m in live if needs_update(m, group, versions, force))
        out.append(GroupPlan(ig.name, ig.role, name, group.min_size, group.desired, group.max_size, live, stale,
                             detached, target_groups=group.target_groups))
    return out


def wanted_versions(inventory: Inventory) -> set[str]:
    """Launch templates whose ``$Latest``/``$Default`` must be resolved before judging."""
    names = set()
    for g in inventory.groups.values():
        if g.launch_template_version.startswith("$"):
            names.add(g.launch_template)
        names.update(m.launch_template or g.launch_template for m in g.members if m.launch_template_version.startswith("$"))
    return names


def filter_groups(plans: Sequence[GroupPlan], names: Sequence[str], roles: Sequence[str]) -> list[GroupPlan]:
    """Only the groups ``--instance-group`` / ``--instance-group-roles`` ask for (all when both empty)."""
    wanted_roles = {r.lower() for r in roles}
    return [p for p in plans if (not names or p.name in names) and (not wanted_roles or p.role.lower() in wanted_roles)]


def table_rows(plans: Sequence[GroupPlan]) -> list[list[Any]]:
    return [[p.name, p.status, p.pending, p.ready, p.min, p.target, p.max, len(p.members) + len(p.detached)] for p in plans]


TABLE_HEADER = ["NAME", "STATUS", "NEEDUPDATE", "READY", "MIN", "TARGET", "MAX", "NODES"]


def instance_status(inst: InstanceFacts, plans: Sequence[GroupPlan]) -> str:
    """``get instances``' STATUS of one instance: UpToDate, NeedsUpdate or Detached."""
    for p in plans:
        if any(d.id == inst.id for d in p.detached):
            return DETACHED
        if any(m.id == inst.id for m in p.need_update):
            return NEEDS_UPDATE
    return DETACHED if inst.tags.get(TAG_DETACHED) else UP_TO_DATE

"""The pure parts of a roll: kops' surge arithmetic, which instances need replacing, the
dry-run table, the drain error parsing and the validation scope."""

from __future__ import annotations

import pytest

from kopsy.cloud.aws.groups import parse
from kopsy.errors import SpecInvalid, UsageError
from kopsy.rolling.drain import blocked_pods, blocking_budgets
from kopsy.rolling.engine import scoped_failures
from kopsy.rolling.selection import TAG_DETACHED, TAG_NEEDS_UPDATE, filter_groups, instance_status, plan_groups, table_rows
from kopsy.rolling.surge import budget, check, scale
from kopsy.spec.model import InstanceGroup, instance_group_from_dict, instance_group_to_dict
from kopsy.validate.result import Failure, ValidationResult

CLUSTER = "c.example.com"


@pytest.mark.parametrize("value,desired,up,expected", [
    ("1", 10, True, 1), ("25%", 10, True, 3), ("25%", 10, False, 2), ("100%", 3, True, 3),
    ("33%", 3, True, 1), ("33%", 3, False, 0), ("0", 5, True, 0), ("1%", 100, True, 1),
])
def test_percentages_round_as_kops_does(value: str, desired: int, up: bool, expected: int) -> None:
    assert scale(value, desired, round_up=up) == expected


def test_budget_never_zero_and_control_planes_never_surge() -> None:
    assert budget("0", "0", 3, 3).unavailable == 1
    assert budget("100%", "0", 30, 30).surge == 30
    assert budget("5", "0", 3, 2).surge == 2  # never more than needs replacing
    assert budget("100%", "50%", 3, 3, control_plane=True) == budget("0", "1", 3, 3)


@pytest.mark.parametrize("bad", ["-1", "1.5", "101%", "abc", "", "25 %"])
def test_bad_surge_values_are_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="--max-surge"):
        check(bad, "--max-surge")


def _ig(name: str, role: str = "Node", **extra: object) -> InstanceGroup:
    return InstanceGroup(name=name, cluster_name=CLUSTER, role=role, machine_type="t3.medium", min_size=3, max_size=3,
                         subnets=["us-east-1a"], **extra)  # type: ignore[arg-type]


def _raw(group: str, version: str, members: list[tuple[str, str]], lt: str = "lt") -> dict[str, object]:
    return {"AutoScalingGroupName": f"{group}.{CLUSTER}", "MinSize": 3, "MaxSize": 3, "DesiredCapacity": 3,
            "LaunchTemplate": {"LaunchTemplateName": lt, "Version": version},
            "Tags": [{"Key": "kopsy.io/instancegroup", "Value": group}],
            "Instances": [{"InstanceId": i, "LifecycleState": "InService", "LaunchTemplate": {"LaunchTemplateName": lt, "Version": v}}
                          for i, v in members]}


def _inst(iid: str, group: str, role: str = "Node", **tags: str) -> dict[str, object]:
    t = {"kopsy.io/instancegroup": group, "kopsy.io/role": role, "kopsy.io/cluster": CLUSTER, **tags}
    return {"InstanceId": iid, "State": {"Name": "running"}, "PrivateDnsName": f"ip-{iid}.ec2.internal",
            "Tags": [{"Key": k, "Value": v} for k, v in t.items()]}


def test_needs_update_by_version_mark_and_force_and_detached_apart() -> None:
    inv = parse(
        [_raw("control-plane-a", "2", [("i-cp", "2")]), _raw("nodes", "5", [("i-1", "4"), ("i-2", "5"), ("i-3", "5")])],
        [_inst("i-cp", "control-plane-a", "ControlPlane"), _inst("i-1", "nodes"), _inst("i-2", "nodes", **{TAG_NEEDS_UPDATE: "force"}),
         _inst("i-3", "nodes"), _inst("i-old", "nodes", **{TAG_DETACHED: "2026-12-02T00:00:00Z"})],
    )
    igs = [_ig("nodes"), _ig("control-plane-a", "ControlPlane")]
    plans = plan_groups(CLUSTER, igs, inv)
    assert [p.name for p in plans] == ["control-plane-a", "nodes"]  # control planes first
    cp, nodes = plans
    assert cp.status == "Ready" and cp.pending == 0
    assert [m.id for m in nodes.need_update] == ["i-1", "i-2"] and [d.id for d in nodes.detached] == ["i-old"]
    assert table_rows([nodes]) == [["nodes", "NeedsUpdate", 3, 1, 3, 3, 3, 4]]
    assert nodes.as_dict()["needUpdate"] == 3
    assert [m.id for m in plan_groups(CLUSTER, igs, inv, force=True)[1].need_update] == ["i-1", "i-2", "i-3"]
    assert instance_status(inv.instances["i-old"], plans) == "Detached"
    assert instance_status(inv.instances["i-3"], plans) == "UpToDate"
    assert [p.name for p in filter_groups(plans, [], ["Node"])] == ["nodes"]
    assert [p.name for p in filter_groups(plans, ["control-plane-a"], [])] == ["control-plane-a"]


def test_latest_and_default_are_resolved_before_comparing() -> None:
    inv = parse([_raw("nodes", "$Latest", [("i-1", "3"), ("i-2", "2")])], [_inst("i-1", "nodes"), _inst("i-2", "nodes")])
    plan = plan_groups(CLUSTER, [_ig("nodes")], inv, versions={"lt": {"$Latest": "3", "$Default": "2"}})[0]
    assert [m.id for m in plan.need_update] == ["i-2"]


KUBECTL_PDB_ERROR = (
    'evicting pod prod/db-0\n'
    'error when evicting pods/"db-0" -n "prod" (will retry after 5s): Cannot evict pod as it would violate the '
    "pod's disruption budget.\n"
    'error: unable to drain node "ip-1" due to error: [error when evicting pods/"db-0" -n "prod": global timeout '
    'reached: 2s], continuing command...\n'
)


def test_drain_error_names_the_pod_and_the_budget_that_selects_it() -> None:
    pods = blocked_pods(KUBECTL_PDB_ERROR)
    assert pods == [("prod", "db-0")]
    pdbs = '{"items": [{"metadata": {"name": "other", "namespace": "prod"}, "spec": {"selector": {"matchLabels": {"app": "web"}}}},' \
           ' {"metadata": {"name": "db-budget", "namespace": "prod"}, "spec": {"selector": {"matchExpressions": ' \
           '[{"key": "app", "operator": "In", "values": ["db"]}]}}}]}'
    listed = '{"items": [{"metadata": {"name": "db-0", "namespace": "prod", "labels": {"app": "db"}}}]}'
    assert blocking_budgets(pods, pdbs, listed) == {("prod", "db-0"): "db-budget"}
    assert blocking_budgets(pods, "not json", listed) == {}


def test_validation_scope_ignores_other_node_groups() -> None:
    inv = parse([], [_inst("i-a", "nodes"), _inst("i-b", "other"), _inst("i-cp", "cp", "ControlPlane")])
    result = ValidationResult(CLUSTER, failures=[
        Failure("Machine", "i-b", "not joined", instance_id="i-b"),
        Failure("Machine", "i-a", "not joined", instance_id="i-a"),
        Failure("Node", "cp", "NotReady", instance_id="i-cp"),
        Failure("InstanceGroup", "other", "too few"),
        Failure("Pod", "kube-system/coredns", "Pending"),
    ])
    assert [s.split(":")[0] for s in scoped_failures(result, inv, "nodes")] == ["Machine i-a", "Node cp", "Pod kube-system/coredns"]


def test_spec_rolling_update_round_trips_and_is_checked() -> None:
    doc = instance_group_to_dict(_ig("nodes", rolling_update={"maxSurge": "25%", "maxUnavailable": "1"}))
    assert doc["spec"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "1"}
    assert instance_group_from_dict(doc).rolling_update == {"maxSurge": "25%", "maxUnavailable": "1"}
    doc["spec"]["rollingUpdate"] = {"maxSurge": 2}
    assert instance_group_from_dict(doc).rolling_update == {"maxSurge": "2"}
    doc["spec"]["rollingUpdate"] = {"maxSurge": "150%", "drainAndTerminate": True}
    with pytest.raises(SpecInvalid) as err:
        instance_group_from_dict(doc)
    assert any("spec.rollingUpdate.maxSurge" in p for p in err.value.problems)
    assert any("spec.rollingUpdate.drainAndTerminate: unknown field" in p for p in err.value.problems)

"""The shared Auto Scaling group and instance reader (``kopsy.cloud.aws.groups``), on recorded
raw answers: raw DescribeAutoScalingGroups + DescribeInstances JSON in, typed values out.

``raw_answers/groups/`` holds the answers as botocore returned them (re-record with
``raw_answers/record_groups.py``) and ``expected.json`` the values the parser must produce,
checked field by field against the raw answers when it was written. A
parser that drops or misreads a field fails here, and so does a new field the recording does
not exercise.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from kopsy.cloud.aws import groups as G

HERE = Path(__file__).parent / "raw_answers" / "groups"


def _raw() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    groups = json.loads((HERE / "describe_auto_scaling_groups.json").read_text())["AutoScalingGroups"]
    reservations = json.loads((HERE / "describe_instances.json").read_text())["Reservations"]
    return groups, [i for r in reservations for i in r["Instances"]]


def plain(value: Any) -> Any:
    """Typed values as JSON would hold them (sets sorted, mappings as dicts, dataclasses by field;
    a member's instance by its id, as the instances are listed in full beside the groups)."""
    if isinstance(value, G.Member):
        return {f.name: plain(getattr(value, f.name)) if f.name != "instance" else (value.instance.id if value.instance else None)
                for f in dataclasses.fields(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def test_parser_turns_the_recorded_answers_into_the_expected_values() -> None:
    groups, instances = _raw()
    got = plain(G.parse(groups, instances))
    expected = json.loads((HERE / "expected.json").read_text())
    assert got["instances"] == expected["instances"]
    assert got["groups"] == expected["groups"]


def test_every_field_is_exercised_by_the_recording() -> None:
    """Each field of each typed value has a non-default value somewhere in ``expected.json``:
    otherwise a parser that never fills it would pass the test above."""
    expected = json.loads((HERE / "expected.json").read_text())
    groups = list(expected["groups"].values())
    members = [m for g in groups for m in g["members"]]
    instances = list(expected["instances"].values())
    for cls, items in ((G.GroupFacts, groups), (G.Member, members), (G.InstanceFacts, instances)):
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
            assert any(item[f.name] != plain(default) for item in items), f"{cls.__name__}.{f.name} is never set in the recording"


def test_members_join_their_instances_and_the_group_view_is_kept() -> None:
    groups, instances = _raw()
    inv = G.parse(groups, instances)
    nodes = inv.groups["nodes.raw.example.com"]
    standby = next(m for m in nodes.members if m.lifecycle == "Standby")
    assert standby.instance is None and standby.state == "" and standby.id not in nodes.in_service
    serving = [m for m in nodes.members if m.id in nodes.in_service]
    assert len(serving) == 3 and all(m.instance is inv.instances[m.id] for m in serving)
    assert {m.health for m in serving} == {"Healthy", "Unhealthy"}
    assert nodes.instance_group == "nodes"
    # Without the instances (update's plan reads only the groups) the group view is complete.
    alone = G.parse(groups).groups["nodes.raw.example.com"]
    assert [m.id for m in alone.members] == [m.id for m in nodes.members] and all(m.instance is None for m in alone.members)


@pytest.mark.parametrize("value, expected", [
    ("2026-12-01T21:40:49+00:00", "2026-12-01T21:40:49Z"),
    ("2026-12-01T23:40:49.123+02:00", "2026-12-01T21:40:49Z"),
    ("2026-12-01T21:40:49.000Z", "2026-12-01T21:40:49Z"),  # as the AWS CLI prints it
    ("", ""),
    (None, ""),
])
def test_launch_time_is_rfc3339_utc(value: Any, expected: str) -> None:
    assert G.parse_instance({"InstanceId": "i-1", "LaunchTime": value}).launch_time == expected


def test_a_group_with_a_launch_template_set_directly() -> None:
    g = G.parse_group({"AutoScalingGroupName": "a.c", "LaunchTemplate": {"LaunchTemplateName": "a.c", "Version": "7"}})
    assert (g.launch_template, g.launch_template_version, g.members) == ("a.c", "7", ())


class _Recorded:
    """A boto3 client that answers each describe with the recorded raw answer (no pagination),
    and remembers the filters it was asked with."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def can_paginate(self, operation: str) -> bool:
        return False

    def __getattr__(self, operation: str) -> Any:
        def call(**kwargs: Any) -> Any:
            self.calls.append((operation, kwargs))
            return self.answers[operation]
        return call


class _Clients:
    def __init__(self, **clients: _Recorded) -> None:
        self.clients = clients

    def client(self, service: str) -> _Recorded:
        return self.clients[service]


def _recorded(name: str) -> Any:
    return json.loads((HERE / f"{name}.json").read_text())


def test_the_autoscaling_kind_finds_the_recorded_groups_through_the_reader() -> None:
    """update's view of the same raw answer: what the planner diffs against."""
    from kopsy.cloud.aws.autoscaling import AutoScalingGroup
    from kopsy.cloud.aws.kind import Facts

    asg = _Recorded({"describe_auto_scaling_groups": _recorded("describe_auto_scaling_groups")})
    found = {a.name: a for a in AutoScalingGroup().find(Facts(_Clients(autoscaling=asg), "raw.example.com"))}  # type: ignore[arg-type]
    assert asg.calls == [("describe_auto_scaling_groups",
                          {"Filters": [{"Name": "tag:kubernetes.io/cluster/raw.example.com", "Values": ["owned"]}]})]
    expected = json.loads((HERE / "expected.json").read_text())["groups"]
    assert sorted(found) == sorted(expected)
    for name, want in expected.items():
        have = found[name]
        assert have.fields == {
            "launch_template": want["launch_template"], "launch_template_version": want["launch_template_version"],
            "min_size": want["min_size"], "max_size": want["max_size"],
            "subnets": frozenset(want["subnets"]), "target_groups": frozenset(want["target_groups"]),
            "autoscaler_tags": {k: v for k, v in want["tags"].items() if k.startswith("k8s.io/cluster-autoscaler/")},
        }
        assert have.outputs == {"id": name, "desired": want["desired"], "instances": tuple(m["id"] for m in want["members"])}
        assert have.tags == want["tags"]
    assert found["nodes.raw.example.com"].fields["launch_template_version"] == "2"  # through the mixed-instances policy


def test_the_instance_kind_finds_the_recorded_instances_through_the_reader() -> None:
    from kopsy.cloud.aws.instances import LIVE_STATES, Instance
    from kopsy.cloud.aws.kind import Facts

    ec2 = _Recorded({"describe_instances": _recorded("describe_instances")})
    found = Instance().find(Facts(_Clients(ec2=ec2), "raw.example.com"))  # type: ignore[arg-type]
    assert ec2.calls == [("describe_instances", {"Filters": [
        {"Name": "tag:kubernetes.io/cluster/raw.example.com", "Values": ["owned"]},
        {"Name": "instance-state-name", "Values": LIVE_STATES},
    ]})]
    expected = json.loads((HERE / "expected.json").read_text())["instances"]
    assert {a.id: (a.name, a.fields["state"], a.tags) for a in found} == {
        iid: (i["tags"]["Name"], i["state"], i["tags"]) for iid, i in expected.items()
    }

"""The sandbox's etcd rules, pure: the boot decision from what the store held when a control plane
launched, and the membership a replacement leaves (the dead member removed before it joins)."""

from __future__ import annotations

from dataclasses import dataclass

from kopsy.sandbox.etcd import EtcdStoreFact, boot_outcome, member_report, snapshot_stamps, update_members


def test_boot_outcome_follows_the_boot_scripts_order() -> None:
    booted = EtcdStoreFact(("2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z"), "2026-12-01T09:00:05Z")
    assert boot_outcome(booted, "2026-12-01T12:00:00+00:00", api_answers=True) == ("join", None)
    assert boot_outcome(None, "2026-12-01T09:00:00Z", api_answers=False) == ("init", None)
    assert boot_outcome(EtcdStoreFact((), None), "2026-12-01T09:00:00Z", False) == ("init", None)
    # launched before the first boot was recorded: it is the first boot (the same second counts)
    assert boot_outcome(booted, "2026-12-01T09:00:00+00:00", False) == ("init", None)
    assert boot_outcome(booted, "2026-12-01T09:00:05Z", False) == ("init", None)
    assert boot_outcome(booted, "2026-12-01T12:00:00Z", False) == ("restore", "2026-12-01T11:00:00Z")
    # a snapshot taken after the replacement booted was not there to restore
    assert boot_outcome(booted, "2026-12-01T10:30:00Z", False) == ("restore", "2026-12-01T10:00:00Z")
    outcome, why = boot_outcome(EtcdStoreFact((), "2026-12-01T09:00:05Z"), "2026-12-01T12:00:00Z", False)
    assert outcome == "fail" and why and why.startswith("no snapshot")


def test_snapshot_stamps_need_both_objects() -> None:
    keys = ["backups/etcd/2026-12-01T10:00:00Z/snapshot.db", "backups/etcd/2026-12-01T10:00:00Z/meta.json",
            "backups/etcd/2026-12-01T11:00:00Z/snapshot.db", "backups/etcd/first-boot.json", "pki/ca.crt"]
    assert snapshot_stamps(keys) == ("2026-12-01T10:00:00Z",)


@dataclass(frozen=True)
class Inst:
    id: str
    cluster: str
    state: str
    private_dns: str
    launch_time: str


@dataclass(frozen=True)
class V:
    joined: bool
    role: str = "ControlPlane"


@dataclass(frozen=True)
class W:
    instances: tuple[Inst, ...]


def test_a_dead_member_stays_until_a_later_control_plane_joins() -> None:
    a, b, c = (Inst(f"i-{n}", "k", "running", f"ip-{n}", f"2026-12-01T10:00:0{n}Z") for n in (1, 2, 3))
    world = W((a, b, c))
    members, gone = update_members({}, world, {i.id: V(True) for i in world.instances}, "k")
    assert sorted(members) == ["ip-1", "ip-2", "ip-3"] and gone == []
    world = W((a, c))  # b's instance is gone
    members, gone = update_members(members, world, {i.id: V(True) for i in world.instances}, "k")
    assert gone == [] and [m["healthy"] for m in member_report(members, world)] == [True, False, True]
    d = Inst("i-4", "k", "running", "ip-4", "2026-12-01T11:00:00Z")
    world = W((a, c, d))
    members, gone = update_members(members, world, {"i-1": V(True), "i-3": V(True), "i-4": V(False)}, "k")
    assert gone == [] and "ip-2" in members  # not joined yet: nothing removed
    members, gone = update_members(members, world, {i.id: V(True) for i in world.instances}, "k")
    assert gone == ["ip-2"] and sorted(members) == ["ip-1", "ip-3", "ip-4"]
    assert all(m["started"] and m["healthy"] for m in member_report(members, world))

"""spec.etcd (backup interval and retention): parsed, validated, kept out of older specs, and
mapped from kops' etcd-manager settings."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import pytest

from kopsy.errors import SpecInvalid
from kopsy.spec.defaults import CreateOptions, new_cluster
from kopsy.spec.kops import convert_documents
from kopsy.spec.model import cluster_from_dict, cluster_to_dict
from kopsy.spec.validation import validate_cluster

NAME = "demo.example.com"


def _doc(etcd: object) -> dict:
    cluster, _ = new_cluster(CreateOptions(name=NAME, zones=["us-east-1a"]))
    doc = cluster_to_dict(cluster)
    assert "etcd" not in doc["spec"]  # defaults are not written: older specs stay byte-identical
    doc["spec"]["etcd"] = etcd
    return doc


def test_etcd_settings_round_trip_and_validate() -> None:
    c = cluster_from_dict(_doc({"backupInterval": "5m", "backupRetention": {"hourly": "2d", "daily": "30d"}}))
    assert (c.etcd_backup_interval, c.etcd_backup_hourly, c.etcd_backup_daily) == ("5m", "2d", "30d")
    assert cluster_to_dict(c)["spec"]["etcd"] == {"backupInterval": "5m", "backupRetention": {"hourly": "2d", "daily": "30d"}}
    _, igs = new_cluster(CreateOptions(name=NAME, zones=["us-east-1a"]))
    validate_cluster(c, igs)


@pytest.mark.parametrize("etcd, problem", [
    ({"backupInterval": "30s"}, "spec.etcd.backupInterval"),
    ({"backupInterval": "2d"}, "spec.etcd.backupInterval"),
    ({"backupInterval": "15 minutes"}, "spec.etcd.backupInterval"),
    ({"backupRetention": {"hourly": "10m"}}, "shorter than the backup interval"),
    ({"backupRetention": {"hourly": "30d", "daily": "7d"}}, "spec.etcd.backupRetention.daily"),
    ({"backupRetention": {"weekly": "1y"}}, "spec.etcd.backupRetention.weekly: unknown field"),
    ({"interval": "5m"}, "spec.etcd.interval: unknown field"),
])
def test_bad_etcd_settings_are_refused_with_their_path(etcd: dict, problem: str) -> None:
    _, igs = new_cluster(CreateOptions(name=NAME, zones=["us-east-1a"]))
    with pytest.raises(SpecInvalid, match=problem):
        validate_cluster(cluster_from_dict(_doc(etcd)), igs)


def _kops(manager: dict, backups: dict | None = None) -> list[dict]:
    main = {"name": "main", "etcdMembers": [{"name": "a", "instanceGroup": "control-plane-us-east-1a"}], "manager": manager}
    if backups is not None:
        main["backups"] = backups
    return [{"apiVersion": "kops.k8s.io/v1alpha2", "kind": "Cluster", "metadata": {"name": NAME},
             "spec": {"kubernetesVersion": "1.35.0", "subnets": [{"name": "us-east-1a", "zone": "us-east-1a", "cidr": "172.20.32.0/19"}],
                      "etcdClusters": [main, {"name": "events", "manager": {"backupRetentionDays": 3}}]}}]


def test_kops_etcd_manager_backup_settings_become_spec_etcd() -> None:
    conv = convert_documents(_kops({"backupInterval": "30m0s", "backupRetentionDays": 30},
                                   {"backupStore": f"s3://kops-state/{NAME}/backups/etcd/main"}), "kops.yaml")
    assert conv.documents[0]["spec"]["etcd"] == {"backupInterval": "30m", "backupRetention": {"daily": "30d"}}
    assert any("events' backup settings" in n for n in conv.notes)


@pytest.mark.parametrize("manager, backups, problem", [
    ({"backupInterval": "90s"}, None, "whole minutes"),
    ({"backupRetentionDays": 0}, None, "positive number of days"),
    ({}, {"backupStore": "s3://elsewhere/etcd"}, "kopsy keeps etcd snapshots in its state store"),
])
def test_kops_backup_settings_kopsy_cannot_honour_are_refused(manager: dict, backups: dict | None, problem: str) -> None:
    with pytest.raises(SpecInvalid, match=problem):
        convert_documents(_kops(manager, backups), "kops.yaml")


def _etcd_module():
    path = Path(__file__).resolve().parents[2] / "cloudinit" / "kopsy-etcd.py"
    spec = importlib.util.spec_from_file_location("kopsy_etcd", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_retention_keeps_the_last_hour_then_hourly_for_7d_then_daily_for_90d() -> None:
    etcd = _etcd_module()
    now = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc)
    stamps = [(now - dt.timedelta(minutes=15 * i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(4 * 24 * 120)]  # 120 days
    gone = set(etcd.to_prune(stamps, now, hourly=7 * 86400, daily=90 * 86400))
    kept = sorted(set(stamps) - gone)
    age = {ts: (now - dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)) for ts in stamps}
    assert all(ts in kept for ts in stamps if age[ts] <= dt.timedelta(hours=1))  # the last hour, every one
    recent_days = [ts for ts in kept if dt.timedelta(hours=1) < age[ts] <= dt.timedelta(days=7)]
    assert len({ts[:13] for ts in recent_days}) == len(recent_days)  # one per hour
    assert 7 * 24 - 2 <= len(recent_days) <= 7 * 24
    old = [ts for ts in kept if age[ts] > dt.timedelta(days=7)]
    assert len({ts[:10] for ts in old}) == len(old) and 80 <= len(old) <= 84  # one per day up to 90 days
    assert not [ts for ts in kept if age[ts] > dt.timedelta(days=90)]
    assert etcd.to_prune([stamps[-1]], now, 3600, 86400) == []  # the newest is kept, however old
    assert etcd.quorum_after_removal(["a", "b", "c"], {"a", "c"}, "b")
    assert not etcd.quorum_after_removal(["a", "b", "c"], {"a", "c"}, "a")
    assert not etcd.quorum_after_removal(["a"], {"a"}, "a")

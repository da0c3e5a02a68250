"""Secrets never leave the state store: the CA keys, the service-account key and the bootstrap
token (read from the store) must not appear in any kopsy output, in EC2 user-data, in the plan
(text or JSON), in ``--debug`` output, or in files kopsy writes under HOME.

Besides the runs made here, every stdout/stderr the reliability suite collected through
``Cloud.kopsy`` in this session (fault, crash, lock and state cases included) is checked.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from reliability_support import CLUSTER, Baseline, Cloud

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # the real kopsy executable against moto behind the fault proxy

KEYS = ("pki/ca.key", "pki/front-proxy-ca.key", "pki/etcd/ca.key", "pki/sa.key")
TOKEN = "secrets/bootstrap-token"


def needles(baseline: Baseline) -> dict[str, str]:
    """Distinctive substrings of each secret: every base64 line of a PEM body, the base64 of the
    PEM itself at each alignment, and the token with and without its public id."""
    out: dict[str, str] = {}
    for rel in KEYS:
        pem = baseline.store[f"{CLUSTER}/{rel}"]
        assert b"PRIVATE KEY" in pem
        body = [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]
        for i, line in enumerate(body):
            if len(line) >= 24:
                out[f"{rel} line {i}"] = line[:48]
        for shift in range(3):
            out[f"{rel} base64@{shift}"] = base64.b64encode(pem[shift:]).decode()[8:56]
    token = baseline.store[f"{CLUSTER}/{TOKEN}"].decode().strip()
    token_id, token_secret = token.split(".")
    assert len(token_secret) == 16
    out["bootstrap token"] = token
    out["bootstrap token secret"] = token_secret
    out["bootstrap token base64"] = base64.b64encode(token.encode()).decode()[:20]
    return out


def leaks(haystacks: dict[str, str], baseline: Baseline) -> list[str]:
    found = []
    for what, needle in needles(baseline).items():
        for where, text in haystacks.items():
            if needle in text:
                found.append(f"{what} in {where}")
    return found


def test_the_detector_finds_a_secret_when_there_is_one(baseline: Baseline) -> None:
    key = baseline.store[f"{CLUSTER}/pki/sa.key"].decode()
    token = baseline.store[f"{CLUSTER}/{TOKEN}"].decode()
    assert leaks({"a log": f"noise {key[100:400]} noise"}, baseline)
    assert leaks({"user-data": base64.b64encode(key.encode()).decode()}, baseline)
    assert leaks({"stdout": f"token={token.split('.')[1]}"}, baseline)


def test_secrets_appear_in_no_output_user_data_plan_or_file(fresh: Cloud, baseline: Baseline) -> None:
    runs = {
        "plan text": ["update", "cluster", CLUSTER],
        "plan json": ["update", "cluster", CLUSTER, "-o", "json"],
        "update --yes --debug": ["--debug", "update", "cluster", CLUSTER, "--yes"],
        "no-op update -o json": ["update", "cluster", CLUSTER, "--yes", "-o", "json"],
        "get -o yaml": ["get", "cluster", CLUSTER, "-o", "yaml"],
        "get ig -o json": ["get", "instancegroups", "--name", CLUSTER, "-o", "json"],
        "export kubecfg --admin --debug": ["--debug", "export", "kubecfg", CLUSTER, "--admin"],
        "toolbox dump -o yaml": ["toolbox", "dump", CLUSTER, "--no-ssh"],
        "toolbox dump -o json --debug": ["--debug", "toolbox", "dump", CLUSTER, "-o", "json", "--no-ssh"],
        "get secrets": ["get", "secrets", "--name", CLUSTER],
        "get secrets -o yaml": ["get", "secrets", "--name", CLUSTER, "-o", "yaml"],
        "get instances -o json": ["get", "instances", "--name", CLUSTER, "-o", "json"],
        "delete listing": ["delete", "cluster", CLUSTER],
    }
    haystacks: dict[str, str] = {}
    for label, args in runs.items():
        r = fresh.kopsy(args)
        assert r.returncode == 0, f"{label}: {r.stderr[-500:]}"
        haystacks[f"{label} stdout"] = r.stdout
        haystacks[f"{label} stderr"] = r.stderr
    assert "Will create resources:" in haystacks["plan text stdout"]

    user_data = fresh.user_data()
    assert len(user_data) >= 2, "every launch template has user-data"
    for i, data in enumerate(user_data):
        haystacks[f"user-data #{i}"] = data.decode("utf-8", "replace")
    for path in sorted(Path(fresh.home).rglob("*")):
        if path.is_file():
            haystacks[f"file {path.relative_to(fresh.home)}"] = path.read_bytes().decode("utf-8", "replace")

    r = fresh.kopsy(["delete", "cluster", CLUSTER, "--yes", "--debug"])
    assert r.returncode == 0, r.stderr[-500:]
    haystacks["delete --yes --debug"] = r.stdout + r.stderr
    assert leaks(haystacks, baseline) == []


@pytest.fixture(scope="module")
def session_outputs(rel_cloud: Cloud) -> list[str]:
    return rel_cloud.outputs


def test_no_secret_in_any_output_the_suite_collected(session_outputs: list[str], baseline: Baseline) -> None:
    assert session_outputs, "the suite ran kopsy"
    haystacks = {f"run output #{i}": text for i, text in enumerate(session_outputs)}
    assert leaks(haystacks, baseline) == []

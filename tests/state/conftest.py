"""Fixtures for state-store tests: every backend test runs against a file store and an S3 store.

The S3 store lives in the session's moto server *process*; the test's environment points boto3
at it through ``AWS_ENDPOINT_URL`` (set with monkeypatch), so ``open_store`` builds its clients
exactly as the CLI does. Subprocesses started by a test inherit that environment.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kopsy.state import ObjectStore, open_store
from kopsy.state.clusters import ClusterStore
from state_support import Proc, point_at_moto


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.slow)])  # s3: the moto server process
def store_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "file":
        return f"file://{tmp_path}/state"
    aws_env = request.getfixturevalue("aws_env")
    bucket = request.getfixturevalue("state_bucket")
    point_at_moto(monkeypatch, aws_env)
    return f"{bucket}/team-a"  # a prefix, so key mapping under a prefix is exercised too


@pytest.fixture
def store(store_url: str) -> ObjectStore:
    return open_store(store_url)


@pytest.fixture
def clusters(store: ObjectStore) -> ClusterStore:
    return ClusterStore(store)


@pytest.fixture
def procs():
    """Start helper subprocesses; any still running at the end are killed (no leftovers)."""
    started: list[Proc] = []

    def start(*args: str) -> Proc:
        p = Proc(*args)
        started.append(p)
        return p

    yield start
    for p in started:
        if p.popen.poll() is None:
            p.popen.kill()
        p.popen.wait()
        for stream in (p.popen.stdin, p.popen.stdout, p.popen.stderr):
            if stream:
                try:
                    stream.close()
                except BrokenPipeError:
                    pass

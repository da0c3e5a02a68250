"""A stray key in the bucket breaks no other cluster's commands (issue 19): the real executable
against the moto server process, with keys written past kopsy the way another tool would."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_update_support import create_cluster, owned_resources, register_image, total

pytestmark = pytest.mark.e2e

NAME = "stray.example.com"


def test_stray_keys_are_skipped_with_a_warning_and_delete_finishes(
    env: dict[str, str], boto: Callable[[str], Any], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path]
) -> None:
    bucket = env["KOPSY_STATE_STORE"].removeprefix("s3://")
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], register_image(boto))
    assert run_kopsy(["update", "cluster", NAME, "--yes"], env).returncode == 0
    s3 = boto("s3")
    s3.put_object(Bucket=bucket, Key="Stray Folder/config", Body=b"whatever")
    s3.put_object(Bucket=bucket, Key=f"{NAME}/instancegroup/nodes copy", Body=b"apiVersion: [")

    r = run_kopsy(["get", "clusters"], env)
    assert r.returncode == 0 and NAME in r.stdout, r.stderr
    assert "Warning: ignoring" in r.stderr and "Stray Folder/config" in r.stderr, r.stderr

    r = run_kopsy(["get", "ig", "--name", NAME], env)
    assert r.returncode == 0 and "nodes copy" in r.stderr and "nodes" in r.stdout, r.stdout + r.stderr

    r = run_kopsy(["update", "cluster", NAME], env)
    assert r.returncode == 0 and "No changes need to be applied" in r.stdout, r.stdout + r.stderr

    r = run_kopsy(["delete", "cluster", NAME, "--yes"], env)
    assert r.returncode == 0, r.stderr
    assert "left in place" in r.stderr and "nodes copy" in r.stderr, r.stderr
    assert total(owned_resources(boto, NAME)) == 0
    left = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
    assert left == ["Stray Folder/config", f"{NAME}/instancegroup/nodes copy"], left
    r = run_kopsy(["get", "clusters"], env)
    assert r.returncode == 1 and "no clusters" in r.stderr, r.stderr

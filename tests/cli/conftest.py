"""Fixtures for CLI tests: a store of either kind, editors that act like a user, store snapshots."""

from __future__ import annotations

import hashlib
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(params=["file", "s3"])
def store_env(request: pytest.FixtureRequest, aws_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """An environment whose KOPSY_STATE_STORE is a file:// directory or an S3 bucket in moto server."""
    env = dict(aws_env)
    if request.param == "file":
        env["KOPSY_STATE_STORE"] = f"file://{tmp_path / 'store'}"
    else:
        env["KOPSY_STATE_STORE"] = request.getfixturevalue("state_bucket")
    return env


@pytest.fixture
def snapshot(boto: Callable[[str], object]) -> Callable[[dict[str, str]], dict[str, str]]:
    """Every object in the store with a hash of its bytes, to prove a failed command changed nothing."""

    def take(env: dict[str, str]) -> dict[str, str]:
        url = env["KOPSY_STATE_STORE"]
        if url.startswith("file://"):
            root = Path(url[len("file://"):])
            if not root.exists():
                return {}
            return {
                str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*"))
                if p.is_file()
            }
        bucket = url[len("s3://"):].split("/")[0]
        s3 = boto("s3")
        out = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):  # type: ignore[attr-defined]
            for obj in page.get("Contents", []):
                out[obj["Key"]] = obj["ETag"]
        return out

    return take


@pytest.fixture
def editor(tmp_path: Path) -> Callable[[str], str]:
    """An $EDITOR that applies a Python snippet to the file (``text`` in, ``text`` out), like a user would."""

    def make(snippet: str) -> str:
        script = tmp_path / f"editor-{abs(hash(snippet))}.py"
        script.write_text(
            "import sys, os, time, pathlib\n"
            "path = pathlib.Path(sys.argv[1])\n"
            "text = path.read_text()\n"
            + textwrap.dedent(snippet)
            + "\npath.write_text(text)\n"
        )
        return f'"{sys.executable}" "{script}"'

    return make

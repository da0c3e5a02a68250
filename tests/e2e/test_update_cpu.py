"""What an update must not spend CPU on (docs/performance.md, "What keeps kopsy's own CPU low"):
the real ``kopsy`` entry point runs a fresh and a no-op ``update --yes`` against moto server, and
reports the modules it imported and whether it built botocore's full-model session. No timing:
these are the facts the CPU figures of bench/cpu.py rest on."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_update_support import create_cluster, register_image

pytestmark = pytest.mark.e2e

NAME = "cpu.example.com"

# kopsy's console script, reporting at its exit what the run imported and which botocore
# sessions it built (``kopsy.cloud.aws.session.CoreSession`` with and without trimmed models).
REPORTING = r"""
import json, os, sys
report = sys.argv.pop(1)
import kopsy.cloud.aws.session as S
built = []
_init = S.CoreSession.__init__
def counting(self, region, data_loader=None):
    built.append("trimmed" if data_loader is not None else "full")
    _init(self, region, data_loader)
S.CoreSession.__init__ = counting
import kopsy.cli.main as m
def done(code):
    with open(report, "w") as fh:
        json.dump({"code": code, "modules": sorted(sys.modules), "sessions": built}, fh)
    sys.stdout.flush(); sys.stderr.flush()
    os._exit(code)
m._exit_now = done
m.main()
"""


def _update(env: dict[str, str], tmp_path: Path, label: str) -> dict[str, Any]:
    report = tmp_path / f"{label}.json"
    r = subprocess.run([sys.executable, "-c", REPORTING, str(report), "update", "cluster", NAME, "--yes"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got: dict[str, Any] = json.loads(report.read_text())
    got["stdout"] = r.stdout
    return got


def test_update_and_no_op_skip_what_they_do_not_need(
    aws_env: dict[str, str], state_bucket: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path], tmp_path: Path,
) -> None:
    # a cache of this test's own (the suite's is shared), so what the fresh update writes is seen
    env = {**aws_env, "KOPSY_STATE_STORE": state_bucket, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], register_image(boto), "--control-plane-count", "3")
    templates = tmp_path / "cache" / "kopsy" / "jinja2"
    assert not templates.exists()
    fresh = _update(env, tmp_path, "fresh")
    assert "No changes need to be applied" not in fresh["stdout"]
    cached = sorted(p.name for p in templates.iterdir())
    assert cached  # the fresh update kept its compiled templates
    rendered = sorted(p.name for p in (tmp_path / "cache" / "kopsy" / "render").iterdir())
    assert len(rendered) >= 3 + 3 + 1 + 1  # 3 addons, 3 control planes' and 1 node group's user-data, the etcd module
    noop = _update(env, tmp_path, "noop")
    assert "No changes need to be applied" in noop["stdout"]
    assert sorted(p.name for p in templates.iterdir()) == cached  # not compiled again
    # every render of the no-op came from kopsy.bootstrap.rendercache: jinja2 is never imported
    assert "jinja2" in fresh["modules"] and "jinja2" not in noop["modules"]
    assert sorted(p.name for p in (tmp_path / "cache" / "kopsy" / "render").iterdir()) == rendered
    for run in (fresh, noop):
        modules = set(run["modules"])
        # the CA hash comes from pki/verified.json; user-data is gzip, not MIME; botocore, not boto3
        assert not {"cryptography", "email.policy", "boto3"} & modules
        assert run["sessions"] == ["trimmed"]  # botocore's full models are never loaded

"""``bench/_breakdown.py`` splits a kopsy run's CPU into parts that add up to no more than the
process's own, and keeps the command's exit code: the figures ``bench/cpu.py --breakdown``
prints rest on it. No timing is asserted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KOPSY = shutil.which("kopsy", path=str(Path(sys.executable).parent)) or "kopsy"


def _run(tmp_path: Path, *args: str) -> tuple[int, dict[str, object]]:
    out = tmp_path / "parts.json"
    env = {**os.environ, "HOME": str(tmp_path)}
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "_breakdown.py"), str(out), "--", KOPSY, *args],
                       env=env, capture_output=True, text=True, timeout=120)
    return r.returncode, json.loads(out.read_text())


def test_parts_add_up_and_the_exit_code_is_kept(tmp_path: Path) -> None:
    code, doc = _run(tmp_path, "--version")
    assert code == 0
    parts = doc["parts"]
    assert isinstance(parts, dict) and set(parts) == {"import", "clients", "calls", "render", "kopsy"}
    assert parts["import"] > 0 and parts["calls"] == 0 and doc["api_calls"] == 0
    assert doc["parts_sum"] <= doc["cpu"] + 0.02  # os.times counts in clock ticks
    code, _ = _run(tmp_path, "get", "clusters", "--state", f"file://{tmp_path}/store")  # an empty store
    assert code == 1

"""Bombs are refused fast, in bounded memory: wall time and peak RSS of the real ``kopsy``
process for each "bomb" input of issue 19 (YAML alias bombs and deep nesting in files, in
``$EDITOR`` output and in stored objects; /dev/zero and multi-GB files as keys and specs; huge
counts). Each run must be refused (exit != 0, one ``Error:`` line); the figures go into
docs/reliability.md. Prints figures; never passes or fails on time.

Run: .venv/bin/python bench/bombs.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

KOPSY = shutil.which("kopsy", path=str(Path(sys.executable).parent)) or "kopsy"
CLUSTER = "bomb.example.com"
ZONES = "us-east-1a,us-east-1b"

ALIAS_BOMB = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)
DEEP = "[" * 100_000 + "]" * 100_000


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float, int, str]:
    """(seconds, peak RSS in MiB, exit code, Error line) of one kopsy process (os.wait4 gives
    that child's own rusage, not a running maximum over all children)."""
    start = time.perf_counter()
    proc = subprocess.Popen([KOPSY, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    line = next((x for x in err.splitlines() if x.startswith("Error:")), err.strip()[-120:])
    return took, usage.ru_maxrss / 1024.0, proc.returncode, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="kopsy-bombs-") as tmp:
        work = Path(tmp)
        home = work / "home"
        home.mkdir()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "id")], check=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KOPSY_"))}
        env.update({"HOME": str(home), "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_REGION": "us-east-1",
                    "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "KOPSY_STATE_STORE": f"file://{work / 'store'}"})
        pub = str(work / "id.pub")
        subprocess.run([KOPSY, "create", "cluster", CLUSTER, "--zones", ZONES, "--ssh-public-key", pub], env=env, check=True,
                       capture_output=True)
        spec = subprocess.run([KOPSY, "create", "cluster", "other.example.com", "--zones", ZONES, "--ssh-public-key", pub,
                               "--dry-run", "-o", "yaml"], env=env, check=True, capture_output=True, text=True).stdout
        (work / "alias.yaml").write_text(spec + "---\n" + ALIAS_BOMB)
        (work / "deep.yaml").write_text(DEEP)
        (work / "values.yaml").write_text("[" + ",".join(["1"] * 120_000) + "]")
        with open(work / "big.yaml", "wb") as fh:  # sparse: 3 GiB on paper, nothing on disk
            fh.truncate(3 * 1024**3)
        with open(work / "big.pub", "wb") as fh:
            fh.truncate(3 * 1024**3)
        editor = work / "editor.sh"
        editor.write_text(f"#!/bin/sh\ncp {work / 'alias.yaml'} \"$1\"\n")
        editor.chmod(0o755)
        store_config = work / "store" / CLUSTER / "config"
        original = store_config.read_bytes()

        def stored(data: bytes | None) -> Callable[[], None]:
            def prepare() -> None:
                if data is None:
                    store_config.unlink()
                    with open(store_config, "wb") as fh:
                        fh.truncate(2 * 1024**3)
                else:
                    store_config.write_bytes(data)

            return prepare

        create_f = ["create", "-f"]
        cases: list[tuple[str, list[str], dict[str, str], Callable[[], None] | None]] = [
            ("create -f: YAML alias bomb (9^9 leaves)", [*create_f, str(work / "alias.yaml"), "--ssh-public-key", pub], {}, None),
            ("create -f: 100,000-deep nesting", [*create_f, str(work / "deep.yaml"), "--ssh-public-key", pub], {}, None),
            ("create -f: 120,000 values", [*create_f, str(work / "values.yaml"), "--ssh-public-key", pub], {}, None),
            ("create -f: 3 GiB file", [*create_f, str(work / "big.yaml"), "--ssh-public-key", pub], {}, None),
            ("create -f /dev/zero", [*create_f, "/dev/zero", "--ssh-public-key", pub], {}, None),
            ("replace -f: YAML alias bomb", ["replace", "-f", str(work / "alias.yaml")], {}, None),
            ("--ssh-public-key /dev/zero", ["create", "cluster", "x.example.com", "--zones", ZONES, "--ssh-public-key", "/dev/zero"], {}, None),
            ("--ssh-public-key: 3 GiB file", ["create", "cluster", "x.example.com", "--zones", ZONES, "--ssh-public-key", str(work / "big.pub")], {}, None),
            ("--control-plane-count 1000000000", ["create", "cluster", "x.example.com", "--zones", ZONES, "--ssh-public-key", pub,
                                                   "--control-plane-count", "1000000000"], {}, None),
            ("--node-count 10^12", ["create", "cluster", "x.example.com", "--zones", ZONES, "--ssh-public-key", pub,
                                     "--node-count", str(10**12)], {}, None),
            ("edit: $EDITOR writes an alias bomb", ["edit", "cluster", CLUSTER], {"EDITOR": str(editor)}, None),
            ("stored config: alias bomb (get)", ["get", "cluster", CLUSTER], {}, stored(ALIAS_BOMB.encode())),
            ("stored config: alias bomb (update)", ["update", "cluster", CLUSTER], {}, stored(ALIAS_BOMB.encode())),
            ("stored config: 100,000-deep nesting", ["get", "cluster", CLUSTER], {}, stored(DEEP.encode())),
            ("stored config: 2 GiB object", ["get", "cluster", CLUSTER], {}, stored(None)),
        ]
        print(f"{'case':44} {'runs':>4} {'max s':>7} {'max RSS MiB':>12}  refused with")
        for label, argv, extra, prepare in cases:
            times, rss, line, codes = [], [], "", set()
            for _ in range(runs):
                if prepare is not None:
                    prepare()
                took, peak, code, line = run(argv, {**env, **extra})
                times.append(took)
                rss.append(peak)
                codes.add(code)
                store_config.write_bytes(original)
            refused = "yes" if 0 not in codes else "NO (accepted!)"
            print(f"{label:44} {runs:>4} {max(times):7.2f} {max(rss):12.1f}  {refused}: {line[:90]}")


if __name__ == "__main__":
    main()

"""Signals and a sick endpoint (issue 19).

- SIGINT, SIGTERM and SIGHUP during ``update --yes``: the run stops starting work, releases the
  cluster lock and exits with 128 + the signal number (130, 143, 129, as docs/reliability.md
  says); a plain rerun (no --force-unlock) converges to the clean inventory.
- An endpoint that accepts connections and never answers, and one that throttles every call:
  each command ends within its bound (retry budget + one read timeout + start-up), printing
  ``Waiting: ...`` while it retries. The knobs are turned down through the documented
  environment variables so the test takes seconds, not minutes.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from reliability_support import CLUSTER, KOPSY, Baseline, Cloud, one_error_line

CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # the real kopsy executable, case after case


@pytest.mark.parametrize("sig", list(CODES), ids=lambda s: signal.Signals(s).name)
def test_a_signal_during_update_releases_the_lock_and_the_rerun_converges(fresh: Cloud, baseline: Baseline, sig: int) -> None:
    update = ["update", "cluster", CLUSTER, "--yes"]
    fresh.proxy.hold_after(baseline.calls // 2)
    proc = fresh.popen(update)
    try:
        assert fresh.proxy.held.wait(60), "the update never reached its held call"
        proc.send_signal(sig)
    finally:
        fresh.proxy.release()  # the held calls are answered (503, then retried): the run can wind down
    code, out, err = fresh.collect(proc, timeout=120)
    assert code == CODES[sig], (code, err[-800:])
    assert "Interrupted" in err and "Traceback" not in err, err[-800:]
    assert f"{CLUSTER}/lock" not in fresh.store_objects(CLUSTER), "the lock must be released"
    r = fresh.kopsy(update)
    assert r.returncode == 0, r.stderr
    inv = fresh.inventory()
    assert inv.duplicates() == {} and inv.shape() == baseline.inventory.shape()


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A TCP server on loopback that accepts every connection and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    t.join(timeout=5)
    for c in held:
        c.close()
    server.close()


KNOBS = {"KOPSY_AWS_READ_TIMEOUT": "2", "KOPSY_AWS_CONNECT_TIMEOUT": "2", "KOPSY_AWS_RETRY_BUDGET": "6"}
BOUND = 6 + 2 + 2 + 10  # budget + read timeout + connect timeout + start-up and slack on 2 busy cores


def timed(cloud: Cloud, args: list[str], **env: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    r = subprocess.run([KOPSY, *args], env=cloud.env(**KNOBS, **env), capture_output=True, text=True, timeout=300)
    return time.monotonic() - started, r


@pytest.mark.parametrize("args", [["get", "clusters"], ["delete", "cluster", CLUSTER, "--region", "us-east-1"],
                                  ["update", "cluster", CLUSTER]])
def test_an_endpoint_that_never_answers_ends_every_command_within_its_bound(
    fresh: Cloud, silent_endpoint: str, args: list[str]
) -> None:
    took, r = timed(fresh, args, AWS_ENDPOINT_URL=silent_endpoint)
    assert took < BOUND, f"{args} took {took:.1f} s"
    assert r.returncode == 1, r.stderr
    errors = one_error_line(r.stderr)
    assert len(errors) == 1 and "unexpected" not in errors[0], r.stderr
    assert "Waiting: waiting for the AWS endpoint" in r.stderr, r.stderr


@pytest.mark.parametrize("args", [["get", "clusters"], ["delete", "cluster", CLUSTER, "--region", "us-east-1"],
                                  ["update", "cluster", CLUSTER]])
def test_an_endpoint_that_throttles_every_call_ends_every_command_within_its_bound(fresh: Cloud, args: list[str]) -> None:
    fresh.proxy.set_faults(1.0, kinds=("throttle",))
    try:
        took, r = timed(fresh, args)
    finally:
        fresh.proxy.set_faults(0.0)
    assert took < BOUND, f"{args} took {took:.1f} s\n{r.stderr}"
    assert r.returncode == 1, r.stderr
    errors = one_error_line(r.stderr)
    assert len(errors) == 1 and "unexpected" not in errors[0], r.stderr
    assert "Waiting:" in r.stderr and "throttled" in r.stderr, r.stderr

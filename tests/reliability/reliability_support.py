"""Helpers for the reliability tests (no tests here): the bench proxy on the import path."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from awsproxy import AwsProxy, Call, busy_time, sequential_periods  # noqa: E402

__all__ = ["AwsProxy", "Call", "busy_time", "sequential_periods"]

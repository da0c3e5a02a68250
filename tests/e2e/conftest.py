"""Fixtures the end-to-end modules share (the session's moto server and ``aws_env`` come from
tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def env(aws_env: dict[str, str], state_bucket: str) -> dict[str, str]:
    """A kopsy subprocess's environment with the state store set (moto reset for the test).
    A module that needs more (tests/e2e/test_delete.py adds a call log) overrides it."""
    return {**aws_env, "KOPSY_STATE_STORE": state_bucket}

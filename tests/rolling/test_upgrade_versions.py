"""``kopsy upgrade``'s version rules: one minor at a time, never down, the next minor by default."""

from __future__ import annotations

from kopsy.spec.versions import SUPPORTED_MINORS, next_version, upgrade_problem


def test_default_is_the_next_supported_minor() -> None:
    oldest, middle, newest = SUPPORTED_MINORS
    assert next_version(f"{oldest}.4") == f"{middle}.0"  # NEWEST_PATCH is empty on purpose: .0
    assert next_version(f"{newest}.0") is None


def test_two_minors_downgrades_and_unsupported_are_refused() -> None:
    oldest, middle, newest = SUPPORTED_MINORS
    assert upgrade_problem(f"{oldest}.0", f"{middle}.2") is None
    assert "one minor at a time" in (upgrade_problem(f"{oldest}.0", f"{newest}.0") or "")
    assert "downgrades" in (upgrade_problem(f"{middle}.1", f"{middle}.0") or "")
    assert "not supported" in (upgrade_problem(f"{newest}.0", "1.99.0") or "")
    assert "not a Kubernetes version" in (upgrade_problem(f"{oldest}.0", "latest") or "")

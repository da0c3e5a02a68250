"""``kopsy upgrade``'s version rules: one minor at a time, never down, the next minor by default."""

from __future__ import annotations

from kopsy.spec.versions import SUPPORTED_MINORS, next_version, upgrade_problem


def test_default_is_the_next_supported_minor_at_its_newest_patch() -> None:
    oldest, middle, newest = SUPPORTED_MINORS
    published = {oldest: f"{oldest}.7", middle: f"{middle}.3", newest: f"{newest}.0"}
    assert next_version(f"{oldest}.4", published.__getitem__) == f"{middle}.3"
    assert next_version(f"{newest}.0", published.__getitem__) is None  # the newest minor, at its newest patch
    # on the newest minor, a newer patch of it is the target
    assert next_version(f"{newest}.0", {newest: f"{newest}.2"}.__getitem__) == f"{newest}.2"
    assert next_version("1.20.0", published.__getitem__) is None  # not a minor kopsy supports


def test_two_minors_downgrades_and_unsupported_are_refused() -> None:
    oldest, middle, newest = SUPPORTED_MINORS
    assert upgrade_problem(f"{oldest}.0", f"{middle}.2") is None
    assert "one minor at a time" in (upgrade_problem(f"{oldest}.0", f"{newest}.0") or "")
    assert "downgrades" in (upgrade_problem(f"{middle}.1", f"{middle}.0") or "")
    assert "not supported" in (upgrade_problem(f"{newest}.0", "1.99.0") or "")
    assert "not a Kubernetes version" in (upgrade_problem(f"{oldest}.0", "latest") or "")

"""Where the CLI keeps botocore's trimmed models, and when it does without them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kopsy.cli.context import _models_cache


def test_xdg_cache_home_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KOPSY_TRIMMED_MODELS", raising=False)
    monkeypatch.delenv("AWS_DATA_PATH", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _models_cache() == tmp_path / "xdg" / "kopsy"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")  # the XDG spec: only absolute paths count
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _models_cache() == tmp_path / ".cache" / "kopsy"


@pytest.mark.parametrize("var,value", [("KOPSY_TRIMMED_MODELS", "0"), ("KOPSY_TRIMMED_MODELS", "false"),
                                       ("AWS_DATA_PATH", "/opt/my-models")])
def test_turned_off(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    assert _models_cache() is None

"""``kopsy version`` and ``kopsy completion bash|zsh|fish``, through the real executable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import Any
from pathlib import Path

import pytest

from kopsy import __version__
from kopsy.spec.versions import SUPPORTED_MINORS


KOPSY = shutil.which("kopsy", path=str(Path(sys.executable).parent)) or "kopsy"


def _env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": f"{Path(KOPSY).parent}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path)}


def test_version_names_kopsy_and_the_supported_kubernetes_minors(run_kopsy: Callable[..., Any], tmp_path: Path) -> None:
    r = run_kopsy(["version"], _env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"kopsy {__version__}"
    assert all(m in r.stdout for m in SUPPORTED_MINORS)
    assert run_kopsy(["--version"], _env(tmp_path)).stdout.strip() == f"kopsy {__version__}"
    doc = json.loads(run_kopsy(["version", "-o", "json"], _env(tmp_path)).stdout)
    assert doc["version"] == __version__ and doc["kubernetes"]["supportedMinors"] == list(SUPPORTED_MINORS)


def _bash_complete(env: dict[str, str], words: list[str]) -> list[str]:
    """Source ``kopsy completion bash`` in a real bash and ask its function to complete ``words``."""
    cword = len(words) - 1
    script = (
        "source <(kopsy completion bash) || exit 3\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={cword}; COMPREPLY=()\n"
        "_kopsy_completion kopsy\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    r = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if line]


def test_bash_completion_completes_commands_subcommands_and_choices(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert _bash_complete(env, ["kopsy", "cre"]) == ["create"]
    assert {"secrets", "clusters", "instancegroups"} <= set(_bash_complete(env, ["kopsy", "get", ""]))
    assert _bash_complete(env, ["kopsy", "completion", ""]) == ["bash", "zsh", "fish"]
    assert "sshpublickey" in _bash_complete(env, ["kopsy", "create", "secret", ""])
    assert "toolbox" in _bash_complete(env, ["kopsy", ""])


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_call_kopsy_back(run_kopsy: Callable[..., Any], tmp_path: Path, shell: str) -> None:
    r = run_kopsy(["completion", shell], _env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "_KOPSY_COMPLETE" in r.stdout and f"{shell}_complete" in r.stdout
    if shutil.which(shell):  # the machine may not have the shell itself: the callback is checked below
        subprocess.run([shell, "-n", "-c", r.stdout], check=True, timeout=30)
    # what the script asks kopsy: the completions for "kopsy get se"
    cword = "2" if shell == "zsh" else "se"  # zsh passes the word's index, fish the word itself
    env = {**_env(tmp_path), "_KOPSY_COMPLETE": f"{shell}_complete", "COMP_WORDS": "kopsy get se", "COMP_CWORD": cword}
    answer = subprocess.run([KOPSY], env=env, capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0 and "secrets" in answer.stdout


def test_an_unknown_shell_is_a_usage_error(run_kopsy: Callable[..., Any], tmp_path: Path) -> None:
    r = run_kopsy(["completion", "tcsh"], _env(tmp_path))
    assert r.returncode == 2 and r.stderr.startswith("Error: ")

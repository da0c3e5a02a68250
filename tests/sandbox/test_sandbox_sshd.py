"""sshd files and the ssh config, as pure functions."""

from __future__ import annotations

from pathlib import Path

import paramiko

from kopsy.sandbox import sshd


def _node(iid: str, addr: str, *hosts: str) -> sshd.NodeServer:
    return sshd.NodeServer(iid, addr, 22, Path("/nonexistent") / iid, hosts=hosts)


def test_loopback_addresses_are_stable_distinct_and_never_127_0_0_x() -> None:
    taken: list[str] = []
    for n in range(200):
        addr = sshd.loopback_address("salt", f"i-{n:017x}", taken, 22)
        assert addr.startswith("127.") and not addr.startswith("127.0.0.")
        assert addr not in taken
        taken.append(addr)
    assert sshd.loopback_address("salt", "i-00000000000000000", [], 22) == taken[0]
    assert sshd.loopback_address("other", "i-00000000000000000", [], 22) != taken[0]


def test_ssh_config_maps_every_address_and_gives_shared_ones_to_the_newest(tmp_path: Path) -> None:
    old = _node("i-old", "127.64.0.1", "54.0.0.1", "172.20.32.4", "ip-172-20-32-4.ec2.internal")
    new = _node("i-new", "127.64.0.2", "54.0.0.2", "172.20.32.4", "ip-172-20-32-4.ec2.internal")
    text = sshd.render_ssh_config(
        [old, new], user="root", identity_files={"b": "/home/a b/keys/id"}, clusters={"i-old": "a", "i-new": "b"},
        launched={"i-old": "2026-01-01T00:00:00Z", "i-new": "2026-01-01T00:01:00Z"},
    )
    (tmp_path / "cfg").write_text(text)
    cfg = paramiko.SSHConfig.from_path(str(tmp_path / "cfg"))
    assert cfg.lookup("54.0.0.1")["hostname"] == "127.64.0.1"
    assert cfg.lookup("172.20.32.4")["hostname"] == "127.64.0.2"
    assert cfg.lookup("ip-172-20-32-4.ec2.internal")["hostname"] == "127.64.0.2"
    assert cfg.lookup("54.0.0.2")["identityfile"] == ["/home/a b/keys/id"]  # quoted, as OpenSSH needs for spaces
    assert "identityfile" not in cfg.lookup("54.0.0.1")
    assert cfg.lookup("54.0.0.1")["user"] == "root" and cfg.lookup("54.0.0.1")["port"] == "22"
    assert "LOCAL EMULATION" in text and "newer instance in another VPC" in text


def test_sshd_config_has_the_field_notes_settings() -> None:
    text = sshd.sshd_config(_node("i-1", "127.64.0.1"), "python -I -S nodeshell.py x i-1")
    for line in ("ListenAddress 127.64.0.1:22", "UsePAM no", "StrictModes no", "MaxStartups 200:30:300",
                 "PasswordAuthentication no", "ForceCommand python -I -S nodeshell.py x i-1"):
        assert line in text.splitlines()


def test_node_shell_is_a_stdlib_only_program() -> None:
    """The node shell plays the machine's own programs outside kopsy (it prints, reads the
    environment and exits, which only kopsy/cli may do inside kopsy): it must import nothing
    from kopsy or from site-packages, since it runs as ``python -I -S``."""
    import ast
    import subprocess
    import sys

    source = Path(sshd.__file__).with_name("nodeshell.py")
    tree = ast.parse(source.read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= set(sys.stdlib_module_names), imported
    doc = ast.get_docstring(tree) or ""
    assert "stdlib-only program" in doc and "only ``kopsy/cli`` prints" in doc
    # and it runs exactly as sshd runs it: isolated, no site; without a supervisor it says so
    r = subprocess.run([sys.executable, "-I", "-S", str(source), "0" * 16, "i-0"], env={"SSH_ORIGINAL_COMMAND": "cloud-init status"},
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 255 and "node supervisor is not reachable" in r.stderr


def test_sshd_accepts_the_config_in_a_directory_with_spaces(tmp_path: Path) -> None:
    """A sandbox under a path with a space (a HOME like "/home/a b") must still give working sshds."""
    import subprocess

    from tests.tools import require_tool

    path = require_tool("sshd")
    node = sshd.NodeServer("i-1", "127.64.0.1", 22, tmp_path / "a b" / "nodes" / "i-1")
    node.directory.mkdir(parents=True)
    sshd.write_host_key(node.directory / "ssh_host_ed25519_key")
    cfg = node.directory / "sshd_config"
    cfg.write_text(sshd.sshd_config(node, sshd.force_command("/usr/bin/python3", "0" * 16, "i-1")))
    r = subprocess.run([path, "-t", "-f", str(cfg)], capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0, r.stderr

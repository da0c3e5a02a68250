"""TEST DOUBLE: one real OpenSSH sshd on loopback, standing in for a cluster instance's SSH daemon.

``SshdDouble(dir, authorized_keys)`` picks its own 127.x.y.z address and port, makes its own host
key, authorizes the given keys and answers every exec request from ``answers.json`` in ``dir``
through ``answers.py`` (its ForceCommand); TCP forwarding stays on so it can serve as a jump
host. ``start()`` returns once the SSH banner answers; ``stop()`` ends the process; the test
owns both (fixtures stop every double they start). ``new_host_key()`` is a replaced instance.

Settings follow the field notes: own ``PidFile`` and host key, ``StrictModes no`` (keys under
/tmp), ``UsePAM no``, ``MaxStartups 200:30:300``. Callers that may run without sshd check first
with ``tests.tools.require_tool("sshd")`` (skip locally, fail under CI).
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ANSWER = Path(__file__).with_name("answers.py")


def sshd_path() -> str:
    from tests.tools import TOOLS

    path = TOOLS["sshd"][0]()
    if not path:
        raise RuntimeError("OpenSSH sshd is not installed (apt-get install openssh-server; scripts/setup.sh does it)")
    return path


def loopback_address() -> tuple[str, int]:
    """A random 127.x.y.z with a free port: each double gets its own address, like an instance."""
    while True:
        ip = f"127.{random.randint(64, 250)}.{random.randint(0, 255)}.{random.randint(2, 254)}"
        with socket.socket() as s:
            try:
                s.bind((ip, 0))
            except OSError:
                continue
            return ip, int(s.getsockname()[1])


def wait_banner(ip: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Until the sshd at ``ip:port`` says ``SSH-``; its stderr in the error if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"sshd on {ip}:{port} exited: {err}")
        try:
            with socket.create_connection((ip, port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"sshd on {ip}:{port} did not answer within {timeout}s")
        time.sleep(0.02)


class SshdDouble:
    """One sshd on loopback whose exec answers come from ``answers.json`` in its directory:
    ``{command: {"stdout", "stderr", "exit", "sleep"}}``; an unknown command exits 127."""

    def __init__(self, workdir: Path, authorized_keys: Path) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ip, self.port = loopback_address()
        self.authorized_keys = authorized_keys
        self.answers_path = self.dir / "answers.json"
        self.host_key = self.dir / "host_ed25519"
        self.proc: subprocess.Popen[bytes] | None = None
        self.set_answers({})
        self.new_host_key()

    def new_host_key(self) -> None:
        """A fresh host key, as a replaced instance (or an attacker) would present; takes effect on start."""
        for p in (self.host_key, self.host_key.with_suffix(".pub")):
            p.unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)], check=True)

    def set_answers(self, answers: dict[str, dict[str, Any]]) -> None:
        tmp = self.answers_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(answers))
        os.replace(tmp, self.answers_path)  # atomic: a command mid-read sees old or new, never half

    def config_text(self) -> str:
        return "\n".join([
            f"ListenAddress {self.ip}:{self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "MaxStartups 200:30:300",
            "AllowTcpForwarding yes",
            "PrintMotd no",
            "LogLevel ERROR",
            # Debian's bash sources ~/.bashrc when started by sshd with SHLVL unset (here: pyenv
            # init, ~0.1 s per command); a shell level of 1 makes it skip that, as on a plain host.
            "SetEnv SHLVL=1",
            f"ForceCommand {sys.executable} -I -S {ANSWER} {self.answers_path}",
            "",
        ])

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        os.makedirs("/run/sshd", exist_ok=True)
        cfg = self.dir / "sshd_config"
        cfg.write_text(self.config_text())
        self.proc = subprocess.Popen([sshd_path(), "-D", "-e", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        wait_banner(self.ip, self.port, self.proc)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

"""``ProxyCommand`` hops: paramiko's, made to notice a dead proxy at once and to reap it."""

from __future__ import annotations

import os
import select
import socket
import time

import paramiko


class ProxyCommand(paramiko.ProxyCommand):
    """paramiko's ProxyCommand, but a proxy that exits is noticed at once (paramiko keeps polling
    its closed stdout until the banner timeout) and is reported with its own error output, and a
    closed proxy is reaped rather than left as a zombie."""

    def recv(self, size: int) -> bytes:
        start = time.monotonic()
        buffer = b""
        stdout = self.process.stdout
        assert stdout is not None  # paramiko opens it as a pipe
        try:
            while len(buffer) < size:
                wait = None
                if self.timeout is not None:
                    wait = self.timeout - (time.monotonic() - start)
                    if wait <= 0:
                        if buffer:
                            return buffer
                        raise socket.timeout()
                ready, _, _ = select.select([stdout], [], [], wait)
                if ready:
                    data = os.read(stdout.fileno(), size - len(buffer))
                    if not data:
                        if buffer:
                            return buffer
                        raise paramiko.ProxyCommandFailure(" ".join(self.cmd), self._exit_reason())
                    buffer += data
            return buffer
        except OSError as exc:
            if isinstance(exc, socket.timeout):
                raise
            raise paramiko.ProxyCommandFailure(" ".join(self.cmd), exc.strerror or str(exc)) from exc

    def _exit_reason(self) -> str:
        try:
            code = self.process.wait(timeout=1)
        except Exception:
            return "closed its output"
        err = self.process.stderr.read().decode(errors="replace").strip().splitlines() if self.process.stderr else []
        return f"exited with status {code}" + (f": {err[-1]}" if err else "")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=2)
            except Exception:
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()

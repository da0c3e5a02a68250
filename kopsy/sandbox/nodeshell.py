"""The emulated machine's shell: sshd's ``ForceCommand`` on every sandbox node.

Not part of kopsy's CLI or library, so kopsy's layering rule (only ``kopsy/cli`` prints, reads
``os.environ`` or exits) does not apply to it, and it breaks that rule on purpose: it is a
stdlib-only program that plays the remote machine's own programs (kubectl, cat, cloud-init,
tail), as ``cloudinit/kopsy-helper.py`` plays kopsy's on-instance helper. Like a real program
on the machine it reads its input from the environment sshd gives it (``SSH_ORIGINAL_COMMAND``),
prints to stdout/stderr and exits with the program's code. Between those it only asks the node
supervisor for the answer over its abstract unix socket; the supervisor (inside kopsy, under
its rules) decides what the answer is. It imports nothing from kopsy.

It runs once per SSH command, so it is started as ``python -I -S nodeshell.py SOCKET_ID
INSTANCE_ID``: ~15 ms of CPU instead of ~50 ms through the CLI, which adds up when validate
diagnoses a hundred nodes.
"""

import json
import os
import socket
import sys


def main(argv: list[str]) -> int:
    socket_id, instance = argv[1], argv[2]
    request = {"op": "answer", "instance": instance, "command": os.environ.get("SSH_ORIGINAL_COMMAND", "")}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(60)
            s.connect(f"\0kopsy-sandbox-{socket_id}")  # kopsy.sandbox.layout.socket_name
            s.sendall(json.dumps(request).encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        reply = json.loads(b"".join(chunks))
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"kopsy sandbox: the node supervisor is not reachable ({exc}); is the sandbox up?\n")
        return 255
    sys.stdout.write(reply.get("stdout", ""))
    sys.stderr.write(reply.get("stderr", ""))
    return int(reply.get("exit", 1))


if __name__ == "__main__":
    sys.exit(main(sys.argv))

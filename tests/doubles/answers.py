"""TEST DOUBLE: the command answers of a cluster instance, run as a test sshd's ForceCommand.

Stands in for a real control plane or node until (and besides) the sandbox's node stand-ins:
the test writes a JSON file ``{command: {"stdout": ..., "stderr": ..., "exit": N, "sleep": seconds}}`` and sshd
runs ``python answers.py FILE`` for every exec request, with the requested command in
``SSH_ORIGINAL_COMMAND``. A command the file does not know exits 127, like a missing binary.
Stdlib only and started with ``python -I -S`` so each answer costs a few milliseconds.
"""

import json
import os
import sys
import time


def main() -> int:
    with open(sys.argv[1]) as fh:
        answers = json.load(fh)
    command = os.environ.get("SSH_ORIGINAL_COMMAND", "")
    answer = answers.get(command)
    if answer is None:
        sys.stderr.write(f"kopsy test double: {command or '(shell)'}: command not found\n")
        return 127
    time.sleep(float(answer.get("sleep", 0)))  # a hung command, for timeout tests
    sys.stdout.write(answer.get("stdout", ""))
    sys.stderr.write(answer.get("stderr", ""))
    return int(answer.get("exit", 0))


if __name__ == "__main__":
    sys.exit(main())

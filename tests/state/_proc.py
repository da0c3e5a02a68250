"""Helper process for state tests: another operator on the same store.

    _proc.py hold-lock URL CLUSTER OPERATION   take the lock, print {"locked": ...}, hold until stdin closes
    _proc.py race-replace URL KEY ETAG GOFILE DATA
        print {"ready": true}, wait for GOFILE to appear, replace, print {"result": "won"|"conflict"}

It talks to the store only through kopsy's public API, like a second kopsy process would.
"""

from __future__ import annotations

import json
import os
import sys
import time

from kopsy.errors import KopsyError, WriteConflict
from kopsy.state import open_store
from kopsy.state.clusters import ClusterStore


def say(doc: dict) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    cmd = argv[0]
    if cmd == "hold-lock":
        url, cluster, operation = argv[1:4]
        cs = ClusterStore(open_store(url))
        try:
            with cs.lock(cluster, operation):
                say({"locked": True, "pid": os.getpid()})
                sys.stdin.read()  # hold until the test closes our stdin
        except KopsyError as exc:
            say({"locked": False, "error": str(exc)})
            return 1
        say({"released": True})
        return 0
    if cmd == "race-replace":
        url, key, etag, gofile, data = argv[1:6]
        store = open_store(url)
        store.list()  # warm up the connection so both racers start from the same point
        say({"ready": True})
        deadline = time.monotonic() + 30
        while not os.path.exists(gofile):
            if time.monotonic() > deadline:
                say({"result": "timeout"})
                return 1
            time.sleep(0.001)
        try:
            store.replace(key, data.encode(), etag)
        except WriteConflict:
            say({"result": "conflict"})
            return 0
        say({"result": "won"})
        return 0
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

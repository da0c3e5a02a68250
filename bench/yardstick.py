"""The yardstick: what plain boto3 costs for the calls a kopsy run makes.

Why: "kopsy's CPU" means little alone; the issue's target is that a no-op update costs no more
CPU than a plain boto3 script making the same calls with default clients. This records every
API call of a real kopsy run (service, operation, parameters, through a botocore
``before-parameter-build`` hook added to kopsy's client factory in this process only), then
replays them one after another in a fresh process with ``boto3.client(service)`` defaults:
full models, default retries, no threads, nothing of kopsy imported.

    python bench/yardstick.py record CALLS.json -- update cluster NAME --yes   # runs kopsy
    python bench/yardstick.py replay CALLS.json                                # the script
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import sys
from typing import Any


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {"__b64__": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if hasattr(value, "read") and hasattr(value, "seek"):
        data = value.read()
        value.seek(0)
        return {"__b64__": base64.b64encode(data).decode()}
    raise TypeError(f"cannot record {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__b64__"}:
            return base64.b64decode(value["__b64__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def record(path: str, args: list[str]) -> int:
    import threading

    from kopsy.cloud.aws import session as S

    calls: list[dict[str, Any]] = []
    lock = threading.Lock()
    make = S.AwsClients._make

    def hook(params: dict[str, Any], model: Any, **_: Any) -> None:
        with lock:
            calls.append({"service": model.service_model.service_name, "operation": model.name,
                          "params": copy.deepcopy(params)})

    def traced(self: Any, service: str) -> Any:
        client = make(self, service)
        client.meta.events.register("before-parameter-build", hook)
        return client

    S.AwsClients._make = traced  # type: ignore[method-assign]
    from kopsy.cli.main import main

    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    with open(path, "w") as fh:
        json.dump(calls, fh, default=_encode)
    return code


def replay(path: str) -> int:
    import boto3
    from botocore import xform_name
    from botocore.exceptions import BotoCoreError, ClientError

    with open(path) as fh:
        calls = json.load(fh)
    clients: dict[str, Any] = {}
    for call in calls:
        service = call["service"]
        if service not in clients:
            clients[service] = boto3.client(service)
        try:
            getattr(clients[service], xform_name(call["operation"]))(**_decode(call["params"]))
        except (ClientError, BotoCoreError):
            pass  # an answer is an answer: its CPU is what is measured
    print(len(calls))
    return 0


if __name__ == "__main__":
    mode, target = sys.argv[1], sys.argv[2]
    rest = sys.argv[3:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    raise SystemExit(record(target, rest) if mode == "record" else replay(target))

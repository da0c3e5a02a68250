"""A latency, counting and fault-injecting HTTP proxy in front of moto server (stdlib only).

Why: moto answers in about a millisecond, so against moto alone a sequential tool and a
parallel one look equally fast, and nothing is ever throttled. Real AWS costs tens of
milliseconds a call and throttles. This proxy adds a fixed latency to every call, records every
call (service, operation, start, end, status), and can answer a share of calls with the errors
AWS really sends, so benchmarks can count latency periods spent in sequence and reliability tests
can check that kopsy converges under faults.

Point kopsy (or boto3) at it with ``AWS_ENDPOINT_URL=<proxy url>``. Headers pass through
unchanged: moto does not check signatures.

How a call is named (``service``, ``operation``):

- service: the SigV4 credential scope in the ``Authorization`` header
  (``Credential=AKID/20260101/us-east-1/ec2/aws4_request`` -> ``ec2``), or ``X-Amz-Credential``
  of a presigned URL. The signing name ``elasticloadbalancing`` is reported as ``elbv2`` when the
  form's ``Version`` is 2015-12-01 (as boto3 names the client), else ``elb``.
- operation: the ``X-Amz-Target`` header for JSON protocols (``AmazonSSM.GetParameter`` ->
  ``GetParameter``); else the ``Action`` field of a query-protocol form body (EC2, IAM, ELB,
  Auto Scaling, STS) or of the URL query; else, for S3 (REST), the method and path:
  ``GET /`` ListBuckets, ``GET /b?list-type=2`` ListObjectsV2, ``PUT /b`` CreateBucket,
  ``PUT /b?versioning`` PutBucketVersioning, ``GET|PUT|DELETE|HEAD /b/key`` Get/Put/Delete/HeadObject,
  ``POST /b?delete`` DeleteObjects (see ``s3_operation``).

Faults (``fault_rate`` in [0, 1], kinds ``"503"`` and ``"throttle"``) are answered *before*
forwarding, as AWS does when it throttles: the call is not executed. The opt-in kind ``"lost"``
forwards the call and then answers 503 (the work was done, the answer lost: the case idempotency
tokens exist for). Each service gets its real error format, which is what botocore parses to
decide whether to retry:

- ``503``: HTTP 503 with a ``ServiceUnavailable`` body (botocore retries any 503);
- EC2 throttle: HTTP 503, ``<Response><Errors><Error><Code>RequestLimitExceeded``;
- IAM / ELB / Auto Scaling / STS throttle: HTTP 400, ``<ErrorResponse><Error><Code>Throttling``;
- S3 throttle: HTTP 503, ``<Error><Code>SlowDown``;
- JSON protocols (SSM): HTTP 400, ``{"__type": "ThrottlingException"}``.

botocore (1.44) retries all of these (checked by tests/reliability/test_reliability_proxy.py).
``expired_credentials = True`` answers every call with the service's expired-token error
(``RequestExpired`` for EC2, ``ExpiredToken`` elsewhere), which botocore does not retry.

``hold_after(k)`` lets exactly ``k`` more counted calls through and then blocks every further
call until ``release()``: a test can SIGKILL the client at a precise point of its run.

Library use::

    with AwsProxy("http://127.0.0.1:5000", latency_ms=50) as proxy:
        env["AWS_ENDPOINT_URL"] = proxy.url
        ...
        print(proxy.counts(), proxy.sequential_periods())

Command line: ``python bench/awsproxy.py --target URL --latency-ms 50 --fault-rate 0.2``
(prints ``AWS_ENDPOINT_URL=...``, and the call report on Ctrl-C / SIGTERM).
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import signal
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULT_KINDS = ("503", "throttle")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
READ_PREFIXES = ("Describe", "Get", "List", "Head")
_CREDENTIAL = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


@dataclass(frozen=True)
class Call:
    """One request seen by the proxy. Times are ``time.monotonic()`` seconds; ``fault`` is the
    injected fault kind ("503", "throttle", "expired", "held") or "" when moto answered."""

    service: str
    operation: str
    start: float
    end: float
    status: int = 200
    fault: str = ""
    path: str = ""  # the request path without its query: for S3, /bucket/key says which object

    @property
    def mutating(self) -> bool:
        return not self.operation.startswith(READ_PREFIXES)


# --- naming a call ---------------------------------------------------------------------------


def service_of(headers: Any, query: dict[str, list[str]], form: dict[str, list[str]]) -> str:
    """The botocore service name of a request, from its SigV4 credential scope."""
    auth = headers.get("Authorization", "") or ""
    m = _CREDENTIAL.search(auth)
    scope = m.group(2) if m else ""
    if not scope:
        cred = (query.get("X-Amz-Credential") or [""])[0]
        parts = cred.split("/")
        scope = parts[3] if len(parts) >= 5 else ""
    if scope == "elasticloadbalancing":
        version = (form.get("Version") or query.get("Version") or [""])[0]
        return "elbv2" if version == "2015-12-01" else "elb"
    return scope or "unknown"


def _sub(prefix: str, keys: Iterable[str], default: str) -> str:
    sub = sorted(keys)
    return f"{prefix}{sub[0].title().replace('-', '')}" if sub else default


def s3_operation(method: str, path: str, query: dict[str, list[str]], headers: Any) -> str:
    """Name an S3 REST call from method, path and query (path-style addressing)."""
    parts = [p for p in urllib.parse.unquote(path).split("/", 2) if p]
    keys = set(query)
    if not parts:
        return "ListBuckets"
    if len(parts) == 1:  # bucket level
        if method == "GET":
            if query.get("list-type") == ["2"]:
                return "ListObjectsV2"
            if "versions" in keys:
                return "ListObjectVersions"
            if "uploads" in keys:
                return "ListMultipartUploads"
            return _sub("GetBucket", keys - {"prefix", "delimiter", "max-keys", "marker", "encoding-type"}, "ListObjects")
        if method == "PUT":
            return _sub("PutBucket", keys, "CreateBucket")
        if method == "DELETE":
            return _sub("DeleteBucket", keys, "DeleteBucket")
        if method == "HEAD":
            return "HeadBucket"
        if method == "POST" and "delete" in keys:
            return "DeleteObjects"
        return f"{method}Bucket"
    if method == "GET":  # object level
        return "GetObjectTagging" if "tagging" in keys else "GetObject"
    if method == "PUT":
        if "tagging" in keys:
            return "PutObjectTagging"
        if "partNumber" in keys:
            return "UploadPart"
        return "CopyObject" if headers.get("x-amz-copy-source") else "PutObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in keys else "DeleteObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "POST":
        if "uploads" in keys:
            return "CreateMultipartUpload"
        if "uploadId" in keys:
            return "CompleteMultipartUpload"
    return f"{method}Object"


def operation_of(
    service: str, method: str, path: str, headers: Any, query: dict[str, list[str]], form: dict[str, list[str]]
) -> str:
    target = headers.get("X-Amz-Target")
    if target:
        return str(target).rsplit(".", 1)[-1]
    action = (form.get("Action") or query.get("Action") or [""])[0]
    if action:
        return action
    if service == "s3":
        return s3_operation(method, path, query, headers)
    return f"{method} {path}"


# --- error bodies ----------------------------------------------------------------------------


def error_response(service: str, json_protocol: bool, code: str, message: str, status: int) -> tuple[int, str, bytes]:
    """(status, content type, body) of an AWS error in ``service``'s own wire format."""
    rid = str(uuid.uuid4())
    if json_protocol:
        return status, "application/x-amz-json-1.1", json.dumps({"__type": code, "message": message}).encode()
    if service == "ec2":
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error></Errors><RequestID>{rid}</RequestID></Response>"
        )
    elif service == "s3":
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>{rid}</RequestId></Error>"
        )
    else:  # query-XML services: IAM, ELB(v2), Auto Scaling, STS
        body = (
            f'<ErrorResponse xmlns="https://{service}.amazonaws.com/doc/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>"
        )
    return status, "text/xml", body.encode()


def fault_response(kind: str, service: str, json_protocol: bool) -> tuple[int, str, bytes]:
    """The answer AWS gives for ``kind`` ("503", "throttle", "expired", "denied") in ``service``'s format."""
    if kind == "503":
        return error_response(service, json_protocol, "ServiceUnavailable", "Service is unavailable, try again", 503)
    if kind == "throttle":
        if json_protocol:
            return error_response(service, True, "ThrottlingException", "Rate exceeded", 400)
        if service == "ec2":
            return error_response(service, False, "RequestLimitExceeded", "Request limit exceeded.", 503)
        if service == "s3":
            return error_response(service, False, "SlowDown", "Please reduce your request rate.", 503)
        return error_response(service, False, "Throttling", "Rate exceeded", 400)
    if kind == "expired":
        if service == "ec2":
            return error_response(service, json_protocol, "RequestExpired", "Request has expired.", 400)
        if service == "s3":
            return error_response(service, json_protocol, "ExpiredToken", "The provided token has expired.", 400)
        return error_response(service, json_protocol, "ExpiredToken", "The security token included in the request is expired", 403)
    if kind == "denied":  # what a policy that denies the call answers (a bucket policy, an SCP)
        return error_response(service, json_protocol, "AccessDenied", "Access Denied", 403)
    raise ValueError(f"unknown fault kind {kind!r}")


# --- analysing a run -------------------------------------------------------------------------


def sequential_periods(calls: Iterable[Call]) -> int:
    """The longest sequence of calls that ran one after another (pairwise non-overlapping).

    Every call takes at least one latency period, so a run with ``n`` calls strictly in
    sequence spent at least ``n`` periods waiting: this is the number of latency periods the
    run actually spent in sequence (interval scheduling: take the call that ends first, then
    the first to end among those starting after it, and so on — optimal for intervals)."""
    count, free_at = 0, float("-inf")
    for c in sorted(calls, key=lambda c: c.end):
        if c.start >= free_at:
            count += 1
            free_at = c.end
    return count


def busy_time(calls: Iterable[Call]) -> float:
    """Seconds during which at least one call was in flight (the union of the intervals)."""
    total = 0.0
    cur: list[float] | None = None
    for c in sorted(calls, key=lambda c: c.start):
        if cur is None or c.start > cur[1]:
            if cur is not None:
                total += cur[1] - cur[0]
            cur = [c.start, c.end]
        else:
            cur[1] = max(cur[1], c.end)
    if cur is not None:
        total += cur[1] - cur[0]
    return total


def max_concurrency(calls: Iterable[Call]) -> int:
    """The most calls in flight at once."""
    items = list(calls)
    events = sorted([(c.start, 1) for c in items] + [(c.end, -1) for c in items], key=lambda e: (e[0], e[1]))
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def by_operation(calls: Iterable[Call]) -> Counter[str]:
    """Calls by "service operation"."""
    return Counter(f"{c.service} {c.operation}" for c in calls)


# --- the proxy -------------------------------------------------------------------------------


class _QuietServer(ThreadingHTTPServer):
    """A client that dies mid-connection (SIGKILLed on purpose by the crash tests) is normal here."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class AwsProxy:
    """The proxy server, run in a background thread. Knobs can be changed while it runs."""

    def __init__(
        self,
        target: str,
        latency: float | None = None,
        *,
        latency_ms: float = 0.0,
        fault_rate: float = 0.0,
        fault_kinds: Iterable[str] = FAULT_KINDS,
        fault_services: Iterable[str] | None = None,
        seed: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        parsed = urllib.parse.urlsplit(target)
        if parsed.hostname is None or not (parsed.hostname.startswith("127.") or parsed.hostname == "localhost"):
            raise ValueError(f"target must be on loopback (127.0.0.0/8), got {target}")
        if not host.startswith("127."):
            raise ValueError(f"listen address must be on loopback, got {host}")
        self.target_host = parsed.hostname
        self.target_port = parsed.port or 80
        self.latency = latency if latency is not None else latency_ms / 1000.0  # seconds
        self.fault_rate = fault_rate
        self.fault_kinds = tuple(fault_kinds)
        self.fault_services = set(fault_services) if fault_services is not None else None
        self.expired_credentials = False
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._forwarded = 0
        self._hold_at: int | None = None
        self._expire_at: int | None = None
        self._denied_paths: tuple[str, ...] = ()
        self._denied_operations: set[str] = set()
        self._released = threading.Event()
        self.held = threading.Event()  # set once a call is blocked by hold_after
        self._local = threading.local()
        self._server = _QuietServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # lifecycle

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def start(self) -> AwsProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, name="awsproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> AwsProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # knobs

    def set_faults(self, rate: float, kinds: Iterable[str] = FAULT_KINDS, services: Iterable[str] | None = None,
                   seed: int | None = None) -> None:
        with self._lock:
            self.fault_rate = rate
            self.fault_kinds = tuple(kinds)
            self.fault_services = set(services) if services is not None else None
            if seed is not None:
                self._rng = random.Random(seed)

    def hold_after(self, k: int | None) -> None:
        """Forward ``k`` more counted calls, then block the rest until ``release()`` (None: no hold)."""
        with self._lock:
            self._hold_at = None if k is None else self._forwarded + k
        self._released.clear()
        self.held.clear()

    def expire_after(self, k: int | None) -> None:
        """Forward ``k`` more counted calls, then answer every call as if the credentials expired."""
        with self._lock:
            self._expire_at = None if k is None else self._forwarded + k
            if k is None:
                self.expired_credentials = False

    def deny_writes(self, *path_parts: str) -> None:
        """Answer every write (PUT, POST, DELETE) whose path contains one of ``path_parts`` with
        AccessDenied, as a bucket policy denying them would; no arguments: deny nothing."""
        with self._lock:
            self._denied_paths = path_parts

    def deny_operations(self, *operations: str) -> None:
        """Answer every call of the named operations (e.g. ``ListObjectsV2``) with AccessDenied,
        as a policy without their action would; no arguments: deny none."""
        with self._lock:
            self._denied_operations = set(operations)

    def _denies(self, method: str, path: str, operation: str) -> bool:
        with self._lock:
            return operation in self._denied_operations or (
                method in ("PUT", "POST", "DELETE") and any(p in path for p in self._denied_paths))

    def release(self) -> None:
        """Stop holding; blocked calls are answered with a 503 (their client is usually dead)."""
        with self._lock:
            self._hold_at = None
        self._released.set()

    # counters

    def reset(self) -> None:
        """Forget recorded calls (knobs stay)."""
        with self._lock:
            self._calls = []

    @property
    def calls(self) -> list[Call]:
        """A copy of every recorded call, in the order they were answered."""
        with self._lock:
            return list(self._calls)

    @property
    def forwarded(self) -> int:
        """Counted calls passed to moto since the proxy started (never reset)."""
        with self._lock:
            return self._forwarded

    def counts(self, *, include_faults: bool = False) -> Counter[tuple[str, str]]:
        """Calls by (service, operation); by default only the calls moto actually answered."""
        return Counter((c.service, c.operation) for c in self.calls if include_faults or not c.fault)

    def by_operation(self) -> Counter[str]:
        return by_operation(c for c in self.calls if not c.fault)

    def sequential_periods(self) -> int:
        return sequential_periods(self.calls)

    # internals

    def _decide(self, service: str) -> str:
        """'' to forward, or the fault kind to answer with; applies hold_after."""
        with self._lock:
            if self._expire_at is not None and self._forwarded >= self._expire_at:
                self.expired_credentials = True
            if self.expired_credentials:
                return "expired"
            if (
                self.fault_rate > 0
                and self.fault_kinds
                and (self.fault_services is None or service in self.fault_services)
                and self._rng.random() < self.fault_rate
            ):
                return self._rng.choice(self.fault_kinds)
            hold = self._hold_at is not None and self._forwarded >= self._hold_at
            if not hold:
                self._forwarded += 1
        if hold:
            self.held.set()
            self._released.wait()
            return "held"
        return ""

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def _forward(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        for attempt in (1, 2):  # moto may have closed a kept-alive connection: reconnect once
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = http.client.HTTPConnection(self.target_host, self.target_port, timeout=300)
                self._local.conn = conn
            try:
                conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    conn.putheader(k, v)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body if body else None)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp.getheaders(), data
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body as two writes cost a 40 ms delayed ACK

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                start = time.monotonic()
                body = self._body()
                split = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
                form = (
                    urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
                    if "x-www-form-urlencoded" in (self.headers.get("Content-Type") or "")
                    else {}
                )
                control = split.path.startswith("/moto-api")  # moto's own API: not counted, never delayed
                service = "moto-api" if control else service_of(self.headers, query, form)
                operation = split.path if control else operation_of(service, self.command, split.path, self.headers, query, form)
                fault = ""
                if not control:
                    time.sleep(proxy.latency)
                    fault = "denied" if proxy._denies(self.command, split.path, operation) else proxy._decide(service)
                if fault == "lost":  # executed by moto, but the answer is lost: the client sees a 503
                    proxy._forward(self.command, self.path, [(k, v) for k, v in self.headers.items()
                                   if k.lower() not in HOP_BY_HOP and k.lower() not in ("content-length", "expect")], body)
                if fault:
                    json_protocol = bool(self.headers.get("X-Amz-Target"))
                    status, rtype, rbody = fault_response("503" if fault in ("held", "lost") else fault, service, json_protocol)
                    rheaders = [("Content-Type", rtype)]
                else:
                    fwd = [(k, v) for k, v in self.headers.items()
                           if k.lower() not in HOP_BY_HOP and k.lower() not in ("content-length", "expect")]
                    status, rheaders, rbody = proxy._forward(self.command, self.path, fwd, body)
                if not control:  # recorded before answering: whoever got an answer finds its call recorded
                    proxy._record(Call(service, operation, start, time.monotonic(), status, fault, split.path))
                try:
                    self.send_response_only(status)
                    length_sent = False
                    for k, v in rheaders:
                        lk = k.lower()
                        if lk in HOP_BY_HOP or lk in ("date", "server"):
                            continue
                        if lk == "content-length":
                            if self.command == "HEAD":  # HEAD answers carry the object's length, no body
                                self.send_header(k, v)
                                length_sent = True
                            continue
                        self.send_header(k, v)
                    if not length_sent:
                        self.send_header("Content-Length", str(len(rbody)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(rbody)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client died (SIGKILLed): nobody to answer

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

        return Handler


def iter_report(calls: list[Call]) -> Iterator[str]:
    """Human-readable summary lines of a recorded run."""
    yield (f"{len(calls)} calls ({sum(1 for c in calls if c.fault)} faults injected), "
           f"{sequential_periods(calls)} in sequence, at most {max_concurrency(calls)} at once")
    for op, n in sorted(by_operation(calls).items(), key=lambda kv: (-kv[1], kv[0])):
        yield f"  {n:5d}  {op}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Latency/fault proxy in front of moto server (127.0.0.0/8 only).")
    ap.add_argument("--target", required=True, help="moto server URL on 127.0.0.0/8, e.g. http://127.0.0.1:5000")
    ap.add_argument("--listen", default="127.0.0.1", help="loopback address to listen on")
    ap.add_argument("--port", type=int, default=0, help="port (0: any free port; the URL is printed)")
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--fault-rate", type=float, default=0.0)
    ap.add_argument("--faults", default=",".join(FAULT_KINDS), help="comma list of: 503, throttle")
    ap.add_argument("--seed", type=int)
    args = ap.parse_args(argv)
    proxy = AwsProxy(args.target, latency_ms=args.latency_ms, fault_rate=args.fault_rate,
                     fault_kinds=[k for k in args.faults.split(",") if k], seed=args.seed,
                     host=args.listen, port=args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    proxy.start()
    print(f"AWS_ENDPOINT_URL={proxy.url}", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
        for line in iter_report(proxy.calls):
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

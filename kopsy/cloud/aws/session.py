"""The one doorway to AWS.

Every boto3 client kopsy uses comes from ``AwsClients``: built once per run, shared across
threads, with botocore's retry modes (``adaptive`` by default, which also rate-limits the
client when AWS throttles). SDK exceptions are translated into the ``KopsyError`` tree here, by
``aws_errors``, and nowhere else.

Nothing here reads environment variables itself; boto3 does, in the standard way
(``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, credentials), which is how the sandbox is reached.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kopsy.errors import AccessDenied, CloudError, CredentialsError, KopsyError, StateStoreError
from kopsy.parallel import MAX_IN_FLIGHT

EXPIRED_CODES = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
BAD_CREDENTIAL_CODES = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "AuthFailure",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "IncompleteSignature",
}
DENIED_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden"}
THROTTLE_CODES = {
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "SlowDown",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
    "EC2ThrottledException",
}


CONNECT_TIMEOUT = 5.0  # seconds per attempt
READ_TIMEOUT = 20.0  # seconds per attempt; AWS answers control-plane calls in well under that
RETRY_BUDGET = 60.0  # seconds of continuous failure (timeouts, throttling, 5xx) before giving up


class AwsClients:
    """A cache of boto3 clients for one region, with kopsy's retry policy."""

    def __init__(
        self,
        region: str,
        *,
        retry_mode: str = "adaptive",
        max_attempts: int = 8,
        session: Any = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        retry_budget: float = RETRY_BUDGET,
        on_wait: Callable[[str], None] | None = None,
        models_cache: Path | None = None,
    ) -> None:
        """``models_cache``: a cache directory for botocore models trimmed to kopsy's
        operations (``models.py``); ``None`` uses botocore's full models."""
        from botocore.config import Config  # heavy: imported only by commands that talk to AWS

        from kopsy.cloud.aws.retrybudget import RetryBudget

        self.region = region
        self._trimmed: Any = None
        if session is None and models_cache is not None:
            self._trimmed = _trimmed_session(region, models_cache)
        # The session with botocore's full models: built at first use, since with the trimmed
        # models in place only a service they do not serve needs it (an update never does), and
        # a botocore session costs ~15 ms of CPU to build (its ~250 handlers are inspected one by one).
        self._session: Any = session
        self._session_lock = threading.Lock()
        # One budget for every client of the run: a sick endpoint ends the command in about
        # retry_budget + read_timeout, whatever the number of calls (retrybudget.py).
        self.budget = RetryBudget(retry_budget, on_wait=on_wait, max_attempts=max_attempts)
        self._config = Config(
            region_name=region,
            retries={"mode": retry_mode, "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=MAX_IN_FLIGHT,
            user_agent_extra="kopsy",
        )
        # The state store's S3 client retries in botocore's standard mode: adaptive mode's client-side
        # rate limiter makes every request wait its turn *before* it is sent once throttling starts,
        # which no retry budget can cut short; a few parallel state reads then kept a run going
        # three times the budget. The store makes a handful of small calls, with nothing to pace.
        self._store_config = self._config.merge(Config(retries={"mode": "standard", "max_attempts": max_attempts}))
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}
        self._hooks: list[Callable[..., None]] = []

    @property
    def session(self) -> Any:
        """The session of botocore's full models (or the one the caller passed)."""
        with self._session_lock:
            if self._session is None:
                self._session = CoreSession(self.region)
            return self._session

    def has_credentials(self) -> bool:
        """Whether boto3 finds credentials at all (for checks that are only worth doing online)."""
        return (self._trimmed if self._trimmed is not None else self.session).get_credentials() is not None

    def _make(self, service: str) -> Any:
        from kopsy.cloud.aws.models import SERVED

        session = self._trimmed if self._trimmed is not None and service in SERVED else self.session
        client = session.client(service, config=self._store_config if service == "s3" else self._config)
        client.meta.events.register("before-parse", unparseable_is_server_error)
        return client

    def client(self, service: str) -> Any:
        with self._lock:
            c = self._clients.get(service)
            if c is not None:
                return c
            building = self._building.setdefault(service, threading.Lock())
        # One lock per service: clients of different services build at once (and beside the
        # calls already in flight) instead of one after another under the cache's lock.
        with building:
            with self._lock:
                c = self._clients.get(service)
            if c is not None:
                return c
            c = self._make(service)
            with self._lock:
                self.budget.attach(c)
                for hook in self._hooks:
                    c.meta.events.register("before-call", hook)
                self._clients[service] = c
            return c

    def prewarm(self, *jobs: str | Callable[[], object]) -> threading.Thread:
        """Run ``jobs`` in order in a background thread: a service name builds that service's
        client, a callable is called (e.g. an import). The work overlaps with latencies the
        command waits for anyway (reading the spec). Errors are left for the real call to raise
        where it is handled."""

        def warm() -> None:
            for job in jobs:
                try:
                    self.client(job) if isinstance(job, str) else job()
                except Exception:
                    pass

        thread = threading.Thread(target=warm, name="kopsy-prewarm", daemon=True)
        thread.start()
        return thread

    __call__ = client

    def on_call(self, handler: Callable[[str, str], None]) -> None:
        """Call ``handler(service, operation)`` before every API call (for counting in tests and benchmarks)."""

        def _hook(model: Any = None, **_: Any) -> None:
            handler(model.service_model.service_name, model.name)

        with self._lock:
            self._hooks.append(_hook)
            for c in self._clients.values():
                c.meta.events.register("before-call", _hook)


class CoreSession:
    """What kopsy needs of a boto3 session, on botocore alone: boto3's clients *are* botocore's,
    and importing boto3 (its S3 transfer manager, multiprocessing, resources) cost ~0.1 s of
    CPU per run for nothing kopsy calls. Tests may still pass a ``boto3.session.Session``."""

    def __init__(self, region: str, data_loader: Any = None) -> None:
        import botocore.session

        self.region = region
        self.core = botocore.session.get_session()
        if data_loader is not None:
            self.core.register_component("data_loader", data_loader)

    def client(self, service: str, config: Any = None) -> Any:
        return self.core.create_client(service, region_name=self.region, config=config)

    def get_credentials(self) -> Any:
        return self.core.get_credentials()


def _trimmed_session(region: str, cache: Path) -> CoreSession | None:
    """A session whose botocore loads the trimmed models (``None`` if they cannot be made)."""
    from kopsy.cloud.aws.models import trimmed_loader

    loader = trimmed_loader(cache)
    return None if loader is None else CoreSession(region, loader)


UNPARSEABLE_CODE = "InternalError"


def _parses(body: bytes, protocol: str) -> bool:
    """Whether botocore's parser for ``protocol`` can read ``body`` as an error answer (an empty
    body it reads as the generic error of the HTTP status, which it retries)."""
    if not body.strip():
        return True
    if protocol in ("json", "rest-json", "smithy-rpc-v2-cbor"):
        import json

        try:
            return isinstance(json.loads(body), dict)
        except ValueError:
            return False
    import xml.etree.ElementTree as ET

    try:
        ET.fromstring(body)
        return True
    except ET.ParseError:
        return False


def _error_body(protocol: str, status: int) -> bytes:
    message = f"the endpoint answered HTTP {status} with a page that is not an AWS error (a bare server error)"
    if protocol in ("json", "rest-json"):
        return ('{"__type": "%s", "message": "%s"}' % (UNPARSEABLE_CODE, message)).encode()
    if protocol == "ec2":
        return (f"<Response><Errors><Error><Code>{UNPARSEABLE_CODE}</Code><Message>{message}</Message></Error>"
                f"</Errors><RequestID>kopsy</RequestID></Response>").encode()
    if protocol == "query":
        return (f"<ErrorResponse><Error><Type>Receiver</Type><Code>{UNPARSEABLE_CODE}</Code>"
                f"<Message>{message}</Message></Error><RequestId>kopsy</RequestId></ErrorResponse>").encode()
    return f"<Error><Code>{UNPARSEABLE_CODE}</Code><Message>{message}</Message></Error>".encode()


def unparseable_is_server_error(response_dict: dict[str, Any], operation_model: Any, **_: Any) -> None:
    """botocore ``before-parse`` hook: a 5xx whose body is an HTML page (moto's crash page, a
    proxy's error page) would raise ``ResponseParserError``, which botocore does not
    retry. Give it a well-formed error body instead, keeping the status, so botocore's retry
    policy treats it as the transient server error it is, as it does AWS's own 500s."""
    status = int(response_dict.get("status_code") or 0)
    body = response_dict.get("body")
    if status < 500 or not isinstance(body, (bytes, bytearray)):
        return
    protocol = str(getattr(operation_model.service_model, "resolved_protocol", None) or operation_model.service_model.protocol)
    if protocol == "smithy-rpc-v2-cbor" or _parses(bytes(body), protocol):
        return
    response_dict["body"] = _error_body(protocol, status)
    headers = response_dict.get("headers")
    if headers is not None:
        headers["content-type"] = "application/x-amz-json-1.1" if protocol in ("json", "rest-json") else "text/xml"
        headers.pop("x-amzn-errortype", None)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError, or '' for anything else."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def translate(exc: BaseException, action: str) -> KopsyError:
    """Turn a botocore exception into a user-facing ``KopsyError`` (``action`` says what we were doing)."""
    from botocore import exceptions as bx
    from botocore.parsers import ResponseParserError  # a plain Exception, not a BotoCoreError

    if isinstance(exc, KopsyError):
        return exc
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return CredentialsError(
            f"{action}: no AWS credentials found; set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            f"(or run 'aws configure'), then re-run"
        )
    if isinstance(exc, bx.NoRegionError):
        return CredentialsError(f"{action}: no AWS region set; pass --region or set AWS_REGION")
    if isinstance(exc, bx.EndpointConnectionError):
        return CloudError(f"{action}: cannot reach the AWS endpoint ({exc}); check your network or AWS_ENDPOINT_URL")
    if isinstance(exc, bx.ClientError):
        code = error_code(exc)
        msg = str(exc.response.get("Error", {}).get("Message", "")).strip()  # type: ignore[attr-defined]
        if code in EXPIRED_CODES:
            return CredentialsError(
                f"{action}: your AWS credentials have expired; refresh them (for example 'aws sso login' "
                f"or a new session token) and re-run"
            )
        if code in BAD_CREDENTIAL_CODES:
            return CredentialsError(f"{action}: AWS rejected the credentials ({code}); check AWS_PROFILE or your access keys")
        if code in DENIED_CODES:
            return AccessDenied(f"{action}: AWS denied access ({code}: {msg}); the caller needs more IAM permissions")
        if code == "NoSuchBucket":
            return StateStoreError(f"{action}: the S3 bucket does not exist; create it first (aws s3 mb s3://BUCKET)")
        if code in THROTTLE_CODES:
            return CloudError(f"{action}: AWS kept throttling requests ({code}) after retries; wait a minute and re-run")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)  # type: ignore[attr-defined]
        if status >= 500:
            return CloudError(
                f"{action}: AWS kept answering with a server error (HTTP {status}, {code}: {msg}) after retries; "
                f"wait a minute and re-run"
            )
        if code in ("", "Unknown") or code.isdigit():
            # No AWS error in the body: an HTML page from a proxy, a portal or a wrong endpoint.
            return CloudError(
                f"{action}: the endpoint answered HTTP {status or '?'} without an AWS error (an HTML page or a proxy?); "
                f"check AWS_ENDPOINT_URL and any proxy, then re-run"
            )
        return CloudError(f"{action}: {code or 'error'}: {msg or exc}")
    if isinstance(exc, ResponseParserError):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return CloudError(
            f"{action}: the endpoint's answer is not an AWS answer ({first[:200]}); check AWS_ENDPOINT_URL or any "
            f"proxy in between, then re-run"
        )
    if isinstance(exc, bx.BotoCoreError):
        return CloudError(f"{action}: {exc}")
    return CloudError(f"{action}: {exc}")


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Translate any botocore error raised inside the block into a ``KopsyError``."""
    from botocore import exceptions as bx
    from botocore.parsers import ResponseParserError

    try:
        yield
    except (bx.ClientError, bx.BotoCoreError, ResponseParserError) as exc:
        raise translate(exc, action) from exc

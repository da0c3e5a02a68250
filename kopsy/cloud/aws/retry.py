"""Bounded retries on *specific* AWS error codes (never a fixed sleep, never unbounded).

botocore's adaptive retry mode already handles throttling and 5xx for every call. What it
cannot know is that some errors are transient for *us*: IAM eventual consistency right after a
role or instance profile is created ("Invalid IamInstanceProfile"), or a ``DependencyViolation``
while AWS is still tearing down what a deleted resource held. Those are retried here, with
exponential backoff and jitter, until a deadline.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from kopsy.cloud.aws.session import error_code
from kopsy.errors import CloudError

T = TypeVar("T")

IAM_PROPAGATION_MARKERS = ("iaminstanceprofile", "instance profile", "not authorized to perform: iam:passrole")
IN_PROGRESS = "kopsy.InProgress"  # not an AWS code: what kopsy's own waits raise (``InProgress``)
DEPENDENCY_CODES = {"DependencyViolation", "ResourceInUse", "DeleteConflict", "InvalidIPAddress.InUse", IN_PROGRESS}


class InProgress(CloudError):
    """AWS accepted a change that takes time (a NAT gateway being created or deleted): retried
    like a dependency until a deadline, each retry shown to the user with this message."""

    response = {"Error": {"Code": IN_PROGRESS}}


def code_of(exc: BaseException) -> str:
    """The AWS error code of ``exc`` or of the SDK error it was translated from."""
    return error_code(exc) or (error_code(exc.__cause__) if exc.__cause__ else "")


def is_iam_propagation(exc: BaseException) -> bool:
    """True for the errors AWS returns while a new instance profile has not propagated yet."""
    if code_of(exc) not in ("ValidationError", "InvalidParameterValue", "InvalidParameterCombination"):
        return False
    msg = str(exc).lower()
    return any(m in msg for m in IAM_PROPAGATION_MARKERS)


def is_throttle(exc: BaseException) -> bool:
    """Still throttled after botocore's own retries (a long delete can outlast them)."""
    from kopsy.cloud.aws.session import THROTTLE_CODES

    return code_of(exc) in THROTTLE_CODES


def is_server_error(exc: BaseException) -> bool:
    """AWS (or something in front of it) kept failing with a 5xx after botocore's own retries, or
    answered with a page botocore cannot parse: deletes, which are safe to repeat, keep trying."""
    from botocore.exceptions import ClientError
    from botocore.parsers import ResponseParserError  # a plain Exception, not a BotoCoreError

    for e in (exc, exc.__cause__):
        if isinstance(e, ResponseParserError):
            return True
        if isinstance(e, ClientError):
            return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0) >= 500
    return False


def is_dependency(exc: BaseException) -> bool:
    """AWS is still releasing something this resource needs gone first (retry until a deadline)."""
    return code_of(exc) in DEPENDENCY_CODES


def retry(
    fn: Callable[[], T],
    *,
    when: Callable[[BaseException], bool],
    timeout: float = 120.0,
    first_delay: float = 0.5,
    max_delay: float = 15.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Call ``fn``; while it raises an error ``when`` accepts, back off and retry until ``timeout``.

    The last error is re-raised unchanged once the deadline passes, so the caller's error
    translation still says what failed. ``on_retry(error)`` is told before each wait, so a
    caller can show that it is waiting rather than look stuck.
    """
    deadline = clock() + timeout
    delay = first_delay
    while True:
        try:
            return fn()
        except Exception as exc:
            if not when(exc):
                raise
            remaining = deadline - clock()
            if remaining <= 0:
                raise
            if on_retry is not None:
                on_retry(exc)
            sleep(min(delay * (0.5 + random.random() / 2), remaining))
            delay = min(delay * 2, max_delay)


class NotYet(CloudError):
    """Raised by a ``wait_until`` check while AWS has not finished; says what is still left."""


def wait_until(check: Callable[[], None], *, timeout: float, first_delay: float) -> None:
    """Poll ``check`` (which raises ``NotYet`` while the wait goes on) with backoff, bounded by
    ``timeout``; for what AWS does asynchronously, such as deleting a group or terminating instances."""
    retry(check, when=lambda e: isinstance(e, NotYet), timeout=timeout, first_delay=first_delay)

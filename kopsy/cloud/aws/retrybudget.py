"""A run-wide bound on how long kopsy keeps retrying a sick AWS endpoint.

botocore's retry modes bound each *call* (attempts with backoff), not the *run*: an endpoint
that throttles every call, or accepts connections and never answers, made one command retry
call after call for minutes, silently. ``RetryBudget`` watches every answer of every client of
a run: an answer that is not a failure (anything but a timeout, a connection error, a 5xx, a
429 or a throttling code) ends the bad streak. Once the endpoint has failed continuously for
``seconds``, no call is retried any more (each fails at its first attempt, with its own error),
and when the streak is made of timeouts no new request is even sent, so the command ends
within about ``seconds`` + one read timeout. botocore's own backoff sleeps up to 20 s between
attempts, so a sleep that began just inside the budget used to end far beyond it; near the edge
the budget picks the (jittered) sleep itself, never past the budget's end. While the streak lasts, ``on_wait`` is told what
kopsy is waiting for (the CLI prints it), at most every ``NOTE_EVERY`` seconds.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from kopsy.errors import CloudError

NOTE_EVERY = 10.0
BACKOFF_CAP = 20.0  # botocore's longest sleep between attempts (standard and adaptive modes)
THROTTLING = {
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "SlowDown", "TooManyRequestsException",
    "RequestThrottled", "RequestThrottledException", "EC2ThrottledException", "ProvisionedThroughputExceededException",
}


class EndpointUnresponsive(CloudError):
    """The endpoint stopped answering for longer than the run's retry budget."""


class RetryBudget:
    def __init__(
        self,
        seconds: float,
        endpoint: str = "the AWS endpoint",
        on_wait: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_attempts: int = 8,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.seconds = seconds
        self.max_attempts = max_attempts
        self._jitter = jitter
        self.endpoint = endpoint
        self.on_wait = on_wait
        self._clock = clock
        self._lock = threading.Lock()
        self._streak_start: float | None = None
        self._timeouts = False
        self._last_note = float("-inf")

    @staticmethod
    def _failure(response: Any, caught_exception: BaseException | None) -> str:
        """Why this answer counts as the endpoint failing ('' when it does not)."""
        if caught_exception is not None:
            name = type(caught_exception).__name__
            return f"no answer ({name})"
        if not response:
            return ""
        http, parsed = response
        status = getattr(http, "status_code", 200)
        code = str((parsed or {}).get("Error", {}).get("Code", "")) if isinstance(parsed, dict) else ""
        if code in THROTTLING:
            return f"throttled ({code})"
        if status == 429:
            return "throttled (HTTP 429)"
        if status >= 500:
            return f"server error (HTTP {status}{', ' + code if code else ''})"
        return ""

    def needs_retry(self, response: Any = None, caught_exception: BaseException | None = None,
                    operation: Any = None, attempts: int = 1, **_: Any) -> float | bool | None:
        """A ``needs-retry`` handler registered ahead of botocore's own: ``None`` lets botocore
        decide; ``False`` vetoes the retry once the budget is spent; a number is the sleep before
        the next attempt when botocore's could outlast the budget."""
        why = self._failure(response, caught_exception)
        now = self._clock()
        with self._lock:
            if not why:
                self._streak_start = None
                return None
            if self._streak_start is None:
                self._streak_start = now
            self._timeouts = caught_exception is not None
            spent = now - self._streak_start
            note = spent <= self.seconds and now - self._last_note >= NOTE_EVERY
            if note:
                self._last_note = now
        if note and self.on_wait is not None:
            what = f"{operation.service_model.service_name} {operation.name}" if operation is not None else "a call"
            self.on_wait(
                f"waiting for {self.endpoint}: {what}: {why}; retrying (gives up after {self.seconds:.0f} s without a good answer)"
            )
        if spent > self.seconds:
            return False
        return self._sleep_within(attempts, self.seconds - spent)

    def _sleep_within(self, attempts: int, remaining: float) -> float | None:
        """``None`` when botocore's longest sleep after attempt ``attempts`` (1-based: up to
        2**(attempts-1) s, capped, plus a retry-after allowance) ends inside the budget;
        otherwise a jittered sleep of the same shape that ends no later than the budget."""
        if attempts >= self.max_attempts:
            return None  # botocore stops here anyway
        longest = min(2.0 ** (attempts - 1), BACKOFF_CAP)
        if longest + 5.0 <= remaining:
            return None
        return min(self._jitter() * longest, remaining)

    def before_send(self, **_: Any) -> None:
        """A ``before-send`` handler: refuse to send once the endpoint has timed out for longer than the budget."""
        with self._lock:
            dead = self._streak_start is not None and self._timeouts and self._clock() - self._streak_start > self.seconds
        if dead:
            raise EndpointUnresponsive(
                f"{self.endpoint} has not answered for more than {self.seconds:.0f} s (connections time out); "
                f"gave up; check your network, AWS_ENDPOINT_URL or the AWS health dashboard, then re-run"
            )

    def attach(self, client: Any) -> None:
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register_first(f"needs-retry.{service}", self.needs_retry)
        client.meta.events.register_first(f"before-send.{service}", self.before_send)

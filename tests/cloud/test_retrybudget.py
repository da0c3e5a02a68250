"""The run-wide retry budget (kopsy/cloud/aws/retrybudget.py) against a throttling endpoint.

The clock and the jitter are the test's, so these cases are exact: botocore's own sleep after
attempt 5 can be 16 s, and a run that began it just inside a 6 s budget ended at ~21 s in CI.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kopsy.cloud.aws.retrybudget import RetryBudget

THROTTLED = (SimpleNamespace(status_code=400), {"Error": {"Code": "SlowDown"}})
GOOD = (SimpleNamespace(status_code=200), {})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def botocore_worst_sleep(attempts: int) -> float:
    """The longest sleep botocore's standard/adaptive backoff may pick after ``attempts``."""
    return min(2.0 ** (attempts - 1), 20.0)


def run_streak(budget: RetryBudget, clock: Clock, *, each_call: float = 0.05, max_attempts: int = 8) -> float:
    """Throttle one call until the budget or botocore stops retrying it; botocore always sleeps
    its longest when the budget lets it decide. Returns when the call ended."""
    attempts = 1
    while True:
        clock.now += each_call
        verdict = budget.needs_retry(response=THROTTLED, attempts=attempts)
        if verdict is False or (verdict is None and attempts >= max_attempts):
            return clock.now
        clock.now += botocore_worst_sleep(attempts) if verdict is None else float(verdict)
        attempts += 1


@pytest.mark.parametrize("seconds", [1.0, 6.0, 15.0, 60.0])
def test_no_sleep_ends_past_the_budget_even_when_botocore_would_sleep_its_longest(seconds: float) -> None:
    clock = Clock()
    budget = RetryBudget(seconds, clock=clock, max_attempts=1000, jitter=lambda: 1.0)
    started = clock.now
    ended = run_streak(budget, clock, max_attempts=1000)
    # the first call (before the streak began), the budget, and the one call that found it spent
    assert ended - started <= 0.05 + seconds + 0.05 + 1e-9


def test_botocore_keeps_its_own_backoff_while_the_budget_is_far_off() -> None:
    clock = Clock()
    budget = RetryBudget(60.0, clock=clock, jitter=lambda: 1.0)
    assert budget.needs_retry(response=THROTTLED, attempts=1) is None
    clock.now += 10
    assert budget.needs_retry(response=THROTTLED, attempts=3) is None


def test_near_the_edge_the_budget_picks_a_jittered_sleep_that_ends_inside_it() -> None:
    clock = Clock()
    budget = RetryBudget(6.0, clock=clock, jitter=lambda: 0.5)
    assert budget.needs_retry(response=THROTTLED, attempts=1) is None  # the streak starts
    clock.now += 4.0
    sleep = budget.needs_retry(response=THROTTLED, attempts=4)  # botocore could sleep 8 s
    assert sleep == pytest.approx(2.0)  # min(0.5 * 8, 6 - 4)
    clock.now += 2.5
    assert budget.needs_retry(response=THROTTLED, attempts=5) is False


def test_a_good_answer_ends_the_streak_and_the_last_attempt_stays_botocores() -> None:
    clock = Clock()
    budget = RetryBudget(6.0, clock=clock, max_attempts=3, jitter=lambda: 1.0)
    budget.needs_retry(response=THROTTLED, attempts=1)
    clock.now += 5.5
    assert budget.needs_retry(response=GOOD, attempts=1) is None
    clock.now += 1.0
    assert budget.needs_retry(response=THROTTLED, attempts=1) is None  # a new streak: 6 s again
    assert budget.needs_retry(response=THROTTLED, attempts=3) is None  # botocore's max_attempts stops it

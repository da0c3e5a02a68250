"""maxSurge / maxUnavailable: parse ``N`` or ``P%`` and scale them to a group's size as kops does.

kops (``pkg/instancegroups/settings.go``) scales a percentage of the group's desired size,
rounding **up** for maxSurge and **down** for maxUnavailable; when both come out 0, one
instance may be unavailable (a roll must make progress). Surge never exceeds the instances
that need replacing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kopsy.errors import UsageError
from kopsy.spec.model import int_or_percent_problem

DEFAULT_MAX_SURGE = "1"  # kops on AWS
DEFAULT_MAX_UNAVAILABLE = "0"


def check(value: str, flag: str) -> str:
    """``value`` if it is ``N`` or ``P%`` (0-100), else a ``UsageError`` naming ``flag``."""
    problem = int_or_percent_problem(value)
    if problem:
        raise UsageError(f"{flag}: {problem}")
    return str(value).strip()


def scale(value: str, desired: int, *, round_up: bool) -> int:
    """An ``N``/``P%`` value as a number of instances of a group of ``desired``."""
    text = check(value, "value")
    if text.endswith("%"):
        exact = int(text[:-1]) * desired / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(text)


@dataclass(frozen=True)
class Budget:
    surge: int  # instances detached at once (replacements launch before anything is drained)
    unavailable: int  # instances out of service at once, beyond the surged ones

    @property
    def batch(self) -> int:
        return self.surge + self.unavailable


def budget(max_surge: str, max_unavailable: str, desired: int, to_replace: int, *, control_plane: bool = False) -> Budget:
    """The batch a group rolls in. Control planes are never surged and go one at a time: each
    holds an etcd member, and a surged one would join etcd before the old one left."""
    if control_plane:
        return Budget(0, 1)
    surge = min(scale(max_surge, desired, round_up=True), max(to_replace, 0))
    unavailable = scale(max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return Budget(surge, unavailable)

"""What a roll reports while it runs, and how long it thinks it has left.

The engine emits ``Event`` values through a callback; the CLI renders them on stderr. The
estimate is the mean batch cycle (detach or terminate -> replacements validated) seen so far,
times the batches left, so it adapts to the boot times this cluster actually has.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    step: str  # group, mark, detach, cordon, deregister, drain, etcd, terminate, wait, validate, batch-done, warning, done
    group: str
    message: str
    instance: str = ""
    node: str = ""
    batch: str = ""  # "2/3" within its group
    eta: float | None = None  # seconds left for the whole run, when known


@dataclass
class Estimator:
    cycles: list[float] = field(default_factory=list)

    def record(self, seconds: float) -> None:
        self.cycles.append(seconds)

    def left(self, batches: int) -> float | None:
        if not self.cycles:
            return None
        return sum(self.cycles) / len(self.cycles) * max(batches, 0)


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "estimating"
    s = int(round(seconds))
    return f"~{s // 60}m{s % 60:02d}s left" if s >= 60 else f"~{s}s left"

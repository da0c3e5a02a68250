"""``[fn(x) for x in items]`` with independent calls overlapped: the one home of kopsy's fan-out.

Reads that do not depend on each other (a few describes, the objects of a state-store prefix)
should cost one round trip, not one each. Order is kept, and every call finishes before the
first error (in item order) is raised, so nothing is left running behind the caller's back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# The most calls a command has in flight at once: what each botocore client keeps connections
# for (kopsy/cloud/aws/session.py), and so the widest fan-out worth having (a cluster's objects
# read at once, the changes applied at once).
MAX_IN_FLIGHT = 32


def parallel(fn: Callable[[Any], Any], items: Sequence[Any], workers: int = 4, name: str = "parallel") -> list[Any]:
    """``fn`` over ``items`` on at most ``workers`` threads; results in item order."""
    if len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix=name) as pool:
        futures = [pool.submit(fn, x) for x in items]
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    if errors:
        raise errors[0]
    return [f.result() for f in futures]

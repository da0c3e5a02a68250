"""The two paths that make a kind's calls safe to repeat, one home for every kind.

- **Already done.** A retried or re-run call can meet its own earlier success: a delete finds
  the resource gone, an attach finds it attached. ``tolerate`` turns exactly those error codes
  into "done"; any other error still raises.
- **Adopt only what is ours.** A create whose first answer was lost (a crash, a timeout) fails
  the second time with "already exists". ``create_or_adopt`` then looks the resource up and
  takes it over only if it carries kopsy's mark for this cluster (``tags.is_managed``): kopsy
  tags at creation, so a crashed earlier run's resource always does. A same-named resource of
  another cluster, a user's or one Kubernetes' controllers made is refused with a clear error,
  never silently made the cluster's (``delete`` would then remove it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.session import error_code
from kopsy.errors import CloudError

_R = TypeVar("_R")


def tolerate(call: Callable[[], Any], *codes: str) -> Any:
    """Run ``call()``; an error with one of ``codes`` means an earlier attempt already did it,
    so it counts as done (returns None)."""
    try:
        return call()
    except Exception as exc:
        if error_code(exc) in codes:
            return None
        raise


def refuse_unless_ours(what: str, name: str, tags: Mapping[str, str], cluster: str) -> None:
    """Raise unless ``tags`` mark the resource as kopsy's for ``cluster``."""
    if not T.is_managed(tags, cluster):
        raise CloudError(
            f"{what} {name} already exists but is not owned by cluster {cluster} (it lacks kopsy's tags "
            f"{T.ownership_key(cluster)}={T.OWNED} and {T.TAG_CLUSTER}={cluster}); "
            f"kopsy will not take it over: rename or remove it, then re-run"
        )


def create_or_adopt(
    create: Callable[[], _R],
    exists: tuple[str, ...],
    lookup: Callable[[], tuple[_R, Mapping[str, str]]],
    *,
    what: str,
    name: str,
    cluster: str,
) -> tuple[_R, bool]:
    """``(create(), False)``; or, when it fails with one of the ``exists`` codes, the existing
    resource from ``lookup()`` (which returns it with its tags) and True, if it is ours."""
    try:
        return create(), False
    except Exception as exc:
        if error_code(exc) not in exists:
            raise
        found, tags = lookup()
        refuse_unless_ours(what, name, tags, cluster)
        return found, True


"""The state-store interface: a flat key space of small objects with optimistic concurrency.

Backends (``s3.py``, ``file.py``) implement ``ObjectStore``. Every key is relative to the store
root (``s3://bucket/prefix`` or ``file:///path``), e.g. ``demo.example.com/config``. The layout
of what lives under a cluster is documented in ``state/README.md`` at the top of the repository.

Concurrency rules, the same for every backend:
- ``create`` never overwrites: it raises ``ObjectExists`` when the key is there (S3: ``IfNoneMatch='*'``).
- ``replace`` writes only if the object still has the ETag that was read: else ``WriteConflict``
  (S3: ``IfMatch=<etag>``).
- ``delete`` with an ``etag`` removes the object only if it still has that ETag (a lock holder
  releasing its own lock must never remove a lock somebody else took over).

ETags are opaque strings: pass back exactly what ``get``/``create``/``replace`` returned.
"""

from __future__ import annotations

import abc
import builtins
import datetime
import re
from dataclasses import dataclass

from kopsy.errors import StateStoreError

# One path segment of a key: no '.'/'..', no hidden names (backends keep their own
# bookkeeping files under names starting with '.'), no control characters. ':' may follow the
# first character: etcd snapshots are named by RFC 3339 time (backups/etcd/2026-12-02T01:00:00Z/).
_SEGMENT = re.compile(r"^[A-Za-z0-9_@+=,-][A-Za-z0-9_.@+=,:-]*$")


def check_key(key: str) -> str:
    """Refuse keys that could escape the store root or collide with backend bookkeeping.

    Why: a cluster or instance-group name typed by a user ends up in a key; on a file store
    ``../x`` would otherwise write outside the store.
    """
    parts = key.split("/")
    if not key or any(not _SEGMENT.fullmatch(p) for p in parts):
        raise StateStoreError(
            f"invalid state-store key {key!r}: use '/'-separated names of letters, digits and .-_@+=,: "
            f"(no empty, '.' or '..' parts, none starting with '.')"
        )
    return key


def is_valid_key(key: str) -> bool:
    """Whether ``check_key`` accepts ``key`` (listings skip what it does not: foreign objects)."""
    parts = key.split("/")
    return bool(key) and all(_SEGMENT.fullmatch(p) for p in parts)


@dataclass(frozen=True)
class StoredObject:
    key: str
    data: bytes
    etag: str
    modified: datetime.datetime | None = None  # when it was last written, where the backend knows


class ObjectStore(abc.ABC):
    """One state store. Implementations must be safe to use from several threads."""

    url: str  # the store's URL as the user gave it, normalised (no trailing slash)

    @abc.abstractmethod
    def get(self, key: str) -> StoredObject:
        """Read one object; raises ``ObjectNotFound``."""

    @abc.abstractmethod
    def create(self, key: str, data: bytes) -> str:
        """Write a new object and return its ETag; raises ``ObjectExists`` if the key is taken."""

    @abc.abstractmethod
    def replace(self, key: str, data: bytes, etag: str) -> str:
        """Overwrite an object only if its ETag is still ``etag``; raises ``WriteConflict`` (or ``ObjectNotFound``)."""

    @abc.abstractmethod
    def delete(self, key: str, etag: str | None = None) -> None:
        """Remove an object; removing a missing one is not an error.

        With ``etag``, remove it only if it still has that ETag, else raise ``WriteConflict``."""

    def delete_many(self, keys: builtins.list[str]) -> None:
        """Remove several objects (missing ones are not an error), overlapped: one round trip, not
        one per object. Stores with a batch API override it. Every delete is attempted before the
        first error is raised (``Executor.map`` would cancel the ones not yet started)."""
        from kopsy.parallel import parallel

        parallel(self.delete, keys, workers=16, name="store-delete")

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix`` (recursive), sorted."""

    def list_etags(self, prefix: str = "") -> dict[str, str]:
        """Every key under ``prefix`` with its current ETag. Stores whose listing carries ETags
        (S3) override it with one listing; this fallback reads each object."""
        return {key: self.get(key).etag for key in self.list(prefix)}

    def etag_for(self, data: bytes) -> str | None:
        """The ETag an object holding exactly ``data`` has, where the store makes it a function of
        the bytes; ``None`` where it does not (then only reading the object tells)."""
        return None

    def check(self) -> builtins.list[str]:
        """Verify the store is reachable (raise ``StateStoreError`` if not) and return warnings
        for the user (e.g. an S3 bucket without versioning or default encryption)."""
        return []

    def url_for(self, key: str) -> str:
        return f"{self.url}/{key}"

"""Clusters in a state store: the layout under ``<cluster>/`` and the cluster lock.

Layout (documented for humans in ``state/README.md``)::

    <cluster>/config                  Cluster document (YAML)
    <cluster>/instancegroup/<name>    InstanceGroup documents (YAML)
    <cluster>/pki/... secrets/... ssh/public/admin   written once by ``create_cluster``
    <cluster>/lock                    lease lock (JSON) held by mutating commands
    <cluster>/removed/instancegroup/<name>   removal record (JSON) written by ``delete instancegroup``

Specs are read and written with their ETag so that two people editing at once get a conflict
instead of a lost write. Anything unreadable in the store is reported with its key, never as a
traceback: the store may have been edited by hand or by another kopsy version.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from kopsy.errors import (
    ClusterExists,
    ClusterNotFound,
    KopsyError,
    LockHeld,
    ObjectExists,
    ObjectNotFound,
    SpecInvalid,
    StateStoreError,
    WriteConflict,
)
from kopsy.parallel import MAX_IN_FLIGHT, parallel
from kopsy.spec.model import (
    Cluster,
    InstanceGroup,
    cluster_from_dict,
    cluster_to_dict,
    instance_group_from_dict,
    instance_group_to_dict,
)
from kopsy.state.base import ObjectStore, StoredObject, check_key, is_valid_key
from kopsy.text import printable

CONFIG = "config"
INSTANCE_GROUP_DIR = "instancegroup"
LOCK = "lock"
REMOVED_DIR = "removed/instancegroup"  # <cluster>/removed/instancegroup/<name>: consent to delete a group's resources
# <cluster>/cache/reads.json: copies of the small, non-secret objects ``update`` reads every run
# (the spec, the admin SSH public key, pki/verified.json), each used only while the listing shows
# the ETag its bytes give (``ClusterStore.listing``): one read instead of one per object.
READ_CACHE = "cache/reads.json"


def _cacheable(relkey: str) -> bool:
    """What ``READ_CACHE`` may hold: never a key, token or snapshot."""
    return relkey in (CONFIG, "pki/verified.json") or relkey.startswith((INSTANCE_GROUP_DIR + "/", "ssh/public/"))
DEFAULT_LEASE_SECONDS = 600.0
_ACQUIRE_ATTEMPTS = 5
_WORKERS = MAX_IN_FLIGHT  # parallel reads of one cluster's objects


@dataclass(frozen=True)
class Listing:
    """One listing of a cluster's objects (relkey -> ETag), taken once by a command that reads
    several parts of the cluster (``update``): the instance groups, the removal records and which
    published objects are current all come from it instead of a listing or a read each. Only
    valid while the command holds the cluster lock (or is read-only): nothing else writes then.

    ``cached``: objects the read cache (``READ_CACHE``) holds with exactly the listed bytes;
    ``read``: cacheable objects this run read or wrote itself (what ``save_reads`` keeps)."""

    cluster: str
    etags: dict[str, str]
    cached: dict[str, bytes] = field(default_factory=dict)
    cache_etag: str | None = None
    read: dict[str, bytes] = field(default_factory=dict)

    def under(self, folder: str) -> list[str]:
        """Names directly in ``folder`` (``instancegroup`` -> group names), sorted."""
        return _names_in(self.etags, folder)


def _cache_bytes(copies: dict[str, bytes]) -> bytes:
    """``READ_CACHE``'s content for ``copies`` (relkey -> bytes)."""
    doc = {rel: base64.b64encode(data).decode() for rel, data in sorted(copies.items())}
    return (json.dumps(doc, indent=0, sort_keys=True) + "\n").encode()


def _cache_entries(data: bytes) -> dict[str, bytes]:
    """``READ_CACHE``'s copies (relkey -> bytes); nothing for a missing or damaged cache."""
    try:
        doc = json.loads(data) if data else {}
        return {str(k): base64.b64decode(v, validate=True) for k, v in doc.items()} if isinstance(doc, dict) else {}
    except (ValueError, TypeError, AttributeError):
        return {}


def _names_in(relkeys: Iterable[str], folder: str) -> list[str]:
    start = folder.rstrip("/") + "/"
    return sorted(k[len(start):] for k in relkeys if k.startswith(start) and "/" not in k[len(start):])


class LockLost(StateStoreError):
    """Our lease was removed or taken over while we held it (force-unlocked, or we stalled past expiry)."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def format_time(t: datetime) -> str:
    """ISO 8601 UTC with milliseconds and a Z, e.g. 2026-11-22T00:12:36.123Z."""
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Inverse of ``format_time`` (Python 3.10's fromisoformat does not take a Z)."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def local_identity() -> tuple[str, str, int]:
    """(user@host, host, pid) of this process, shown to whoever finds the lock taken.

    Uses the password database, not $USER, so nothing here reads the environment.
    """
    host = socket.gethostname()
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = f"uid{os.getuid()}"
    return f"{user}@{host}", host, os.getpid()


class Lease:
    """A held cluster lock: renewed by a daemon thread until ``release``.

    ``lost`` turns true if the renewal finds the lock gone or taken over; long operations
    can call ``check()`` between steps to stop rather than carry on unprotected.
    """

    def __init__(self, store: ObjectStore, cluster: str, doc: dict[str, Any], etag: str, lease_seconds: float) -> None:
        self.store = store
        self.cluster = cluster
        self.key = f"{cluster}/{LOCK}"
        self.doc = doc
        self.etag = etag
        self.lease_seconds = lease_seconds
        self.lost = False
        self.released = False
        self.renewals = 0
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name=f"kopsy-lock-{cluster}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def check(self) -> None:
        if self.lost:
            raise LockLost(
                f'lost the lock on cluster "{self.cluster}" (someone force-unlocked it or took it over); '
                f"stop and re-run the command when they are done"
            )

    def renew(self) -> None:
        """Push ``expires`` a full lease into the future (replace-with-etag: fails if not ours)."""
        with self._mutex:
            if self.lost:
                return
            doc = dict(self.doc, expires=format_time(_now() + timedelta(seconds=self.lease_seconds)))
            data = _lock_bytes(doc)
            try:
                self.etag = self.store.replace(self.key, data, self.etag)
            except (WriteConflict, ObjectNotFound):
                self.lost = True
                return
            self.doc = doc
            self.renewals += 1

    def _renew_loop(self) -> None:
        interval = max(self.lease_seconds / 3.0, 0.01)
        while not self._stop.wait(interval):
            try:
                self.renew()
            except KopsyError:
                continue  # transient (network, throttling): the lease still has 2/3 left; try again
            if self.lost:
                return

    def release(self) -> None:
        """Stop renewing and delete the lock, only if it is still ours (once: releasing again is a no-op)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)
        with self._mutex:
            if self.lost or self.released:
                return
            try:
                self.store.delete(self.key, etag=self.etag)
                self.released = True
            except WriteConflict:
                self.lost = True  # taken over after we stalled: leave the new holder's lock alone


def _lock_bytes(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def _problem(exc: SpecInvalid) -> str:
    first = exc.problems[0] if exc.problems else str(exc)
    return first[2:] if first.startswith(": ") else first  # top-level problems have an empty path


def _yaml_bytes(doc: dict[str, Any]) -> bytes:
    import yaml  # not at the top: a command's first call (the lock) needs none of it

    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False).encode()


class ClusterStore:
    """Cluster specs, instance groups, PKI objects and the lock in one ``ObjectStore``."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        on_warning: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.on_warning = on_warning  # told about foreign keys that were skipped (the CLI prints them)
        self.warnings: list[str] = []
        self._held: dict[str, tuple[Lease, int]] = {}
        self._held_mutex = threading.Lock()
        self._writing: list[threading.Thread] = []  # save_reads(wait=False) still running

    def _warn(self, message: str) -> None:
        with self._held_mutex:
            if message in self.warnings:
                return
            self.warnings.append(message)
        if self.on_warning is not None:
            self.on_warning(message)

    def _foreign(self, keys: list[str], where: str) -> list[str]:
        """``keys`` without the ones kopsy could never have written (a space, a hidden or empty
        part, a control character): one stray object, e.g. ``Stray Folder/config``, must not break
        commands for every cluster in the bucket. Each skipped key is named in a warning."""
        kept = []
        for key in keys:
            if is_valid_key(key):
                kept.append(key)
            else:
                self._warn(f"ignoring {printable(self._where(key))!s} {where}: not a kopsy key (names are letters, digits and .-_@+=,)")
        return kept

    # --- keys and parsing ------------------------------------------------------------------------

    def _key(self, cluster: str, rel: str) -> str:
        if not cluster or "/" in cluster:
            raise StateStoreError(f"invalid cluster name {cluster!r}: a cluster name has no '/'")
        return check_key(f"{cluster}/{rel}")

    def _prefix(self, cluster: str) -> str:
        """``<cluster>/``: everything of one cluster (checked like a key)."""
        return self._key(cluster, CONFIG)[: -len(CONFIG)]

    def _where(self, key: str) -> str:
        return self.store.url_for(key)

    @property
    def url(self) -> str:
        """The store's URL (``s3://bucket[/prefix]`` or ``file:///path``)."""
        return self.store.url

    def url_for(self, cluster: str, rel: str = "") -> str:
        """The URL of a cluster's prefix (``configBase``), or of one of its objects, for messages."""
        return self._where(self._key(cluster, rel) if rel else self._prefix(cluster).rstrip("/"))

    def _load_yaml(self, key: str, data: bytes) -> Any:
        import yaml

        from kopsy.localfiles import KIB, SPEC_FILE_LIMIT
        from kopsy.spec.yamlsafe import load_one

        if len(data) > SPEC_FILE_LIMIT:
            raise StateStoreError(
                f"{self._where(key)} is {len(data)} bytes, more than a spec document may be ({SPEC_FILE_LIMIT // KIB} KiB); "
                f"it was damaged in the store: restore an earlier version (S3 versioning) or fix it by hand"
            )
        try:
            return load_one(data.decode("utf-8"))
        except RecursionError:
            raise StateStoreError(f"{self._where(key)} is nested too deeply to be a spec; restore an earlier version") from None
        except (UnicodeDecodeError, yaml.YAMLError) as exc:
            detail = str(exc)
            if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
                mark = exc.problem_mark
                detail = f"{exc.problem} at line {mark.line + 1}" if mark else exc.problem
            raise StateStoreError(
                f"{self._where(key)} is not valid YAML ({detail}); it was damaged in the store: restore an "
                f"earlier version (S3 versioning) or fix it by hand"
            ) from exc

    def _parse_cluster(self, name: str, key: str, data: bytes) -> Cluster:
        doc = self._load_yaml(key, data)
        try:
            cluster = cluster_from_dict(doc)
        except SpecInvalid as exc:
            raise StateStoreError(f"{self._where(key)} is not a valid Cluster document: {_problem(exc)}") from exc
        if cluster.name != name:
            raise StateStoreError(
                f"{self._where(key)} names cluster {cluster.name!r} but is stored under {name!r}; fix the store by hand"
            )
        return cluster

    def _parse_instance_group(self, cluster: str, key: str, data: bytes) -> InstanceGroup:
        doc = self._load_yaml(key, data)
        try:
            ig = instance_group_from_dict(doc, cluster_name=cluster)
        except SpecInvalid as exc:
            raise StateStoreError(
                f"{self._where(key)} is not a valid InstanceGroup document: {_problem(exc)}"
            ) from exc
        expected = key.rsplit("/", 1)[-1]
        if ig.name != expected or ig.cluster_name != cluster:
            raise StateStoreError(
                f"{self._where(key)} holds instance group {ig.name!r} of cluster {ig.cluster_name!r}; "
                f"expected {expected!r} of {cluster!r}; fix the store by hand"
            )
        return ig

    # --- clusters --------------------------------------------------------------------------------

    def list_clusters(self) -> list[str]:
        """Names of clusters that have a config object, sorted."""
        names = []
        for key in self._foreign(self.store.list(), "in the state store"):
            parts = key.split("/")
            if len(parts) == 2 and parts[1] == CONFIG:
                names.append(parts[0])
        return sorted(names)

    def get_cluster(self, name: str, listing: Listing | None = None) -> tuple[Cluster, str]:
        key = self._key(name, CONFIG)
        try:
            obj = self._get(name, CONFIG, listing)
        except ObjectNotFound as exc:
            raise ClusterNotFound(name, self.list_clusters()) from exc
        return self._parse_cluster(name, key, obj.data), obj.etag

    def create_cluster(self, cluster: Cluster, igs: list[InstanceGroup], objects: dict[str, bytes]) -> None:
        """Write a new cluster: config first (it claims the name), then groups and objects.

        Every write is create-never-overwrite. On any failure the objects this call wrote are
        removed again, so a failed create leaves the store as it found it.
        """
        name = cluster.name
        writes: list[tuple[str, bytes]] = []
        for ig in igs:
            if ig.cluster_name != name:
                raise StateStoreError(
                    f'instance group "{ig.name}" belongs to cluster "{ig.cluster_name}", not "{name}"'
                )
            writes.append((self._key(name, f"{INSTANCE_GROUP_DIR}/{ig.name}"), _yaml_bytes(instance_group_to_dict(ig))))
        for rel, data in sorted(objects.items()):
            if rel == LOCK or rel == CONFIG or rel.startswith(INSTANCE_GROUP_DIR + "/"):
                raise StateStoreError(f"object {rel!r} would collide with the cluster layout")
            writes.append((self._key(name, rel), bytes(data)))
        config_key = self._key(name, CONFIG)
        config = _yaml_bytes(cluster_to_dict(cluster))
        prefix = self._prefix(name)
        cacheable = {CONFIG: config, **{k[len(prefix):]: d for k, d in writes if _cacheable(k[len(prefix):])}}
        writes.append((self._key(name, READ_CACHE), _cache_bytes(cacheable)))  # the first update reads one object
        try:
            self.store.create(config_key, config)
        except ObjectExists as exc:
            raise ClusterExists(name) from exc
        written = [config_key]
        try:
            for key, data in writes:
                try:
                    self.store.create(key, data)
                except ObjectExists as exc:
                    raise StateStoreError(
                        f"{self._where(key)} is left over from an earlier cluster named {name}; nothing was "
                        f"created; remove the leftovers with 'kopsy delete cluster {name} --unregister --yes'"
                    ) from exc
                written.append(key)
        except BaseException:
            for key in reversed(written):
                try:
                    self.store.delete(key)
                except KopsyError:
                    pass  # best effort: the original error is the one to report
            raise

    def replace_cluster(self, cluster: Cluster, etag: str, listing: Listing | None = None) -> str:
        key = self._key(cluster.name, CONFIG)
        data = _yaml_bytes(cluster_to_dict(cluster))
        try:
            written = self.store.replace(key, data, etag)
        except WriteConflict as exc:
            raise WriteConflict(
                key,
                f'cluster "{cluster.name}" was changed by someone else since it was read; nothing was '
                f"written; re-read it and apply your change again",
            ) from exc
        except ObjectNotFound as exc:
            raise ClusterNotFound(cluster.name, self.list_clusters()) from exc
        self._wrote(listing, CONFIG, data, written)
        return written

    def cluster_keys(self, name: str) -> list[str]:
        """Every key under ``<name>/``, as ``delete_cluster_state`` takes them."""
        return self.store.list(self._prefix(name))

    def delete_cluster_state(self, name: str, keys: list[str] | None = None) -> None:
        """Remove everything under ``<name>/``: config last, so an interrupted delete can be re-run.

        The other objects go in one batch (a cluster has 14-25 of them: one round trip instead of
        one each), with the lock; config is removed only once every one of them is gone, so a
        failure or a kill leaves the cluster listed and a re-run finishes the job. ``keys``, from
        ``cluster_keys``, spares the listing's round trip when the caller listed while it waited
        for something else, after the last writer (a node's etcd backup) was gone.
        """
        if keys is None:
            keys = self.cluster_keys(name)
        if not keys:
            raise ClusterNotFound(name, self.list_clusters())
        keys = self._foreign(keys, "(left in place)")
        config_key, lock_key = self._key(name, CONFIG), self._key(name, LOCK)
        with self._held_mutex:
            held = self._held.get(name)
        others = [k for k in keys if k not in (config_key, lock_key)]
        if held is not None:
            # Our own lock goes in the same round trip as the other objects (the lock block's
            # release then has nothing left to do); config, which makes the cluster findable for
            # a re-run, still goes last, alone.
            parallel(lambda f: f(), [lambda: self.store.delete_many(others), held[0].release], name="state")
        else:
            self.store.delete_many(others + ([lock_key] if lock_key in keys else []))
        self.store.delete(config_key)

    def get_object(self, cluster: str, relkey: str) -> bytes:
        """One object of the cluster, e.g. ``pki/ca.crt``."""
        return self.store.get(self._key(cluster, relkey)).data

    def read_object(self, cluster: str, relkey: str, listing: Listing | None = None) -> StoredObject | None:
        """One object of the cluster with its ETag, None when it is missing (with ``listing``:
        missing from it, and served from its read cache where that holds the listed bytes)."""
        try:
            return self._get(cluster, relkey, listing)
        except ObjectNotFound:
            return None

    def _get(self, cluster: str, relkey: str, listing: Listing | None) -> StoredObject:
        key = self._key(cluster, relkey)
        if listing is None:
            return self.store.get(key)
        etag = listing.etags.get(relkey)
        if etag is None:
            raise ObjectNotFound(key, f"{self._where(key)} not found in the state store")
        data = listing.cached.get(relkey)
        if data is not None:
            return StoredObject(key=key, data=data, etag=etag)
        obj = self.store.get(key)
        if _cacheable(relkey):
            listing.read[relkey] = obj.data
        return obj

    def listing(self, cluster: str, *, cached: bool = False) -> Listing:
        """Every object of ``cluster`` with its ETag, in one listing (foreign keys skipped).
        ``cached``: also read ``READ_CACHE`` in the same round trip, and keep each copy whose
        bytes give the listed ETag (``etag_for``); a store whose ETags say nothing about the
        bytes (S3 under KMS) gets no use of it, and a damaged cache is only ignored."""
        prefix = self._prefix(cluster)
        self.settle()  # this store's own cache write lands before it is read back
        if cached:
            found, cache = parallel(lambda f: f(), [lambda: self.store.list_etags(prefix),
                                                    lambda: self.read_object(cluster, READ_CACHE)], name="state")
        else:
            found, cache = self.store.list_etags(prefix), None
        kept = self._foreign(sorted(found), f"in cluster {cluster}")
        etags = {k[len(prefix):]: found[k] for k in kept}
        copies: dict[str, bytes] = {}
        for relkey, data in _cache_entries(cache.data if cache else b"").items():
            if _cacheable(relkey) and relkey in etags and self.store.etag_for(data) == etags[relkey]:
                copies[relkey] = data
        return Listing(cluster, etags, copies, cache.etag if cache else None)

    def save_reads(self, listing: Listing, *, wait: bool = True) -> None:
        """Keep what this run had to read (or wrote) in ``READ_CACHE`` for the next run; nothing
        when everything came from the cache. Best effort, conditional on the cache read: it is
        only a cache. ``wait`` False writes it on a thread, beside the calls that follow (one
        latency period fewer on ``update``'s path); ``settle`` waits for it, and so do the next
        ``listing`` and the release of a lock this store holds."""
        if not listing.read:
            return
        data = _cache_bytes({r: d for r, d in {**listing.cached, **listing.read}.items() if r in listing.etags})

        def write() -> None:
            try:
                self.write_object(listing.cluster, READ_CACHE, data, listing.cache_etag)
            except KopsyError:
                pass

        if wait:
            write()
            return
        thread = threading.Thread(target=write, name=f"kopsy-cache-{listing.cluster}")
        with self._held_mutex:
            self._writing.append(thread)
        thread.start()

    def settle(self) -> None:
        """Wait for the cache writes started with ``save_reads(wait=False)``."""
        with self._held_mutex:
            writing, self._writing = self._writing, []
        for thread in writing:
            thread.join()

    def differs(self, cluster: str, relkey: str, data: bytes, listing: Listing) -> tuple[bool, str | None]:
        """Whether ``relkey`` is missing or holds other bytes than ``data``, and the ETag a
        conditional write must replace (None: missing). The listed ETag settles it without a read
        when the store's ETags are a function of the bytes (``etag_for``: S3's MD5 for objects
        written in one PutObject without KMS, the file store's sha256); otherwise the object is
        read and compared. What the ETag vouches for is only "unchanged, skip the write": what
        instances run is checked against the sha256 their user-data pins."""
        etag = listing.etags.get(relkey)
        if etag is None:
            return True, None
        if etag == self.store.etag_for(data):
            return False, etag
        current = self.read_object(cluster, relkey)
        if current is None:
            return True, None
        return current.data != data, current.etag

    def write_object(self, cluster: str, relkey: str, data: bytes, etag: str | None, listing: Listing | None = None) -> str:
        """Create ``relkey`` (``etag`` None: it must not exist yet) or replace the version read
        with ``etag``; a concurrent writer in between is a conflict, never a lost write.
        ``listing``: the run's listing, kept current (and its read cache told)."""
        key = self._key(cluster, relkey)
        new = self.store.create(key, data) if etag is None else self.store.replace(key, data, etag)
        if listing is not None:
            listing.etags[relkey] = new
            if _cacheable(relkey):
                listing.read[relkey] = data
        return new

    # --- instance groups -------------------------------------------------------------------------

    def _ig_key(self, cluster: str, ig: str) -> str:
        if not ig or "/" in ig:
            raise StateStoreError(f"invalid instance group name {ig!r}")
        return self._key(cluster, f"{INSTANCE_GROUP_DIR}/{ig}")

    def _ig_not_found(self, cluster: str, ig: str, key: str) -> KopsyError:
        groups = self._ig_names(cluster)
        known = f"; instance groups: {', '.join(groups)}" if groups else ""
        return ObjectNotFound(key, f'instance group "{ig}" not found in cluster "{cluster}"{known}')

    def _ig_names(self, cluster: str, listing: Listing | None = None) -> list[str]:
        if listing is not None:
            relkeys: Iterable[str] = listing.etags
        else:
            prefix = self._prefix(cluster)
            relkeys = [k[len(prefix):] for k in self._foreign(self.store.list(prefix), f"in cluster {cluster}")]
        if CONFIG not in relkeys:
            raise ClusterNotFound(cluster, self.list_clusters())
        return _names_in(relkeys, INSTANCE_GROUP_DIR)

    def list_instance_groups(self, name: str, listing: Listing | None = None) -> list[tuple[InstanceGroup, str]]:
        """Every instance group of a cluster with its ETag, sorted by name; unknown cluster → ClusterNotFound.
        ``listing``: the cluster's listing if the caller took one already (one round trip fewer)."""

        def read(ig: str) -> tuple[InstanceGroup, str] | None:
            key = self._ig_key(name, ig)
            try:
                obj = self._get(name, f"{INSTANCE_GROUP_DIR}/{ig}", listing)
            except ObjectNotFound:
                return None  # deleted between list and get
            return self._parse_instance_group(name, key, obj.data), obj.etag

        # In parallel: a cluster with many groups costs two round trips (list, gets), not one per
        # group; with a cached listing, none for the groups its cache holds.
        names = self._ig_names(name, listing)
        return [found for found in parallel(read, names, workers=_WORKERS, name="state") if found is not None]

    def read_spec(self, name: str) -> tuple[Listing, tuple[Cluster, str], list[tuple[InstanceGroup, str]]]:
        """The cluster's config and instance groups (with ETags), for a command that reads the
        whole spec: one listing and the read cache, then one round trip for what the cache lacks
        (instead of the config, a listing and the groups one after another). A command that
        changes the spec passes the listing to its writes and then to ``save_reads``, so the next
        ``update`` finds what it wrote in the cache instead of reading it object by object."""
        listing = self.listing(name, cached=True)
        config, groups = parallel(lambda f: f(), [lambda: self.get_cluster(name, listing),
                                                  lambda: self.list_instance_groups(name, listing)], name="state")
        return listing, config, groups

    @staticmethod
    def _wrote(listing: Listing | None, relkey: str, data: bytes, etag: str) -> None:
        """An object a command wrote, with the ETag the store gave it: the listing shows it as
        it now is, and ``save_reads`` keeps its bytes (with a listing to keep them in)."""
        if listing is not None and _cacheable(relkey):
            listing.etags[relkey] = etag
            listing.read[relkey] = data

    def get_instance_group(self, cluster: str, ig: str) -> tuple[InstanceGroup, str]:
        key = self._ig_key(cluster, ig)
        try:
            obj = self.store.get(key)
        except ObjectNotFound as exc:
            raise self._ig_not_found(cluster, ig, key) from exc
        return self._parse_instance_group(cluster, key, obj.data), obj.etag

    def create_instance_group(self, ig: InstanceGroup, listing: Listing | None = None) -> str:
        key = self._ig_key(ig.cluster_name, ig.name)
        if listing is None or CONFIG not in listing.etags:
            try:
                self.store.get(self._key(ig.cluster_name, CONFIG))
            except ObjectNotFound as exc:
                raise ClusterNotFound(ig.cluster_name, self.list_clusters()) from exc
        data = _yaml_bytes(instance_group_to_dict(ig))
        try:
            etag = self.store.create(key, data)
        except ObjectExists as exc:
            raise ObjectExists(
                key,
                f'instance group "{ig.name}" already exists in cluster "{ig.cluster_name}"; use '
                f'"kopsy edit instancegroup {ig.name}" or "kopsy replace -f FILE" to change it',
            ) from exc
        self._wrote(listing, f"{INSTANCE_GROUP_DIR}/{ig.name}", data, etag)
        # A group created again under a removed name is wanted: its old removal record goes.
        self.store.delete(self._removed_key(ig.cluster_name, ig.name))
        return etag

    def replace_instance_group(self, ig: InstanceGroup, etag: str, listing: Listing | None = None) -> str:
        key = self._ig_key(ig.cluster_name, ig.name)
        data = _yaml_bytes(instance_group_to_dict(ig))
        try:
            written = self.store.replace(key, data, etag)
        except WriteConflict as exc:
            raise WriteConflict(
                key,
                f'instance group "{ig.name}" of cluster "{ig.cluster_name}" was changed by someone else since '
                f"it was read; nothing was written; re-read it and apply your change again",
            ) from exc
        except ObjectNotFound as exc:
            raise self._ig_not_found(ig.cluster_name, ig.name, key) from exc
        self._wrote(listing, f"{INSTANCE_GROUP_DIR}/{ig.name}", data, written)
        return written

    def _removed_key(self, cluster: str, ig: str) -> str:
        if not ig or "/" in ig:
            raise StateStoreError(f"invalid instance group name {ig!r}")
        return self._key(cluster, f"{REMOVED_DIR}/{ig}")

    def delete_instance_group(self, cluster: str, ig: str, *, role: str = "", missing_ok: bool = False) -> bool:
        """Remove a group on purpose: record the removal, then delete its object.

        Why a record: ``update`` deletes a running group's launch template and Auto Scaling group
        only when the store says so explicitly; an object that is merely missing (a lifecycle
        rule, a short listing, a hand edit) is never taken as consent. The record is written
        first, so an interrupted removal leaves the group in place (a record is ignored while the
        group's object exists) and can be run again. ``missing_ok``: record the removal of a group
        whose object is already gone (else ``ObjectNotFound``). Returns whether the object existed.
        """
        key = self._ig_key(cluster, ig)
        try:
            self.store.get(key)
            existed = True
        except ObjectNotFound as exc:
            if not missing_ok:
                raise self._ig_not_found(cluster, ig, key) from exc
            existed = False
        holder, _, _ = local_identity()
        doc = {"kind": "InstanceGroupRemoval", "name": ig, "role": role, "removedBy": holder, "removed": format_time(_now())}
        record = self._removed_key(cluster, ig)
        try:
            self.store.create(record, _lock_bytes(doc))
        except ObjectExists:
            self.store.replace(record, _lock_bytes(doc), self.store.get(record).etag)
        if existed:
            self.store.delete(key)
        return existed

    def removed_instance_groups(self, cluster: str, listing: Listing | None = None) -> set[str]:
        """Names of groups with a removal record (``delete_instance_group``)."""
        if listing is not None:
            return set(listing.under(REMOVED_DIR))
        prefix = self._key(cluster, REMOVED_DIR) + "/"
        keys = self._foreign(self.store.list(prefix), f"in cluster {cluster}")
        return {k[len(prefix):] for k in keys if "/" not in k[len(prefix):]}

    def forget_removed(self, cluster: str, names: list[str]) -> None:
        """Drop removal records once their groups' resources are gone (``update --yes`` done)."""
        self.store.delete_many([self._removed_key(cluster, n) for n in names])

    # --- the lock --------------------------------------------------------------------------------

    def _read_lock(self, cluster: str) -> tuple[dict[str, Any], str] | None:
        key = self._key(cluster, LOCK)
        try:
            obj = self.store.get(key)
        except ObjectNotFound:
            return None
        try:
            doc = json.loads(obj.data.decode("utf-8"))
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            parse_time(str(doc["expires"]))
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            raise StateStoreError(
                f"{self._where(key)} is not a valid lock object ({exc}); if no kopsy command is working on "
                f'cluster "{cluster}", re-run with --force-unlock'
            ) from exc
        return doc, obj.etag

    def lock_holder(self, cluster: str) -> dict[str, Any] | None:
        """The lock object of a cluster (plus ``expired``: bool), or None when nobody holds it."""
        found = self._read_lock(cluster)
        if found is None:
            return None
        doc = dict(found[0])
        doc["expired"] = parse_time(str(doc["expires"])) <= _now()
        return doc

    @contextmanager
    def lock(
        self,
        cluster: str,
        operation: str,
        *,
        force_unlock: bool = False,
        lease_seconds: float | None = None,
    ) -> Iterator[Lease]:
        """Hold ``<cluster>/lock`` for the block; raises ``LockHeld`` if someone else holds it.

        Re-entrant within one ``ClusterStore`` (a command that locks and calls a helper that
        locks again shares the one lease).
        """
        with self._held_mutex:
            held = self._held.get(cluster)
            if held is not None:
                self._held[cluster] = (held[0], held[1] + 1)
        if held is not None:
            try:
                yield held[0]
            finally:
                with self._held_mutex:
                    lease, depth = self._held[cluster]
                    self._held[cluster] = (lease, depth - 1)
            return
        lease = self._acquire(cluster, operation, force_unlock, lease_seconds or self.lease_seconds)
        with self._held_mutex:
            self._held[cluster] = (lease, 1)
        try:
            yield lease
        finally:
            self.settle()  # nothing of this run is written after its lock is gone
            with self._held_mutex:
                del self._held[cluster]
            lease.release()

    def _acquire(self, cluster: str, operation: str, force_unlock: bool, lease_seconds: float) -> Lease:
        key = self._key(cluster, LOCK)
        if force_unlock:
            self.store.delete(key)
        holder, host, pid = local_identity()
        for _ in range(_ACQUIRE_ATTEMPTS):
            now = _now()
            doc = {
                "holder": holder,
                "host": host,
                "pid": pid,
                "operation": operation,
                "acquired": format_time(now),
                "expires": format_time(now + timedelta(seconds=lease_seconds)),
            }
            try:
                etag = self.store.create(key, _lock_bytes(doc))
            except ObjectExists:
                found = self._read_lock(cluster)
                if found is None:
                    continue  # released between our create and read: try again
                current, current_etag = found
                if parse_time(str(current["expires"])) > _now():
                    raise LockHeld(cluster, current) from None
                try:  # expired: its holder died or stalled; take it over, unless someone beats us
                    etag = self.store.replace(key, _lock_bytes(doc), current_etag)
                except (WriteConflict, ObjectNotFound):
                    continue
            lease = Lease(self.store, cluster, doc, etag, lease_seconds)
            lease.start()
            return lease
        raise StateStoreError(
            f'could not take the lock on cluster "{cluster}": it kept changing hands; try again in a moment'
        )

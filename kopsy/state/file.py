"""A state store in a local directory (``file:///abs/path``).

For one machine: a laptop, CI, the sandbox. Instances in the cloud cannot read it. It keeps the
same concurrency promises as S3 across processes on this host:

- ``create`` writes a temp file and ``os.link``\\s it into place, which fails if the name is
  taken: never an overwrite, never a half-written object.
- ``replace`` and conditional ``delete`` compare the ETag (sha256 of the content) while holding
  an exclusive ``flock`` on ``<root>/.kopsy-store.lock``, then ``os.replace`` the temp file, so
  of two racing writers exactly one wins.
- Readers never lock: renames are atomic, so a reader sees the old or the new object.

Objects are files with mode 0600 and directories 0700: the store holds private keys.
"""

from __future__ import annotations

import builtins
import datetime
import errno
import fcntl
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kopsy.errors import ObjectExists, ObjectNotFound, StateStoreError, WriteConflict
from kopsy.localfiles import MIB, STORE_OBJECT_LIMIT, LocalFileError, describe_mode, make_private_dirs
from kopsy.state.base import ObjectStore, StoredObject, check_key

_LOCK_NAME = ".kopsy-store.lock"
_TMP_PREFIX = ".kopsy-tmp-"


def content_etag(data: bytes) -> str:
    """The file store's ETag: it depends on the content only, so it survives a restart."""
    return hashlib.sha256(data).hexdigest()


class FileStore(ObjectStore):
    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url

    # --- helpers -------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        path = self.root.joinpath(*check_key(key).split("/"))
        # A folder on the way that is a symlink leading outside the store is refused, never
        # followed: reads and writes stay inside the store.
        root = os.path.realpath(self.root)
        parent = os.path.realpath(path.parent)
        if parent != root and not parent.startswith(root.rstrip("/") + "/"):
            raise StateStoreError(
                f"{self.url_for(key)}: a folder on its path is a symbolic link leading outside the store "
                f"(to {parent}); kopsy does not follow it; remove the link"
            )
        return path

    def _fail(self, what: str, key: str, exc: OSError) -> StateStoreError:
        return StateStoreError(f"cannot {what} {self.url_for(key)}: {exc.strerror or exc}")

    def _mkdirs(self, key: str, directory: Path) -> None:
        if directory.is_dir():
            return
        p = directory
        while not p.exists() and p.parent != p:
            p = p.parent
        if not p.is_dir():
            raise StateStoreError(f"cannot write {self.url_for(key)}: a parent of it is an object, not a folder")
        try:
            make_private_dirs(directory)  # 0700 whatever the umask: the store holds private keys
        except LocalFileError as exc:
            raise StateStoreError(f"cannot write {self.url_for(key)}: {exc.message}") from None

    def _write_temp(self, key: str, path: Path, data: bytes) -> Path:
        """Write ``data`` durably to a temp file beside ``path`` (same filesystem, for link/rename)."""
        self._mkdirs(key, path.parent)
        try:
            fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)  # mode 0600
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise self._fail("write", key, exc) from exc
        return Path(tmp)

    @contextmanager
    def _exclusive(self, key: str) -> Iterator[None]:
        """Serialise compare-and-write across processes (flock is per open file, so threads too)."""
        try:
            if not self.root.is_dir():
                make_private_dirs(self.root)
            fd = os.open(self.root / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except LocalFileError as exc:
            raise StateStoreError(f"cannot write {self.url_for(key)}: {exc.message}") from None
        except OSError as exc:
            raise self._fail("lock the store to write", key, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def _read(self, key: str, path: Path) -> bytes:
        """An object's bytes. Only a regular file is an object: a symlink is not followed, a FIFO
        is not waited on (opened non-blocking), a device or folder is refused, and no more than
        ``STORE_OBJECT_LIMIT`` bytes are read."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise ObjectNotFound(key, f"{self.url_for(key)} not found in the state store") from exc
        except NotADirectoryError as exc:
            raise ObjectNotFound(key, f"{self.url_for(key)} not found in the state store") from exc
        except OSError as exc:
            if path.is_symlink():
                raise self._not_an_object(key, "a symbolic link") from exc
            raise self._fail("read", key, exc) from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise self._not_an_object(key, describe_mode(st.st_mode))
            if st.st_size > STORE_OBJECT_LIMIT:
                raise StateStoreError(
                    f"{self.url_for(key)} is {st.st_size} bytes, more than a state-store object may be "
                    f"({STORE_OBJECT_LIMIT // MIB} MiB); it is not kopsy's: restore it from a backup"
                )
            chunks, total = [], 0
            while total <= STORE_OBJECT_LIMIT:
                chunk = os.read(fd, STORE_OBJECT_LIMIT + 1 - total)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            if total > STORE_OBJECT_LIMIT:
                raise StateStoreError(f"{self.url_for(key)} is larger than {STORE_OBJECT_LIMIT // MIB} MiB; it is not kopsy's")
            return b"".join(chunks)
        except OSError as exc:
            raise self._fail("read", key, exc) from exc
        finally:
            os.close(fd)

    def _not_an_object(self, key: str, what: str) -> StateStoreError:
        return StateStoreError(
            f"{self.url_for(key)} is {what}, not a regular file; a file:// store holds only regular files "
            f"(kopsy does not follow links or read pipes and devices); replace it with the object or remove it"
        )

    # --- ObjectStore ---------------------------------------------------------------------------

    def get(self, key: str) -> StoredObject:
        path = self._path(key)
        data = self._read(key, path)
        try:
            modified = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)
        except OSError:
            modified = None
        return StoredObject(key=key, data=data, etag=content_etag(data), modified=modified)

    def create(self, key: str, data: bytes) -> str:
        path = self._path(key)
        tmp = self._write_temp(key, path, data)
        try:
            os.link(tmp, path)
        except FileExistsError as exc:
            raise ObjectExists(key, f"{self.url_for(key)} already exists in the state store") from exc
        except OSError as exc:
            raise self._fail("write", key, exc) from exc
        finally:
            tmp.unlink(missing_ok=True)
        return content_etag(data)

    def replace(self, key: str, data: bytes, etag: str) -> str:
        path = self._path(key)
        tmp = self._write_temp(key, path, data)
        try:
            with self._exclusive(key):
                current = self._read(key, path)
                if content_etag(current) != etag:
                    raise WriteConflict(key)
                try:
                    os.replace(tmp, path)
                except OSError as exc:
                    raise self._fail("write", key, exc) from exc
        finally:
            tmp.unlink(missing_ok=True)
        return content_etag(data)

    def delete(self, key: str, etag: str | None = None) -> None:
        path = self._path(key)
        with self._exclusive(key):
            if etag is not None:
                try:
                    current = self._read(key, path)
                except ObjectNotFound:
                    return
                if content_etag(current) != etag:
                    raise WriteConflict(key)
            try:
                path.unlink()
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno in (errno.EISDIR, errno.EPERM) and path.is_dir():
                    return  # a folder is not an object: nothing to delete
                raise self._fail("delete", key, exc) from exc

    def etag_for(self, data: bytes) -> str | None:
        return content_etag(data)

    def list_etags(self, prefix: str = "") -> dict[str, str]:
        """The file store's ETags are its content hashes: the files are read, locally."""
        return {key: content_etag(self._read(key, self._path(key))) for key in self.list(prefix)}

    def list(self, prefix: str = "") -> list[str]:
        if prefix:
            check_key(prefix.rstrip("/"))
        keys: list[str] = []
        # Walk only the folder the prefix names (``demo/`` → ``<root>/demo``), not the whole store.
        start = self.root.joinpath(*[p for p in prefix.rsplit("/", 1)[0].split("/") if p]) if "/" in prefix else self.root
        try:
            for dirpath, dirnames, filenames in os.walk(start):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                rel = Path(dirpath).relative_to(self.root).as_posix()
                base = "" if rel == "." else rel + "/"
                for name in filenames:
                    if name.startswith("."):
                        continue  # our temp and lock files
                    key = base + name
                    if key.startswith(prefix):
                        keys.append(key)
        except OSError as exc:
            raise StateStoreError(f"cannot list {self.url}: {exc.strerror or exc}") from exc
        return sorted(keys)

    def check(self) -> builtins.list[str]:
        if self.root.exists() and not self.root.is_dir():
            raise StateStoreError(f"state store {self.url} is a file, not a folder; point --state at a folder")
        if not self.root.exists():
            return []  # created on the first write
        if not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
            raise StateStoreError(f"state store {self.url} is not readable and writable by this user")
        return []

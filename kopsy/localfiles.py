"""Reading files the user names (or a file:// store holds) as untrusted input.

Every such read goes through ``read_regular``: it opens without blocking (a FIFO would wait
forever for a writer), refuses anything that is not a regular file (a FIFO, a device such as
``/dev/zero``, a folder), and reads at most ``limit`` bytes, so a multi-GB file is refused
after one small read instead of filling memory. ``check_writable_target`` guards the few
places kopsy writes a file the user names: an existing target must be a regular file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kopsy.errors import KopsyError

KIB = 1024
MIB = 1024 * KIB

# Caps, by what is read (documented in docs/reliability.md). Generous for real input,
# small enough that a refusal is instant and cheap.
SPEC_FILE_LIMIT = 256 * KIB  # -f files, $EDITOR output, YAML store objects (a 100-group spec is ~100 KiB)
STORE_OBJECT_LIMIT = 1 * MIB  # one state-store object (PKI objects are a few KiB)
PUBLIC_KEY_LIMIT = 16 * KIB  # --ssh-public-key (an RSA-16384 line is ~2.8 KB)
PRIVATE_KEY_LIMIT = 64 * KIB  # --ssh-key
KUBECONFIG_LIMIT = 1 * MIB  # a kubeconfig with hundreds of contexts is still far smaller
SSH_CONFIG_LIMIT = 1 * MIB  # ~/.ssh/config, known_hosts


class LocalFileError(KopsyError):
    """A file the user named cannot be used (missing, not a regular file, too large, unreadable)."""


def describe_mode(mode: int) -> str:
    """'a folder', 'a FIFO (named pipe)', 'a device', ... for messages."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_regular(path: str | os.PathLike[str], limit: int, what: str, *, follow_symlinks: bool = True) -> bytes:
    """The bytes of a regular file, at most ``limit`` of them (else ``LocalFileError``).

    ``what`` names the file in messages (e.g. "SSH public key"). With ``follow_symlinks=False``
    a symlink itself is refused (``O_NOFOLLOW``).
    """
    p = os.fspath(path)
    if "\x00" in p:
        raise LocalFileError(f"{what} path {p!r} contains a NUL byte; give a real file path")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        raise LocalFileError(f"{what} {p} does not exist") from None
    except IsADirectoryError:
        raise LocalFileError(f"{what} {p} is a folder, not a file") from None
    except OSError as exc:
        if not follow_symlinks and os.path.islink(p):
            raise LocalFileError(f"{what} {p} is a symbolic link; kopsy does not follow links here") from None
        raise LocalFileError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise LocalFileError(f"{what} {p} is {describe_mode(st.st_mode)}, not a regular file; give a regular file")
        if st.st_size > limit:
            raise LocalFileError(f"{what} {p} is {st.st_size} bytes; the limit is {_size(limit)}")
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(1 * MIB, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:  # grew while being read
            raise LocalFileError(f"{what} {p} is larger than the limit of {_size(limit)}")
        return b"".join(chunks)
    except OSError as exc:
        raise LocalFileError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike[str], limit: int, what: str) -> str:
    """``read_regular`` decoded as UTF-8, with a message for binary content."""
    data = read_regular(path, limit, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise LocalFileError(f"{what} {os.fspath(path)} is not UTF-8 text (a binary file?)") from None


def check_writable_target(path: Path, what: str) -> None:
    """Refuse to replace anything but a regular file (a device such as /dev/null, a FIFO, a
    folder): kopsy writes by renaming a new file into place, which would swap out the device."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise LocalFileError(f"cannot use {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise LocalFileError(f"{what} {path} is {describe_mode(st.st_mode)}; kopsy writes only regular files or new paths")


def _size(n: int) -> str:
    return f"{n // MIB} MiB" if n >= MIB and n % MIB == 0 else f"{n // KIB} KiB"


def make_private_dirs(directory: Path) -> None:
    """``mkdir -p`` where every folder kopsy creates is 0700 whatever the umask.

    Why: ``Path.mkdir(mode=0o700, parents=True)`` gives the *parents* it creates the default
    mode (0777 under umask 000), and the mode is masked by the umask; a folder holding an SSH key
    or known hosts that another local user can write is a folder they can swap files in.
    Existing folders are left as they are.
    """
    missing: list[Path] = []
    p = Path(directory)
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made by someone else in the meantime
        except OSError as exc:
            raise LocalFileError(f"cannot create folder {d}: {exc.strerror or exc}") from None
        try:
            os.chmod(d, 0o700)
        except OSError as exc:
            raise LocalFileError(f"cannot make folder {d} private: {exc.strerror or exc}") from None
    if not p.is_dir() and not missing:
        raise LocalFileError(f"{directory} is not a folder")

"""The state store: where kopsy keeps cluster specs, PKI and the cluster lock.

``open_store(url)`` turns ``s3://bucket[/prefix]`` or ``file:///abs/path`` into an ``ObjectStore``
(interface and concurrency rules in ``base.py``); ``clusters.ClusterStore`` puts the cluster
layout (documented in ``state/README.md``) and the lease lock on top of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from kopsy.errors import StateStoreError
from kopsy.state.base import ObjectStore, StoredObject, check_key

if TYPE_CHECKING:
    from kopsy.cloud.aws.session import AwsClients

__all__ = ["ObjectStore", "StoredObject", "check_key", "open_store", "ACCEPTED_FORMS"]

ACCEPTED_FORMS = "s3://BUCKET[/PREFIX] or file:///ABSOLUTE/PATH"
DEFAULT_REGION = "us-east-1"

# S3 bucket naming rules (3-63 chars, lowercase letters, digits, dots and hyphens).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def open_store(
    url: str,
    *,
    clients: AwsClients | None = None,
    region: str = DEFAULT_REGION,
    clients_factory: Callable[[str], AwsClients] | None = None,
) -> ObjectStore:
    """Open the state store a URL names; nothing is read or written yet (call ``check()``).

    For S3 without ``clients``, ``clients_factory(region)`` (default ``AwsClients``) builds them:
    boto3 then reads credentials and ``AWS_ENDPOINT_URL`` the standard way.
    """
    text = (url or "").strip()
    if any(not ch.isprintable() for ch in text):
        shown = text.encode("unicode_escape").decode("ascii")[:120]
        raise StateStoreError(f"invalid state store URL '{shown}': it contains a NUL or control character; use {ACCEPTED_FORMS}")
    parts = urlsplit(text)
    if parts.scheme == "s3":
        bucket = parts.netloc
        if not _BUCKET.match(bucket) or ".." in bucket or parts.query or parts.fragment:
            raise StateStoreError(f"invalid state store URL {url!r}: {bucket!r} is not an S3 bucket name; use {ACCEPTED_FORMS}")
        prefix = parts.path.strip("/")
        if prefix:
            try:
                check_key(prefix)
            except StateStoreError as exc:
                raise StateStoreError(f"invalid state store URL {url!r}: the prefix is not usable: {exc.message}") from None
        normal = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        if clients is None:
            if clients_factory is not None:
                clients = clients_factory(region)
            else:
                from kopsy.cloud.aws.session import AwsClients

                clients = AwsClients(region)
        from kopsy.state.s3 import S3Store

        return S3Store(bucket, prefix, clients, normal)
    if parts.scheme == "file":
        path = unquote(parts.path)
        if "\x00" in path or any(not ch.isprintable() for ch in path):
            raise StateStoreError(f"invalid state store URL {url!r}: the path contains a NUL or control character")
        if parts.netloc not in ("", "localhost") or not path.startswith("/") or parts.query or parts.fragment:
            raise StateStoreError(f"invalid state store URL {url!r}: a file store needs an absolute path; use {ACCEPTED_FORMS}")
        root = Path(path.rstrip("/") or "/")
        from kopsy.state.file import FileStore

        return FileStore(root, f"file://{root.as_posix()}")
    raise StateStoreError(f"invalid state store URL {url!r}: use {ACCEPTED_FORMS}")

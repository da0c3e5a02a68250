"""A state store in an S3 bucket (``s3://bucket[/prefix]``): kops' usual home for cluster state.

Concurrency comes from S3 itself: ``IfNoneMatch='*'`` makes ``create`` fail on an existing key,
``IfMatch=<etag>`` makes ``replace`` (and a conditional ``delete``) fail when somebody wrote in
between. A 412 ``PreconditionFailed`` or 409 ``ConditionalRequestConflict`` (a concurrent
conditional write still in flight) becomes ``ObjectExists``/``WriteConflict``.

Errors a user can fix (missing bucket, access denied) get messages about the state store;
everything else goes through the one AWS error translator in ``kopsy.cloud.aws.session``.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

from kopsy.cloud.aws.session import DENIED_CODES, AwsClients, aws_errors, error_code
from kopsy.errors import AccessDenied, KopsyError, ObjectExists, ObjectNotFound, StateStoreError, WriteConflict
from kopsy.localfiles import MIB, STORE_OBJECT_LIMIT
from kopsy.state.base import ObjectStore, StoredObject, check_key

T = TypeVar("T")

_PRECONDITION = {"PreconditionFailed", "412"}
_CONFLICT = {"ConditionalRequestConflict", "409"}
_NO_KEY = {"NoSuchKey", "404", "NotFound"}


# The IAM actions this backend's calls need (ListObjectsV2 and HeadBucket are s3:ListBucket,
# DeleteObjects is s3:DeleteObject): part of the operator's policy (kopsy.toolbox.operator_policy).
PERMISSIONS = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:ListBucket",
    "s3:GetBucketVersioning",
    "s3:GetEncryptionConfiguration",
)


class S3Store(ObjectStore):
    def __init__(self, bucket: str, prefix: str, clients: AwsClients, url: str) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.clients = clients
        self.url = url

    @property
    def s3(self) -> Any:
        return self.clients.client("s3")

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _missing_bucket(self) -> StateStoreError:
        return StateStoreError(
            f"state store bucket {self.bucket} does not exist; create it (aws s3 mb s3://{self.bucket}) "
            f"or fix --state/KOPSY_STATE_STORE"
        )

    def _call(
        self,
        action: str,
        fn: Callable[[], T],
        special: Callable[[str], KopsyError | None] = lambda code: None,
    ) -> T:
        """Run one S3 request; ``special(code)`` maps the error codes this request expects."""
        from botocore.exceptions import ClientError

        with aws_errors(action):
            try:
                return fn()
            except ClientError as exc:
                code = error_code(exc)
                mapped = special(code)
                if mapped is None and code == "NoSuchBucket":
                    mapped = self._missing_bucket()
                if mapped is None and (code in DENIED_CODES or code == "403"):
                    mapped = AccessDenied(
                        f"{action}: access denied to state store {self.url} ({code}); the caller needs "
                        f"s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on bucket {self.bucket}"
                    )
                if mapped is None:
                    raise  # aws_errors translates it
                raise mapped from exc

    def _not_s3(self, action: str) -> StateStoreError:
        """An answer with none of the fields S3 always sends: an HTTP 200 from something that is
        not S3 (an HTML page, a captive portal, a wrong AWS_ENDPOINT_URL). Saying so beats "no
        clusters in this state store" or a KeyError."""
        return StateStoreError(
            f"{action}: the endpoint's answer is not an S3 answer (an HTML page?); "
            f"check AWS_ENDPOINT_URL and any proxy, then re-run"
        )

    def _etag(self, resp: Any, action: str) -> str:
        etag = resp.get("ETag") if isinstance(resp, dict) else None
        if not etag:
            raise self._not_s3(action)
        return str(etag)

    # --- ObjectStore ---------------------------------------------------------------------------

    def get(self, key: str) -> StoredObject:
        full = self._full(key)

        def read() -> StoredObject:
            resp = self.s3.get_object(Bucket=self.bucket, Key=full)
            size = resp.get("ContentLength") or 0
            if size > STORE_OBJECT_LIMIT:
                resp["Body"].close()
                raise StateStoreError(
                    f"{self.url_for(key)} is {size} bytes, more than a state-store object may be "
                    f"({STORE_OBJECT_LIMIT // MIB} MiB); it is not kopsy's: restore it from S3 versioning"
                )
            data = resp["Body"].read(STORE_OBJECT_LIMIT + 1)  # never more than the cap, whatever the header said
            if len(data) > STORE_OBJECT_LIMIT:
                raise StateStoreError(f"{self.url_for(key)} is larger than {STORE_OBJECT_LIMIT // MIB} MiB; it is not kopsy's")
            return StoredObject(key=key, data=data, etag=self._etag(resp, f"reading {self.url_for(key)}"),
                                modified=resp.get("LastModified"))

        def special(code: str) -> KopsyError | None:
            if code in _NO_KEY:
                return ObjectNotFound(key, f"{self.url_for(key)} not found in the state store")
            return None

        return self._call(f"reading {self.url_for(key)}", read, special)

    def create(self, key: str, data: bytes) -> str:
        full = self._full(key)

        def special(code: str) -> KopsyError | None:
            if code in _PRECONDITION or code in _CONFLICT:
                return ObjectExists(key, f"{self.url_for(key)} already exists in the state store")
            return None

        resp = self._call(
            f"writing {self.url_for(key)}",
            lambda: self.s3.put_object(Bucket=self.bucket, Key=full, Body=data, IfNoneMatch="*"),
            special,
        )
        return self._etag(resp, f"writing {self.url_for(key)}")

    def replace(self, key: str, data: bytes, etag: str) -> str:
        full = self._full(key)

        def special(code: str) -> KopsyError | None:
            if code in _PRECONDITION or code in _CONFLICT:
                return WriteConflict(key)
            if code in _NO_KEY:
                return ObjectNotFound(key, f"{self.url_for(key)} not found in the state store")
            return None

        resp = self._call(
            f"writing {self.url_for(key)}",
            lambda: self.s3.put_object(Bucket=self.bucket, Key=full, Body=data, IfMatch=etag),
            special,
        )
        return self._etag(resp, f"writing {self.url_for(key)}")

    def delete(self, key: str, etag: str | None = None) -> None:
        full = self._full(key)

        def special(code: str) -> KopsyError | None:
            if code in _PRECONDITION or code in _CONFLICT:
                return WriteConflict(key)
            if code in _NO_KEY:
                return _Gone(key)
            return None

        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
        if etag is not None:
            kwargs["IfMatch"] = etag
        try:
            self._call(f"deleting {self.url_for(key)}", lambda: self.s3.delete_object(**kwargs), special)
        except _Gone:
            return  # already gone: deleting a missing object is not an error

    def delete_many(self, keys: list[str]) -> None:
        """One DeleteObjects per 1000 keys, not a DeleteObject each (a cluster has 14-25 objects)."""
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            objects = [{"Key": self._full(k)} for k in chunk]
            out = self._call(
                f"deleting {len(chunk)} object(s) under {self.url}",
                lambda: self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}),
            )
            failed = [e for e in out.get("Errors", []) if e.get("Code") not in _NO_KEY]
            if failed:
                first = failed[0]
                raise StateStoreError(
                    f"could not delete s3://{self.bucket}/{first.get('Key')} ({first.get('Code')}: {first.get('Message')}) "
                    f"and {len(failed) - 1} more; check the caller's s3:DeleteObject permission and re-run"
                )

    def list(self, prefix: str = "") -> list[str]:
        return sorted(self.list_etags(prefix))

    def list_etags(self, prefix: str = "") -> dict[str, str]:
        """One ListObjectsV2 (a page per 1000 keys): the listing carries every object's ETag."""
        if prefix:
            check_key(prefix.rstrip("/"))
        root = f"{self.prefix}/" if self.prefix else ""

        def walk() -> dict[str, str]:
            found: dict[str, str] = {}
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=root + prefix)
            for page in pages:
                if not any(k in page for k in ("KeyCount", "IsTruncated", "Name", "Contents")):
                    raise self._not_s3(f"listing {self.url}")
                for item in page.get("Contents", []):
                    found[str(item["Key"])[len(root):]] = str(item.get("ETag", ""))
            return found

        return self._call(f"listing {self.url}", walk)

    def etag_for(self, data: bytes) -> str | None:
        """S3's ETag of an object written in one PutObject, unencrypted or with SSE-S3: the MD5 of
        its bytes, quoted. Objects under SSE-KMS or written in parts have other ETags; they never
        equal this, so a comparison just falls back to reading them."""
        return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'

    def check(self) -> builtins.list[str]:
        """Fail on a missing or forbidden bucket; warn about settings that put the state at risk."""

        def missing(code: str) -> KopsyError | None:
            return self._missing_bucket() if code in _NO_KEY else None

        self._call(f"opening state store {self.url}", lambda: self.s3.head_bucket(Bucket=self.bucket), missing)
        warnings: list[str] = []
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            versioning = self.s3.get_bucket_versioning(Bucket=self.bucket)
            if versioning.get("Status") != "Enabled":
                warnings.append(
                    f"state store bucket {self.bucket} has no versioning: an overwritten or deleted cluster "
                    f"spec cannot be recovered; enable it with: aws s3api put-bucket-versioning --bucket "
                    f"{self.bucket} --versioning-configuration Status=Enabled"
                )
        except (ClientError, BotoCoreError) as exc:
            warnings.append(f"could not check versioning of state store bucket {self.bucket} ({error_code(exc) or exc})")
        try:
            self.s3.get_bucket_encryption(Bucket=self.bucket)
        except ClientError as exc:
            if error_code(exc) == "ServerSideEncryptionConfigurationNotFoundError":
                warnings.append(
                    f"state store bucket {self.bucket} has no default encryption, and it holds the cluster's "
                    f"private keys; enable it with: aws s3api put-bucket-encryption --bucket {self.bucket} "
                    f"--server-side-encryption-configuration "
                    f"'{{\"Rules\":[{{\"ApplyServerSideEncryptionByDefault\":{{\"SSEAlgorithm\":\"AES256\"}}}}]}}'"
                )
            else:
                warnings.append(f"could not check encryption of state store bucket {self.bucket} ({error_code(exc)})")
        except BotoCoreError as exc:
            warnings.append(f"could not check encryption of state store bucket {self.bucket} ({exc})")
        return warnings


class _Gone(KopsyError):
    """Internal: the object to delete was already gone."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key} already gone")

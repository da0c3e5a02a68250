"""What ``create`` checked about the CA and the admin SSH key, kept beside them (stdlib only).

Why: every ``update`` must pin the CA (kubeadm's CA hash), check that ``pki/ca.crt`` and
``pki/ca.key`` are one pair, and check the admin SSH key parses. With ``cryptography`` that
is ~0.09 s of CPU and ~10 MB per run (its import, docs/performance.md), for facts that only
change when those objects do. ``pki/verified.json`` records the CA hash and the sha256 of
the exact bytes it was computed from; ``update`` trusts it only when the objects it reads now
hash to the same digests, and otherwise checks everything with ``cryptography`` again and
writes a fresh record (clusters created before the record existed get one on their first
update). The record holds digests, never a key: it cannot be used to forge anything, and
editing it by hand only makes ``update`` check the objects again.

The record may also hold the state store's ETags of those objects (``update`` adds them): when the
cluster's listing shows the same ETags, the objects are the bytes the record vouches for without
reading them, so an unchanged cluster's ``update`` does not fetch the CA key at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

VERIFIED = "pki/verified.json"
# The objects whose checks the record stands for, each as stored.
INPUTS = ("pki/ca.crt", "pki/ca.key", "ssh/public/admin")


def _digests(objects: Mapping[str, bytes]) -> dict[str, str]:
    return {rel: hashlib.sha256(bytes(objects[rel])).hexdigest() for rel in INPUTS}


def record(objects: Mapping[str, bytes], ca_cert_hash: str, etags: Mapping[str, str] | None = None) -> bytes:
    """The record for ``objects`` (holding every key of ``INPUTS``) whose CA hashes to ``ca_cert_hash``;
    ``etags``: the store's ETags of exactly those bytes, when known."""
    doc: dict[str, object] = {"caCertHash": ca_cert_hash, "sha256": _digests(objects)}
    if etags is not None and all(etags.get(rel) for rel in INPUTS):
        doc["etags"] = {rel: etags[rel] for rel in INPUTS}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def vouched_ca_hash(data: bytes | None, objects: Mapping[str, bytes], etags: Mapping[str, str] | None = None) -> str | None:
    """The recorded CA hash if the record vouches for exactly these inputs, else ``None`` (no
    record, a damaged one, or any input changed since it was written): the inputs in ``objects``
    by the sha256 of their bytes, every other one by its listed ETag (``etags``) equal to the
    recorded one."""
    doc = _parse(data)
    if doc is None:
        return None
    digests, recorded = doc.get("sha256"), doc.get("etags")
    for rel in INPUTS:
        if rel in objects:
            if not isinstance(digests, dict) or digests.get(rel) != hashlib.sha256(bytes(objects[rel])).hexdigest():
                return None
        elif not isinstance(recorded, dict) or not (etags or {}).get(rel) or recorded.get(rel) != (etags or {})[rel]:
            return None
    return _ca_hash(doc)


def _parse(data: bytes | None) -> dict[str, object] | None:
    if not data:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _ca_hash(doc: Mapping[str, object]) -> str | None:
    ca_hash = doc.get("caCertHash")
    if not isinstance(ca_hash, str) or not ca_hash.startswith("sha256:") or len(ca_hash) != 71:
        return None
    return ca_hash

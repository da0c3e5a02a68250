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


def record(objects: Mapping[str, bytes], ca_cert_hash: str) -> bytes:
    """The record for ``objects`` (holding every key of ``INPUTS``) whose CA hashes to ``ca_cert_hash``."""
    return (json.dumps({"caCertHash": ca_cert_hash, "sha256": _digests(objects)}, indent=1, sort_keys=True) + "\n").encode()


def vouched_ca_hash(data: bytes | None, objects: Mapping[str, bytes]) -> str | None:
    """The recorded CA hash if the record vouches for exactly these ``objects``, else ``None``
    (no record, a damaged one, or any object changed since it was written)."""
    if not data:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    ca_hash = doc.get("caCertHash")
    if not isinstance(ca_hash, str) or not ca_hash.startswith("sha256:") or len(ca_hash) != 71:
        return None
    if doc.get("sha256") != _digests(objects):
        return None
    return ca_hash

"""What ``kopsy get secrets`` lists: the cluster's keypairs and secrets, described without values.

Each entry has a type (as kops names them: ``Keypair``, ``Secret``, ``SSHPublicKey``), an id that
tells versions apart without revealing anything (a certificate's serial, a public key's
fingerprint, a bootstrap token's public id half), and when it was written to the store (a
certificate's start when the store cannot say). Values never appear here; ``plaintext`` gives
one secret's value only, and refuses private keys outright.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kopsy.errors import KopsyError, UsageError

TYPES = ("Keypair", "Secret", "SSHPublicKey")

# name -> (type, public/value key, private key or "")
LAYOUT: dict[str, tuple[str, str, str]] = {
    "kubernetes-ca": ("Keypair", "pki/ca.crt", "pki/ca.key"),
    "front-proxy-ca": ("Keypair", "pki/front-proxy-ca.crt", "pki/front-proxy-ca.key"),
    "etcd-ca": ("Keypair", "pki/etcd/ca.crt", "pki/etcd/ca.key"),
    "service-account": ("Keypair", "pki/sa.pub", "pki/sa.key"),
    "bootstrap-token": ("Secret", "secrets/bootstrap-token", ""),
    "admin": ("SSHPublicKey", "ssh/public/admin", ""),
}


@dataclass(frozen=True)
class Stored:
    """What the reader hands back for one store object."""

    data: bytes
    modified: dt.datetime | None


Reader = Callable[[str], "Stored | None"]  # relative key -> object, None when absent


@dataclass(frozen=True)
class SecretInfo:
    name: str
    type: str
    id: str
    created: str  # RFC 3339, "" when unknown

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "id": self.id, "created": self.created}


def _stamp(when: dt.datetime | None) -> str:
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if when else ""


def ssh_fingerprint(line: str) -> str:
    """``SHA256:...`` as ``ssh-keygen -l`` prints it, or "" for something that is not a key line."""
    parts = line.strip().split()
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (IndexError, ValueError):
        return ""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _describe(name: str, kind: str, obj: Stored) -> SecretInfo:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    created = obj.modified
    ident = ""
    if kind == "Keypair" and obj.data.lstrip().startswith(b"-----BEGIN CERTIFICATE"):
        try:
            cert = x509.load_pem_x509_certificate(obj.data)
            ident, created = format(cert.serial_number, "x"), obj.modified or cert.not_valid_before_utc
        except ValueError:
            ident = "(unreadable certificate)"
    elif kind == "Keypair":
        try:
            public = serialization.load_pem_public_key(obj.data)
            der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            ident = "sha256:" + hashlib.sha256(der).hexdigest()[:32]
        except ValueError:
            ident = "(unreadable public key)"
    elif kind == "Secret":
        token = obj.data.decode("ascii", "replace").strip()
        ident = token.split(".", 1)[0] if "." in token else "(not a bootstrap token)"  # the public half only
    else:
        ident = ssh_fingerprint(obj.data.decode("ascii", "replace")) or "(not an OpenSSH public key)"
    return SecretInfo(name, kind, ident, _stamp(created))


def normalise_type(text: str) -> str:
    for t in TYPES:
        if t.lower() == text.lower():
            return t
    raise UsageError(f"unknown secret type {text!r}; use one of: {', '.join(TYPES)}")


def list_secrets(read: Reader, name: str | None = None, type_: str | None = None) -> list[SecretInfo]:
    """Every keypair and secret of the cluster that is present in the store (filtered)."""
    wanted = normalise_type(type_) if type_ else None
    if name is not None and name not in LAYOUT:
        raise KopsyError(f"no secret named {name!r}; the cluster has: {', '.join(LAYOUT)}")
    out = []
    for entry, (kind, public_key, _) in LAYOUT.items():
        if (name and entry != name) or (wanted and kind != wanted):
            continue
        obj = read(public_key)
        if obj is not None:
            out.append(_describe(entry, kind, obj))
    return out


def plaintext(read: Reader, name: str) -> tuple[str, bytes]:
    """(type, value) of one named Secret or SSHPublicKey. A keypair's private key is never given."""
    if name not in LAYOUT:
        raise KopsyError(f"no secret named {name!r}; the cluster has: {', '.join(LAYOUT)}")
    kind, key, _ = LAYOUT[name]
    if kind == "Keypair":
        raise UsageError(
            f"{name} is a keypair: kopsy never prints private keys; its certificate or public key is "
            f"{key} in the state store"
        )
    obj = read(key)
    if obj is None:
        raise KopsyError(f"secret {name!r} is not in the state store")
    return kind, obj.data

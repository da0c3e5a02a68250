"""The cluster's SSH public key: read, check that it parses, fingerprint."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from kopsy.errors import SpecInvalid


def parse_ssh_public_key(text: str, source: str) -> str:
    """The key as one normalised ``type base64 [comment]`` line; raises SpecInvalid if it does not parse."""
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    line = text.strip()
    if "PRIVATE KEY" in line:
        raise SpecInvalid([f"{source}: this is a private key; pass the public half (the .pub file)"])
    if not line or "\n" in line:
        raise SpecInvalid([f"{source}: expected one OpenSSH public key line like 'ssh-ed25519 AAAA... comment'"])
    try:
        load_ssh_public_key(line.encode())
    except (ValueError, TypeError) as exc:
        raise SpecInvalid([f"{source}: not a valid OpenSSH public key ({exc})"]) from None
    return line


def read_ssh_public_key(path: str) -> str:
    p = Path(path).expanduser()
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise SpecInvalid([f"--ssh-public-key: {path} does not exist"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecInvalid([f"--ssh-public-key: cannot read {path}: {getattr(exc, 'strerror', None) or exc}"]) from None
    return parse_ssh_public_key(text, str(path))


def fingerprint_sha256(public_key_line: str) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint (no padding), as ``ssh-keygen -l`` prints it."""
    blob = base64.b64decode(public_key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def fingerprint_md5(public_key_line: str) -> str:
    """The colon-separated MD5 fingerprint kops uses in key-pair names."""
    blob = base64.b64decode(public_key_line.split()[1])
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))

"""The cluster's SSH public key: read, check that it parses, fingerprint."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from kopsy.errors import SpecInvalid

# What EC2's ImportKeyPair takes: RSA (kopsy asks for >= 2048 bits) and ed25519. DSA, ECDSA and
# security-key (sk-...) keys would be stored and then fail at update, half the cluster built.
ACCEPTED_TYPES = ("ssh-ed25519", "ssh-rsa")
MIN_RSA_BITS = 2048


def parse_ssh_public_key(text: str, source: str) -> str:
    """The key as one normalised ``type base64 [comment]`` line; raises SpecInvalid if it does not
    parse or is a type EC2 would refuse."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    line = text.strip()
    if "PRIVATE KEY" in line:
        raise SpecInvalid([f"{source}: this is a private key; pass the public half (the .pub file)"])
    if not line or "\n" in line:
        raise SpecInvalid([f"{source}: expected one OpenSSH public key line like 'ssh-ed25519 AAAA... comment'"])
    if not line.isprintable() or not line.isascii():
        raise SpecInvalid([f"{source}: not an OpenSSH public key line (it holds control or non-ASCII characters)"])
    parts = line.split()
    kind = parts[0]
    if kind not in ACCEPTED_TYPES and not kind.startswith(("ssh-", "ecdsa-", "sk-")) and len(parts) > 1 and \
            any(p.startswith(ACCEPTED_TYPES) for p in parts[1:]):
        raise SpecInvalid([
            f"{source}: this looks like an authorized_keys line with options ({kind[:40]}...); "
            f"pass the bare public key line ('ssh-ed25519 AAAA... comment'), without options"
        ])
    if kind.startswith(("sk-", "ecdsa-", "ssh-dss")) or (kind.startswith("ssh-") and kind not in ACCEPTED_TYPES):
        raise SpecInvalid([
            f"{source}: {kind[:40]} keys are not accepted (EC2 imports only RSA and ed25519 keys); "
            f"create one with: ssh-keygen -t ed25519"
        ])
    if kind not in ACCEPTED_TYPES:
        raise SpecInvalid([f"{source}: not an OpenSSH public key line; expected 'ssh-ed25519 AAAA... comment' or 'ssh-rsa AAAA...'"])
    try:
        key = load_ssh_public_key(line.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SpecInvalid([f"{source}: not a valid OpenSSH public key ({' '.join(str(exc).split())[:120]})"]) from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise SpecInvalid([
            f"{source}: an RSA key of {key.key_size} bits is too weak; use at least {MIN_RSA_BITS} bits "
            f"(ssh-keygen -t ed25519, or -t rsa -b 4096)"
        ])
    return line


def read_ssh_public_key(path: str) -> str:
    from kopsy.localfiles import PUBLIC_KEY_LIMIT, LocalFileError, read_regular

    try:
        data = read_regular(Path(path).expanduser(), PUBLIC_KEY_LIMIT, "SSH public key")
    except LocalFileError as exc:
        raise SpecInvalid([f"--ssh-public-key: {exc.message}"]) from None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise SpecInvalid([f"--ssh-public-key: {path} is not an OpenSSH public key (not text)"]) from None
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

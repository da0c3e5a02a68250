"""kubeadm bootstrap tokens.

A token is ``<id>.<secret>`` with ``[a-z0-9]{6}.[a-z0-9]{16}``, the format the API server's
bootstrap-token authenticator accepts. It is drawn from ``secrets`` (a CSPRNG) and handed out
only as a ``Secret`` so it cannot reach a log line by accident.
"""

from __future__ import annotations

import re
import secrets
import string

from kopsy.masked import Secret

BOOTSTRAP_TOKEN_RE = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
_ALPHABET = string.ascii_lowercase + string.digits


def new_bootstrap_token() -> Secret:
    """A fresh random bootstrap token (about 119 bits in the secret part)."""
    token_id = "".join(secrets.choice(_ALPHABET) for _ in range(6))
    token_secret = "".join(secrets.choice(_ALPHABET) for _ in range(16))
    return Secret(f"{token_id}.{token_secret}")

"""The cluster's PKI: CAs, service-account keys, bootstrap tokens and admin client certificates.

Everything is generated locally with ``cryptography`` at ``kopsy create`` time and kept in the
state store, so instances copy the CAs into ``/etc/kubernetes/pki`` and kubeadm never has to
invent (and later distribute) its own. Private parts are ``kopsy.masked.Secret`` values.

The names below are loaded on first use: importing ``cryptography`` costs ~0.09 s, and
``update`` needs none of it while ``pki/verified.json`` vouches for the CA (``verified.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kopsy.pki.certs import (
        ADMIN_GROUP,
        ADMIN_USER,
        ClusterPKI,
        ca_cert_hash,
        generate_cluster_pki,
        load_ca_pair,
        load_certificate,
        sign_admin_client_cert,
    )
    from kopsy.pki.tokens import BOOTSTRAP_TOKEN_RE, new_bootstrap_token

_FROM = {
    "ADMIN_GROUP": "certs",
    "ADMIN_USER": "certs",
    "ClusterPKI": "certs",
    "ca_cert_hash": "certs",
    "generate_cluster_pki": "certs",
    "load_ca_pair": "certs",
    "load_certificate": "certs",
    "sign_admin_client_cert": "certs",
    "BOOTSTRAP_TOKEN_RE": "tokens",
    "new_bootstrap_token": "tokens",
}

__all__ = sorted(_FROM)


def __getattr__(name: str) -> Any:
    module = _FROM.get(name)
    if module is None:
        raise AttributeError(f"module 'kopsy.pki' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"kopsy.pki.{module}"), name)

"""The cluster's PKI: CAs, service-account keys, bootstrap tokens and admin client certificates.

Everything is generated locally with ``cryptography`` at ``kopsy create`` time and kept in the
state store, so instances copy the CAs into ``/etc/kubernetes/pki`` and kubeadm never has to
invent (and later distribute) its own. Private parts are ``kopsy.masked.Secret`` values.
"""

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

__all__ = [
    "ADMIN_GROUP",
    "ADMIN_USER",
    "BOOTSTRAP_TOKEN_RE",
    "ClusterPKI",
    "ca_cert_hash",
    "generate_cluster_pki",
    "load_ca_pair",
    "load_certificate",
    "new_bootstrap_token",
    "sign_admin_client_cert",
]

"""Cluster CAs, the service-account key pair and admin client certificates.

Why kopsy makes the CAs itself instead of letting ``kubeadm init`` do it: every control plane
(and ``kopsy export kubecfg``) needs the *same* CAs, and the CA's public key is what nodes pin
(``caCertHash``) before the first control plane even exists. Generating them at create time
and storing them under ``pki/`` (kubeadm's file names) makes that a copy, not a hand-off.

Choices, mirroring kubeadm so its own checks pass on the pre-distributed files:
- RSA 2048 for the CAs and the service-account key (kubeadm's default ``encryptionAlgorithm``).
- CA certificates valid 10 years, ``BasicConstraints(ca=True)`` and ``KeyUsage`` (digitalSignature,
  keyEncipherment, keyCertSign) both critical, with a Subject Key Identifier.
- Private keys as PKCS#1/SEC1 PEM ("RSA PRIVATE KEY"/"EC PRIVATE KEY"), as kubeadm writes them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kopsy.errors import KopsyError
from kopsy.masked import Secret
from kopsy.pki.tokens import new_bootstrap_token

CA_VALIDITY = dt.timedelta(days=3650)
# Certificates start a little in the past so a node whose clock lags does not reject them.
BACKDATE = dt.timedelta(minutes=5)

ADMIN_USER = "kubernetes-admin"
# kubeadm's admin.conf identity since Kubernetes 1.29: bound to cluster-admin by the
# ClusterRoleBinding "kubeadm:cluster-admins" that kubeadm init creates. Unlike
# ``system:masters`` it goes through RBAC, so a leaked exported kubeconfig can be cut off by
# editing that binding instead of rotating the whole cluster CA.
ADMIN_GROUP = "kubeadm:cluster-admins"


@dataclass(frozen=True)
class ClusterPKI:
    """Everything secret or pinned that a cluster needs, as it is written to the state store."""

    ca_cert: bytes
    ca_key: Secret
    front_proxy_ca_cert: bytes
    front_proxy_ca_key: Secret
    etcd_ca_cert: bytes
    etcd_ca_key: Secret
    sa_pub: bytes
    sa_key: Secret
    bootstrap_token: Secret

    def store_objects(self) -> dict[str, bytes]:
        """Relative state-store keys -> bytes (the layout in state/README.md; kubeadm's file names)."""
        return {
            "pki/ca.crt": self.ca_cert,
            "pki/ca.key": self.ca_key.reveal(),
            "pki/front-proxy-ca.crt": self.front_proxy_ca_cert,
            "pki/front-proxy-ca.key": self.front_proxy_ca_key.reveal(),
            "pki/etcd/ca.crt": self.etcd_ca_cert,
            "pki/etcd/ca.key": self.etcd_ca_key.reveal(),
            "pki/sa.pub": self.sa_pub,
            "pki/sa.key": self.sa_key.reveal(),
            "secrets/bootstrap-token": self.bootstrap_token.reveal() + b"\n",
        }

    def __repr__(self) -> str:
        # Short and secret-free: the dataclass default would dump every certificate.
        return f"ClusterPKI(ca={ca_cert_hash(self.ca_cert)}, keys=***, bootstrap_token=***)"

    def secrets(self) -> list[Secret]:
        """Every private value (for tests that prove none of them leaks anywhere)."""
        return [self.ca_key, self.front_proxy_ca_key, self.etcd_ca_key, self.sa_key, self.bootstrap_token]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: CertificateIssuerPrivateKeyTypes) -> Secret:
    return Secret(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )


def _new_ca(common_name: str, now: dt.datetime) -> tuple[bytes, Secret]:
    key = _rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def generate_cluster_pki(cluster_name: str) -> ClusterPKI:
    """A new, independent PKI for ``cluster_name`` (CN values follow kubeadm's so its checks pass)."""
    now = _now()
    ca_cert, ca_key = _new_ca("kubernetes", now)
    fp_cert, fp_key = _new_ca("front-proxy-ca", now)
    etcd_cert, etcd_key = _new_ca("etcd-ca", now)
    sa = _rsa_key()
    sa_pub = sa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return ClusterPKI(
        ca_cert=ca_cert,
        ca_key=ca_key,
        front_proxy_ca_cert=fp_cert,
        front_proxy_ca_key=fp_key,
        etcd_ca_cert=etcd_cert,
        etcd_ca_key=etcd_key,
        sa_pub=sa_pub,
        sa_key=_key_pem(sa),
        bootstrap_token=new_bootstrap_token(),
    )


def load_certificate(pem: bytes) -> x509.Certificate:
    """Parse a PEM certificate, with a user-facing error when the store holds something else."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise KopsyError(
            f"the cluster CA certificate in the state store is not a valid PEM certificate ({exc})"
        ) from exc


def ca_cert_hash(ca_cert_pem: bytes) -> str:
    """kubeadm's ``--discovery-token-ca-cert-hash``: sha256 over the CA's DER SubjectPublicKeyInfo.

    Nodes use it to pin the CA before trusting anything the API server tells them, so it must be
    bit-for-bit what kubeadm computes (``pubkeypin.Hash``).
    """
    spki = load_certificate(ca_cert_pem).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def load_ca_pair(
    ca_cert_pem: bytes, ca_key_pem: bytes | Secret
) -> tuple[x509.Certificate, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey]:
    """The CA certificate and its key, refused unless the key is the certificate's.

    Why: a store whose ``ca.crt`` and ``ca.key`` come from different CAs (a half-done restore, a
    hand copy) would build instances that pin one CA while the control plane signs with another.
    """
    ca_cert = load_certificate(ca_cert_pem)
    raw_key = ca_key_pem.reveal() if isinstance(ca_key_pem, Secret) else ca_key_pem
    try:
        ca_key = serialization.load_pem_private_key(raw_key, password=None)
    except (ValueError, TypeError) as exc:
        raise KopsyError("the cluster CA key in the state store cannot be read as an unencrypted PEM key") from exc
    if not isinstance(ca_key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise KopsyError("the cluster CA key in the state store is neither RSA nor ECDSA")
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if ca_cert.public_key().public_bytes(*spki) != ca_key.public_key().public_bytes(*spki):
        raise KopsyError(
            "the cluster CA key in the state store (pki/ca.key) does not match the CA certificate (pki/ca.crt); "
            "nothing was changed; restore the pair from S3 versioning or a backup"
        )
    return ca_cert, ca_key


def sign_admin_client_cert(
    ca_cert_pem: bytes,
    ca_key_pem: bytes | Secret,
    *,
    ttl: dt.timedelta,
    now: dt.datetime | None = None,
    user: str = ADMIN_USER,
    group: str = ADMIN_GROUP,
) -> tuple[bytes, Secret]:
    """A short-lived admin client certificate signed by the cluster CA, and its new private key.

    Signed locally so exporting a kubeconfig needs no running cluster and no network; the TTL
    keeps a copied kubeconfig from being a permanent credential. Never valid beyond the CA.
    """
    if ttl <= dt.timedelta(0):
        raise KopsyError(f"the certificate lifetime must be positive, got {ttl}")
    ca_cert, ca_key = load_ca_pair(ca_cert_pem, ca_key_pem)
    start = (now or _now()) - BACKDATE
    end = min(start + BACKDATE + ttl, ca_cert.not_valid_after_utc)
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        )
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, group),
                    x509.NameAttribute(NameOID.COMMON_NAME, user),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)

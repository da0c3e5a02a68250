"""The cluster PKI: what kubeadm and kubectl will check, checked independently here."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess

import pytest

from tests.tools import require_tool
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kopsy.errors import KopsyError
from kopsy.masked import Secret
from kopsy.pki import (
    ADMIN_GROUP,
    ADMIN_USER,
    BOOTSTRAP_TOKEN_RE,
    ca_cert_hash,
    generate_cluster_pki,
    new_bootstrap_token,
    sign_admin_client_cert,
)


@pytest.fixture(scope="module")
def pki():
    return generate_cluster_pki("demo.example.com")


LAYOUT = {
    "pki/ca.crt", "pki/ca.key", "pki/front-proxy-ca.crt", "pki/front-proxy-ca.key", "pki/etcd/ca.crt",
    "pki/etcd/ca.key", "pki/sa.pub", "pki/sa.key", "secrets/bootstrap-token",
}


def test_store_objects_follow_the_layout(pki):
    objs = pki.store_objects()
    assert set(objs) == LAYOUT
    assert all(isinstance(v, bytes) for v in objs.values())
    assert objs["secrets/bootstrap-token"].strip() == pki.bootstrap_token.reveal()
    for key in ("pki/ca.key", "pki/front-proxy-ca.key", "pki/etcd/ca.key", "pki/sa.key"):
        assert objs[key].startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert objs["pki/sa.pub"].startswith(b"-----BEGIN PUBLIC KEY-----")


@pytest.mark.parametrize(
    "cert_attr,key_attr,cn",
    [("ca_cert", "ca_key", "kubernetes"), ("front_proxy_ca_cert", "front_proxy_ca_key", "front-proxy-ca"),
     ("etcd_ca_cert", "etcd_ca_key", "etcd-ca")],
)
def test_cas_are_proper_ten_year_cas(pki, cert_attr, key_attr, cn):
    cert = x509.load_pem_x509_certificate(getattr(pki, cert_attr))
    key = serialization.load_pem_private_key(getattr(pki, key_attr).reveal(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.digital_signature
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=3649) < life < dt.timedelta(days=3651)
    cert.verify_directly_issued_by(cert)  # self-signed


def test_the_three_cas_are_independent(pki):
    spki = {
        x509.load_pem_x509_certificate(c).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        for c in (pki.ca_cert, pki.front_proxy_ca_cert, pki.etcd_ca_cert)
    }
    assert len(spki) == 3


def test_service_account_key_pair_matches(pki):
    key = serialization.load_pem_private_key(pki.sa_key.reveal(), None)
    pub = serialization.load_pem_public_key(pki.sa_pub)
    assert isinstance(key, rsa.RSAPrivateKey) and isinstance(pub, rsa.RSAPublicKey)
    sig = key.sign(b"token", padding.PKCS1v15(), hashes.SHA256())
    pub.verify(sig, b"token", padding.PKCS1v15(), hashes.SHA256())


def test_ca_cert_hash_matches_openssl(pki, tmp_path):
    """The recipe from the kubeadm docs (openssl x509 -pubkey | openssl rsa -pubin -outform der | sha256)."""
    require_tool("openssl")  # computes the hash independently of kopsy
    crt = tmp_path / "ca.crt"
    crt.write_bytes(pki.ca_cert)
    pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", str(crt)], check=True,
                         capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, check=True,
                         capture_output=True).stdout
    assert ca_cert_hash(pki.ca_cert) == "sha256:" + hashlib.sha256(der).hexdigest()
    assert len(ca_cert_hash(pki.ca_cert)) == len("sha256:") + 64


def test_ca_cert_hash_rejects_garbage():
    with pytest.raises(KopsyError, match="not a valid PEM certificate"):
        ca_cert_hash(b"not a cert")


def test_bootstrap_tokens_have_kubeadms_format_and_differ():
    tokens = {new_bootstrap_token().reveal_str() for _ in range(200)}
    assert len(tokens) == 200
    assert all(BOOTSTRAP_TOKEN_RE.match(t) for t in tokens)


def test_secrets_never_print(pki):
    for s in pki.secrets():
        assert isinstance(s, Secret)
        assert str(s) == "***" and repr(s) == "***" and f"{s}" == "***"
    text = repr(pki) + str(pki)
    for s in pki.secrets():
        assert s.reveal_str().strip() not in text
    assert "BEGIN" not in text


def test_admin_cert_chains_to_the_ca_with_client_auth(pki):
    now = dt.datetime.now(dt.timezone.utc)
    cert_pem, key = sign_admin_client_cert(pki.ca_cert, pki.ca_key, ttl=dt.timedelta(hours=18))
    assert isinstance(key, Secret) and str(key) == "***"
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca = x509.load_pem_x509_certificate(pki.ca_cert)
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == ADMIN_USER
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == ADMIN_GROUP
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_before_utc <= now <= cert.not_valid_after_utc
    assert abs(cert.not_valid_after_utc - (now + dt.timedelta(hours=18))) < dt.timedelta(minutes=1)
    priv = serialization.load_pem_private_key(key.reveal(), None)
    assert priv.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
        == cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_admin_cert_never_outlives_the_ca(pki):
    cert_pem, _ = sign_admin_client_cert(pki.ca_cert, pki.ca_key.reveal(), ttl=dt.timedelta(days=20000))
    ca = x509.load_pem_x509_certificate(pki.ca_cert)
    assert x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc == ca.not_valid_after_utc


def test_admin_cert_refuses_a_key_from_another_ca(pki):
    other = generate_cluster_pki("other")
    with pytest.raises(KopsyError, match="does not match"):
        sign_admin_client_cert(pki.ca_cert, other.ca_key, ttl=dt.timedelta(hours=1))
    with pytest.raises(KopsyError, match="positive"):
        sign_admin_client_cert(pki.ca_cert, pki.ca_key, ttl=dt.timedelta(0))

"""Admin kubeconfigs: sign a short-lived admin certificate and merge it into a kubeconfig file.

Merging follows kubectl's rules so a user's other clusters survive: the cluster, user and
context named after the kopsy cluster are replaced (or added), everything else (other entries,
``preferences``, unknown keys) is kept, and the new context becomes current. The file is
written atomically (temp file + rename in the same directory) with mode 0600, because it holds
a private key and a half-written kubeconfig would break every kubectl call.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from kopsy.errors import KopsyError
from kopsy.masked import Secret
from kopsy.pki import sign_admin_client_cert


class KubeconfigError(KopsyError):
    """The kubeconfig file cannot be read or written."""


@dataclass(frozen=True)
class AdminCredentials:
    """What goes into the kubeconfig for one cluster (the key stays masked until written)."""

    cluster_name: str
    server: str  # https://<API load balancer DNS name>
    ca_pem: bytes
    cert_pem: bytes
    key: Secret
    expires: dt.datetime


def admin_credentials(
    cluster_name: str,
    *,
    api_host: str,
    ca_cert_pem: bytes,
    ca_key_pem: bytes | Secret,
    ttl: dt.timedelta,
    now: dt.datetime | None = None,
) -> AdminCredentials:
    """Sign an admin client certificate locally with the cluster CA (no cluster access needed)."""
    cert, key = sign_admin_client_cert(ca_cert_pem, ca_key_pem, ttl=ttl, now=now)
    host = api_host[: -len(":443")] if api_host.endswith(":443") else api_host  # 443 is https' default
    return AdminCredentials(
        cluster_name=cluster_name,
        server=f"https://{host}",
        ca_pem=ca_cert_pem,
        cert_pem=cert,
        key=key,
        expires=x509.load_pem_x509_certificate(cert).not_valid_after_utc,
    )


def choose_path(flag: str | None, env_kubeconfig: str | None, home: Path) -> Path:
    """Which file to write, as kubectl decides: --kubeconfig, else the first existing file of
    $KUBECONFIG (a path list), else its last entry, else ~/.kube/config."""
    if flag:
        return Path(flag).expanduser()
    paths = [p for p in (env_kubeconfig or "").split(os.pathsep) if p]
    if paths:
        for p in paths:
            if Path(p).expanduser().exists():
                return Path(p).expanduser()
        return Path(paths[-1]).expanduser()
    return home / ".kube" / "config"


def load(path: Path) -> dict[str, Any]:
    """The kubeconfig at ``path`` as a mapping (an empty one if the file is absent or empty)."""
    from kopsy.localfiles import KUBECONFIG_LIMIT, LocalFileError, read_text

    if not os.path.lexists(path):
        return {}
    try:
        text = read_text(path, KUBECONFIG_LIMIT, "kubeconfig")
    except LocalFileError as exc:
        if not os.path.exists(path):
            return {}  # a dangling symlink: written through, as kubectl does
        raise KubeconfigError(f"{exc.message}; fix it or pass --kubeconfig OTHER_FILE") from None
    try:
        from kopsy.spec.yamlsafe import load_one

        doc = load_one(text)  # no aliases (a bomb), bounded depth and size
    except (yaml.YAMLError, RecursionError) as exc:
        raise KubeconfigError(
            f"{path} is not valid YAML, so kopsy will not merge into it; fix it or pass --kubeconfig OTHER_FILE"
        ) from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict) or any(
        k in doc and doc[k] is not None and not isinstance(doc[k], list) for k in ("clusters", "users", "contexts")
    ):
        raise KubeconfigError(f"{path} is not a kubeconfig; fix it or pass --kubeconfig OTHER_FILE")
    return doc


def _upsert(entries: list[Any], name: str, key: str, value: dict[str, Any]) -> list[Any]:
    out = [e for e in entries if not (isinstance(e, dict) and e.get("name") == name)]
    replaced = len(out) != len(entries)
    item = {"name": name, key: value}
    if replaced:  # keep its position so diffs of the file stay small
        idx = next(i for i, e in enumerate(entries) if isinstance(e, dict) and e.get("name") == name)
        out.insert(min(idx, len(out)), item)
    else:
        out.append(item)
    return out


def merge(doc: dict[str, Any], creds: AdminCredentials) -> dict[str, Any]:
    """A new kubeconfig mapping: ``doc`` with the cluster's entries set and its context current."""
    name = creds.cluster_name
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    merged = dict(doc)
    merged.setdefault("apiVersion", "v1")
    merged.setdefault("kind", "Config")
    merged.setdefault("preferences", {})
    merged["clusters"] = _upsert(
        list(doc.get("clusters") or []), name, "cluster",
        {"server": creds.server, "certificate-authority-data": b64(creds.ca_pem)},
    )
    merged["users"] = _upsert(
        list(doc.get("users") or []), name, "user",
        {"client-certificate-data": b64(creds.cert_pem), "client-key-data": b64(creds.key.reveal())},
    )
    merged["contexts"] = _upsert(list(doc.get("contexts") or []), name, "context", {"cluster": name, "user": name})
    merged["current-context"] = name
    return merged


def write_atomic(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` to ``path`` with mode 0600, all or nothing.

    A symlinked kubeconfig (e.g. kept in a dotfiles repository) is written through, as kubectl
    does: the rename replaces the file the link points to, not the link.
    """
    from kopsy.localfiles import LocalFileError, check_writable_target, make_private_dirs

    if path.is_symlink():
        path = path.resolve()
    try:
        # Only a regular file or a new path: renaming over a device (a copy of /dev/null, or
        # /dev/null itself when run as root) would replace it with a file holding the admin key.
        check_writable_target(path, "kubeconfig")
        make_private_dirs(path.parent)
    except LocalFileError as exc:
        raise KubeconfigError(exc.message) from None
    data = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False).encode()
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise KubeconfigError(f"cannot write kubeconfig {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise KubeconfigError(f"cannot write kubeconfig {path}: {exc.strerror}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_target(path: Path) -> None:
    """Refuse, before any work, a kubeconfig that ``export`` could not merge into or replace."""
    from kopsy.localfiles import LocalFileError, check_writable_target

    try:
        check_writable_target(path.resolve() if path.is_symlink() else path, "kubeconfig")
    except LocalFileError as exc:
        raise KubeconfigError(exc.message) from None
    load(path)


def export(path: Path, creds: AdminCredentials) -> None:
    """Merge ``creds`` into the kubeconfig at ``path`` (created if missing) and make it current."""
    write_atomic(path, merge(load(path), creds))


def remove_context(path: Path, cluster_name: str) -> bool:
    """Drop the cluster, user and context entries named ``cluster_name`` (as ``export`` wrote
    them) after the cluster is deleted, so kubectl does not keep pointing at a dead endpoint.
    Unsets ``current-context`` if it was this one. Returns whether the file changed; a missing
    file or one without these entries is left untouched."""
    doc = load(path)
    if not doc:
        return False
    changed = dict(doc)
    for section in ("clusters", "users", "contexts"):
        entries = list(doc.get(section) or [])
        kept = [e for e in entries if not (isinstance(e, dict) and e.get("name") == cluster_name)]
        if len(kept) != len(entries):
            changed[section] = kept
    if doc.get("current-context") == cluster_name:
        changed["current-context"] = ""
    if changed == doc:
        return False
    write_atomic(path, changed)
    return True

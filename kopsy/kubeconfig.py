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
import re
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


# --- YAML as kubectl reads it ---------------------------------------------------------------
# kubectl parses kubeconfigs with Go's YAML (go-yaml v2, YAML 1.1 rules plus Go's number syntax):
# a plain ``y``, ``n``, ``off`` is a boolean and ``1e3``, ``0o17``, ``0x1F``, ``+1`` are numbers, where
# PyYAML writes those strings unquoted. A string put into a string field that way breaks the whole
# file for kubectl ("cannot unmarshal bool into ... of type string"). So every string scalar that
# *any* YAML 1.1 or 1.2 resolver (or Go's number parser) could read as something else is quoted.

_NOT_PLAIN_WORDS = frozenset(
    "y yes n no true false on off null ~ inf infinity nan".split() + ["", "=", "<<"]
)
# Numbers, timestamps, sexagesimals and .inf/.nan all start with one of these.
_NOT_PLAIN_FIRST = frozenset("0123456789+-.")


def needs_quotes(value: str) -> bool:
    """Whether ``value`` written plain could be read back as anything but this string."""
    return value.lower() in _NOT_PLAIN_WORDS or value[:1] in _NOT_PLAIN_FIRST or value != value.strip()


class _Dumper(yaml.SafeDumper):
    """SafeDumper that double-quotes every string a YAML 1.1/1.2 or Go parser could misread."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if needs_quotes(value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_str(value)


_Dumper.add_representer(str, _represent_str)


class _Loader(yaml.SafeLoader):
    """SafeLoader reading what kubectl reads, the way it reads it.

    - a plain ``=`` or ``<<`` *value* is a string (kubectl writes ``namespace: =`` unquoted; PyYAML
      would refuse the file); ``<<`` as a *key* still merges, as in Go;
    - ``y``/``Y``/``n``/``N`` are booleans, as in Go's YAML 1.1 (so a ``insecure-skip-tls-verify: y``
      keeps meaning true when written back);
    - timestamps stay the strings they are (Go keeps them as strings in a kubeconfig).
    """


def _construct_plain_str(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


def _construct_bool(loader: yaml.SafeLoader, node: yaml.Node) -> bool | str:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    lowered = text.lower()
    if lowered in ("y", "yes", "true", "on"):
        return True
    if lowered in ("n", "no", "false", "off"):
        return False
    return text


_Loader.add_constructor("tag:yaml.org,2002:merge", _construct_plain_str)
_Loader.add_constructor("tag:yaml.org,2002:value", _construct_plain_str)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_plain_str)
_Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN"))


def dump_yaml(doc: dict[str, Any]) -> str:
    """``doc`` as YAML that Go's parser (kubectl) reads back as the same values."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True)


MAX_EXPANDED_VALUES = 100_000  # a kubeconfig of hundreds of clusters has a few thousand


def load_yaml(text: str) -> Any:
    """Parse a kubeconfig as kubectl does (see ``_Loader``): anchors and ``<<`` merge keys
    included, since people write them, but an alias bomb (a few lines that expand to millions
    of values) is refused before anything is built from it."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None and _expanded_size(node, {}) > MAX_EXPANDED_VALUES:
            raise yaml.YAMLError(f"it expands to more than {MAX_EXPANDED_VALUES} values through its aliases (an alias bomb?)")
        return loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, seen: dict[int, int]) -> int:
    """How many values ``node`` stands for once every alias is expanded (memoized per node, so a
    bomb is measured in time proportional to its text, not to its expansion)."""
    key = id(node)
    if key not in seen:
        seen[key] = 1  # a cycle (PyYAML composes none for aliases to ancestors) counts once
        if isinstance(node, yaml.SequenceNode):
            seen[key] = 1 + sum(_expanded_size(n, seen) for n in node.value)
        elif isinstance(node, yaml.MappingNode):
            seen[key] = 1 + sum(_expanded_size(k, seen) + _expanded_size(v, seen) for k, v in node.value)
    return seen[key]


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
        # As kubectl reads it (anchors and ``<<`` merge keys included: people write them), within
        # the size cap above; PyYAML shares an alias's node rather than copying it, and kopsy
        # walks only the three entry lists, so an alias bomb costs no more than its text.
        doc = load_yaml(text)
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
    data = dump_yaml(doc).encode()
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

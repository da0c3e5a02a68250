"""The non-secret bootstrap settings an instance carries in its user-data, and reading them back.

They travel as ``/etc/kopsy/bootstrap-config.json`` (a write_files entry), which the on-instance
helper reads and which checks (the sandbox, validate) compare with the cluster. Nothing here is
secret: keys and the join token stay in the state store.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from kopsy.errors import KopsyError

CONFIG_PATH = "/etc/kopsy/bootstrap-config.json"

MODE_INIT = "init"  # the first control plane: kubeadm init
MODE_JOIN_CONTROL_PLANE = "join-control-plane"
MODE_JOIN = "join"  # worker nodes

# The phases the boot script records in /var/lib/kopsy/bootstrap.json, in order ("done" last).
# wait-for-api is skipped by the first control plane; cni and addons only run there; token-refresh
# on control planes only.
PHASES = (
    "start",
    "system",
    "packages",
    "containerd",
    "fetch",
    "wait-for-api",
    "kubeadm-init",
    "kubeadm-join-control-plane",
    "restore",
    "kubeadm-join",
    "cni",
    "addons",
    "token-refresh",
    "done",
)


class UserDataInvalid(KopsyError, ValueError):
    """User-data that is not kopsy's (or is damaged). Also a ValueError, as the placeholder raised."""


@dataclass(frozen=True)
class BootstrapConfig:
    clusterName: str
    role: str
    instanceGroup: str
    kubernetesVersion: str
    apiEndpoint: str  # host:port of the API load balancer instances use (the internal one), e.g. api-int-xyz.elb...:443
    caCertHash: str  # sha256:<hex> of the cluster CA's SubjectPublicKeyInfo
    stateStore: str  # URL of the cluster's prefix in the state store
    networking: str
    # Added by the real renderer (defaults keep older user-data readable):
    mode: str = ""  # init | join-control-plane | join
    kubeadmApiVersion: str = ""
    podCIDR: str = ""
    serviceCIDR: str = ""
    cniVersion: str = ""
    s3Endpoint: str = ""  # empty: real AWS S3; else an S3-compatible endpoint, path-style
    s3Region: str = ""  # empty: the instance's own region (the helper follows S3's region hint)
    tokenKey: str = "secrets/bootstrap-token"  # where nodes read the current join token
    apiPublicHost: str = ""  # the internet-facing API load balancer's DNS name (in the API server's certificate)
    nodeLabels: dict[str, str] = dataclasses.field(default_factory=dict)  # the group's spec.nodeLabels
    taints: tuple[str, ...] = ()  # the group's spec.taints, "key[=value]:Effect"
    cloudProvider: str = ""  # "external": kubelet and kube-controller-manager leave the cloud to the CCM
    addons: dict[str, str] = dataclasses.field(default_factory=dict)  # control planes: relkey -> sha256 hex
    # etcd backups (control planes; docs/disaster-recovery.md): spec.etcd, and the state bucket's KMS key if any
    etcdBackupInterval: str = ""
    etcdBackupHourly: str = ""
    etcdBackupDaily: str = ""
    stateStoreKmsKey: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> BootstrapConfig:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in known}
        if "taints" in fields:
            fields["taints"] = tuple(fields["taints"])
        return cls(**fields)


def _cloud_config_texts(data: bytes) -> list[str]:
    """The #cloud-config documents in user-data: plain, gzip, or multipart MIME (parts may be gzip)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data.lstrip().startswith(b"#cloud-config"):
        return [data.decode()]
    if data.lstrip()[:12].lower().startswith(b"content-type") or data.lstrip().lower().startswith(b"mime-version"):
        import email  # only for MIME (kopsy writes gzip): email.policy costs every run ~5 ms to import
        import email.policy

        msg = email.message_from_bytes(data, policy=email.policy.compat32)
        out: list[str] = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            payload = part.get_payload(decode=True)
            if not isinstance(payload, bytes):
                continue
            if payload[:2] == b"\x1f\x8b":
                payload = gzip.decompress(payload)
            if part.get_content_type() == "text/cloud-config" or payload.lstrip().startswith(b"#cloud-config"):
                out.append(payload.decode())
        return out
    return []


# libyaml's parser when PyYAML was built with it: the same documents, ~15x faster. A no-op update
# reads back every launch template's user-data (the skew check: kopsy.reconcile.builders.skew),
# and PyYAML's pure-Python scanner spent ~50 ms on each one's block scalars.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_user_data(data: bytes) -> BootstrapConfig:
    """Read the kopsy bootstrap config back out of user-data (plain, gzip or multipart MIME)."""
    try:
        texts = _cloud_config_texts(data)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise UserDataInvalid(f"user-data cannot be decoded: {exc}") from exc
    for text in texts:
        try:
            doc: Any = yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader)
        except yaml.YAMLError as exc:
            raise UserDataInvalid(f"user-data is not valid YAML: {exc}") from exc
        for f in (doc or {}).get("write_files", []) if isinstance(doc, dict) else []:
            if isinstance(f, dict) and f.get("path") == CONFIG_PATH:
                try:
                    return BootstrapConfig.from_json(f["content"])
                except (TypeError, ValueError, KeyError) as exc:
                    raise UserDataInvalid(f"{CONFIG_PATH} in user-data is damaged: {exc}") from exc
    raise UserDataInvalid("user-data carries no kopsy bootstrap config")

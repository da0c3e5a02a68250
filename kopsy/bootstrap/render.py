"""PLACEHOLDER renderer, to be replaced by the real jinja2 renderer (bootstrap issue).

It already honours the contract: a #cloud-config with a write_files entry
``/etc/kopsy/bootstrap-config.json`` holding the non-secret settings, and a parser for it.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import asdict, dataclass

import yaml

from kopsy.spec.model import Cluster, InstanceGroup

CONFIG_PATH = "/etc/kopsy/bootstrap-config.json"


@dataclass(frozen=True)
class BootstrapConfig:
    clusterName: str
    role: str
    instanceGroup: str
    kubernetesVersion: str
    apiEndpoint: str  # host:port of the API load balancer, e.g. api-xyz.elb.us-east-1.amazonaws.com:443
    caCertHash: str  # sha256:<hex> of the cluster CA's SubjectPublicKeyInfo
    stateStore: str  # URL of the cluster's prefix in the state store
    networking: str


def render_user_data(
    cluster: Cluster, ig: InstanceGroup, *, api_endpoint: str, ca_cert_hash: str, state_store_url: str
) -> bytes:
    config = BootstrapConfig(
        clusterName=cluster.name,
        role=ig.role,
        instanceGroup=ig.name,
        kubernetesVersion=cluster.kubernetes_version,
        apiEndpoint=api_endpoint,
        caCertHash=ca_cert_hash,
        stateStore=state_store_url,
        networking=cluster.networking,
    )
    doc = {
        "write_files": [
            {"path": CONFIG_PATH, "permissions": "0644", "content": json.dumps(asdict(config), sort_keys=True)}
        ]
    }
    return b"#cloud-config\n" + yaml.safe_dump(doc, sort_keys=True).encode()


def parse_user_data(data: bytes) -> BootstrapConfig:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    doc = yaml.safe_load(data.decode())
    for f in doc.get("write_files", []):
        if f.get("path") == CONFIG_PATH:
            return BootstrapConfig(**json.loads(f["content"]))
    raise ValueError("user-data carries no kopsy bootstrap config")

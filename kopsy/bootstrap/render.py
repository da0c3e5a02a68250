"""Render the cloud-init user-data for one instance group from the templates in ``cloudinit/``.

The output is a ``#cloud-config`` that writes a few files (the non-secret bootstrap config, a
stdlib-only S3/IMDS helper, the bootstrap script, and for control planes the token-refresh
timer) and runs the bootstrap script. It is gzip-compressed (cloud-init reads gzip) so it stays
far below EC2's 16 KB limit. Everything comes from explicit arguments: no environment, no clock,
so the same cluster renders the same bytes (launch-template diffs stay quiet), and
``kopsy.bootstrap.rendercache`` can keep them: what shapes the bytes must live in this package,
the templates or the spec model, which its key covers (tests/bootstrap/test_template_cache.py).
"""

from __future__ import annotations

import gzip
import functools
import hashlib
import re
from pathlib import Path
from typing import Any

import yaml

from kopsy.bootstrap.config import (
    CONFIG_PATH,
    MODE_INIT,
    MODE_JOIN,
    MODE_JOIN_CONTROL_PLANE,
    BootstrapConfig,
    parse_user_data,
)
from kopsy.bootstrap.rendercache import cached
from kopsy.errors import KopsyError
from kopsy.spec.model import Cluster, InstanceGroup, parse_taint

USER_DATA_LIMIT = 16384  # EC2's limit on raw user-data, before base64

HELPER_PATH = "/usr/local/lib/kopsy/kopsy-helper"
BOOTSTRAP_PATH = "/usr/local/sbin/kopsy-bootstrap"
TOKEN_REFRESH_PATH = "/usr/local/sbin/kopsy-token-refresh"
ETCD_MODULE_PATH = "/usr/local/lib/kopsy/kopsy_etcd.py"  # imported by the helper's etcd-... commands
ETCD_MODULE_KEY = "bootstrap/kopsy_etcd.py"  # where update publishes it in the cluster's store prefix

# Token policy (docs/bootstrap.md): tokens live 24h (kubeadm's default) and every control plane
# publishes a fresh one every 12h, so the stored token always has at least ~12h left.
TOKEN_TTL = "24h0m0s"
TOKEN_REFRESH_INTERVAL = "12h"

# Pinned CNI versions. Bump deliberately (and re-test); never "latest".
CNI: dict[str, dict[str, str]] = {
    "calico": {
        "version": "v3.31.3",
        "manifest": "https://raw.githubusercontent.com/projectcalico/calico/v3.31.3/manifests/calico.yaml",
    },
    "flannel": {
        "version": "v0.27.4",
        "manifest": "https://github.com/flannel-io/flannel/releases/download/v0.27.4/kube-flannel.yml",
    },
    "cilium": {"version": "1.18.2", "manifest": ""},  # installed by cilium-cli: kopsy.bootstrap.runtime.CILIUM_CLI
    "cni": {"version": "", "manifest": ""},  # bring your own (kops' networking: {cni: {}}): none installed
}

# Values interpolated into shell heredocs and YAML unquoted must be plain tokens.
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.:/_-]*$")
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


class RenderError(KopsyError):
    """The cluster or arguments cannot be turned into user-data."""


def kubeadm_api_version(minor: str) -> str:
    """kubeadm's config API for a Kubernetes minor: v1beta4 from 1.31 (v1beta3 is deprecated there)."""
    try:
        major, mnr = (int(p) for p in minor.split(".")[:2])
    except ValueError:
        raise RenderError(f"cannot pick a kubeadm config API for Kubernetes {minor!r}") from None
    if (major, mnr) >= (1, 31):
        return "kubeadm.k8s.io/v1beta4"
    if (major, mnr) >= (1, 22):
        return "kubeadm.k8s.io/v1beta3"
    raise RenderError(f"Kubernetes {minor} is too old for kopsy (kubeadm config v1beta3 needs 1.22+)")


def init_control_plane_group(igs: list[InstanceGroup]) -> str | None:
    """The control-plane group that runs ``kubeadm init``: the first by name (kopsy's defaults
    name them control-plane-<first zone>[-1], ...), so every caller picks the same one."""
    names = sorted(ig.name for ig in igs if ig.is_control_plane)
    return names[0] if names else None


def _default_is_init(cluster: Cluster, ig: InstanceGroup) -> bool:
    first_zone = cluster.subnets[0].zone if cluster.subnets else ""
    return ig.name in (f"control-plane-{first_zone}", f"control-plane-{first_zone}-1")


def template_dirs() -> list[Path]:
    """Where the templates are: the installed wheel's kopsy/_cloudinit, else the repository's cloudinit/."""
    pkg = Path(__file__).resolve().parent.parent  # .../kopsy
    return [pkg / "_cloudinit", pkg.parent / "cloudinit"]


def _render(name: str, **ctx: Any) -> str:
    from kopsy.bootstrap.templates import render_template  # jinja2: only when the cache misses

    return render_template(name, **ctx)


def _safe_value(what: str, value: str) -> str:
    """Like ``_safe``, but empty is fine (a label or taint without a value)."""
    return _safe(what, value) if value else value


def _taint_entries(config: BootstrapConfig, control_plane: bool) -> list[dict[str, str]]:
    """kubeadm ``nodeRegistration.taints`` for the group's taints. Giving kubeadm a list replaces
    its default, so a control plane's own NoSchedule taint is kept in front of the group's."""
    entries = [{"key": "node-role.kubernetes.io/control-plane", "value": "", "effect": "NoSchedule"}] if control_plane else []
    for text in config.taints:
        t = parse_taint(text)
        if t is not None and (t.key, t.effect) not in {(e["key"], e["effect"]) for e in entries}:
            entries.append({"key": t.key, "value": t.value, "effect": t.effect})
    return entries if config.taints else []


def _safe(what: str, value: str) -> str:
    if not _SAFE.match(value):
        raise RenderError(f"{what} {value!r} contains characters kopsy will not put into a boot script")
    return value


def bootstrap_config(
    cluster: Cluster,
    ig: InstanceGroup,
    *,
    api_endpoint: str,
    ca_cert_hash: str,
    state_store_url: str,
    s3_endpoint: str = "",
    s3_region: str = "",
    init_control_plane: bool | None = None,
    api_public_host: str = "",
    state_kms_key: str = "",
) -> BootstrapConfig:
    """The settings one instance group boots with (validated: they end up in shell and YAML)."""
    if not api_endpoint:
        raise RenderError("the API load balancer's DNS name is not known yet; create it first (kopsy update cluster)")
    host, _, port = api_endpoint.partition(":")
    endpoint = f"{_safe('API endpoint', host)}:{port or '443'}"
    public_host = _safe_value("public API host", api_public_host)
    if not _HASH.match(ca_cert_hash):
        raise RenderError(f"CA cert hash {ca_cert_hash!r} is not sha256:<64 hex digits>")
    if not state_store_url.startswith("s3://"):
        raise RenderError(
            f"instances read their keys from the state store, which must be s3:// (got {state_store_url!r})"
        )
    if cluster.networking not in CNI:
        raise RenderError(f"networking {cluster.networking!r} is not one of {', '.join(CNI)}")
    for what, value in (
        ("cluster name", cluster.name),
        ("Kubernetes version", cluster.kubernetes_version),
        ("pod CIDR", cluster.pod_cidr),
        ("service CIDR", cluster.service_cluster_ip_range),
    ):
        _safe(what, value)
    for key, value in [*ig.node_labels.items(), *((t.key, t.value) for t in ig.taints)]:
        _safe("node label or taint key", key)
        _safe_value("node label or taint value", value)
    if s3_endpoint and not re.match(r"^https?://[A-Za-z0-9.:\[\]_-]+(/[A-Za-z0-9._/-]*)?$", s3_endpoint):
        raise RenderError(f"S3 endpoint {s3_endpoint!r} is not an http(s) URL")
    if ig.is_control_plane:
        is_init = _default_is_init(cluster, ig) if init_control_plane is None else init_control_plane
        mode = MODE_INIT if is_init else MODE_JOIN_CONTROL_PLANE
    else:
        mode = MODE_JOIN
    from kopsy.bootstrap.addons import addon_hashes

    return BootstrapConfig(
        clusterName=cluster.name,
        role=ig.role,
        instanceGroup=ig.name,
        kubernetesVersion=cluster.kubernetes_version.lstrip("v"),
        apiEndpoint=endpoint,
        apiPublicHost=public_host,
        caCertHash=ca_cert_hash,
        stateStore=state_store_url.rstrip("/"),
        networking=cluster.networking,
        mode=mode,
        kubeadmApiVersion=kubeadm_api_version(cluster.kubernetes_minor),
        podCIDR=cluster.pod_cidr,
        serviceCIDR=cluster.service_cluster_ip_range,
        cniVersion=CNI[cluster.networking]["version"],
        s3Endpoint=s3_endpoint.rstrip("/"),
        s3Region=s3_region,
        nodeLabels=dict(sorted(ig.node_labels.items())),
        taints=tuple(str(t) for t in ig.taints),
        cloudProvider="external",
        addons=addon_hashes(cluster) if ig.is_control_plane else {},
        etcdBackupInterval=_safe("etcd.backupInterval", cluster.etcd_backup_interval),
        etcdBackupHourly=_safe("etcd.backupRetention.hourly", cluster.etcd_backup_hourly),
        etcdBackupDaily=_safe("etcd.backupRetention.daily", cluster.etcd_backup_daily),
        stateStoreKmsKey=_safe_value("state bucket KMS key", state_kms_key) if ig.is_control_plane else "",
    )


def render_cloud_config(config: BootstrapConfig) -> str:
    """The #cloud-config text (uncompressed) for one bootstrap config."""
    control_plane = config.mode in (MODE_INIT, MODE_JOIN_CONTROL_PLANE)
    mode_text = {
        MODE_INIT: "the first control plane",
        MODE_JOIN_CONTROL_PLANE: "an additional control plane",
        MODE_JOIN: "a worker node",
    }[config.mode]
    ctx = {
        "cluster_name": config.clusterName,
        "mode": config.mode,
        "mode_text": mode_text,
        "control_plane": control_plane,
        "kubernetes_version": config.kubernetesVersion,
        "kubernetes_minor": ".".join(config.kubernetesVersion.split(".")[:2]),
        "api_endpoint": config.apiEndpoint,
        "api_sans": [h for h in (config.apiEndpoint.rpartition(":")[0], config.apiPublicHost) if h],
        "ca_cert_hash": config.caCertHash,
        "pod_cidr": config.podCIDR,
        "service_cidr": config.serviceCIDR,
        "kubeadm_api": config.kubeadmApiVersion,
        "kubeadm_beta4": config.kubeadmApiVersion.endswith("v1beta4"),
        "networking": config.networking,
        "cni": CNI[config.networking],
        "token_ttl": TOKEN_TTL,
        "token_refresh": TOKEN_REFRESH_INTERVAL,
        "node_labels": ",".join(f"{k}={v}" for k, v in sorted(config.nodeLabels.items())),
        "taints": _taint_entries(config, control_plane),
        "external_cloud": config.cloudProvider == "external",
        "addons": sorted(config.addons.items()) if control_plane else [],
        "runtime": _runtime(),
        "etcd_backup_interval": config.etcdBackupInterval or "15m",
        "etcd_module_key": ETCD_MODULE_KEY,
        "etcd_module_path": ETCD_MODULE_PATH,
        "etcd_module_sha256": hashlib.sha256(etcd_module()).hexdigest() if control_plane else "",
    }
    files: list[dict[str, str]] = [
        {"path": CONFIG_PATH, "permissions": "0644", "content": config.to_json()},
        {"path": HELPER_PATH, "permissions": "0755", "content": _render("kopsy-helper.py")},
        {"path": "/etc/modules-load.d/kopsy.conf", "permissions": "0644", "content": _render("modules-load.conf")},
        {"path": "/etc/sysctl.d/99-kopsy.conf", "permissions": "0644", "content": _render("sysctl.conf")},
        {"path": "/etc/systemd/system/containerd.service", "permissions": "0644", "content": _render("containerd.service")},
        {"path": BOOTSTRAP_PATH, "permissions": "0700", "content": _render("bootstrap.sh.j2", **ctx)},
    ]
    if control_plane:
        files += [
            {"path": TOKEN_REFRESH_PATH, "permissions": "0700", "content": _render("token-refresh.sh.j2", **ctx)},
            {
                "path": "/etc/systemd/system/kopsy-token-refresh.service",
                "permissions": "0644",
                "content": _render("kopsy-token-refresh.service"),
            },
            {
                "path": "/etc/systemd/system/kopsy-token-refresh.timer",
                "permissions": "0644",
                "content": _render("kopsy-token-refresh.timer.j2", **ctx),
            },
            *_etcd_files(ctx),
        ]
    doc = {"write_files": files, "runcmd": [BOOTSTRAP_PATH]}
    return "#cloud-config\n" + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1000)


@functools.lru_cache(maxsize=1)
def etcd_module() -> bytes:
    """The on-instance etcd code (cloudinit/kopsy-etcd.py). Too big for EC2's 16 KB user-data
    beside the rest, it travels through the state store (``kopsy.etcd.publish``); the user-data
    pins its sha256, so a control plane runs only the code its launch template names."""
    return cached("etcd-module", "", lambda: _render("kopsy-etcd.py").encode())


def _etcd_files(ctx: dict[str, Any]) -> list[dict[str, str]]:
    """A control plane's etcd snapshot timer (docs/disaster-recovery.md)."""
    return [
        {"path": "/etc/systemd/system/kopsy-etcd-backup.service", "permissions": "0644",
         "content": _render("kopsy-etcd-backup.service")},
        {"path": "/etc/systemd/system/kopsy-etcd-backup.timer", "permissions": "0644",
         "content": _render("kopsy-etcd-backup.timer.j2", **ctx)},
    ]


def _runtime() -> dict[str, Any]:
    """The pinned downloads (kopsy.bootstrap.runtime), as the boot script template reads them."""
    from kopsy.bootstrap.runtime import CILIUM_CLI, CONTAINERD, RUNC

    return {"containerd": CONTAINERD, "runc": RUNC, "cilium_cli": CILIUM_CLI}


# libyaml's emitter when PyYAML was built with it: the same bytes (tests/cloud/test_golden_outputs.py
# compares) in ~1 ms instead of ~7 ms per group.
_BaseDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[valid-type,misc]
    """Multi-line strings as literal blocks, so the scripts stay readable in the console."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render_user_data(
    cluster: Cluster,
    ig: InstanceGroup,
    *,
    api_endpoint: str,
    ca_cert_hash: str,
    state_store_url: str,
    s3_endpoint: str = "",
    s3_region: str = "",
    init_control_plane: bool | None = None,
    api_public_host: str = "",
    state_kms_key: str = "",
) -> bytes:
    """gzip-compressed #cloud-config for ``ig`` (the caller base64-encodes it for EC2).

    ``init_control_plane`` says whether this control-plane group runs ``kubeadm init``; when not
    given, the group named control-plane-<first zone>[-1] does (see ``init_control_plane_group``).
    ``s3_endpoint``/``s3_region`` point instances at an S3-compatible store (default: real S3).
    ``api_endpoint`` is what the instance's kubeadm and kubelet use (the internal load balancer);
    ``api_public_host``, the internet-facing one admins use, goes into the API server's certificate.
    """
    config = bootstrap_config(
        cluster,
        ig,
        api_endpoint=api_endpoint,
        ca_cert_hash=ca_cert_hash,
        state_store_url=state_store_url,
        s3_endpoint=s3_endpoint,
        s3_region=s3_region,
        init_control_plane=init_control_plane,
        api_public_host=api_public_host,
        state_kms_key=state_kms_key,
    )
    data = cached("user-data", config.to_json(),
                  lambda: gzip.compress(render_cloud_config(config).encode(), compresslevel=9, mtime=0))
    if len(data) >= USER_DATA_LIMIT:
        raise RenderError(f"user-data for {ig.name} is {len(data)} bytes, over EC2's {USER_DATA_LIMIT}-byte limit")
    return data


__all__ = [
    "BootstrapConfig",
    "RenderError",
    "bootstrap_config",
    "init_control_plane_group",
    "kubeadm_api_version",
    "parse_user_data",
    "render_cloud_config",
    "render_user_data",
]

"""Rendered user-data for every role x {1, 3 control planes} x CNI x supported minor:
valid cloud-init (strict), shellcheck-clean, secret-free, under EC2's 16 KB, parseable back."""

from __future__ import annotations

import base64
import email.mime.application
import email.mime.multipart
import email.mime.text
import gzip
import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.tools import require_tool
import yaml

from kopsy.bootstrap import (
    RenderError,
    UserDataInvalid,
    init_control_plane_group,
    kubeadm_api_version,
    parse_user_data,
    render_user_data,
)
from kopsy.spec.defaults import CreateOptions, new_cluster
from kopsy.spec.model import Cluster, InstanceGroup, Taint
from kopsy.spec.versions import SUPPORTED_MINORS

API_HOST = "api-demo-0123456789abcdef.elb.us-east-1.amazonaws.com"
STORE = "s3://kopsy-state/demo.example.com"

HERE = Path(__file__).parent
SYSTEM_PYTHON = Path("/usr/bin/python3")

NETWORKING = ("calico", "cilium", "flannel", "cni")


def make_cluster(control_planes: int, networking: str, version: str) -> tuple[Cluster, list[InstanceGroup]]:
    return new_cluster(
        CreateOptions(
            name="demo.example.com",
            zones=["us-east-1a", "us-east-1b", "us-east-1c"],
            control_plane_count=control_planes,
            networking=networking,
            kubernetes_version=version,
        )
    )


def _cases():
    for minor in SUPPORTED_MINORS:
        for net in NETWORKING:
            for cps in (1, 3):
                cluster, igs = make_cluster(cps, net, f"{minor}.0")
                if cps == 3:  # the HA cases also carry node labels and taints on every group
                    for ig in igs:
                        ig.node_labels = {"example.com/pool": ig.name, "node.kubernetes.io/lifecycle": "on-demand"}
                        ig.taints = [Taint("example.com/dedicated", "infra", "NoSchedule")]
                init = init_control_plane_group(igs)
                picked = {"init": None, "join-control-plane": None, "join": None}
                for ig in igs:
                    mode = ("init" if ig.name == init else "join-control-plane") if ig.is_control_plane else "join"
                    picked[mode] = picked[mode] or ig
                for mode, ig in picked.items():
                    if ig is not None:
                        yield f"{minor}-{net}-{cps}cp-{mode}", cluster, ig, mode


CASES = list(_cases())


@pytest.fixture(scope="module")
def rendered(ca_hash):
    out = {}
    for name, cluster, ig, mode in CASES:
        out[name] = (render_user_data(cluster, ig, api_endpoint=API_HOST, ca_cert_hash=ca_hash,
                                      state_store_url=STORE), mode)
    return out


def _text(data: bytes) -> str:
    return gzip.decompress(data).decode()


def test_matrix_covers_every_role_count_cni_and_minor():
    assert len(CASES) == len(SUPPORTED_MINORS) * len(NETWORKING) * 5  # 1 CP: init+node; 3 CP: init+join+node
    assert {c[3] for c in CASES} == {"init", "join-control-plane", "join"}


def test_every_user_data_is_strictly_valid_cloud_config(rendered):
    require_tool("cloud-init")
    require_tool("system-python3")
    docs = {name: _text(data) for name, (data, _) in rendered.items()}
    # Negative controls: prove the check is strict about unknown keys and wrong types.
    docs["control-typo"] = "#cloud-config\nruncmdd: [ls]\n"
    docs["control-type"] = "#cloud-config\nwrite_files: 3\n"
    docs["control-item"] = "#cloud-config\nwrite_files:\n- path: /x\n  content: y\n  permision: '0644'\n"
    proc = subprocess.run([str(SYSTEM_PYTHON), str(HERE / "cloudinit_schema_check.py")], input=json.dumps(docs),
                          capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(proc.stdout)
    assert "runcmdd" in result.pop("control-typo")
    assert "not of type" in result.pop("control-type")
    assert "'permision' was unexpected" in result.pop("control-item")  # strict inside write_files items too
    assert {k: v for k, v in result.items() if v} == {}
    assert len(result) == len(CASES)


def _scripts(text: str) -> dict[str, str]:
    doc = yaml.safe_load(text)
    scripts = {f["path"]: f["content"] for f in doc["write_files"] if f["content"].startswith("#!/bin/")}
    scripts["runcmd"] = "#!/bin/sh\n" + "\n".join(
        c if isinstance(c, str) else " ".join(c) for c in doc["runcmd"]) + "\n"
    return scripts


@pytest.mark.slow  # shellcheck over every script of the matrix
def test_every_shell_script_passes_shellcheck(rendered, tmp_path):
    shellcheck = require_tool("shellcheck")
    files: dict[str, Path] = {}
    where: dict[Path, list[str]] = {}
    for name, (data, _) in rendered.items():
        for path, body in _scripts(_text(data)).items():
            digest = hashlib.sha256(body.encode()).hexdigest()[:16]
            f = files.get(digest)
            if f is None:
                f = files[digest] = tmp_path / f"{Path(path).name}-{digest}.sh"
                f.write_text(body)
            where.setdefault(f, []).append(f"{name}:{path}")
    assert any("kopsy-bootstrap" in f.name for f in files.values())
    assert any("kopsy-token-refresh" in f.name for f in files.values())
    proc = subprocess.run([shellcheck, "-S", "warning", "-f", "gcc", *map(str, files.values())],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_secret_appears_in_any_user_data(rendered, cluster_pki):
    needles: list[bytes] = []
    for secret in cluster_pki.secrets():
        value = secret.reveal().strip()
        needles.append(value)
        if value.startswith(b"-----BEGIN"):
            body = b"".join(value.splitlines()[1:-1])
            needles += [body, body[:64], value.splitlines()[5]]  # whole key, base64 body, a middle line
        else:
            needles.append(value.split(b".")[1])  # the token's secret half on its own
    for name, (data, _) in rendered.items():
        plain = gzip.decompress(data)
        for haystack in (data, plain, base64.b64encode(data), base64.b64encode(plain)):
            for needle in needles:
                assert needle not in haystack, f"secret material found in {name}"


def test_user_data_is_gzip_and_under_the_ec2_limit(rendered):
    sizes = {name: len(data) for name, (data, _) in rendered.items()}
    assert all(data[:2] == b"\x1f\x8b" for data, _ in rendered.values())
    assert max(sizes.values()) < 16384
    assert max(len(base64.b64encode(d)) for d, _ in rendered.values()) < 16384  # even base64-encoded


def test_parse_user_data_round_trips(rendered, ca_hash):
    for name, (data, mode) in rendered.items():
        cfg = parse_user_data(data)
        minor = name.split("-")[0]
        assert cfg.clusterName == "demo.example.com"
        assert cfg.apiEndpoint == f"{API_HOST}:443"
        assert cfg.caCertHash == ca_hash
        assert cfg.stateStore == STORE
        assert cfg.mode == mode
        assert cfg.role == ("Node" if mode == "join" else "ControlPlane")
        assert cfg.kubernetesVersion == f"{minor}.0"
        assert cfg.kubeadmApiVersion == kubeadm_api_version(minor)
        assert cfg.networking in NETWORKING
        # the same bytes parse when not compressed, and from multipart MIME (gzip'd part)
        assert parse_user_data(gzip.decompress(data)) == cfg
    data = next(iter(rendered.values()))[0]
    mime = email.mime.multipart.MIMEMultipart()
    mime.attach(email.mime.text.MIMEText("#!/bin/sh\necho hello\n", "x-shellscript"))
    part = email.mime.application.MIMEApplication(data, "x-gzip")  # the cloud-config, compressed
    part.replace_header("Content-Type", "text/cloud-config")
    mime.attach(part)
    assert parse_user_data(mime.as_bytes()) == parse_user_data(data)
    assert parse_user_data(gzip.compress(mime.as_bytes())) == parse_user_data(data)


def test_parse_rejects_foreign_user_data():
    for junk in (b"#!/bin/sh\necho hi\n", b"#cloud-config\nruncmd: [ls]\n", b"\x1f\x8bnot gzip"):
        with pytest.raises(UserDataInvalid):
            parse_user_data(junk)


def test_rendering_is_deterministic(ca_hash):
    cluster, igs = make_cluster(3, "calico", f"{SUPPORTED_MINORS[0]}.0")
    a = render_user_data(cluster, igs[0], api_endpoint=API_HOST, ca_cert_hash=ca_hash, state_store_url=STORE)
    b = render_user_data(cluster, igs[0], api_endpoint=API_HOST, ca_cert_hash=ca_hash, state_store_url=STORE)
    assert a == b


def test_scripts_do_what_the_issue_asks(rendered):
    init = _text(next(d for d, m in rendered.values() if m == "init"))
    node = _text(next(d for d, m in rendered.values() if m == "join"))
    boot = yaml.safe_load(init)
    script = next(f["content"] for f in boot["write_files"] if f["path"] == "/usr/local/sbin/kopsy-bootstrap")
    for expected in ("swapoff -a", "modprobe br_netfilter", "SystemdCgroup = true", "apt-mark hold kubelet kubeadm kubectl",
                     "pkgs.k8s.io/core:/stable:/v${KUBERNETES_MINOR}/deb/", "kubeadm init --config",
                     "controlPlaneEndpoint: ${API_ENDPOINT}", f"certSANs: [{API_HOST}", "podSubnet: 100.96.0.0/11",
                     'token: "${token}"', "local-hostname", "/var/lib/kopsy", "kopsy-token-refresh.timer"):
        assert expected in script or expected in init, expected
    assert "kubeadm join --config" in node and "caCertHashes" in node
    assert "/etc/kubernetes/pki" not in node  # nodes never fetch the CAs
    assert "kopsy-token-refresh" not in node


@pytest.mark.parametrize("minor,api", [("1.30", "v1beta3"), ("1.31", "v1beta4"), ("1.37", "v1beta4"),
                                       ("2.0", "v1beta4")])
def test_kubeadm_api_follows_the_minor(minor, api):
    assert kubeadm_api_version(minor) == f"kubeadm.k8s.io/{api}"


def test_bad_inputs_are_refused(ca_hash):
    cluster, igs = make_cluster(1, "calico", f"{SUPPORTED_MINORS[0]}.0")
    ok = dict(api_endpoint=API_HOST, ca_cert_hash=ca_hash, state_store_url=STORE)
    for bad, match in (({"api_endpoint": ""}, "not known yet"), ({"api_endpoint": "a;rm -rf /"}, "characters"),
                       ({"ca_cert_hash": "md5:00"}, "sha256"), ({"state_store_url": "file:///tmp/x"}, "s3://"),
                       ({"s3_endpoint": "ftp://x"}, "http")):
        with pytest.raises(RenderError, match=match):
            render_user_data(cluster, igs[0], **{**ok, **bad})


def test_init_choice_can_be_explicit(ca_hash):
    cluster, igs = make_cluster(3, "calico", f"{SUPPORTED_MINORS[0]}.0")
    kw = dict(api_endpoint=API_HOST, ca_cert_hash=ca_hash, state_store_url=STORE)
    assert parse_user_data(render_user_data(cluster, igs[1], **kw)).mode == "join-control-plane"
    assert parse_user_data(render_user_data(cluster, igs[1], init_control_plane=True, **kw)).mode == "init"
    cfg = parse_user_data(render_user_data(cluster, igs[-1], s3_endpoint="http://127.0.0.1:9000/", s3_region="eu-west-1", **kw))
    assert (cfg.s3Endpoint, cfg.s3Region) == ("http://127.0.0.1:9000", "eu-west-1")
    assert (cfg.mode, cfg.instanceGroup) == ("join", igs[-1].name)  # the endpoint changes nothing else
    assert re.match(r"^sha256:[0-9a-f]{64}$", cfg.caCertHash)


def test_every_recorded_phase_is_documented(rendered):
    from kopsy.bootstrap import PHASES

    script = "\n".join(_text(d) for d, _ in rendered.values())
    recorded = set(re.findall(r'^\s*phase "?([a-z-]+)"?$', script, re.M))
    recorded.discard("kubeadm-")  # phase "kubeadm-${MODE}"
    assert recorded <= set(PHASES) and {"system", "packages", "fetch", "done"} <= recorded
    assert {f"kubeadm-{m}" for m in ("init", "join", "join-control-plane")} <= set(PHASES)


def _seconds(duration: str) -> int:
    """'24h0m0s' / '12h' / '10min' / '5min' -> seconds (the Go and systemd forms used here)."""
    units = {"h": 3600, "min": 60, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)(min|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def test_token_policy_expiring_tokens_refreshed_well_before_expiry(ca_hash, monkeypatch):
    """docs/bootstrap.md's policy, as rendered: every token kopsy registers (kubeadm init's and
    the timer's) has the one finite TTL, and the timer publishes a new one before it runs out."""
    from kopsy.bootstrap import render

    cluster, igs = make_cluster(1, "calico", f"{SUPPORTED_MINORS[0]}.0")
    kw = dict(api_endpoint=API_HOST, ca_cert_hash=ca_hash, state_store_url=STORE, init_control_plane=True)

    def files() -> dict[str, str]:
        doc = yaml.safe_load(_text(render_user_data(cluster, igs[0], **kw)))
        return {f["path"]: f["content"] for f in doc["write_files"]}

    monkeypatch.setattr(render, "TOKEN_TTL", "20h0m0s")  # one setting drives both places
    out = files()
    assert re.findall(r"^\s*ttl: (\S+)$", out["/usr/local/sbin/kopsy-bootstrap"], re.M) == ["20h0m0s"]
    assert re.findall(r"--ttl (\S+)", out["/usr/local/sbin/kopsy-token-refresh"]) == ["20h0m0s"]
    monkeypatch.undo()

    out = files()
    ttl = _seconds(render.TOKEN_TTL)
    assert 0 < ttl <= 24 * 3600  # never 0 (kubeadm's "never expires"), never longer than kubeadm's default
    timer = dict(re.findall(r"^(\w+)=(\S+)$", out["/etc/systemd/system/kopsy-token-refresh.timer"], re.M))
    worst_gap = _seconds(timer["OnUnitActiveSec"]) + _seconds(timer["RandomizedDelaySec"])
    assert _seconds(timer["OnBootSec"]) + _seconds(timer["RandomizedDelaySec"]) < 3600  # soon after boot
    assert worst_gap <= ttl / 2 + 3600  # the stored token keeps roughly half its life or more


def _script(data: bytes) -> str:
    doc = yaml.safe_load(_text(data))
    return next(f["content"] for f in doc["write_files"] if f["path"] == "/usr/local/sbin/kopsy-bootstrap")


def test_every_role_runs_the_external_cloud_provider_and_the_pinned_runtime(rendered):
    """Decoded user-data of every role, minor and CNI: kubelet (and on the first control plane the
    kube-controller-manager) with cloud-provider external, containerd and runc from their releases
    checked against kopsy's sums, and no containerd from the Ubuntu archive."""
    from kopsy.bootstrap.runtime import CONTAINERD, RUNC

    for name, (data, mode) in rendered.items():
        script = _script(data)
        beta4 = "v1beta4" in script
        kubelet_arg = "- name: cloud-provider\n      value: external" if beta4 else "cloud-provider: external"
        assert kubelet_arg in script, name
        # the ClusterConfiguration kubeadm init reads (the script's init branch)
        km = "controllerManager:\n  extraArgs:\n" + ("    - name: cloud-provider\n      value: external" if beta4 else "    cloud-provider: external")
        assert km in script, name
        assert parse_user_data(data).cloudProvider == "external", name
        for d in (CONTAINERD, RUNC):
            assert d.url.replace("{arch}", "${ARCH}") in script, name
            for arch, digest in d.sha256.items():
                assert re.search(rf"{arch}\) .*{d.name.upper()}_SHA256={digest}", script), (name, arch)
        assert "install -y ca-certificates curl\n" in script and "containerd --config /etc/containerd/config.toml config dump" in script, name
        assert "version = 3" in script and "io.containerd.cri.v1.runtime" in script, name


def test_every_download_is_paired_with_a_sha256_or_named_as_a_gap(rendered):
    """Each `download URL DEST SUM` carries a pinned sum; the only plain curl fetches are the
    livez probe and the files runtime.UNPINNED_DOWNLOADS names (docs/bootstrap.md)."""
    from kopsy.bootstrap.runtime import UNPINNED_DOWNLOADS

    allowed = ("/livez", "Release.key", "calico.yaml", "kube-flannel.yml")
    assert len(UNPINNED_DOWNLOADS) == 3
    for name, (data, _) in rendered.items():
        script = _script(data)
        for line in script.replace("\\\n", " ").splitlines():  # continuation lines joined
            line = line.strip()
            if line.startswith("download ") and not line.startswith("download()"):
                assert re.fullmatch(r'download "https://github\.com/\S+" /tmp/\S+ "\$[A-Z_]+_SHA256"', line), (name, line)
            elif "curl " in line and "https://" in line or "curl -fsSL" in line:
                assert any(a in line for a in allowed) or "{{" in line or '"$url"' in line, (name, line)
        if "calico.yaml" in script or "kube-flannel.yml" in script:
            assert "no sha256 is pinned for the" in script, name


def test_control_planes_pin_the_addons_and_nodes_pin_none(rendered):
    """The CCM, the EBS CSI driver and the gp3 StorageClass: their sums in every control plane's
    user-data; only the first control plane applies them, nodes carry no pins."""
    from kopsy.bootstrap.addons import addon_hashes

    for name, (data, mode) in rendered.items():
        cfg = parse_user_data(data)
        cluster, _ = make_cluster(1, cfg.networking, cfg.kubernetesVersion)
        if mode == "join":
            assert cfg.addons == {}, name
            continue
        assert cfg.addons == addon_hashes(cluster), name
        assert sorted(k.split("/")[1] for k in cfg.addons) == ["aws-cloud-controller-manager", "aws-ebs-csi-driver",
                                                               "storage-gp3"]
        assert ('"$HELPER" addons /etc/kopsy/addons' in _script(data)) == (mode == "init"), name


def test_addon_images_are_pinned_by_tag_and_the_digest_gap_is_named():
    """No digest is made up: every image the addons run is pinned by an exact tag (never latest)
    and listed as a documented gap until a real digest replaces it (docs/addons.md)."""
    from kopsy.bootstrap.addons import IMAGE_DIGEST_GAPS, render_addons

    cluster, _ = make_cluster(1, "calico", f"{SUPPORTED_MINORS[-1]}.0")
    images = set()
    for data in render_addons(cluster).values():
        images |= set(re.findall(r"image: (\S+)", data.decode()))
    assert images and images == set(IMAGE_DIGEST_GAPS)
    for image in images:
        assert re.fullmatch(r"[a-z0-9./-]+:v\d+\.\d+\.\d+(-eksbuild\.\d+)?", image), image
    docs = (HERE.parents[1] / "docs" / "addons.md").read_text()
    assert all(i.rsplit("/", 1)[-1].split(":")[0] in docs for i in images)

"""Run the *rendered* boot script for real, in a scratch root, with the system commands it calls
(apt-get, kubeadm, systemctl, ...) replaced by recording stubs and the real on-instance helper
talking to moto server and a stand-in IMDS. This checks what a schema or shellcheck cannot: the
phases and errors recorded for validate, the kubeadm configs written at boot (valid YAML, right
API version, token from the store), file modes, and that the token never reaches the log."""

from __future__ import annotations

import gzip
import hashlib
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.tools import require_tool
import yaml

from kopsy.bootstrap import render_user_data, runtime
from kopsy.bootstrap.addons import render_addons
from kopsy.bootstrap.render import ETCD_MODULE_KEY, etcd_module
from kopsy.pki import ClusterPKI, ca_cert_hash, generate_cluster_pki
from kopsy.spec.defaults import CreateOptions, new_cluster
from kopsy.spec.versions import SUPPORTED_MINORS

pytestmark = pytest.mark.slow  # runs the boot script under bash with stand-in commands

API_HOST = "api-demo-0123456789abcdef.elb.us-east-1.amazonaws.com"
NAME = "demo.example.com"
VERSION = f"{SUPPORTED_MINORS[-1]}.0"
BASH = "/bin/bash"

STUB = r"""#!/bin/bash
echo "$(basename "$0") $*" >>"$STUB_LOG"
case "$(basename "$0") $1 $2" in
  "curl"*)
    out=""; url=""
    while (($#)); do
      case $1 in -o) out=$2; shift ;; http*) url=$1 ;; esac
      shift
    done
    if [[ $url == */livez ]]; then [[ $STUB_API == up ]]; exit; fi
    if [[ $url == *calico.yaml ]]; then
      printf '            # - name: CALICO_IPV4POOL_CIDR\n            #   value: "192.168.0.0/16"\n' >"$out"
    else
      echo "downloaded${STUB_TAMPER:-} $url" >"$out"
    fi ;;
  "containerd --config"*) cat "$2" ;;  # config dump: what a containerd that reads every key would print
  "kubeadm config images") echo "registry.k8s.io/pause:3.10.1" ;;
  "kubeadm token create") echo "$STUB_NEW_TOKEN" ;;
  "kubeadm init phase") ;;  # e.g. certs etcd-healthcheck-client
  "kubeadm init"* | "kubeadm join"*)
    cp "$3" "$STUB_DIR/kubeadm-$1-$(date +%s%N).yaml"
    [[ -z ${STUB_KUBEADM_FAIL:-} ]] || { echo "kubeadm: error execution phase preflight" >&2; exit 1; }
    mkdir -p "$STUB_ROOT/etc/kubernetes"
    echo "kubelet" >"$STUB_ROOT/etc/kubernetes/kubelet.conf"
    printf 'clusters:\n- cluster:\n    server: https://%s\n' "$API" >"$STUB_ROOT/etc/kubernetes/admin.conf" ;;
  "dpkg"*) echo amd64 ;;
  "etcdctl"*)  # member list: nobody to remove; snapshot restore: leave a data dir as etcdctl does
    [[ " $* " == *" member list "* ]] && echo '{"members": []}'
    while (($#)); do [[ $1 == --data-dir ]] && mkdir -p "$2/member"; shift; done ;;
esac
exit 0
"""
STUBBED = ("etcdctl", "apt-get", "apt-mark", "swapoff", "modprobe", "sysctl", "hostnamectl", "systemctl", "containerd",
           "kubeadm", "kubectl", "curl", "cilium", "tar", "dpkg", "sleep")


@dataclass
class Boot:
    proc: subprocess.CompletedProcess[str]
    status: dict
    calls: list[str]
    configs: list[list[dict]]  # the kubeadm config documents of each kubeadm run
    log: str
    root: Path
    pki: ClusterPKI
    env: dict[str, str]  # to run more scripts in the same scratch root

    def __iter__(self):  # unpack like a tuple: proc, status, calls, configs, log, root, pki
        return iter((self.proc, self.status, self.calls, self.configs, self.log, self.root, self.pki))


def _stub_pin(d: runtime.Download) -> runtime.Download:
    """The download with the sums of what the stub curl serves for it ("downloaded <url>\\n"):
    the real pins name GitHub's bytes, which a test without the network cannot serve."""
    import hashlib

    sums = {a: hashlib.sha256(f"downloaded {d.url.replace('{arch}', a)}\n".encode()).hexdigest() for a in d.sha256}
    return runtime.Download(d.name, d.version, d.url, sums)


def _rooted(text: str, root: Path) -> str:
    """Point absolute /etc, /var, /usr/local and /tmp paths into the scratch root (URLs untouched)."""
    return re.sub(r"(?<![\w.:/])/(etc|var|usr/local|tmp)/", f"{root}/\\1/", text)


def _boot(tmp_path: Path, boto, aws_env, imds, *, control_planes: int, role: str, networking: str = "calico",
          api: str = "down", kubeadm_fails: bool = False, pinned_ca: bytes | None = None, pki=None,
          without: tuple[str, ...] = (), edit_group=None, tamper_download: bool = False,
          addon_bytes=None, unstubbed: tuple[str, ...] = (), store: dict[str, bytes] | None = None):
    pki = pki or generate_cluster_pki(NAME)
    s3 = boto("s3")
    s3.create_bucket(Bucket="kopsy-state")
    for rel, body in pki.store_objects().items():
        if rel in without:
            continue
        s3.put_object(Bucket="kopsy-state", Key=f"{NAME}/{rel}", Body=body)
    cluster, igs = new_cluster(CreateOptions(name=NAME, zones=["us-east-1a", "us-east-1b", "us-east-1c"],
                                             control_plane_count=control_planes, networking=networking,
                                             kubernetes_version=VERSION))
    # The addons as `update --yes` writes them (optionally changed afterwards, as an attacker would).
    for rel, body in (addon_bytes or (lambda b: b))(render_addons(cluster)).items():
        s3.put_object(Bucket="kopsy-state", Key=f"{NAME}/{rel}", Body=body)
    ig = igs[0] if role == "init" else igs[1] if role == "join-control-plane" else igs[-1]
    if edit_group is not None:
        edit_group(ig)
    from unittest import mock

    with mock.patch.multiple(runtime, **{n: _stub_pin(getattr(runtime, n)) for n in ("CONTAINERD", "RUNC", "CILIUM_CLI")}):
        data = render_user_data(cluster, ig, api_endpoint=f"{API_HOST}:443", state_store_url=f"s3://kopsy-state/{NAME}",
                                ca_cert_hash=ca_cert_hash(pinned_ca or pki.ca_cert), s3_endpoint=aws_env["AWS_ENDPOINT_URL"])
    doc = yaml.safe_load(gzip.decompress(data))
    root = tmp_path / "root"
    # The etcd module update publishes, rooted like every other path, and re-pinned to match.
    module = _rooted(etcd_module().decode(), root).encode()
    if ETCD_MODULE_KEY not in without:
        s3.put_object(Bucket="kopsy-state", Key=f"{NAME}/{ETCD_MODULE_KEY}", Body=module)
    for rel, body in (store or {}).items():
        s3.put_object(Bucket="kopsy-state", Key=f"{NAME}/{rel}", Body=body)
    pin = hashlib.sha256(etcd_module()).hexdigest()
    for f in doc["write_files"]:
        f["content"] = f["content"].replace(pin, hashlib.sha256(module).hexdigest())
    for f in doc["write_files"]:
        dest = root / f["path"].lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(_rooted(f["content"], root))
        dest.chmod(int(f["permissions"], 8))
    (root / "etc" / "fstab").write_text("UUID=abc / ext4 defaults 0 1\n/swap.img none swap sw 0 0\n")
    for d in ("var/log", "var/lib/kopsy", "tmp", "etc/apt/sources.list.d"):  # as on Ubuntu
        (root / d).mkdir(parents=True, exist_ok=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in STUBBED:
        if name in unstubbed:
            continue
        (bin_dir / name).write_text(STUB)
        (bin_dir / name).chmod(0o755)
    stub_dir = tmp_path / "stub"
    stub_dir.mkdir()
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
        "KOPSY_IMDS_ENDPOINT": imds, "NO_PROXY": "127.0.0.1",
        "STUB_LOG": str(stub_dir / "calls"), "STUB_DIR": str(stub_dir), "STUB_ROOT": str(root),
        "STUB_API": api, "API": f"{API_HOST}:443",
        # the etcd module's EC2 and etcd calls stay on loopback (etcdctl itself is a stub)
        "KOPSY_EC2_ENDPOINT": aws_env["AWS_ENDPOINT_URL"], "KOPSY_ETCD_ENDPOINTS": "http://127.0.0.1:9",
    }
    if kubeadm_fails:
        env["STUB_KUBEADM_FAIL"] = "1"
    if tamper_download:
        env["STUB_TAMPER"] = "!"
    script = root / "usr/local/sbin/kopsy-bootstrap"
    proc = subprocess.run([BASH, str(script)], env=env, capture_output=True, text=True, timeout=120)
    status = yaml.safe_load((root / "var/lib/kopsy/bootstrap.json").read_text())
    calls = (stub_dir / "calls").read_text().splitlines()
    configs = [list(yaml.safe_load_all(p.read_text())) for p in sorted(stub_dir.glob("kubeadm-*.yaml"))]
    log = (root / "var/log/kopsy-bootstrap.log").read_text()
    return Boot(proc, status, calls, configs, log, root, pki, env)


@pytest.fixture(autouse=True)
def _need_tools():
    """/usr/bin/python3 (the helper's interpreter), bash and openssl, as on Ubuntu."""
    for tool in ("system-python3", "bash", "openssl"):
        require_tool(tool)


def test_first_control_plane_boots_through_every_phase(tmp_path, boto, aws_env, imds, cluster_pki):
    proc, status, calls, configs, log, root, pki = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=3, role="init")
    assert proc.returncode == 0, log
    assert status["phase"] == "done" and status["error"] is None
    phases = re.findall(r"\[([a-z-]+)\] phase started", log)
    assert phases == ["system", "packages", "containerd", "fetch", "kubeadm-init", "cni", "addons", "token-refresh", "done"]

    (init, cluster_cfg, kubelet), = configs
    token = pki.bootstrap_token.reveal_str()
    assert init["apiVersion"] == "kubeadm.k8s.io/v1beta4" and init["kind"] == "InitConfiguration"
    assert init["bootstrapTokens"][0]["token"] == token and init["bootstrapTokens"][0]["ttl"] == "24h0m0s"
    assert init["nodeRegistration"]["name"] == "ip-172-20-32-10.ec2.internal"
    assert init["nodeRegistration"]["kubeletExtraArgs"] == [
        {"name": "cloud-provider", "value": "external"},
        {"name": "provider-id", "value": "aws:///us-east-1a/i-0123456789abcdef0"}]
    assert cluster_cfg["kind"] == "ClusterConfiguration"
    assert cluster_cfg["controlPlaneEndpoint"] == f"{API_HOST}:443"
    assert cluster_cfg["kubernetesVersion"] == f"v{VERSION}"
    assert cluster_cfg["apiServer"]["certSANs"] == [API_HOST, "127.0.0.1", "localhost"]
    assert cluster_cfg["networking"] == {"podSubnet": "100.96.0.0/11", "serviceSubnet": "100.64.0.0/13"}
    assert cluster_cfg["controllerManager"] == {"extraArgs": [{"name": "cloud-provider", "value": "external"}]}
    assert kubelet == {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
                       "cgroupDriver": "systemd"}

    pki_dir = root / "etc/kubernetes/pki"
    assert (pki_dir / "ca.key").read_bytes() == pki.ca_key.reveal()
    assert oct((pki_dir / "etcd/ca.key").stat().st_mode & 0o777) == "0o600"
    assert oct((pki_dir / "ca.crt").stat().st_mode & 0o777) == "0o644"
    assert not (root / "etc/kopsy/bootstrap-token").exists() and not (root / "etc/kopsy/kubeadm.yaml").exists()
    assert "#/swap.img" in (root / "etc/fstab").read_text()
    containerd = (root / "etc/containerd/config.toml").read_text()
    assert containerd.startswith("version = 3\n")
    assert "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n  SystemdCgroup = true" in containerd
    assert "[plugins.'io.containerd.cri.v1.images'.pinned_images]\n  sandbox = 'registry.k8s.io/pause:3.10.1'" in containerd
    assert not any(c.startswith("apt-get") and " containerd" in c for c in calls)  # not Ubuntu's containerd
    for d in (runtime.CONTAINERD, runtime.RUNC):
        assert f"verified {d.url.replace('{arch}', 'amd64')}" in log
    # The addons: fetched from the store, verified, applied in order.
    applied = [c.split()[-1] for c in calls if c.startswith("kubectl apply") and "/addons/" in c]
    assert [Path(a).name for a in applied] == ["00-aws-cloud-controller-manager.yaml", "01-aws-ebs-csi-driver.yaml",
                                               "02-storage-gp3.yaml"]
    stored = render_addons(new_cluster(CreateOptions(name=NAME, zones=["us-east-1a"], kubernetes_version=VERSION))[0])
    assert [Path(a).read_bytes() for a in applied] == list(stored.values())
    assert 'value: "100.96.0.0/11"' in (root / "etc/kopsy/cni.yaml").read_text()
    assert "server: https://127.0.0.1:6443" in (root / "etc/kopsy/admin-local.conf").read_text()
    minor = SUPPORTED_MINORS[-1]
    assert f"apt-get -q -o DPkg::Lock::Timeout=600 install -y --allow-change-held-packages kubelet={VERSION}-* " \
           f"kubeadm={VERSION}-* kubectl={VERSION}-*" in calls
    assert "apt-mark hold kubelet kubeadm kubectl" in calls
    assert any(c.startswith("kubeadm init --config") and c.endswith("--skip-token-print") for c in calls)
    assert any(c.startswith("kubectl apply --server-side --force-conflicts -f") for c in calls)
    assert "systemctl enable --now kopsy-token-refresh.timer" in calls
    assert f"deb [signed-by={root}/etc/apt/keyrings/kubernetes-apt-keyring.asc] https://pkgs.k8s.io/core:/stable:/v{minor}/deb/ /" \
        in (root / "etc/apt/sources.list.d/kubernetes.list").read_text()
    for text in (log, proc.stdout, proc.stderr, "\n".join(calls)):
        assert token not in text and token.split(".")[1] not in text
    assert oct((root / "var/log/kopsy-bootstrap.log").stat().st_mode & 0o777) == "0o600"


def test_node_join_failure_is_recorded_for_validate(tmp_path, boto, aws_env, imds, cluster_pki):
    proc, status, calls, configs, log, root, pki = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=1, role="join",
                                                         api="up", kubeadm_fails=True)
    assert proc.returncode != 0
    assert status["phase"] == "kubeadm-join"
    assert f"kubeadm join through {API_HOST}:443 failed 3 times" in status["error"]
    assert len(configs) == 3 and calls.count("kubeadm reset -f") == 2
    join = configs[0][0]
    assert join["kind"] == "JoinConfiguration" and "controlPlane" not in join
    assert join["discovery"]["bootstrapToken"] == {"apiServerEndpoint": f"{API_HOST}:443",
                                                   "token": pki.bootstrap_token.reveal_str(),
                                                   "caCertHashes": [ca_cert_hash(pki.ca_cert)]}
    assert not (root / "etc/kubernetes/pki/ca.key").exists()  # nodes never get CA keys
    assert pki.bootstrap_token.reveal_str() not in log


def test_extra_control_plane_joins_with_the_shared_pki(tmp_path, boto, aws_env, imds, cluster_pki):
    proc, status, calls, configs, log, root, pki = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=3,
                                                         role="join-control-plane", networking="cilium", api="up")
    assert proc.returncode == 0, log
    assert status["phase"] == "done"
    (join,), = configs
    assert join["controlPlane"] == {} and join["kind"] == "JoinConfiguration"
    assert (root / "etc/kubernetes/pki/sa.key").read_bytes() == pki.sa_key.reveal()
    assert not any(c.startswith(("kubectl apply", "cilium install")) for c in calls)  # CNI is the first one's job
    assert "systemctl enable --now kopsy-token-refresh.timer" in calls


def test_a_ca_that_does_not_match_the_pinned_hash_stops_the_boot(tmp_path, boto, aws_env, imds, cluster_pki):
    other = generate_cluster_pki("other")
    proc, status, calls, configs, log, root, pki = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=1, role="init",
                                                         pinned_ca=other.ca_cert)
    assert proc.returncode != 0
    assert status["phase"] == "fetch"
    assert "is not the one this user-data pins" in status["error"]
    assert configs == [] and not any(c.startswith("kubeadm init") for c in calls)


def test_the_first_control_plane_replaced_joins_instead_of_initialising(tmp_path, boto, aws_env, imds, cluster_pki):
    proc, status, calls, configs, log, root, pki = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=3, role="init",
                                                         networking="flannel", api="up")
    assert proc.returncode == 0, log
    assert "joining as an extra control plane" in log
    (join,), = configs
    assert join["kind"] == "JoinConfiguration" and join["controlPlane"] == {}
    assert status["phase"] == "done"


def test_token_refresh_publishes_a_fresh_token_to_the_store(tmp_path, boto, aws_env, imds, cluster_pki):
    from kopsy.pki import new_bootstrap_token

    boot = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=1, role="init")
    proc, status, calls, configs, log, root, pki = boot
    assert proc.returncode == 0, log
    fresh = new_bootstrap_token().reveal_str()
    env = {**boot.env, "STUB_NEW_TOKEN": fresh}
    refresh = subprocess.run([BASH, str(root / "usr/local/sbin/kopsy-token-refresh")], env=env, capture_output=True,
                             text=True, timeout=60)
    log = (root / "var/log/kopsy-bootstrap.log").read_text()
    assert refresh.returncode == 0, log
    stored = boto("s3").get_object(Bucket="kopsy-state", Key=f"{NAME}/secrets/bootstrap-token")["Body"].read()
    assert stored.decode().strip() == fresh
    call = (tmp_path / "stub" / "calls").read_text().splitlines()[-1]
    assert call.startswith("kubeadm token create") and "--ttl 24h0m0s" in call
    assert "published a new bootstrap token (valid 24h0m0s)" in log and fresh not in log
    assert not (root / "etc/kopsy/bootstrap-token.new").exists()


def test_a_missing_token_fails_the_fetch_phase_with_the_reason(tmp_path, boto, aws_env, imds, cluster_pki):
    proc, status, calls, configs, log, root, pki = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki,
                                                         control_planes=1, role="join", api="up",
                                                         without=("secrets/bootstrap-token",))
    assert proc.returncode != 0 and status["phase"] == "fetch"
    assert "exited 1" in status["error"]
    assert f"s3://kopsy-state/{NAME}/secrets/bootstrap-token is not in the state store" in log
    assert configs == []


def _label_and_taint(ig) -> None:
    from kopsy.spec.model import Taint

    ig.node_labels = {"example.com/pool": "gpu", "node.kubernetes.io/lifecycle": "spot"}
    ig.taints = [Taint("nvidia.com/gpu", "present", "NoSchedule"), Taint("example.com/drain", "", "NoExecute")]


def test_a_nodes_labels_and_taints_reach_kubeadm(tmp_path, boto, aws_env, imds, cluster_pki):
    """spec.nodeLabels and spec.taints take effect: the kubelet registers with them."""
    boot = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=1, role="join", api="up",
                 edit_group=_label_and_taint)
    assert boot.proc.returncode == 0, boot.log
    (join,), = boot.configs
    reg = join["nodeRegistration"]
    assert {"name": "node-labels", "value": "example.com/pool=gpu,node.kubernetes.io/lifecycle=spot"} in reg["kubeletExtraArgs"]
    assert reg["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
                             {"key": "example.com/drain", "value": "", "effect": "NoExecute"}]


def test_a_control_plane_with_taints_keeps_its_own(tmp_path, boto, aws_env, imds, cluster_pki):
    """kubeadm replaces its default taints with the list it is given: the control plane's
    NoSchedule taint stays in front of the group's."""
    boot = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=1, role="init", edit_group=_label_and_taint)
    assert boot.proc.returncode == 0, boot.log
    init = boot.configs[0][0]
    assert [t["key"] for t in init["nodeRegistration"]["taints"]] == [
        "node-role.kubernetes.io/control-plane", "nvidia.com/gpu", "example.com/drain"]


def test_a_group_without_taints_leaves_kubeadms_default(tmp_path, boto, aws_env, imds, cluster_pki):
    boot = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=1, role="init")
    assert boot.proc.returncode == 0, boot.log
    assert "taints" not in boot.configs[0][0]["nodeRegistration"]
    assert all(a["name"] != "node-labels" for a in boot.configs[0][0]["nodeRegistration"]["kubeletExtraArgs"])


def test_bring_your_own_cni_installs_none_and_says_so(tmp_path, boto, aws_env, imds, cluster_pki):
    """networking: cni (kops' ``cni: {}``): the first control plane initialises and applies no CNI."""
    proc, status, calls, configs, log, root, pki = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki,
                                                       control_planes=1, role="init", networking="cni")
    assert proc.returncode == 0, log
    assert status["phase"] == "done" and status["error"] is None
    assert "cni (bring your own): no CNI installed" in log
    # the addons (CCM, CSI, StorageClass) still go on; no CNI does
    assert not any(c.startswith(("kubectl apply", "cilium install")) and "/addons/" not in c for c in calls), calls
    assert not any("calico" in c or "flannel" in c for c in calls)
    assert not (root / "etc/kopsy/cni.yaml").exists()


def test_a_runtime_download_whose_bytes_differ_is_refused(tmp_path, boto, aws_env, imds, cluster_pki):
    """containerd is checked against kopsy's pinned sha256 before it is unpacked: other bytes stop the boot."""
    boot = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=1, role="join", api="up", tamper_download=True)
    assert boot.proc.returncode != 0
    assert boot.status["phase"] == "containerd"
    assert "containerd-2.1.5-linux-amd64.tar.gz has sha256" in boot.status["error"] and "refusing it" in boot.status["error"]
    assert not any(c.startswith("tar ") for c in boot.calls)  # nothing unpacked
    assert boot.configs == []


def test_an_addon_changed_in_the_store_is_refused_and_nothing_applied(tmp_path, boto, aws_env, imds, cluster_pki):
    """One byte of the EBS CSI manifest changed after `update` wrote it: the first control plane
    fetches every addon, finds the sum differs from its user-data's pin, and applies none of them."""
    def tamper(addons: dict[str, bytes]) -> dict[str, bytes]:
        key = next(k for k in addons if "ebs-csi" in k)
        return {**addons, key: addons[key].replace(b"replicas: 1", b"replicas: 2")}

    boot = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=1, role="init", addon_bytes=tamper)
    assert boot.proc.returncode != 0
    assert boot.status["phase"] == "addons"
    assert "exited 1" in boot.status["error"]
    assert "aws-ebs-csi-driver/v1.59.0.yaml has sha256" in boot.log and "refusing it" in boot.log
    assert not any(c.startswith("kubectl apply") and "/addons/" in c for c in boot.calls)
    assert not list((boot.root / "etc/kopsy/addons").glob("*.yaml"))  # not even the ones that verified


def test_nodes_run_the_kubelet_with_the_external_cloud_provider(tmp_path, boto, aws_env, imds, cluster_pki):
    boot = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=1, role="join", api="up")
    assert boot.proc.returncode == 0, boot.log
    (join,), = boot.configs
    assert {"name": "cloud-provider", "value": "external"} in join["nodeRegistration"]["kubeletExtraArgs"]
    assert not any(c.startswith("kubectl apply") for c in boot.calls)  # addons are the first control plane's job


def test_a_containerd_that_does_not_read_the_2x_config_fails_the_check(tmp_path, boto, aws_env, imds, cluster_pki):
    """The effective-config check with Debian's real containerd 1.6 in place of 2.x: 1.6 ignores a
    version 3 file and dumps its own defaults (SystemdCgroup = false, an old pause image), so the
    boot stops instead of running kubelet and containerd on different cgroup drivers. This is
    what Debian's containerd proves: the check reads what containerd reads, and is not vacuous."""
    require_tool("containerd")
    boot = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=1, role="join", api="up",
                 unstubbed=("containerd",))
    assert boot.proc.returncode != 0
    assert boot.status["phase"] == "containerd"
    assert "effective config does not enable SystemdCgroup" in boot.status["error"]
    effective = (boot.root / "etc/kopsy/containerd-effective.toml").read_text()
    assert "SystemdCgroup = false" in effective and "version = 2" in effective


# --- the boot decision of a control plane that finds no API (docs/disaster-recovery.md) -------------

SNAPSHOT_TS = "2026-12-01T23:45:00Z"


def _snapshot_objects(body: bytes = b"etcd snapshot bytes") -> dict[str, bytes]:
    import json

    meta = {"timestamp": SNAPSHOT_TS, "revision": 4242, "members": 1, "kubernetesVersion": VERSION,
            "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    return {f"backups/etcd/{SNAPSHOT_TS}/snapshot.db": body, f"backups/etcd/{SNAPSHOT_TS}/meta.json": json.dumps(meta).encode()}


def test_a_first_boot_inits_and_records_it_in_the_store(tmp_path, boto, aws_env, imds, cluster_pki):
    proc, status, calls, configs, log, root, pki = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=1, role="init")
    assert proc.returncode == 0, log
    assert any(c.startswith("kubeadm init --config") and "DirAvailable" not in c for c in calls)
    marker = boto("s3").get_object(Bucket="kopsy-state", Key=f"{NAME}/backups/etcd/first-boot.json")
    assert marker["ServerSideEncryption"] == "AES256"
    assert "systemctl enable --now kopsy-etcd-backup.timer" in calls


def test_a_replaced_lone_control_plane_restores_the_newest_snapshot_then_inits_on_it(tmp_path, boto, aws_env, imds, cluster_pki):
    older = {k.replace(SNAPSHOT_TS, "2026-12-01T22:00:00Z"): v for k, v in _snapshot_objects(b"older").items()}
    store = {**older, **_snapshot_objects(), "backups/etcd/first-boot.json": b"{}"}
    proc, status, calls, configs, log, root, pki = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=1,
                                                         role="init", store=store)
    assert proc.returncode == 0, log
    assert f"[restore] etcd restored from snapshot {SNAPSHOT_TS}" in log
    restore = next(c for c in calls if c.startswith("etcdctl") and "snapshot restore" in c)
    assert "--name ip-172-20-32-10.ec2.internal" in restore and "https://172.20.32.10:2380" in restore
    assert (root / "var/lib/etcd/member").is_dir()
    init = next(c for c in calls if c.startswith("kubeadm init --config"))
    assert "--ignore-preflight-errors=DirAvailable--var-lib-etcd" in init
    assert status["phase"] == "done"


def test_booted_before_without_a_snapshot_fails_restore_and_never_inits(tmp_path, boto, aws_env, imds, cluster_pki):
    proc, status, calls, configs, log, root, pki = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=1,
                                                         role="init", store={"backups/etcd/first-boot.json": b"{}"})
    assert proc.returncode != 0
    assert status["phase"] == "restore" and "no snapshot" in status["error"]
    assert not any(c.startswith("kubeadm init --config") for c in calls) and configs == []


def test_a_damaged_snapshot_fails_restore(tmp_path, boto, aws_env, imds, cluster_pki):
    store = _snapshot_objects()
    store[f"backups/etcd/{SNAPSHOT_TS}/snapshot.db"] = b"flipped bits"
    proc, status, calls, configs, log, root, pki = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=1,
                                                         role="init", store=store)
    assert proc.returncode != 0 and status["phase"] == "restore"
    assert not any(c.startswith("kubeadm init --config") for c in calls)


def test_an_extra_control_plane_removes_dead_members_before_joining(tmp_path, boto, aws_env, imds, cluster_pki):
    proc, status, calls, configs, log, root, pki = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=3,
                                                         role="join-control-plane", api="up")
    assert proc.returncode == 0, log
    cleanup = calls.index(next(c for c in calls if c.startswith("etcdctl") and "member list" in c))
    join = calls.index(next(c for c in calls if c.startswith("kubeadm join")))
    assert cleanup < join


def test_the_etcd_code_must_match_the_pin(tmp_path, boto, aws_env, imds, cluster_pki):
    proc, status, calls, configs, log, root, pki = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=1,
                                                         role="init", store={"bootstrap/kopsy_etcd.py": b"print('not ours')\n"},
                                                         without=("bootstrap/kopsy_etcd.py",))
    assert proc.returncode != 0 and status["phase"] == "fetch" and "is not the etcd code this user-data pins" in status["error"]


def test_a_rerun_on_a_booted_control_plane_neither_restores_nor_removes_members(tmp_path, boto, aws_env, imds, cluster_pki):
    store = {**_snapshot_objects(), "backups/etcd/first-boot.json": b"{}"}
    boot = _boot(tmp_path, boto, aws_env, imds, pki=cluster_pki, control_planes=1, role="init", store=store)
    assert boot.proc.returncode == 0, boot.log
    before = len(boot.calls)
    for api in ("up", "down"):  # its own API answers through the load balancer, or not (yet)
        again = subprocess.run([BASH, str(boot.root / "usr/local/sbin/kopsy-bootstrap")], env={**boot.env, "STUB_API": api},
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
    calls = (Path(boot.env["STUB_DIR"]) / "calls").read_text().splitlines()[before:]
    assert not [c for c in calls if c.startswith("etcdctl")]  # no restore, no member removal
    assert not [c for c in calls if c.startswith(("kubeadm init --config", "kubeadm join"))]

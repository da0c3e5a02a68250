"""The sandbox's readiness rules: when does an emulated instance count as a Ready node, and if not, why.

This module is the ONLY place that decides it; ``answers`` only formats the verdicts. Phases are
those of kopsy's real boot script (``kopsy.bootstrap.PHASES``). The rules, checked in order; the
first that fails says where bootstrap stopped and why:

1. The instance is running (else there is no machine and no sshd at all).
2. Its user-data is valid cloud-init (#cloud-config YAML mapping, a shell script, or multipart
   MIME of those; gzip allowed) carrying kopsy's bootstrap config (``kopsy.bootstrap.
   parse_user_data``) for the cluster the instance is tagged with. Else cloud-init fails before
   the boot script runs: ``cloud-init status`` says why, and there is no bootstrap.json.
3. ``packages``: the instance can reach the internet (package mirrors, the state store's
   public endpoint) along its subnet's ``0.0.0.0/0`` route: to an internet gateway only with a
   public IP, or through an available NAT gateway (``egress_problem``). Else it stops installing
   packages: "cannot reach the package mirrors: ...". The user-data's ``kubernetesVersion`` must
   be published in the package repository (the sandbox's index, ``World.published``): else it
   stops there too, as ``apt-get install kubeadm=<version>-*`` would.
3b. ``fetch``: the cluster CA (``pki/ca.crt`` under the user-data's ``stateStore``) can be read;
   on a control plane it must hash (``kopsy.pki.ca_cert_hash``) to the user-data's ``caCertHash``.
4. The API endpoint in user-data is one of the cluster's API NLBs ``<dns>:443``, reachable from the
   instance along AWS's route (``path_problem``): an internet-facing NLB sees the instance's public
   IP (or, with none, its NAT gateway's Elastic IP), admitted only by CIDR; an internal one its
   private IP and groups (else ``wait-for-api``, or
   ``kubeadm-init`` on the first control plane, "cannot reach API endpoint ...").
5. Control plane: it is registered with its endpoint's target group and, when the NLB has
   security groups, one of its own groups admits them on tcp/6443 (else ``kubeadm-<mode>``).
   Node: a joined control plane is behind its endpoint (registered, admitting the NLB), one of
   the control planes' groups lets the node in on tcp/6443 (else ``wait-for-api``), and the CA
   hash matches (else ``kubeadm-join``).
6. Node: one of its security groups lets a control plane in on tcp/10250. A node failing only
   this joined the cluster (bootstrap ``done``) but is NotReady, with the reason on its condition.
7. Once the cloud-controller-manager is part of the cluster (a control plane's user-data pins
   the addons), every joined instance's kubelet must run with ``cloud-provider: external`` and the
   CCM must run: the first control plane fetches each pinned addon from the store and its sha256
   must match (else that control plane stops in phase ``addons``). Failing either, the instance
   joined but is NotReady (``KubeletNotReady``): the CCM never initialises it.
8. A joined instance whose stand-in machine is down (its sshd stopped) is ``Unknown`` — the
   kubelet stopped posting status — as Kubernetes shows a node that went away.

Everything that passes is in its cluster's NodeList and Ready. A ``Bastion`` carries no kopsy
bootstrap config, so it never joins; ``ssh_route`` says how it and the others are reached over SSH:
an instance with only a private address only through its cluster's bastion. The functions here are pure:
a ``World`` (what the cloud looks like) in, ``Verdict`` values out.
"""

from __future__ import annotations

import email
import functools
import gzip
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import yaml

from kopsy.bootstrap import BootstrapConfig, parse_user_data
from kopsy.cloud.aws import tags as T
from kopsy.errors import KopsyError
from kopsy.spec.patches import DEFAULT_REPOSITORY
from kopsy.spec.versions import minor_of

if TYPE_CHECKING:
    from kopsy.sandbox.facts import ApiLoadBalancer, IngressRule, Instance, World

CONTROL_PLANE = "ControlPlane"
BASTION = "Bastion"
API_PORT = 6443
KUBELET_PORT = 10250
# kubelet --cloud-provider=external registers with this taint; the CCM removes it once it has
# initialised the node. NotReady messages for a node the CCM never initialised start with it.
UNINITIALIZED_TAINT = "node.cloudprovider.kubernetes.io/uninitialized"


@dataclass(frozen=True)
class UserData:
    problem: str | None  # why it is not usable cloud-init / kopsy config, or None
    config: BootstrapConfig | None


@dataclass(frozen=True)
class Verdict:
    instance_id: str
    cluster: str | None
    role: str  # ControlPlane | Node
    joined: bool  # listed in the cluster's NodeList
    ready: str  # Ready condition status: "True" | "False" | "Unknown"
    reason: str  # Ready condition reason, as the kubelet / node controller writes it
    message: str
    phase: str | None  # bootstrap phase reached ("done" when finished); None: the boot script never ran
    error: str | None  # why bootstrap (or cloud-init, when phase is None) stopped
    config: BootstrapConfig | None


@functools.lru_cache(maxsize=4096)
def decode_user_data(data: bytes) -> UserData:
    """Check that ``data`` is cloud-init user-data and read kopsy's bootstrap config from it."""
    try:
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    except (OSError, EOFError) as exc:
        return UserData(f"user-data is not valid gzip: {exc}", None)
    problem = _cloud_init_problem(raw)
    if problem:
        return UserData(f"user-data is not valid cloud-init: {problem}", None)
    try:
        return UserData(None, parse_user_data(data))
    except (ValueError, TypeError, KopsyError) as exc:  # any parse failure: the instance cannot bootstrap
        return UserData(f"user-data carries no usable kopsy bootstrap config: {exc}", None)


def _cloud_init_problem(raw: bytes) -> str | None:
    head = raw.lstrip()[:200].lower()
    if head.startswith((b"content-type:", b"mime-version:")):
        parts = [p for p in email.message_from_bytes(raw).walk() if not p.is_multipart()]
        if not parts:
            return "multipart MIME without parts"
        for part in parts:
            body = part.get_payload(decode=True)
            if not isinstance(body, bytes):
                return "unreadable MIME part"
            if body[:2] == b"\x1f\x8b":
                try:
                    body = gzip.decompress(body)
                except (OSError, EOFError) as exc:
                    return f"MIME part is not valid gzip: {exc}"
            is_config = part.get_content_type() == "text/cloud-config" or body.startswith(b"#cloud-config")
            if is_config and (problem := _cloud_config_problem(body)):
                return problem
        return None
    if raw.startswith(b"#cloud-config"):
        return _cloud_config_problem(raw)
    if raw.startswith(b"#!"):
        return None
    first = raw.split(b"\n", 1)[0][:40].decode(errors="replace")
    return f"unknown format (first line {first!r}; expected #cloud-config, #! or MIME)"


def _cloud_config_problem(body: bytes) -> str | None:
    try:
        doc = yaml.safe_load(body)
    except yaml.YAMLError as exc:
        return f"bad YAML: {' '.join(str(exc).split())[:160]}"
    return None if isinstance(doc, dict) else "#cloud-config is not a YAML mapping"


def allows(rules: tuple[IngressRule, ...], port: int, source_groups: tuple[str, ...], source_ip: str) -> bool:
    """Does any ingress rule admit tcp/``port`` from one of ``source_groups`` or from ``source_ip``?"""
    for r in rules:
        if r.protocol not in ("tcp", "6", "-1") or not r.from_port <= port <= r.to_port:
            continue
        if r.groups.intersection(source_groups):
            return True
        if source_ip and any(_in_cidr(source_ip, c) for c in r.cidrs):
            return True
    return False


def _in_cidr(ip: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def _ingress(world: World, inst: Instance) -> tuple[IngressRule, ...]:
    return tuple(r for sg in inst.security_groups for r in world.ingress.get(sg, ()))


def _port(endpoint: str) -> int:
    _, _, port = endpoint.rpartition(":")
    return int(port) if port.isdigit() else 443


def egress_problem(world: World, inst: Instance) -> str | None:
    """Why ``inst`` cannot reach the internet, or None: its subnet's 0.0.0.0/0 route must go to
    an internet gateway (which carries only traffic from a public IP) or to an available NAT
    gateway. A subnet the world did not read is not judged."""
    if inst.subnet not in world.egress:
        return None
    target = world.egress[inst.subnet]
    if target.startswith("igw-"):
        if inst.public_ip:
            return None
        return (f"connection timed out: subnet {inst.subnet} routes 0.0.0.0/0 to internet gateway {target}, "
                f"and this instance has no public IP (it needs a NAT gateway route instead)")
    if target.startswith("nat-"):
        if target in world.nat_ips:
            return None
        return f"connection timed out: subnet {inst.subnet} routes 0.0.0.0/0 to NAT gateway {target}, which is not available"
    return f"connection timed out: subnet {inst.subnet} has no route to the internet (no 0.0.0.0/0 route" + (
        f"; it goes to {target})" if target else ")")


def internet_source(world: World, inst: Instance) -> str | None:
    """The address the instance's internet traffic arrives from: its public IP, else its NAT
    gateway's Elastic IP, else None (it has no way out)."""
    if inst.public_ip:
        return inst.public_ip
    target = world.egress.get(inst.subnet, "")
    return world.nat_ips.get(target) if target.startswith("nat-") else None


def ssh_route(world: World, inst: Instance) -> tuple[bool, str | None]:
    """How an SSH client outside the VPC reaches ``inst``: ``(True, None)`` directly (it has a
    public IP), ``(True, bastion_ip)`` through the public IP of a running bastion of its cluster,
    ``(False, None)`` not at all (a private address is not routable from outside)."""
    if inst.public_ip:
        return True, None
    for b in world.instances:
        if b.cluster == inst.cluster and b.role == BASTION and b.state == "running" and b.public_ip and b.id != inst.id:
            return True, b.public_ip
    return False, None


def path_problem(world: World, inst: Instance, lb: ApiLoadBalancer, port: int) -> str | None:
    """Why ``inst`` cannot open tcp/``port`` to load balancer ``lb``, following the route AWS
    takes, or None. A connection to an internet-facing load balancer leaves through the
    internet gateway and arrives from the instance's public IP: only CIDR rules can admit it,
    never a security-group reference. One to an internal load balancer stays in the VPC and
    arrives from the private IP, with the instance's groups."""
    rules = tuple(r for sg in lb.security_groups for r in world.ingress.get(sg, ()))
    if lb.scheme == "internal":
        if lb.security_groups and not allows(rules, port, inst.security_groups, inst.private_ip):
            return (f"connection timed out: the internal load balancer's security groups admit neither this instance's "
                    f"groups nor its address {inst.private_ip} on tcp/{port}")
        return None
    source = internet_source(world, inst)
    if source is None:
        return ("connection timed out: the load balancer is internet-facing and this instance has no public IP "
                "and no NAT gateway to reach it from")
    if lb.security_groups and not allows(rules, port, (), source):
        allowed = sorted({c for r in rules for c in r.cidrs}) or ["nothing"]
        via = (f"its public IP {source} (through the internet gateway" if inst.public_ip
               else f"its NAT gateway's Elastic IP {source} (through the NAT gateway")
        return (f"connection timed out: the internet-facing load balancer admits tcp/{port} only from {', '.join(allowed)}, "
                f"and this instance's traffic arrives from {via}, where security-group references do not match)")
    return None


def _etcd_boot(world: World, inst: Instance) -> tuple[str, str | None]:
    """An init-mode control plane joins when another control plane of its cluster ran before it
    (the API answers); else the store's snapshots and first-boot record decide (``sandbox.etcd``)."""
    from kopsy.sandbox.etcd import boot_outcome

    cfg = decode_user_data(inst.user_data).config if inst.user_data else None
    earlier = any(i.cluster == inst.cluster and i.id != inst.id and i.state == "running" and _role(i) == CONTROL_PLANE
                  and i.launch_time < inst.launch_time for i in world.instances)
    fact = world.etcd.get(cfg.stateStore) if cfg else None
    return boot_outcome(fact, inst.launch_time, earlier)


def evaluate(world: World, machines_down: frozenset[str] = frozenset(),
             booting: Mapping[str, float] | None = None, joined_before: frozenset[str] = frozenset()) -> dict[str, Verdict]:
    """Judge every instance of ``world``; control planes first, since nodes depend on them.
    ``booting``: instance id -> how far its boot has come (0..1), for those still booting.
    ``joined_before``: instances that have joined once; a control plane among them stays a node
    when it is taken out of the API target groups (as one is before it is replaced): the
    target group only mattered for its kubeadm init/join."""
    verdicts: dict[str, Verdict] = {}
    # control planes first (nodes depend on them), the first one (kubeadm init, addons) before them all
    ordered = sorted(world.instances, key=lambda i: (_role(i) != CONTROL_PLANE, _mode(i) != "init"))
    for inst in ordered:
        verdicts[inst.id] = _judge(world, inst, verdicts, inst.id in machines_down, inst.id in joined_before)
        if booting and inst.id in booting:
            verdicts[inst.id] = booting_verdict(verdicts[inst.id], booting[inst.id])
    return verdicts


def _mode(inst: Instance) -> str:
    cfg = decode_user_data(inst.user_data).config if inst.user_data else None
    return mode_of(_role(inst), cfg)


def addons_problem(world: World, cfg: BootstrapConfig) -> str | None:
    """Why the first control plane of ``cfg`` cannot apply the addons its user-data pins, judged
    as its helper does: each fetched from the store and checked against its sha256."""
    stored = world.addons.get(cfg.stateStore, {})
    for key, want in sorted(cfg.addons.items()):
        got = stored.get(key)
        if got is None:
            return f"{cfg.stateStore}/{key} is not in the state store (run 'kopsy update cluster {cfg.clusterName} --yes')"
        if got != want:
            return f"{cfg.stateStore}/{key} has sha256 {got}, not the {want} this user-data pins; refusing it"
    return None


def _ccm_problem(world: World, cluster: str, earlier: dict[str, Verdict]) -> str | None:
    """None when the cluster's CCM runs (or the cluster has none); else why it does not."""
    pinned = [v for v in earlier.values() if v.cluster == cluster and v.config is not None and v.config.addons]
    firsts = [v for v in pinned if v.config is not None and v.config.mode == "init"]
    if not pinned:
        return None
    if any(v.joined and v.phase == "done" for v in firsts):
        return None
    failed = next((v.error for v in firsts if v.phase == "addons" and v.error), None)
    return f"the cloud-controller-manager is not running: {failed or 'the first control plane has not applied the addons'}"


def booting_verdict(v: Verdict, progress: float) -> Verdict:
    """An instance that would join, but whose boot has only come ``progress`` (0..1) of the way:
    not joined yet, at the boot phase that far along. A verdict with an error is kept as it is
    (a broken instance says why at once, as before boot times existed)."""
    if not v.joined:
        return v
    phases = MODE_PHASES[mode_of(v.role, v.config)]
    reached = phases[max(0, min(len(phases) - 2, int(progress * (len(phases) - 1))))]
    return Verdict(v.instance_id, v.cluster, v.role, False, "False", "", "", reached, None, v.config)


def _role(inst: Instance) -> str:
    if inst.role:
        return inst.role
    cfg = decode_user_data(inst.user_data).config if inst.user_data else None
    return cfg.role if cfg else "Node"


MODE_PHASES = {
    "init": ("start", "system", "packages", "containerd", "fetch", "kubeadm-init", "cni", "addons", "token-refresh", "done"),
    "join-control-plane": (
        "start", "system", "packages", "containerd", "fetch", "wait-for-api", "kubeadm-join-control-plane", "token-refresh", "done",
    ),
    "join": ("start", "system", "packages", "containerd", "fetch", "wait-for-api", "kubeadm-join", "done"),
}


def mode_of(role: str, cfg: BootstrapConfig | None) -> str:
    if cfg is not None and cfg.mode in MODE_PHASES:
        return cfg.mode
    return "init" if role == CONTROL_PLANE else "join"


def _judge(world: World, inst: Instance, earlier: dict[str, Verdict], down: bool, joined_before: bool = False) -> Verdict:
    role = _role(inst)
    cp = role == CONTROL_PLANE

    def stop(phase: str | None, error: str, cfg: BootstrapConfig | None = None) -> Verdict:
        return Verdict(inst.id, inst.cluster, role, False, "False", "", "", phase, error, cfg)

    if inst.state != "running":
        return stop(None, f"instance is {inst.state}")
    if not inst.user_data:
        return stop(None, "instance has no user-data")
    ud = decode_user_data(inst.user_data)
    if ud.config is None:
        return stop(None, ud.problem or "user-data unusable")
    cfg = ud.config
    mode = mode_of(role, cfg)
    kubeadm = f"kubeadm-{mode}"
    if not inst.cluster:
        return stop(None, f"instance carries no {T.TAG_CLUSTER} tag", cfg)
    if cfg.clusterName != inst.cluster:
        return stop(None, f"user-data is for cluster {cfg.clusterName} but the instance is tagged for {inst.cluster}", cfg)
    if problem := egress_problem(world, inst):
        return stop("packages", f"cannot reach the package mirrors: {problem}", cfg)
    version = cfg.kubernetesVersion.lstrip("v")
    if world.published is not None and version not in world.published:  # apt-get install kubeadm=<v>-* fails
        repo = f"{DEFAULT_REPOSITORY.removeprefix('https://')}/v{minor_of(version)}/deb"
        return stop("packages", f"kubeadm, kubelet and kubectl {version} are not in the package repository ({repo})", cfg)
    ca = world.ca.get(cfg.stateStore)
    if ca is None or ca.cert_hash is None:
        return stop("fetch", ca.error if ca and ca.error else f"cannot read {cfg.stateStore}/pki/ca.crt", cfg)
    if cp and cfg.caCertHash != ca.cert_hash:
        return stop("fetch", f"the CA in the state store ({ca.cert_hash}) is not the one this user-data pins ({cfg.caCertHash})", cfg)
    if cp and mode == "init":  # the boot decision (docs/disaster-recovery.md), from what the store held at boot
        outcome, detail = _etcd_boot(world, inst)
        if outcome == "fail":
            return stop("restore", detail or "no snapshot", cfg)
    lbs = world.api.get(inst.cluster, {})
    wait = "kubeadm-init" if mode == "init" else "wait-for-api"
    if not lbs:
        return stop(wait, f"cannot reach API endpoint {cfg.apiEndpoint}: cluster {inst.cluster} has no API load balancer", cfg)
    lb = lbs.get(cfg.apiEndpoint)
    expected = cfg.apiEndpoint
    if lb is None:
        return stop(wait, f"cannot reach API endpoint {cfg.apiEndpoint}: no such host (the cluster's API load balancers are "
                          f"{', '.join(sorted(lbs))})", cfg)
    if problem := path_problem(world, inst, lb, _port(expected)):
        return stop(wait, f"cannot reach API endpoint {expected}: {problem}", cfg)
    if cp:
        if inst.id not in lb.registered and not joined_before:
            return stop(kubeadm, f"API endpoint {expected} does not route to this control plane: {inst.id} is not registered with the load balancer's target group", cfg)
        if lb.security_groups and not allows(_ingress(world, inst), API_PORT, lb.security_groups, ""):
            return stop(
                kubeadm,
                f"cannot reach API endpoint {expected}: the load balancer cannot reach this control plane on tcp/{API_PORT} "
                f"(its security groups do not admit the load balancer's)",
                cfg,
            )
    else:
        cps = [
            i for i in world.instances
            if i.cluster == inst.cluster and (v := earlier.get(i.id)) is not None and v.role == CONTROL_PLANE and v.joined
        ]
        if not cps:
            return stop(wait, f"cannot reach API endpoint {expected}: no control plane answers behind it (is the first control plane up?)", cfg)
        behind = [c for c in cps if c.id in lb.registered and (not lb.security_groups or allows(_ingress(world, c), API_PORT, lb.security_groups, ""))]
        if not behind:
            return stop(wait, f"cannot reach API endpoint {expected}: no control plane answers behind it (none is registered "
                              f"with its target group and admits the load balancer on tcp/{API_PORT})", cfg)
        if not any(allows(_ingress(world, c), API_PORT, inst.security_groups, inst.private_ip) for c in cps):
            return stop(
                wait,
                f"cannot reach API endpoint {expected}: connection to the control planes on tcp/{API_PORT} timed out "
                f"(their security groups do not admit this node)",
                cfg,
            )
        if cfg.caCertHash != ca.cert_hash:
            return stop(
                kubeadm,
                f"kubeadm join through {expected} failed: the cluster CA ({ca.cert_hash}) is not the one this "
                f"user-data pins ({cfg.caCertHash})",
                cfg,
            )
        if not any(allows(_ingress(world, inst), KUBELET_PORT, c.security_groups, c.private_ip) for c in cps):
            msg = (
                f"control plane cannot reach the kubelet on {inst.private_ip}:{KUBELET_PORT}: the node's security "
                f"groups do not admit tcp/{KUBELET_PORT} from the control planes"
            )
            return Verdict(inst.id, inst.cluster, role, True, "Unknown" if down else "False", "KubeletNotReady", msg, "done", None, cfg)
    if cp and mode == "init" and cfg.addons and (problem := addons_problem(world, cfg)):
        # kubeadm init went through; the boot script stops applying the addons
        return Verdict(inst.id, inst.cluster, role, True, "Unknown" if down else "False", "KubeletNotReady",
                       f"{UNINITIALIZED_TAINT}: the cloud-controller-manager is not running: {problem}", "addons", problem, cfg)
    if any(c.config is not None and c.config.addons for c in earlier.values() if c.cluster == inst.cluster) or cfg.addons:
        if cfg.cloudProvider != "external":
            msg = ("the kubelet runs without --cloud-provider=external, so the cloud-controller-manager never "
                   "initialises it (no providerID or zone labels)")
            return Verdict(inst.id, inst.cluster, role, True, "Unknown" if down else "False", "KubeletNotReady", msg, "done", None, cfg)
        if problem := _ccm_problem(world, inst.cluster, {**earlier, inst.id: Verdict(inst.id, inst.cluster, role, True, "True", "", "", "done", None, cfg)}):
            msg = f"{UNINITIALIZED_TAINT}: {problem}"
            return Verdict(inst.id, inst.cluster, role, True, "Unknown" if down else "False", "KubeletNotReady", msg, "done", None, cfg)
    if down:
        return Verdict(inst.id, inst.cluster, role, True, "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.", "done", None, cfg)
    return Verdict(inst.id, inst.cluster, role, True, "True", "KubeletReady", "kubelet is posting ready status", "done", None, cfg)

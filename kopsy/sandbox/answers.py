"""The commands ``kopsy validate`` runs on a node, answered from the rules' verdicts in real formats.

Answered (each optionally behind ``sudo``), as docs/sandbox.md ("Commands a node answers") lists them:

- ``kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o json``: kubectl's ``List`` of
  v1 Nodes (name = EC2 private DNS name, ``spec.providerID`` ``aws:///<zone>/<id>``).
- ``kubectl --kubeconfig /etc/kubernetes/admin.conf get pods -n kube-system -o json``: the
  kube-system pods kubeadm and the CNI would run.
- ``cat /var/lib/kopsy/bootstrap.json``: ``{"phase", "error", "updated"}``.
- ``cloud-init status [--long]``: cloud-init's own text (Ubuntu 24.04's cloud-init 24.x fields).
- ``tail -n N /var/log/kopsy-bootstrap.log``.

Anything else gets a message saying what this stand-in answers, and exit 127 (command not found).
Nothing here decides readiness: that is ``rules``.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kopsy.sandbox.facts import Instance, World
from kopsy.sandbox.rules import CONTROL_PLANE, MODE_PHASES, UNINITIALIZED_TAINT, Verdict, mode_of

ADMIN_CONF = "/etc/kubernetes/admin.conf"
BOOTSTRAP_JSON = "/var/lib/kopsy/bootstrap.json"
BOOTSTRAP_LOG = "/var/log/kopsy-bootstrap.log"
NOT_FOUND = 127
SUPPORTED = (
    f"kubectl --kubeconfig {ADMIN_CONF} get nodes -o json",
    f"kubectl --kubeconfig {ADMIN_CONF} get pods -n kube-system -o json",
    f"cat {BOOTSTRAP_JSON}",
    "cloud-init status [--long]",
    f"tail -n N {BOOTSTRAP_LOG}",
)
CNI_DAEMONSETS = {"calico": "calico-node", "cilium": "cilium", "flannel": "kube-flannel-ds"}
CNI_CONTROLLERS = {"calico": "calico-kube-controllers", "cilium": "cilium-operator"}


@dataclass(frozen=True)
class Answer:
    stdout: str
    stderr: str = ""
    exit: int = 0


def answer(world: World, verdicts: dict[str, Verdict], instance_id: str, command: str, now: datetime) -> Answer:
    """Answer ``command`` as instance ``instance_id`` would."""
    inst = next((i for i in world.instances if i.id == instance_id), None)
    verdict = verdicts.get(instance_id)
    if inst is None or verdict is None:
        return Answer("", f"kopsy sandbox: instance {instance_id} no longer exists (terminated)\n", 255)
    argv = command_argv(command) or []
    if argv[:1] == ["kubectl"]:
        return _kubectl(world, verdicts, inst, verdict, argv[1:], now)
    if argv == ["cat", BOOTSTRAP_JSON]:
        if verdict.phase is None:  # cloud-init never ran the boot script
            return Answer("", f"cat: {BOOTSTRAP_JSON}: No such file or directory\n", 1)
        doc = {"error": verdict.error, "phase": verdict.phase, "updated": _ts(_launched(inst, now))}
        return Answer(json.dumps(doc, sort_keys=True) + "\n")
    if argv[:2] == ["cloud-init", "status"] and set(argv[2:]) <= {"--long", "-l", "--wait", "-w"}:
        return _cloud_init_status(inst, verdict, long="--long" in argv or "-l" in argv, now=now)
    lines = _tail_lines(argv)
    if lines is not None:
        if verdict.phase is None:
            return Answer("", f"tail: cannot open '{BOOTSTRAP_LOG}' for reading: No such file or directory\n", 1)
        log = _bootstrap_log(inst, verdict, now)
        return Answer("".join(line + "\n" for line in log[max(0, len(log) - lines):]) if lines else "")
    return Answer(
        "",
        f"kopsy sandbox node stand-in ({inst.id}): LOCAL EMULATION, not a real machine.\n"
        f"{command or '(interactive shell)'}: command not found here. This stand-in answers only:\n"
        + "".join(f"  [sudo] {c}\n" for c in SUPPORTED),
        NOT_FOUND,
    )


def command_argv(command: str) -> list[str] | None:
    """A command line as the shell splits it, ``sudo`` (and its flags) taken off; None when
    it does not parse."""
    try:
        argv = shlex.split(command or "")
    except ValueError:
        return None
    while argv and argv[0] == "sudo":
        argv = argv[1:]
        while argv and argv[0] in ("-n", "-E", "-H", "--non-interactive"):
            argv = argv[1:]
    return argv


def _tail_lines(argv: list[str]) -> int | None:
    if not argv or argv[0] != "tail" or argv[-1] != BOOTSTRAP_LOG:
        return None
    opts = argv[1:-1]
    if not opts:
        return 10
    if len(opts) == 2 and opts[0] == "-n" and opts[1].isdigit():
        return int(opts[1])
    if len(opts) == 1 and opts[0].startswith("-n") and opts[0][2:].isdigit():
        return int(opts[0][2:])
    if len(opts) == 1 and opts[0][1:].isdigit():
        return int(opts[0][1:])
    return None


def _kubectl(world: World, verdicts: dict[str, Verdict], inst: Instance, v: Verdict, args: list[str], now: datetime) -> Answer:
    kubeconfig, rest, output, namespace = "", [], "", "default"
    i = 0
    while i < len(args):
        a = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else ""
        if a == "--kubeconfig":
            kubeconfig, i = nxt, i + 2
        elif a.startswith("--kubeconfig="):
            kubeconfig, i = a.split("=", 1)[1], i + 1
        elif a in ("-o", "--output"):
            output, i = nxt, i + 2
        elif a.startswith(("-o", "--output=")):
            output, i = a.split("=", 1)[1] if "=" in a else a[2:], i + 1
        elif a in ("-n", "--namespace"):
            namespace, i = nxt, i + 2
        elif a.startswith("--namespace="):
            namespace, i = a.split("=", 1)[1], i + 1
        else:
            rest.append(a)
            i += 1
    what = {"nodes": "nodes", "node": "nodes", "no": "nodes", "pods": "pods", "pod": "pods", "po": "pods"}
    if rest[:1] != ["get"] or len(rest) != 2 or rest[1] not in what or output != "json":
        return Answer("", f"kopsy sandbox: only 'get nodes -o json' and 'get pods -n kube-system -o json' are emulated, not: kubectl {' '.join(args)}\n", NOT_FOUND)
    if not kubeconfig:
        return Answer("", "The connection to the server localhost:8080 was refused - did you specify the right host or port?\n", 1)
    if kubeconfig != ADMIN_CONF or v.role != CONTROL_PLANE:
        return Answer("", f"error: stat {kubeconfig}: no such file or directory\n", 1)
    if not v.joined:
        server = v.config.apiEndpoint if v.config else "localhost:8080"
        return Answer("", f"The connection to the server {server} was refused - did you specify the right host or port?\n", 1)
    if what[rest[1]] == "nodes":
        return Answer(json.dumps(node_list(world, verdicts, v.cluster or "", now), indent=4) + "\n")
    if namespace != "kube-system":
        return Answer(json.dumps(_list([])) + "\n")
    return Answer(json.dumps(pod_list(world, verdicts, v.cluster or "", now), indent=4) + "\n")


def _list(items: list[dict[str, Any]]) -> dict[str, Any]:
    """kubectl prints a ``List`` (not ``NodeList``) for ``get ... -o json``."""
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


def _ts(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _launched(inst: Instance, now: datetime) -> datetime:
    try:
        return datetime.strptime(inst.launch_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return now


def _suffix(seed: str, n: int = 5) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:n])


def _uid(seed: str) -> str:
    h = hashlib.sha256(seed.encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _members(world: World, verdicts: dict[str, Verdict], cluster: str) -> list[tuple[Instance, Verdict]]:
    return [(i, verdicts[i.id]) for i in world.instances if i.cluster == cluster and i.id in verdicts and verdicts[i.id].joined]


def node_list(world: World, verdicts: dict[str, Verdict], cluster: str, now: datetime) -> dict[str, Any]:
    return _list([_node(i, v, now) for i, v in _members(world, verdicts, cluster)])


def _node(inst: Instance, v: Verdict, now: datetime) -> dict[str, Any]:
    name = inst.private_dns
    cp = v.role == CONTROL_PLANE
    created = _ts(_launched(inst, now))
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/instance-type": inst.instance_type,
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": inst.instance_type,
        "topology.kubernetes.io/region": inst.zone[:-1],
        "topology.kubernetes.io/zone": inst.zone,
    }
    if inst.instance_group:
        labels["kops.k8s.io/instancegroup"] = inst.instance_group
    if cp:
        labels["node-role.kubernetes.io/control-plane"] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
    else:
        labels["node-role.kubernetes.io/node"] = ""
    spec: dict[str, Any] = {"providerID": f"aws:///{inst.zone}/{inst.id}"}
    if cp:
        spec["taints"] = [{"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane"}]
    if v.message.startswith(UNINITIALIZED_TAINT):  # the CCM has not initialised it
        spec.setdefault("taints", []).append({"effect": "NoSchedule", "key": UNINITIALIZED_TAINT, "value": "true"})
    if v.ready != "True":
        key = "node.kubernetes.io/unreachable" if v.ready == "Unknown" else "node.kubernetes.io/not-ready"
        spec.setdefault("taints", []).append({"effect": "NoSchedule", "key": key, "timeAddedAt": _ts(now)})
    pressure = "Unknown" if v.ready == "Unknown" else "False"

    def cond(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {"lastHeartbeatTime": _ts(now), "lastTransitionTime": created, "message": message, "reason": reason, "status": status, "type": kind}

    version = f"v{v.config.kubernetesVersion.lstrip('v')}" if v.config else "v0.0.0"
    addresses = [{"address": inst.private_ip, "type": "InternalIP"}]
    if inst.public_ip:
        addresses.append({"address": inst.public_ip, "type": "ExternalIP"})
    addresses += [{"address": name, "type": "InternalDNS"}, {"address": name, "type": "Hostname"}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "annotations": {"kubeadm.alpha.kubernetes.io/cri-socket": "unix:///var/run/containerd/containerd.sock"},
            "creationTimestamp": created,
            "labels": labels,
            "name": name,
            "resourceVersion": str(int(hashlib.sha256((inst.id + v.ready).encode()).hexdigest()[:6], 16)),
            "uid": _uid(inst.id),
        },
        "spec": spec,
        "status": {
            "addresses": addresses,
            "allocatable": {"cpu": "2", "ephemeral-storage": "59763732382", "memory": "3919444Ki", "pods": "110"},
            "capacity": {"cpu": "2", "ephemeral-storage": "64847852Ki", "memory": "4021844Ki", "pods": "110"},
            "conditions": [
                cond("MemoryPressure", pressure, "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", pressure, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", pressure, "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", v.ready, v.reason, v.message),
            ],
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": _uid("boot" + inst.id),
                "containerRuntimeVersion": "containerd://1.7.24",
                "kernelVersion": "6.8.0-1021-aws",
                "kubeProxyVersion": version,
                "kubeletVersion": version,
                "machineID": hashlib.md5(inst.id.encode()).hexdigest(),
                "operatingSystem": "linux",
                "osImage": "Ubuntu 24.04.1 LTS",
                "systemUUID": _uid("sys" + inst.id),
            },
        },
    }


def pod_list(world: World, verdicts: dict[str, Verdict], cluster: str, now: datetime) -> dict[str, Any]:
    members = _members(world, verdicts, cluster)
    networking = next((v.config.networking for _, v in members if v.config), "calico")
    ccm = any(v.config is not None and v.config.addons for _, v in members)
    pods: list[dict[str, Any]] = []
    for inst, v in members:
        node = inst.private_dns
        if v.role == CONTROL_PLANE:
            for comp in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"):
                pods.append(_pod(f"{comp}-{node}", comp, node, v.ready == "True", "system-node-critical", "Node", node, inst, now))
        pods.append(_pod(f"kube-proxy-{_suffix(inst.id)}", "kube-proxy", node, v.ready == "True", "system-node-critical", "DaemonSet", "kube-proxy", inst, now))
        if ds := CNI_DAEMONSETS.get(networking):
            pods.append(_pod(f"{ds}-{_suffix(ds + inst.id)}", ds, node, v.ready == "True", "system-node-critical", "DaemonSet", ds, inst, now))
        if ccm:  # the addons the first control plane applies: the CCM on control planes, the CSI node plugin everywhere
            for ds in (("aws-cloud-controller-manager",) if v.role == CONTROL_PLANE else ()) + ("ebs-csi-node",):
                pods.append(_pod(f"{ds}-{_suffix(ds + inst.id)}", ds, node, v.ready == "True", "system-node-critical", "DaemonSet", ds, inst, now))
    ready_nodes = [(i, v) for i, v in members if v.ready == "True"]
    workers = [(i, v) for i, v in ready_nodes if v.role != CONTROL_PLANE] or ready_nodes
    deployments = [("coredns", 2)] + ([(CNI_CONTROLLERS[networking], 1)] if networking in CNI_CONTROLLERS else [])
    control_planes = [(i, v) for i, v in ready_nodes if v.role == CONTROL_PLANE]
    placed = [(app, n, workers) for app, n in deployments] + ([("ebs-csi-controller", 1, control_planes)] if ccm else [])
    for app, replicas, hosts in placed:
        rs = _suffix(cluster + app, 10)
        for n in range(replicas):
            host = hosts[n % len(hosts)] if hosts else None
            pods.append(
                _pod(
                    f"{app}-{rs}-{_suffix(cluster + app + str(n))}", app, host[0].private_dns if host else None,
                    host is not None, "system-cluster-critical", "ReplicaSet", f"{app}-{rs}", host[0] if host else None, now,
                )
            )
    return _list(pods)


def _pod(
    name: str, app: str, node: str | None, ready: bool, priority: str, owner_kind: str, owner: str,
    inst: Instance | None, now: datetime,
) -> dict[str, Any]:
    started = _ts(_launched(inst, now)) if inst else _ts(now)
    status = "True" if ready else "False"
    conditions = [
        {"lastProbeTime": None, "lastTransitionTime": started, "status": "True" if node else "False", "type": "PodScheduled"},
    ]
    phase = "Pending"
    if node:
        phase = "Running"
        conditions += [
            {"lastProbeTime": None, "lastTransitionTime": started, "status": "True", "type": "Initialized"},
            {"lastProbeTime": None, "lastTransitionTime": started, "status": status, "type": "ContainersReady"},
            {"lastProbeTime": None, "lastTransitionTime": started, "status": status, "type": "Ready"},
        ]
    spec: dict[str, Any] = {
        "containers": [{"image": f"registry.k8s.io/{app}:sandbox", "name": app}],
        "priority": 2000001000 if priority == "system-node-critical" else 2000000000,
        "priorityClassName": priority,
    }
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "creationTimestamp": started,
            "labels": {"k8s-app": app, "component": app},
            "name": name,
            "namespace": "kube-system",
            "ownerReferences": [{"apiVersion": "v1" if owner_kind == "Node" else "apps/v1", "controller": True, "kind": owner_kind, "name": owner, "uid": _uid(owner)}],
            "uid": _uid(name),
        },
        "spec": spec,
        "status": {
            "conditions": conditions,
            "containerStatuses": [{"name": app, "ready": ready and node is not None, "restartCount": 0, "started": node is not None}] if node else [],
            "phase": phase,
            "hostIP": inst.private_ip if (inst and node) else None,
            "startTime": started,
        },
    }


def _cloud_init_status(inst: Instance, v: Verdict, *, long: bool, now: datetime) -> Answer:
    """cloud-init's ``status`` text. kopsy's boot script runs as cloud-init's scripts_user module,
    so a failed bootstrap is a cloud-init error; unusable user-data fails cloud-init itself."""
    errors: list[str] = []
    if v.phase is None:
        status = "error"
        errors.append(f"('init', ValueError({v.error!r}))")
    elif v.phase == "done":
        status = "done"
    elif v.error:
        status = "error"
        errors.append("('scripts_user', RuntimeError('Runparts: 1 failures (part-001) in /var/lib/cloud/instance/scripts'))")
    else:
        status = "running"
    text = f"status: {status}\n"
    if long:
        last = _launched(inst, now).strftime("%a, %d %b %Y %H:%M:%S +0000")
        text += (
            f"extended_status: {status}\n"
            "boot_status_code: enabled-by-generator\n"
            f"last_update: {last}\n"
            "detail:\nDataSourceEc2Local\n"
        )
        text += "errors: []\n" if not errors else "errors:\n" + "".join(f"\t- {e}\n" for e in errors)
        text += "recoverable_errors: {}\n"
    return Answer(text, "", 1 if status == "error" else 0)


def _bootstrap_log(inst: Instance, v: Verdict, now: datetime) -> list[str]:
    """What kopsy's boot script (cloudinit/bootstrap.sh.j2) logs, in its format, up to where it stopped."""
    t = _ts(_launched(inst, now))
    cfg = v.config
    endpoint = cfg.apiEndpoint if cfg else "?"
    notes = {
        "fetch": "join material fetched",
        "wait-for-api": f"the API at {endpoint} answers",
        "kubeadm-init": "kubeadm init finished",
        "kubeadm-join-control-plane": "kubeadm join --control-plane finished",
        "kubeadm-join": "kubeadm join finished",
    }
    lines = []
    phases = MODE_PHASES[mode_of(v.role, cfg)]
    if v.phase == "restore":  # the boot decision stopped it (no snapshot on a cluster that booted before)
        phases = (*phases[: phases.index("fetch") + 1], "restore")
    for phase in phases:
        lines.append(f"{t} [{phase}] phase started")
        if phase == v.phase:
            if v.error:
                lines.append(f"{t} [{phase}] FAILED: {v.error}")
            else:
                lines.append(f"{t} [{phase}] bootstrap complete: {inst.private_dns} is part of the cluster")
            break
        if phase in notes:
            lines.append(f"{t} [{phase}] {notes[phase]}")
    return lines

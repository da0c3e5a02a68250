"""Workloads in the emulated clusters: cordons, pods, PodDisruptionBudgets, and ``kubectl drain``.

The readiness rules say which nodes exist and are Ready; this module keeps what Kubernetes
itself would remember on top: which nodes are cordoned, where each workload pod runs, and
which budgets guard them. It answers, on a joined control plane (``admin.conf``):

- ``kubectl cordon|uncordon NODE``;
- ``kubectl drain NODE --ignore-daemonsets --delete-emptydir-data --timeout=Ns``: cordons, then
  evicts every workload pod on the node through the budgets. An evicted pod is recreated by its
  controller on another Ready, schedulable worker (Pending when there is none). A pod whose
  budget allows no disruption blocks: the drain retries until its timeout and then fails with
  kubectl's own messages, naming the pod (kubectl does not name the budget);
- ``kubectl get pods -A -o json`` (kube-system's pods plus the workloads) and
  ``kubectl get pdb -A -o json``;
- kubeadm's cluster state for an upgrade: ``kubeadm-config``, the kube-proxy DaemonSet's image,
  and the coredns Deployment (``get deployment coredns -o json``, ``set image
  deployment/coredns``, ``rollout status deployment/coredns``);
- ``kubeadm config images list --kubernetes-version vX.Y.Z`` on any booted instance.

**CoreDNS stand-in.** Real kubeadm lists the CoreDNS image its binary was built with (a
constant per kubeadm release, whatever ``--kubernetes-version`` says). The sandbox has no
kubeadm binary, so it makes the tag up from the instance's kubeadm version (its user-data's
``kubernetesVersion``): ``registry.k8s.io/coredns/coredns:sandbox-kubeadm-v1.36.0``. Such a
tag exists only here; it lets a test see that CoreDNS moved to what the *new* control plane's
kubeadm says. The coredns Deployment starts at the tag of the first control plane's kubeadm
(what ``kubeadm init`` deploys), and its pods show its image.

Pods on a node that went away are rescheduled the same way, as the controllers would. Tests
place pods and budgets with the supervisor's ``workload`` request (``place``). State lives in
the supervisor's memory only: a restarted supervisor starts with no workloads and no cordons.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kopsy.sandbox.answers import ADMIN_CONF, Answer, _list, _uid, command_argv, pod_list
from kopsy.sandbox.facts import World
from kopsy.sandbox.rules import CONTROL_PLANE, Verdict

DRAIN_RETRY = 0.5  # seconds between eviction attempts (kubectl: 5s)
MAX_DRAIN_WAIT = 600.0


@dataclass
class Pod:
    namespace: str
    name: str
    labels: dict[str, str]
    node: str | None  # None: Pending


@dataclass
class Budget:
    namespace: str
    name: str
    selector: dict[str, str]
    min_available: int


@dataclass
class Workloads:
    cordoned: dict[str, set[str]] = field(default_factory=dict)  # cluster -> node names
    pods: dict[str, dict[tuple[str, str], Pod]] = field(default_factory=dict)  # cluster -> pods
    budgets: dict[str, dict[tuple[str, str], Budget]] = field(default_factory=dict)
    kubeadm_version: dict[str, str] = field(default_factory=dict)  # cluster -> kubeadm-config kubernetesVersion
    static_version: dict[str, str] = field(default_factory=dict)  # control-plane node -> the version its static pods run
    kube_proxy_image: dict[str, str] = field(default_factory=dict)  # cluster -> kube-proxy DaemonSet image
    coredns_image: dict[str, str] = field(default_factory=dict)  # cluster -> coredns Deployment image
    lock: threading.RLock = field(default_factory=threading.RLock)
    sleep: Callable[[float], None] = time.sleep

    # --- placing (tests) ----------------------------------------------------------------------

    def place(self, cluster: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Add pods (``{"namespace", "name", "labels", "node"}``) and budgets
        (``{"namespace", "name", "selector", "minAvailable"}``) to a cluster."""
        with self.lock:
            pods = self.pods.setdefault(cluster, {})
            for p in spec.get("pods", []):
                pod = Pod(str(p.get("namespace", "default")), str(p["name"]), dict(p.get("labels") or {}), p.get("node"))
                pods[(pod.namespace, pod.name)] = pod
            budgets = self.budgets.setdefault(cluster, {})
            for b in spec.get("pdbs", []):
                budget = Budget(str(b.get("namespace", "default")), str(b["name"]), dict(b.get("selector") or {}),
                                int(b.get("minAvailable", 1)))
                budgets[(budget.namespace, budget.name)] = budget
            for key in spec.get("delete_pdbs", []):
                budgets.pop((key[0], key[1]), None)
        return {"ok": True}

    # --- scheduling ---------------------------------------------------------------------------

    def _schedulable(self, cluster: str, nodes: Mapping[str, Verdict], avoid: str = "") -> list[str]:
        cordoned = self.cordoned.get(cluster, set())
        return sorted(n for n, v in nodes.items() if v.ready == "True" and v.role != CONTROL_PLANE
                      and n not in cordoned and n != avoid)

    def _reschedule(self, cluster: str, nodes: Mapping[str, Verdict]) -> None:
        """Pods whose node is gone (or Pending ones) go to the least busy schedulable worker."""
        targets = self._schedulable(cluster, nodes)
        for pod in self.pods.get(cluster, {}).values():
            if pod.node is None or pod.node not in nodes:
                pod.node = self._least_busy(cluster, targets)

    def _least_busy(self, cluster: str, targets: list[str]) -> str | None:
        if not targets:
            return None
        load = {t: 0 for t in targets}
        for p in self.pods.get(cluster, {}).values():
            if p.node in load:
                load[p.node] += 1
        return min(targets, key=lambda t: (load[t], t))

    def _blocking(self, cluster: str, pod: Pod) -> Budget | None:
        for b in self.budgets.get(cluster, {}).values():
            if b.namespace != pod.namespace or not b.selector or any(pod.labels.get(k) != v for k, v in b.selector.items()):
                continue
            healthy = sum(1 for p in self.pods.get(cluster, {}).values() if p.namespace == b.namespace and p.node
                          and all(p.labels.get(k) == v for k, v in b.selector.items()))
            if healthy - 1 < b.min_available:
                return b
        return None

    # --- kubectl ------------------------------------------------------------------------------

    def answer(self, world: World, verdicts: Mapping[str, Verdict], instance_id: str, command: str,
               now: datetime) -> Answer | None:
        """The answer to a workload command on ``instance_id``, or None when it is not one."""
        argv = command_argv(command) or []
        if argv[:4] == ["kubeadm", "config", "images", "list"]:
            return _images_list(verdicts.get(instance_id), argv[4:])
        if argv[:3] != ["kubectl", "--kubeconfig", ADMIN_CONF] or len(argv) < 4:
            return None
        verb, rest = argv[3], argv[4:]
        if verb in ("-n", "--namespace") and len(argv) > 5 and argv[4] == "kube-system":
            return self._kubeadm(world, verdicts, instance_id, argv[5:])
        is_get_all = verb == "get" and len(rest) >= 2 and rest[0] in ("pods", "pdb") and "-A" in rest
        if verb not in ("cordon", "uncordon", "drain") and not is_get_all:
            return None
        v = verdicts.get(instance_id)
        if v is None or v.role != CONTROL_PLANE or not v.joined:
            return None  # the usual answers say why kubectl cannot work here
        cluster = v.cluster or ""
        inst_of = {i.id: i for i in world.instances}
        nodes = {inst_of[iid].private_dns: vd for iid, vd in verdicts.items()
                 if iid in inst_of and vd.cluster == cluster and vd.joined}
        with self.lock:
            self._reschedule(cluster, nodes)
            if is_get_all:
                return self._get(cluster, world, dict(verdicts), rest[0], now)
            if not rest:
                return Answer("", "error: resource(s) were provided, but no name was specified\n", 1)
            node = rest[0]
            if node not in nodes:
                return Answer("", f'Error from server (NotFound): nodes "{node}" not found\n', 1)
            if verb in ("cordon", "uncordon"):
                marks = self.cordoned.setdefault(cluster, set())
                (marks.add if verb == "cordon" else marks.discard)(node)
                return Answer(f"node/{node} {verb}ed\n")
            self.cordoned.setdefault(cluster, set()).add(node)
        return self._drain(cluster, nodes, node, _timeout(rest))

    def observe(self, world: World, verdicts: Mapping[str, Verdict]) -> None:
        """Called on every answer, so each control plane's join is seen at the time it happens."""
        with self.lock:
            for cluster in {v.cluster for v in verdicts.values() if v.cluster and v.joined and v.role == CONTROL_PLANE}:
                self._track(cluster, world, verdicts)

    def _track(self, cluster: str, world: World, verdicts: Mapping[str, Verdict]) -> None:
        """kubeadm's view: the cluster's kubeadm-config starts at the first control plane's
        version; each control plane's static pods run the version kubeadm-config had when it
        joined (kubeadm join --control-plane reads the ClusterConfiguration from there)."""
        cps = sorted((i for i in world.instances if (v := verdicts.get(i.id)) and v.cluster == cluster and v.joined
                      and v.role == CONTROL_PLANE and v.config), key=lambda i: i.launch_time)
        for inst in cps:
            cfg = verdicts[inst.id].config
            assert cfg is not None
            self.kubeadm_version.setdefault(cluster, cfg.kubernetesVersion.lstrip("v"))
            self.coredns_image.setdefault(cluster, coredns_stand_in(cfg.kubernetesVersion))
            self.static_version.setdefault(inst.private_dns, self.kubeadm_version[cluster])

    def _kubeadm(self, world: World, verdicts: Mapping[str, Verdict], instance_id: str, args: list[str]) -> Answer | None:
        """``-n kube-system get configmap kubeadm-config -o json``, ``patch configmap kubeadm-config
        --type merge -p JSON``, ``set image daemonset/kube-proxy kube-proxy=IMAGE``, and the
        coredns Deployment's ``get``, ``set image`` and ``rollout status``."""
        import json

        import yaml

        v = verdicts.get(instance_id)
        if v is None or v.role != CONTROL_PLANE or not v.joined:
            return None
        cluster = v.cluster or ""
        with self.lock:
            self._track(cluster, world, verdicts)
            version = self.kubeadm_version.get(cluster, "")
            if args[:3] == ["get", "configmap", "kubeadm-config"]:
                text = yaml.safe_dump({"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ClusterConfiguration",
                                       "clusterName": cluster, "kubernetesVersion": f"v{version}"}, sort_keys=False)
                doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
                       "data": {"ClusterConfiguration": text}}
                return Answer(json.dumps(doc, indent=4) + "\n")
            if args[:3] == ["patch", "configmap", "kubeadm-config"] and "-p" in args:
                try:
                    patch = json.loads(args[args.index("-p") + 1])
                    new = yaml.safe_load(patch["data"]["ClusterConfiguration"])["kubernetesVersion"]
                except (ValueError, KeyError, IndexError, TypeError, yaml.YAMLError) as exc:
                    return Answer("", f"error: unable to parse the patch: {exc}\n", 1)
                self.kubeadm_version[cluster] = str(new).lstrip("v")
                return Answer("configmap/kubeadm-config patched\n")
            if args[:3] == ["set", "image", "daemonset/kube-proxy"] and len(args) == 4 and args[3].startswith("kube-proxy="):
                self.kube_proxy_image[cluster] = args[3].split("=", 1)[1]
                return Answer("daemonset.apps/kube-proxy image updated\n")
            if args[:3] == ["set", "image", "deployment/coredns"] and len(args) == 4 and args[3].startswith("coredns="):
                self.coredns_image[cluster] = args[3].split("=", 1)[1]
                return Answer("deployment.apps/coredns image updated\n")
            if args[:3] in (["get", "deployment", "coredns"], ["get", "deployments", "coredns"]) and args[3:] == ["-o", "json"]:
                return Answer(json.dumps(self._coredns_deployment(cluster, world, verdicts), indent=4) + "\n")
            if args[:3] == ["rollout", "status", "deployment/coredns"]:
                dep = self._coredns_deployment(cluster, world, verdicts)
                want, ready = dep["spec"]["replicas"], dep["status"]["availableReplicas"]
                if ready >= want:
                    return Answer('deployment "coredns" successfully rolled out\n')
                return Answer(f'Waiting for deployment "coredns" rollout to finish: {ready} of {want} updated replicas '
                              "are available...\n", "error: timed out waiting for the condition\n", 1)
        return None

    def _get(self, cluster: str, world: World, verdicts: dict[str, Verdict], what: str, now: datetime) -> Answer:
        import json

        if what == "pdb":
            items = [{"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                      "metadata": {"name": b.name, "namespace": b.namespace, "uid": _uid(cluster + b.namespace + b.name)},
                      "spec": {"minAvailable": b.min_available, "selector": {"matchLabels": dict(b.selector)}}}
                     for b in self.budgets.get(cluster, {}).values()]
            return Answer(json.dumps(_list(items), indent=4) + "\n")
        self._track(cluster, world, verdicts)
        system = pod_list(world, verdicts, cluster, now)["items"]
        for pod in system:  # the images kubeadm and the kube-proxy DaemonSet would run
            app, node = pod["metadata"]["labels"].get("component", ""), pod["spec"].get("nodeName", "")
            if pod["metadata"]["name"] == f"{app}-{node}" and node in self.static_version:
                pod["spec"]["containers"][0]["image"] = f"registry.k8s.io/{app}:v{self.static_version[node]}"
            elif app == "kube-proxy" and cluster in self.kube_proxy_image:
                pod["spec"]["containers"][0]["image"] = self.kube_proxy_image[cluster]
            elif app == "coredns" and cluster in self.coredns_image:
                pod["spec"]["containers"][0]["image"] = self.coredns_image[cluster]
        mine = [{"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": p.name, "namespace": p.namespace, "labels": dict(p.labels), "uid": _uid(cluster + p.namespace + p.name)},
                 "spec": {"nodeName": p.node} if p.node else {},
                 "status": {"phase": "Running" if p.node else "Pending"}}
                for p in self.pods.get(cluster, {}).values()]
        return Answer(json.dumps(_list(system + mine), indent=4) + "\n")

    def _coredns_deployment(self, cluster: str, world: World, verdicts: Mapping[str, Verdict]) -> dict[str, Any]:
        """The coredns Deployment: its image, and its pods (placed as the pod list places them) as
        its available replicas. The pods take the new image at once: the sandbox does not stage
        a rollout."""
        from datetime import timezone

        pods = [p for p in pod_list(world, dict(verdicts), cluster, datetime.now(timezone.utc))["items"]
                if p["metadata"]["labels"].get("k8s-app") == "coredns"]
        available = sum(1 for p in pods if p["status"].get("containerStatuses") and p["status"]["containerStatuses"][0]["ready"])
        image = self.coredns_image.get(cluster, "")
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "coredns", "namespace": "kube-system", "uid": _uid(cluster + "coredns")},
                "spec": {"replicas": len(pods), "template": {"metadata": {"labels": {"k8s-app": "kube-dns"}},
                                                             "spec": {"containers": [{"name": "coredns", "image": image}]}}},
                "status": {"replicas": len(pods), "updatedReplicas": len(pods), "readyReplicas": available,
                           "availableReplicas": available}}

    def _drain(self, cluster: str, nodes: Mapping[str, Verdict], node: str, timeout: float) -> Answer:
        out = [f"node/{node} cordoned"]
        errors: list[str] = []
        deadline = time.monotonic() + min(timeout, MAX_DRAIN_WAIT)
        while True:
            with self.lock:
                blocked = []
                for pod in [p for p in self.pods.get(cluster, {}).values() if p.node == node]:
                    budget = self._blocking(cluster, pod)
                    if budget is not None:
                        blocked.append(pod)
                        line = (f'error when evicting pods/"{pod.name}" -n "{pod.namespace}" (will retry after 5s): '
                                "Cannot evict pod as it would violate the pod's disruption budget.")
                        if line not in errors:
                            errors.append(line)
                        continue
                    out.append(f"evicting pod {pod.namespace}/{pod.name}")
                    pod.node = self._least_busy(cluster, self._schedulable(cluster, nodes, avoid=node))
                    out.append(f"pod/{pod.name} evicted")
            if not blocked:
                out.append(f"node/{node} drained")
                return Answer("".join(line + "\n" for line in out))
            if time.monotonic() >= deadline:
                pending = ", ".join(f'error when evicting pods/"{p.name}" -n "{p.namespace}": global timeout reached: '
                                    f"{int(timeout)}s" for p in blocked)
                errors.append(f'There are pending pods in node "{node}" when an error occurred: [{pending}]')
                errors.append(f'error: unable to drain node "{node}" due to error: [{pending}], continuing command...')
                return Answer("".join(line + "\n" for line in out), "".join(e + "\n" for e in errors), 1)
            self.sleep(DRAIN_RETRY)

    def mark_cordoned(self, cluster: str, doc: dict[str, Any]) -> dict[str, Any]:
        """A NodeList with cordoned nodes ``unschedulable`` and tainted, as the API shows them."""
        with self.lock:
            marks = set(self.cordoned.get(cluster, set()))
        for item in doc.get("items", []):
            if item.get("metadata", {}).get("name") in marks:
                item["spec"]["unschedulable"] = True
                item["spec"].setdefault("taints", []).append({"effect": "NoSchedule", "key": "node.kubernetes.io/unschedulable"})
        return doc


COREDNS_STAND_IN = "registry.k8s.io/coredns/coredns:sandbox-kubeadm-v{version}"


def coredns_stand_in(kubeadm_version: str) -> str:
    """The sandbox's made-up CoreDNS image for a kubeadm version (module docstring: not a real tag)."""
    return COREDNS_STAND_IN.format(version=kubeadm_version.lstrip("v"))


def _images_list(v: Verdict | None, args: list[str]) -> Answer | None:
    """``kubeadm config images list --kubernetes-version vX.Y.Z`` as kubeadm prints it: the
    control-plane images at the version asked, CoreDNS at the instance's own kubeadm's stand-in."""
    if v is None or v.config is None or v.phase is None:
        return None
    version = ""
    for i, a in enumerate(args):
        if a.startswith("--kubernetes-version="):
            version = a.split("=", 1)[1]
        elif a == "--kubernetes-version" and i + 1 < len(args):
            version = args[i + 1]
    version = "v" + (version or v.config.kubernetesVersion).lstrip("v")
    images = [f"registry.k8s.io/{c}:{version}" for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")]
    images += [coredns_stand_in(v.config.kubernetesVersion), "registry.k8s.io/pause:3.10", "registry.k8s.io/etcd:3.5.21-0"]
    return Answer("".join(i + "\n" for i in images))


def _timeout(args: list[str]) -> float:
    for i, a in enumerate(args):
        value = a.split("=", 1)[1] if a.startswith("--timeout=") else (args[i + 1] if a == "--timeout" and i + 1 < len(args) else "")
        if value:
            text = value.rstrip("s")
            try:
                return float(text[:-1]) * 60 if text.endswith("m") else float(text)
            except ValueError:
                return MAX_DRAIN_WAIT
    return MAX_DRAIN_WAIT

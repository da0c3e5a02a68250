"""One validation run: cloud facts, then the control plane over SSH, then why broken nodes are broken.

Cost model, because validate is run in loops (``--wait``) and against big clusters:
- AWS: two filtered describe calls (ASGs, instances), whatever the cluster size.
- SSH: ONE connection when the cluster is healthy (to a control plane, two exec channels on
  it). Only instances that have not joined or are NotReady get their own connection, jumped
  through that control-plane connection (or the bastion), in a bounded thread pool that always
  finishes and records a result per instance before anything is reported.

The engine returns a ``ValidationResult``; deciding that a not-ready cluster is an error is the
caller's job (see ``kopsy.validate.result``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kopsy.cloud.aws.groups import InstanceFacts, read_groups
from kopsy.errors import HostKeyChanged, SSHError
from kopsy.parallel import parallel
from kopsy.remote import CommandResult, SSHConnection, SSHConnector
from kopsy.spec.model import ROLE_BASTION, ROLE_CONTROL_PLANE, InstanceGroup
from kopsy.validate import checks
from kopsy.validate.facts import (
    CMD_NODES,
    CMD_PODS,
    DIAGNOSIS_COMMANDS,
    Diagnosis,
    FactError,
    NodeFacts,
    PodFacts,
    diagnosis_from_results,
    parse_node_list,
    parse_pod_list,
)
from kopsy.validate.result import CONTROL_PLANE, Failure, NodeStatus, ValidationResult

DEFAULT_PARALLELISM = 16


def validate_cluster(
    cluster_name: str,
    igs: Sequence[InstanceGroup],
    clients: Any,
    connector: SSHConnector,
    *,
    parallelism: int = DEFAULT_PARALLELISM,
    diagnose: bool = True,
) -> ValidationResult:
    """Validate one cluster; never raises for a not-ready cluster, only for a refused host key
    of the control plane (continuing would mean trusting a host we must not trust) and for
    cloud errors (nothing can be judged without the instance list). ``diagnose=False`` skips
    asking each broken instance why (a poll that only needs pass or fail: rolling-update
    waiting for a batch to boot, where every booting instance would cost an SSH connection)."""
    before = connector.connections_opened
    result = ValidationResult(cluster_name)
    cloud = read_groups(clients, cluster_name)
    result.failures.extend(checks.check_groups(igs, cloud, cluster_name))
    # A bastion is not a node: it is the way in. Found by its tags, it carries every connection
    # (an explicit --bastion wins); private-only instances are reachable no other way.
    instances = checks.cluster_instances([ig for ig in igs if ig.role != ROLE_BASTION], cloud, cluster_name)
    bastion = find_bastion(cloud.instances.values())
    found_bastion = bastion is not None and connector.use_bastion(bastion.public_ip)
    control_planes = [i for i in instances if i.role == ROLE_CONTROL_PLANE]

    cp_conn: SSHConnection | None = None
    try:
        cp_conn, nodes, pods, cp_failures = _ask_control_plane(connector, control_planes)
        if nodes is None or pods is None:
            result.failures.extend(cp_failures)
            result.nodes.extend(NodeStatus(i.private_dns or i.id, i.id, i.role, i.instance_group, False)
                                for i in instances)
        else:
            found = checks.check_nodes(instances, nodes, pods)
            diagnoses = _diagnose_all(connector, found.broken if diagnose else [], cp_conn, parallelism)
            result.failures.extend(
                checks.explain(f, diagnoses[f.instance_id]) if f.instance_id in diagnoses else f
                for f in found.failures
            )
            result.nodes.extend(found.nodes)
    finally:
        if cp_conn is not None:
            cp_conn.close()
        connector.close()
    result.notices = connector.known_hosts.drain_notices()
    if found_bastion and bastion is not None:
        result.notices.append(f"reached the cluster through bastion {bastion.id} ({bastion.public_ip}), found by its tags")
    result.ssh_connections = connector.connections_opened - before
    return result


def find_bastion(instances: Any) -> InstanceFacts | None:
    """The cluster's running bastion with a public IP (the first by id), if it has one."""
    running = sorted((i for i in instances if i.role == ROLE_BASTION and i.state == "running" and i.public_ip), key=lambda i: i.id)
    return running[0] if running else None


def ssh_address(inst: InstanceFacts, *, private: bool) -> str:
    """The address we ask the ssh config about: the public IP, or the private one behind a jump."""
    if private or not inst.public_ip:
        return inst.private_ip or inst.private_dns
    return inst.public_ip


def _ask_control_plane(
    connector: SSHConnector, control_planes: Sequence[InstanceFacts]
) -> tuple[SSHConnection | None, list[NodeFacts] | None, list[PodFacts] | None, list[Failure]]:
    """Try control planes in order until one answers both kubectl commands.

    A control plane that is reachable but cannot answer (kubeadm failed there) is diagnosed
    on the same connection, so the failure says why.
    """
    if not control_planes:
        return None, None, None, [Failure(CONTROL_PLANE, "control-plane", "no running control-plane instance "
                                          "found, so nodes cannot be checked")]
    private = bool(connector.settings.bastion)
    failures = []
    for inst in control_planes:
        label = f"{inst.id} ({inst.private_dns or inst.private_ip})"
        try:
            conn = connector.connect(ssh_address(inst, private=private))
        except HostKeyChanged:
            raise
        except SSHError as exc:
            # From outside the VPC a private address is reachable only through a jump host.
            hint = "" if inst.public_ip or private else "; it has only a private address: reach it through a bastion (--bastion HOST)"
            failures.append(Failure(CONTROL_PLANE, inst.id, f"control plane {label} cannot be reached over "
                                    f"SSH: {exc}{hint}", instance_id=inst.id))
            continue
        try:
            nodes_out, pods_out = conn.run_many([CMD_NODES, CMD_PODS])
            if nodes_out.ok and pods_out.ok:
                try:
                    return conn, parse_node_list(nodes_out.stdout), parse_pod_list(pods_out.stdout), []
                except FactError as exc:
                    problem = str(exc)
            else:
                problem = _command_problem(nodes_out if not nodes_out.ok else pods_out)
            base = Failure(CONTROL_PLANE, inst.id, f"control plane {label} cannot list nodes and pods ({problem})",
                           instance_id=inst.id)
            failures.append(checks.explain(base, _diagnose_on(conn)))
        except SSHError as exc:
            failures.append(Failure(CONTROL_PLANE, inst.id, f"control plane {label}: {exc}", instance_id=inst.id))
        conn.close()
    return None, None, None, failures


def _command_problem(r: CommandResult) -> str:
    if r.error:
        return f"'{r.command}' {r.error}"
    last = (r.stderr.strip().splitlines() or r.stdout.strip().splitlines() or [""])[-1]
    return f"'{r.command}' exited {r.exit_status}" + (f": {last}" if last else "")


def _diagnose_on(conn: SSHConnection) -> Diagnosis:
    results = conn.run_many(DIAGNOSIS_COMMANDS)
    return diagnosis_from_results({r.command: (r.exit_status, r.stdout, r.stderr, r.error) for r in results})


def _diagnose_all(
    connector: SSHConnector, broken: Sequence[InstanceFacts], cp_conn: SSHConnection | None, parallelism: int
) -> dict[str, Diagnosis]:
    """Ask every broken instance why, in parallel; every instance gets a Diagnosis, even on errors."""
    if not broken:
        return {}
    # Jump through the bastion when there is one (the connector routes there), else the control plane.
    via = None if connector.settings.bastion else cp_conn

    def one(inst: InstanceFacts) -> Diagnosis:
        try:
            with connector.connect(ssh_address(inst, private=via is not None or bool(connector.settings.bastion)),
                                   via=via) as conn:
                return _diagnose_on(conn)
        except SSHError as exc:
            return Diagnosis(reachable=False, unreachable_reason=str(exc))
        except Exception as exc:  # a bug must not hide the other nodes' results
            return Diagnosis(reachable=False, unreachable_reason=f"unexpected {type(exc).__name__}: {exc}")

    diagnoses = parallel(one, broken, workers=max(1, parallelism), name="kopsy-validate")
    return {inst.id: d for inst, d in zip(broken, diagnoses)}

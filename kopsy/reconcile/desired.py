"""From a cluster spec to the list of AWS resources it needs (``Desired`` values).

Pure: everything that needs AWS (the AMI of each group) comes in through ``ClusterInputs``.
Names are deterministic and kops-like, so the same spec always maps to the same resources and
a rerun finds what an earlier (maybe interrupted) run created.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.iam import EC2_TRUST, policy_document, role_name
from kopsy.cloud.aws.keypair import key_pair_name
from kopsy.cloud.aws.kind import Deferred, Desired, Ref
from kopsy.cloud.aws.loadbalancer import API_PORT, LISTENER_PORT, elb_name
from kopsy.cloud.aws.securitygroups import ALL_EGRESS, kops_rules
from kopsy.spec.model import ROLE_CONTROL_PLANE, ROLE_NODE, Cluster, InstanceGroup

SG_ROLES = {"control-plane": ROLE_CONTROL_PLANE, "nodes": ROLE_NODE, "api-elb": T.ROLE_API}


@dataclass
class ClusterInputs:
    """Everything the desired state depends on, read before planning."""

    cluster: Cluster
    instance_groups: list[InstanceGroup]
    ssh_public_key: str  # OpenSSH public key line; "" for no key pair
    ca_cert_hash: str  # sha256:<hex> of the cluster CA's SubjectPublicKeyInfo
    state_store_url: str  # URL of the cluster's prefix in the state store
    images: dict[str, str] = field(default_factory=dict)  # instance group -> AMI id
    partition: str = "aws"
    state_kms_key: str = ""  # ARN of the customer KMS key the state bucket encrypts with ("" for none)
    # render_user_data(cluster, ig, *, api_endpoint, ca_cert_hash, state_store_url) -> bytes;
    # None means kopsy.bootstrap's renderer (golden tests pass a fixed one).
    renderer: Callable[..., bytes] | None = None


def api_name(cluster: str) -> str:
    return f"api.{cluster}"


def listener_name(cluster: str) -> str:
    return f"{api_name(cluster)}:{LISTENER_PORT}"


def desired_resources(inp: ClusterInputs) -> list[Desired]:
    c = inp.cluster
    name = c.name
    out: list[Desired] = []

    def add(kind: str, rname: str, fields: dict[str, Any], role: str = "", **extra_tags: str) -> None:
        out.append(Desired(kind, rname, fields, T.cluster_tags(name, rname, role, **extra_tags)))

    # IAM
    for role, krole in (("control-plane", ROLE_CONTROL_PLANE), ("nodes", ROLE_NODE)):
        rn = role_name(role, name)
        add("IAMRole", rn, {"assume_role_policy": EC2_TRUST, "policy": policy_document(role, inp.state_store_url, inp.partition, name, inp.state_kms_key)}, krole)
        add("IAMInstanceProfile", rn, {"role": rn}, krole)
        # The role is named, not referenced (names are deterministic, so the plan can show them):
        # the profile waits for it only to add it (``late_deps``), not to be created.
        out[-1].late_deps = (("IAMRole", rn),)

    # Network
    vpc = Ref("VPC", name)
    add("VPC", name, {"cidr": c.network_cidr, "dns_support": True, "dns_hostnames": True})
    subnet_refs = {}
    for s in c.subnets:
        sn = f"{s.name}.{name}"
        subnet_refs[s.name] = Ref("Subnet", sn)
        add("Subnet", sn, {"vpc": vpc, "cidr": s.cidr, "zone": s.zone, "map_public_ip": True},
            **{"SubnetType": "Public", "kubernetes.io/role/elb": "1"})
    add("InternetGateway", name, {"vpc": vpc})
    add(
        "RouteTable",
        name,
        {
            "vpc": vpc,
            "routes": frozenset({("0.0.0.0/0", Ref("InternetGateway", name))}),
            "subnets": frozenset(subnet_refs.values()),
        },
    )

    # Security groups and rules
    rules = kops_rules(name, c.ssh_access, c.kubernetes_api_access)
    for sg_role, ingress in rules.items():
        gn = f"{sg_role}.{name}"
        add("SecurityGroup", gn, {"vpc": vpc, "description": f"Security group for {sg_role} of {name}"}, SG_ROLES[sg_role])
        add(
            "SecurityGroupRules",
            gn,
            {"group": Ref("SecurityGroup", gn), "ingress": ingress, "egress": frozenset({ALL_EGRESS})},
            SG_ROLES[sg_role],
        )

    # Key pair
    key_ref: Any = ""
    if inp.ssh_public_key:
        kp = key_pair_name(name, inp.ssh_public_key)
        add("KeyPair", kp, {"public_key": inp.ssh_public_key.strip()})
        key_ref = Ref("KeyPair", kp)

    # API load balancer
    api = api_name(name)
    add("TargetGroup", api, {"tg_name": elb_name("tcp", name), "protocol": "TCP", "port": API_PORT, "vpc": vpc, "health_check": "TCP",
                               "preserve_client_ip": False}, T.ROLE_API)
    add(
        "LoadBalancer",
        api,
        {
            "lb_name": elb_name("api", name),
            "scheme": "internet-facing",
            "type": "network",
            "subnets": frozenset(subnet_refs.values()),
            "security_groups": frozenset({Ref("SecurityGroup", f"api-elb.{name}")}),
        },
        T.ROLE_API,
    )
    out[-1].extra_deps = (("InternetGateway", name),)  # internet-facing needs the gateway attached
    add(
        "Listener",
        listener_name(name),
        {
            "load_balancer": Ref("LoadBalancer", api),
            "port": LISTENER_PORT,
            "protocol": "TCP",
            "target_group": Ref("TargetGroup", api, "arn"),
        },
        T.ROLE_API,
    )

    # Instance groups
    for ig in sorted(inp.instance_groups, key=lambda g: g.name):
        out.extend(_instance_group(inp, ig, subnet_refs, key_ref))
    return with_cloud_labels(out, c.cloud_labels)


def with_cloud_labels(resources: list[Desired], labels: dict[str, str]) -> list[Desired]:
    """The spec's ``cloudLabels`` on every resource and on the instances the templates launch;
    kopsy's own tags win (validation refuses labels that would shadow them)."""
    if not labels:
        return resources
    for d in resources:
        d.tags = {**labels, **d.tags}
        if isinstance(d.fields.get("instance_tags"), dict):
            d.fields["instance_tags"] = {**labels, **d.fields["instance_tags"]}
    return resources


def _instance_group(inp: ClusterInputs, ig: InstanceGroup, subnet_refs: dict[str, Ref], key_ref: Any) -> list[Desired]:
    from kopsy.bootstrap import render_user_data
    from kopsy.bootstrap.render import init_control_plane_group

    render = inp.renderer or render_user_data
    # Exactly one control-plane group runs kubeadm init; the renderer is told which, not left to guess.
    is_init = ig.name == init_control_plane_group(inp.instance_groups) if ig.role == ROLE_CONTROL_PLANE else False
    c = inp.cluster
    name = c.name
    rname = f"{ig.name}.{name}"
    cp = ig.role == ROLE_CONTROL_PLANE
    role = "control-plane" if cp else "nodes"
    tags = T.cluster_tags(name, rname, ig.role, **{T.TAG_INSTANCE_GROUP: ig.name})
    if cp:
        tags["k8s.io/role/control-plane"] = "1"
    else:
        tags["k8s.io/role/node"] = "1"

    def user_data(dns: str) -> bytes:
        return render(
            c, ig, api_endpoint=f"{dns}:{LISTENER_PORT}", ca_cert_hash=inp.ca_cert_hash,
            state_store_url=inp.state_store_url, init_control_plane=is_init,
        )

    lt = Desired(
        "LaunchTemplate",
        rname,
        {
            "image": inp.images.get(ig.name, ig.image),
            "instance_type": ig.machine_type,
            "key_name": key_ref,
            # kopsy's group, plus the user's existing ones (checked to exist at update)
            "security_groups": frozenset({Ref("SecurityGroup", f"{role}.{name}"), *ig.additional_security_groups}),
            "public_ip": True,
            "instance_profile": role_name(role, name),
            "root_volume_size": ig.root_volume_size,
            "root_volume_type": "gp3",
            "root_volume_encrypted": True,
            "http_tokens": "required",
            "user_data": Deferred((Ref("LoadBalancer", api_name(name), "dns"),), user_data, "user-data"),
            "instance_tags": dict(tags),
        },
        dict(tags),
        extra_deps=(("IAMInstanceProfile", role_name(role, name)),),
    )
    missing = [s for s in ig.subnets if s not in subnet_refs]
    asg = Desired(
        "AutoScalingGroup",
        rname,
        {
            "launch_template": rname,
            "launch_template_version": Ref("LaunchTemplate", rname, "version"),
            "min_size": ig.min_size,
            "max_size": ig.max_size,
            "subnets": frozenset(subnet_refs[s] for s in ig.subnets if s in subnet_refs),
            "target_groups": frozenset({Ref("TargetGroup", api_name(name), "arn")}) if cp else frozenset(),
        },
        dict(tags),
    )
    if missing:  # validation should have caught this; be explicit rather than silently drop
        from kopsy.errors import SpecInvalid

        raise SpecInvalid([f"instance group {ig.name}: subnet(s) {', '.join(missing)} not in the cluster spec"])
    return [lt, asg]

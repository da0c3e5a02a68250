"""Instance groups: the admin key pair, and a launch template and Auto Scaling group per group."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.autoscaling import AUTOSCALER_PREFIX
from kopsy.cloud.aws.loadbalancer import LISTENER_PORT
from kopsy.cloud.aws.names import api_internal_name, api_name, asg_name, key_pair_name, private_route_table_name, role_name
from kopsy.errors import SpecInvalid
from kopsy.reconcile.builders.base import group_ref, resource, subnet_refs
from kopsy.reconcile.values import Deferred, Desired, Ref
from kopsy.spec.model import ROLE_BASTION, ROLE_CONTROL_PLANE, Cluster, InstanceGroup

if TYPE_CHECKING:
    from kopsy.reconcile.desired import ClusterInputs


def build(inp: ClusterInputs) -> list[Desired]:
    out: list[Desired] = []
    key_ref: Any = ""
    if inp.ssh_public_key:
        kp = key_pair_name(inp.cluster.name, inp.ssh_public_key)
        out.append(resource(inp.cluster.name, "KeyPair", kp, {"public_key": inp.ssh_public_key.strip()}))
        key_ref = Ref("KeyPair", kp)
    for ig in sorted(inp.instance_groups, key=lambda g: g.name):
        out.extend(_instance_group(inp, ig, key_ref))
    return out


def autoscaler_tags(cluster: str, ig: InstanceGroup) -> dict[str, str]:
    """cluster-autoscaler's tags for a group: what its nodes will carry (node-template labels and
    taints, so it can scale a group up from zero), and for node groups the auto-discovery tags.
    Control-plane groups are fixed at one instance each: the autoscaler is not pointed at them."""
    if ig.role == ROLE_BASTION:
        return {}  # not a node: the autoscaler has nothing to do with it
    tags = {f"{AUTOSCALER_PREFIX}node-template/label/{k}": v for k, v in ig.node_labels.items()}
    tags.update({f"{AUTOSCALER_PREFIX}node-template/taint/{t.key}": f"{t.value}:{t.effect}" for t in ig.taints})
    if ig.role != ROLE_CONTROL_PLANE:
        tags[f"{AUTOSCALER_PREFIX}enabled"] = "1"
        tags[f"{AUTOSCALER_PREFIX}{cluster}"] = T.OWNED
    return tags


def _instance_group(inp: ClusterInputs, ig: InstanceGroup, key_ref: Any) -> list[Desired]:
    from kopsy.bootstrap import render_user_data
    from kopsy.bootstrap.render import init_control_plane_group

    render = inp.renderer or render_user_data
    # Exactly one control-plane group runs kubeadm init; the renderer is told which, not left to guess.
    is_init = ig.name == init_control_plane_group(inp.instance_groups) if ig.role == ROLE_CONTROL_PLANE else False
    c = inp.cluster
    if inp.node_version and ig.role != ROLE_CONTROL_PLANE:  # skew: kubelets never ahead of the API servers
        c = replace(c, kubernetes_version=inp.node_version)
    name = c.name
    subnets = subnet_refs(c)
    missing = [s for s in ig.subnets if s not in subnets]
    if missing:  # validation should have caught this; be explicit rather than silently drop
        raise SpecInvalid([f"instance group {ig.name}: subnet(s) {', '.join(missing)} not in the cluster spec"])
    rname = asg_name(ig.name, name)
    cp = ig.role == ROLE_CONTROL_PLANE
    bastion = ig.role == ROLE_BASTION
    role = "control-plane" if cp else "bastion" if bastion else "nodes"
    tags = T.cluster_tags(name, rname, ig.role, **{T.TAG_INSTANCE_GROUP: ig.name})
    if cp:
        tags["k8s.io/role/control-plane"] = "1"
    elif not bastion:
        tags["k8s.io/role/node"] = "1"

    def user_data(internal_dns: str, public_dns: str) -> bytes:
        # Instances reach the API through the internal load balancer; the public name is only
        # put in the API server's certificate, for admins.
        return render(
            c, ig, api_endpoint=f"{internal_dns}:{LISTENER_PORT}", api_public_host=public_dns, ca_cert_hash=inp.ca_cert_hash,
            state_store_url=inp.state_store_url, init_control_plane=is_init,
            **({"state_kms_key": inp.state_kms_key} if cp and inp.state_kms_key else {}),  # SSE-KMS for etcd snapshots
        )

    from kopsy.bootstrap.bastion import render_bastion_user_data

    user_data_field: Any = render_bastion_user_data() if bastion else Deferred(
        (Ref("LoadBalancer", api_internal_name(name), "dns"), Ref("LoadBalancer", api_name(name), "dns")), user_data, "user-data"
    )
    lt = Desired(
        "LaunchTemplate",
        rname,
        {
            "image": inp.images.get(ig.name, ig.image),
            "instance_type": ig.machine_type,
            "key_name": key_ref,
            # kopsy's group, plus the user's existing ones (checked to exist at update)
            "security_groups": frozenset({group_ref(role, name), *ig.additional_security_groups}),
            # A private topology's instances have none: they go out through the NAT gateways. The
            # bastion, in a Utility subnet, has one: it is the way in.
            "public_ip": bastion or not c.private,
            "instance_profile": "" if bastion else role_name(role, name),
            "root_volume_size": ig.root_volume_size,
            "root_volume_type": "gp3",
            "root_volume_encrypted": True,
            "http_tokens": "required",
            "user_data": user_data_field,
            "instance_tags": dict(tags),
        },
        dict(tags),
        extra_deps=() if bastion else (("IAMInstanceProfile", role_name(role, name)),),
    )
    asg = Desired(
        "AutoScalingGroup",
        rname,
        {
            "launch_template": rname,
            "launch_template_version": Ref("LaunchTemplate", rname, "version"),
            "min_size": ig.min_size,
            "max_size": ig.max_size,
            "subnets": frozenset(subnets[s] for s in ig.subnets),
            "target_groups": frozenset({Ref("TargetGroup", api_name(name), "arn"), Ref("TargetGroup", api_internal_name(name), "arn")})
            if cp else frozenset(),
            "autoscaler_tags": autoscaler_tags(name, ig),
        },
        dict(tags),
        # Instances in Private subnets install packages through the NAT gateway as they boot: the
        # group launches them once their route to it exists (which waits for the gateway to be
        # available); the template, load balancers and groups before it do not wait.
        extra_deps=_egress_routes(c, ig),
    )
    return [lt, asg]


def _egress_routes(c: Cluster, ig: InstanceGroup) -> tuple[tuple[str, str], ...]:
    """The private route tables the group's subnets go out through (kopsy's own subnets only)."""
    by_name = {s.name: s for s in c.subnets}
    tables = set()
    for name in ig.subnets:
        s = by_name.get(name)
        utility = c.nat_subnet(s) if s is not None and s.is_private and not s.id else None
        if utility is not None:
            tables.add(private_route_table_name(utility.name, c.name))
    return tuple(("RouteTable", t) for t in sorted(tables))

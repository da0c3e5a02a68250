"""The API load balancers, each an NLB with its TCP target group and listener: an
internet-facing one for admins (restricted by ``kubernetesApiAccess``), and an internal one that
the cluster's own instances use (kubeadm, kubelets, in-cluster clients), which that restriction
never blocks. Both forward to the control planes' API servers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.loadbalancer import API_PORT, LISTENER_PORT
from kopsy.cloud.aws.names import api_internal_name, api_name, elb_name, listener_name
from kopsy.reconcile.builders.base import group_ref, instance_subnet_refs, public_subnet_refs, resource, vpc_ref
from kopsy.reconcile.values import Desired, Ref
from kopsy.spec.model import Cluster

if TYPE_CHECKING:
    from kopsy.reconcile.desired import ClusterInputs


def build(inp: ClusterInputs) -> list[Desired]:
    c = inp.cluster
    public = _load_balancer(c, api_name(c.name), "api", "tcp", "internet-facing", "api-elb", T.ROLE_API, public_subnet_refs(c))
    public[1].extra_deps = (("InternetGateway", c.name),)  # internet-facing needs the gateway attached
    internal = _load_balancer(c, api_internal_name(c.name), "api-int", "tcp-int", "internal", "api-internal", T.ROLE_API_INTERNAL,
                              instance_subnet_refs(c))
    return public + internal


def _load_balancer(c: Cluster, name: str, lb_prefix: str, tg_prefix: str, scheme: str, group: str, role: str,
                   subnets: frozenset[Ref | str]) -> list[Desired]:
    """Target group, load balancer and listener, all named ``name`` (the listener ``name:443``)."""
    cluster = c.name
    # As kops tunes them: a control plane comes in after 2 passing checks 10 s apart (20 s, not
    # the default 30 s x 5), and a deregistered one is gone in 30 s, its connections closed.
    tg = resource(cluster, "TargetGroup", name, {
        "tg_name": elb_name(tg_prefix, cluster), "protocol": "TCP", "port": API_PORT, "vpc": vpc_ref(c),
        "health_check": "TCP", "health_check_interval": 10, "healthy_threshold": 2, "unhealthy_threshold": 2,
        "preserve_client_ip": False, "deregistration_delay": 30, "connection_termination": True,
    }, role)
    lb = resource(cluster, "LoadBalancer", name, {
        "lb_name": elb_name(lb_prefix, cluster),
        "scheme": scheme,
        "type": "network",
        "subnets": subnets,  # internet-facing: the public/utility subnets; internal: the instances'

        "security_groups": frozenset({group_ref(group, cluster)}),
        "cross_zone": True,  # a zone whose control plane is down still answers through the others'
    }, role)
    listener = resource(cluster, "Listener", listener_name(name, LISTENER_PORT), {
        "load_balancer": Ref("LoadBalancer", name),
        "port": LISTENER_PORT,
        "protocol": "TCP",
        "target_group": Ref("TargetGroup", name, "arn"),
    }, role)
    return [tg, lb, listener]

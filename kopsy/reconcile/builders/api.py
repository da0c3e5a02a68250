"""The API load balancer: an internet-facing NLB, its TCP target group and its listener."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.loadbalancer import API_PORT, LISTENER_PORT
from kopsy.cloud.aws.names import api_name, elb_name, listener_name
from kopsy.reconcile.builders.base import group_ref, resource, subnet_refs, vpc_ref
from kopsy.reconcile.values import Desired, Ref

if TYPE_CHECKING:
    from kopsy.reconcile.desired import ClusterInputs


def build(inp: ClusterInputs) -> list[Desired]:
    c = inp.cluster
    name = c.name
    api = api_name(name)
    subnets = frozenset(subnet_refs(c).values())
    tg = resource(name, "TargetGroup", api, {"tg_name": elb_name("tcp", name), "protocol": "TCP", "port": API_PORT, "vpc": vpc_ref(c),
                                             "health_check": "TCP", "preserve_client_ip": False}, T.ROLE_API)
    lb = resource(name, "LoadBalancer", api, {
        "lb_name": elb_name("api", name),
        "scheme": "internet-facing",
        "type": "network",
        "subnets": subnets,
        "security_groups": frozenset({group_ref("api-elb", name)}),
    }, T.ROLE_API)
    lb.extra_deps = (("InternetGateway", name),)  # internet-facing needs the gateway attached
    listener = resource(name, "Listener", listener_name(name, LISTENER_PORT), {
        "load_balancer": Ref("LoadBalancer", api),
        "port": LISTENER_PORT,
        "protocol": "TCP",
        "target_group": Ref("TargetGroup", api, "arn"),
    }, T.ROLE_API)
    return [tg, lb, listener]

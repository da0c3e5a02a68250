"""The sandbox's path rules of a private topology, one hop each: every test passes on a correct
private cluster and fails with the documented phase and reason when that one hop is broken.

- outbound internet: a private instance goes out through its subnet's NAT gateway; with no
  public IP and no NAT route it stops in ``packages``;
- internet-facing load balancer: a private instance's traffic arrives from its NAT gateway's
  Elastic IP, which the load balancer must admit by CIDR;
- SSH: a private-only instance is reachable only through its cluster's bastion (and the
  sandbox's ssh config maps it only behind one).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from test_sandbox_rules import CP, DNS, NAME, NODE, _inst, _user_data, _world

from kopsy.sandbox.facts import ApiLoadBalancer, IngressRule, World
from kopsy.sandbox.rules import evaluate, ssh_route
from kopsy.sandbox.sshd import NodeServer, render_ssh_config

PRIVATE = "subnet-private-a"
UTILITY = "subnet-utility-a"
NAT, EIP = "nat-0a1", "198.51.100.7"  # moto's kind of address; the sandbox never connects to it


def _private(world: World, *, egress: dict[str, str] | None = None, nat_ips: dict[str, str] | None = None) -> World:
    """The same world with every instance in a private subnet that routes through an available NAT gateway."""
    instances = tuple(dataclasses.replace(i, subnet=PRIVATE, public_ip=None) for i in world.instances)
    return dataclasses.replace(world, instances=instances,
                               egress=egress if egress is not None else {PRIVATE: NAT, UTILITY: "igw-1"},
                               nat_ips=nat_ips if nat_ips is not None else {NAT: EIP})


def _verdict_of_node(world: World) -> tuple[bool, str | None, str]:
    v = evaluate(world)["i-n1"]
    return v.joined, v.phase, v.error or ""


def test_private_cluster_behind_a_nat_gateway_is_ready() -> None:
    v = evaluate(_private(_world(CP, NODE)))
    assert [(x.joined, x.ready) for x in v.values()] == [(True, "True")] * 2


def test_without_a_nat_route_bootstrap_stops_installing_packages() -> None:
    world = _private(_world(CP, NODE), egress={PRIVATE: ""})
    joined, phase, error = _verdict_of_node(world)
    assert (joined, phase) == (False, "packages")
    assert error.startswith("cannot reach the package mirrors: connection timed out: subnet subnet-private-a has no route to the internet")


def test_a_private_instance_routed_to_the_internet_gateway_stops_installing_packages() -> None:
    joined, phase, error = _verdict_of_node(_private(_world(CP, NODE), egress={PRIVATE: "igw-1"}))
    assert (joined, phase) == (False, "packages") and "has no public IP (it needs a NAT gateway route instead)" in error


def test_a_nat_gateway_that_is_not_available_carries_nothing() -> None:
    joined, phase, error = _verdict_of_node(_private(_world(CP, NODE), nat_ips={}))
    assert (joined, phase) == (False, "packages") and f"NAT gateway {NAT}, which is not available" in error


def _public_lb_world(admit: str) -> World:
    """Nodes pointed at the internet-facing load balancer, which admits only ``admit``."""
    public_dns = "api-public.elb.us-east-1.amazonaws.com"
    lbs = (ApiLoadBalancer("arn:pub", public_dns, frozenset({"i-cp"}), ("sg-api",), "internet-facing"),
           ApiLoadBalancer("arn:int", DNS, frozenset({"i-cp"}), ("sg-int",), "internal"))
    node = _inst("i-n1", "Node", "10.0.0.20", "sg-nodes", _user_data("Node", f"{public_dns}:443"))
    everything = IngressRule("-1", 0, 65535, frozenset({"sg-cp", "sg-nodes"}), ())
    world = _world(CP, node, lbs=lbs, lb_rules={"sg-api": (IngressRule("tcp", 443, 443, frozenset(), (admit,)),),
                                                 "sg-int": (everything,)})
    return _private(world)


def test_internet_facing_traffic_arrives_from_the_nat_gateways_elastic_ip() -> None:
    assert _verdict_of_node(_public_lb_world(f"{EIP}/32"))[0]
    joined, phase, error = _verdict_of_node(_public_lb_world("203.0.113.0/24"))
    assert (joined, phase) == (False, "wait-for-api")
    assert f"arrives from its NAT gateway's Elastic IP {EIP} (through the NAT gateway" in error


def test_a_private_instance_is_reachable_only_through_the_bastion(tmp_path: Path) -> None:
    bastion = dataclasses.replace(_inst("i-b1", "Bastion", "10.0.1.5", "sg-bastion", b"#cloud-config\n{}\n"),
                                  public_ip="198.51.100.9", subnet=UTILITY)
    with_bastion = _private(_world(CP, NODE))
    with_bastion = dataclasses.replace(with_bastion, instances=(*with_bastion.instances, bastion))
    node = next(i for i in with_bastion.instances if i.id == "i-n1")
    assert ssh_route(with_bastion, node) == (True, "198.51.100.9")
    assert ssh_route(with_bastion, bastion) == (True, None)
    assert not evaluate(with_bastion)["i-b1"].joined  # a bastion is no node
    without = _private(_world(CP, NODE))
    assert ssh_route(without, next(i for i in without.instances if i.id == "i-n1")) == (False, None)

    # The ssh config: the private instance only behind a ProxyJump to the bastion.
    nodes = [NodeServer("i-n1", "127.64.0.2", 22, tmp_path, hosts=("10.0.0.20",), jump="198.51.100.9"),
             NodeServer("i-b1", "127.64.0.3", 22, tmp_path, hosts=("198.51.100.9", "10.0.1.5"))]
    text = render_ssh_config(nodes, user="root", identity_files={}, clusters={"i-n1": NAME, "i-b1": NAME}, launched={})
    block = text.split("# i-n1")[1]
    assert "Host 10.0.0.20" in block and "ProxyJump 198.51.100.9" in block
    assert "ProxyJump" not in text.split("# i-b1")[1].split("# i-n1")[0]

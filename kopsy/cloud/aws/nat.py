"""Outbound internet for private subnets: Elastic IPs and the NAT gateways that hold them.

A private topology puts one NAT gateway (with its own Elastic IP) in each zone's Utility subnet,
or a single one for all zones; private route tables send ``0.0.0.0/0`` to them.

Two AWS facts shape these kinds:
- ``CreateNatGateway`` has a ``ClientToken`` on AWS but moto ignores it, and a NAT gateway has no
  unique name that a repeat could collide on. So the gateway is tagged at creation, found by
  its tags on the next run (``find``), and ``create`` first looks for one of its name in the
  subnet that an interrupted attempt left (adopted only if it carries kopsy's mark).
- A NAT gateway takes minutes to become ``available`` and to be ``deleted`` on AWS. Nothing but
  a route needs it, so it is created as soon as its subnet and address exist and ``finish``
  waits for ``available`` (a route to a pending gateway is what kops refuses too). Its
  delete is reported as in progress (``InProgress``, retried with backoff) until it is gone, so
  the subnets and the address wait for it and the user sees why.
"""

from __future__ import annotations

import hashlib
from typing import Any

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.ec2util import describe_all, name_of, owned
from kopsy.cloud.aws.idempotency import refuse_unless_ours, tolerate
from kopsy.cloud.aws.kind import Kind
from kopsy.cloud.aws.retry import InProgress, retry
from kopsy.cloud.aws.session import aws_errors
from kopsy.errors import CloudError
from kopsy.reconcile.values import Actual, ApplyContext, Desired, Facts

LIVE_STATES = ("pending", "available")
# What delete must still act on or wait for; a "deleted" gateway stays listed for an hour on AWS.
SWEEP_STATES = ("pending", "available", "deleting", "failed")


def _ours(tags: dict[str, str], facts: Facts) -> bool:
    """moto ignores tag filters on DescribeNatGateways (AWS honours them): check the tags here."""
    return T.belongs(tags, facts.cluster) if facts.sweep else T.is_owned(tags, facts.cluster)


class ElasticIP(Kind):
    kind = "ElasticIP"
    service = "ec2"
    id_field = "AllocationId"
    permissions = (
        "ec2:DescribeAddresses",
        "ec2:AllocateAddress",
        "ec2:CreateTags",
        "ec2:ReleaseAddress",
    )

    def find(self, facts: Facts) -> list[Actual]:
        with aws_errors("reading Elastic IPs"):
            addresses = owned(facts, "describe_addresses", "Addresses", id_key="AllocationId")
        return [
            Actual(self.kind, name_of(a, a["AllocationId"]), a["AllocationId"],
                   fields={"domain": a.get("Domain", "vpc")},
                   outputs={"id": a["AllocationId"], "public_ip": a.get("PublicIp", "")},
                   tags=T.to_dict(a.get("Tags")))
            for a in addresses
            if _ours(T.to_dict(a.get("Tags")), facts)
        ]

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        """Tagged at allocation, so an address allocated by a run that then died is found by the
        next run's ``find`` rather than allocated (and paid for) twice."""
        with aws_errors(f"allocating Elastic IP {want.name}"):
            a = ctx.clients.client("ec2").allocate_address(Domain=fields["domain"], TagSpecifications=T.tag_spec("elastic-ip", want.tags))
        return {"id": a["AllocationId"], "public_ip": a.get("PublicIp", "")}

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        with aws_errors(f"releasing Elastic IP {have.id}"):
            tolerate(lambda: ctx.clients.client("ec2").release_address(AllocationId=have.id), "InvalidAllocationID.NotFound")


class NatGateway(Kind):
    kind = "NatGateway"
    service = "ec2"
    id_field = "NatGatewayId"
    depends_on = ("Subnet", "ElasticIP")
    # Only the wait for "available" holds back the routes: the gateway is created at once.
    late_fields = ("available",)
    quiet_fields = ("available",)
    immutable = ("subnet", "allocation")
    permissions = (
        "ec2:DescribeNatGateways",
        "ec2:CreateNatGateway",
        "ec2:CreateTags",
        "ec2:DeleteNatGateway",
    )

    def find(self, facts: Facts) -> list[Actual]:
        states = SWEEP_STATES if facts.sweep else LIVE_STATES
        with aws_errors("reading NAT gateways"):
            gateways = owned(facts, "describe_nat_gateways", "NatGateways", id_key="NatGatewayId",
                             Filters=[{"Name": "state", "Values": list(states)}])
        out = []
        for g in gateways:
            tags = T.to_dict(g.get("Tags"))
            if not _ours(tags, facts) or g.get("State") not in states:
                continue
            allocation = next((a.get("AllocationId") for a in g.get("NatGatewayAddresses", []) if a.get("AllocationId")), None)
            out.append(Actual(
                self.kind, name_of(g, g["NatGatewayId"]), g["NatGatewayId"],
                fields={"subnet": g["SubnetId"], "allocation": allocation, "available": g.get("State") == "available"},
                outputs={"id": g["NatGatewayId"], "state": g.get("State", "")},
                tags=tags,
            ))
        return out

    def same(self, field_name: str, desired: Any, have: Actual) -> bool:
        """A pending gateway becomes available by itself: not a change to plan."""
        if field_name == "available":
            return True
        return super().same(field_name, desired, have)

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        ec2 = ctx.clients.client("ec2")
        with aws_errors(f"creating NAT gateway {want.name}"):
            left = self._left_behind(ec2, want, fields["subnet"], ctx.cluster)
            if left:
                return {"id": left, "state": "pending"}
            token = hashlib.sha256(f"{ctx.cluster}/{want.name}/{fields['subnet']}/{fields['allocation']}".encode()).hexdigest()[:64]
            g = ec2.create_nat_gateway(SubnetId=fields["subnet"], AllocationId=fields["allocation"], ClientToken=token,
                                       TagSpecifications=T.tag_spec("natgateway", want.tags))["NatGateway"]
        return {"id": g["NatGatewayId"], "state": g.get("State", "pending")}

    @staticmethod
    def _left_behind(ec2: Any, want: Desired, subnet: str, cluster: str) -> str:
        """A live gateway of this name in the subnet (a create whose answer was lost): its id."""
        found = describe_all(ec2, "describe_nat_gateways", "NatGateways", Filters=[
            {"Name": "subnet-id", "Values": [subnet]}, {"Name": "state", "Values": list(LIVE_STATES)}])
        for g in found:
            tags = T.to_dict(g.get("Tags"))
            if tags.get("Name") == want.name and g.get("State") in LIVE_STATES:
                refuse_unless_ours("NAT gateway", want.name, tags, cluster)
                return str(g["NatGatewayId"])
        return ""

    def finish(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any], created: dict[str, Any]) -> dict[str, Any]:
        """Wait until the gateway is available: a route may only point at a working one."""
        ec2 = ctx.clients.client("ec2")
        gid = created["id"]

        def state() -> str:
            with aws_errors(f"reading NAT gateway {want.name}"):
                (g,) = ec2.describe_nat_gateways(NatGatewayIds=[gid])["NatGateways"]
            s = str(g.get("State", ""))
            if s == "failed":
                raise CloudError(f"NAT gateway {want.name} ({gid}) failed: {g.get('FailureMessage', 'no reason given')}; "
                                 f"run kopsy update cluster --yes again for a new one (AWS removes a failed gateway itself)")
            if s != "available":
                raise InProgress(f"NAT gateway {want.name} ({gid}) is {s or 'not yet listed'}")
            return s

        if created.get("state") != "available":
            retry(state, when=lambda e: isinstance(e, InProgress), timeout=ctx.retry_timeout, first_delay=1.0)
        return {"id": gid, "state": "available"}

    def modify(self, ctx: ApplyContext, want: Desired, have: Actual, fields: dict[str, Any], changed: set[str]) -> dict[str, Any]:
        return dict(have.outputs)  # only "available" could differ, and it is never a change (``same``)

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        """Asks for the delete, then reports it in progress until AWS lists it ``deleted``."""
        ec2 = ctx.clients.client("ec2")
        with aws_errors(f"deleting NAT gateway {have.id}"):
            answer = ec2.describe_nat_gateways(Filters=[{"Name": "nat-gateway-id", "Values": [have.id]}])["NatGateways"]
            state = answer[0].get("State", "") if answer else "deleted"
            if state in ("pending", "available", "failed"):
                tolerate(lambda: ec2.delete_nat_gateway(NatGatewayId=have.id), "NatGatewayNotFound", "InvalidNatGatewayID.NotFound")
                answer = ec2.describe_nat_gateways(Filters=[{"Name": "nat-gateway-id", "Values": [have.id]}])["NatGateways"]
                state = answer[0].get("State", "") if answer else "deleted"
        if state != "deleted":
            raise InProgress(f"NAT gateway {have.name} ({have.id}) is {state}; AWS takes minutes to delete one")

"""The network: VPC, subnets, internet gateway, route tables (NAT gateways: ``nat.py``).

Each kind reads its facts with one describe filtered by the cluster's ownership tag and
creates with ``TagSpecifications``, so a resource is never untagged (hence never invisible to
the next run or to ``delete``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.ec2util import name_of, owned
from kopsy.cloud.aws.idempotency import create_or_adopt, tolerate
from kopsy.cloud.aws.kind import Kind
from kopsy.cloud.aws.session import aws_errors
from kopsy.errors import CloudError
from kopsy.parallel import parallel
from kopsy.reconcile.values import Actual, ApplyContext, Desired, Facts


class VPC(Kind):
    kind = "VPC"
    service = "ec2"
    id_field = "VpcId"
    delete_after = ("NetworkInterface",)  # what refers to the VPC is deleted first anyway (depends_on)
    immutable = ("cidr",)
    permissions = (
        "ec2:DescribeVpcs",
        "ec2:DescribeVpcAttribute",
        "ec2:CreateVpc",
        "ec2:CreateTags",
        "ec2:ModifyVpcAttribute",
        "ec2:DeleteVpc",
    )

    def find(self, facts: Facts) -> list[Actual]:
        ec2 = facts.clients.client("ec2")
        out = []
        with aws_errors("reading VPCs"):
            for v in owned(facts, "describe_vpcs", "Vpcs"):
                vid = v["VpcId"]
                if not facts.detail:
                    out.append(Actual(self.kind, name_of(v, vid), vid, fields={"cidr": v["CidrBlock"]}, outputs={"id": vid}, tags=T.to_dict(v.get("Tags"))))
                    continue
                # AWS allows DNS hostnames only with DNS support on: when hostnames are on
                # (the steady state) support is known without a second call.
                hostnames = ec2.describe_vpc_attribute(VpcId=vid, Attribute="enableDnsHostnames")["EnableDnsHostnames"]["Value"]
                support = hostnames or ec2.describe_vpc_attribute(VpcId=vid, Attribute="enableDnsSupport")["EnableDnsSupport"]["Value"]
                out.append(
                    Actual(
                        self.kind,
                        name_of(v, vid),
                        vid,
                        fields={"cidr": v["CidrBlock"], "dns_support": bool(support), "dns_hostnames": bool(hostnames)},
                        outputs={"id": vid},
                        tags=T.to_dict(v.get("Tags")),
                    )
                )
        return out

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        ec2 = ctx.clients.client("ec2")
        with aws_errors(f"creating VPC {want.name}"):
            vid = ec2.create_vpc(CidrBlock=fields["cidr"], TagSpecifications=T.tag_spec("vpc", want.tags))["Vpc"]["VpcId"]
        # New VPCs have DNS support on and hostnames off: change only what differs, and let the
        # subnets and groups be created meanwhile (they need only the id).
        changed = {"dns_hostnames"} | (set() if fields["dns_support"] else {"dns_support"})

        def attributes() -> None:
            with aws_errors(f"setting DNS attributes of VPC {want.name}"):
                self._attributes(ec2, vid, fields, changed)

        ctx.follow_up(want.key, attributes)
        return {"id": vid}

    def modify(self, ctx: ApplyContext, want: Desired, have: Actual, fields: dict[str, Any], changed: set[str]) -> dict[str, Any]:
        with aws_errors(f"updating VPC {want.name}"):
            self._attributes(ctx.clients.client("ec2"), have.id, fields, changed)
        return dict(have.outputs)

    @staticmethod
    def _attributes(ec2: Any, vid: str, fields: dict[str, Any], changed: set[str]) -> None:
        # DNS support first: AWS refuses DNS hostnames on a VPC without DNS support.
        if "dns_support" in changed:
            ec2.modify_vpc_attribute(VpcId=vid, EnableDnsSupport={"Value": fields["dns_support"]})
        if "dns_hostnames" in changed:
            ec2.modify_vpc_attribute(VpcId=vid, EnableDnsHostnames={"Value": fields["dns_hostnames"]})

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        with aws_errors(f"deleting VPC {have.id}"):
            tolerate(lambda: ctx.clients.client("ec2").delete_vpc(VpcId=have.id), "InvalidVpcID.NotFound")


class Subnet(Kind):
    kind = "Subnet"
    service = "ec2"
    id_field = "SubnetId"
    depends_on = ("VPC",)
    delete_after = ("NetworkInterface",)
    immutable = ("vpc", "cidr", "zone")
    permissions = (
        "ec2:DescribeSubnets",
        "ec2:DescribeAvailabilityZones",  # update checks the spec's zones first (cloud/aws/zones.py)
        "ec2:CreateSubnet",
        "ec2:CreateTags",
        "ec2:ModifySubnetAttribute",
        "ec2:DeleteSubnet",
    )

    def find(self, facts: Facts) -> list[Actual]:
        with aws_errors("reading subnets"):
            subnets = owned(facts, "describe_subnets", "Subnets")
        return [
            Actual(
                self.kind,
                name_of(s, s["SubnetId"]),
                s["SubnetId"],
                fields={
                    "vpc": s["VpcId"],
                    "cidr": s["CidrBlock"],
                    "zone": s["AvailabilityZone"],
                    "map_public_ip": bool(s.get("MapPublicIpOnLaunch")),
                },
                outputs={"id": s["SubnetId"]},
                tags=T.to_dict(s.get("Tags")),
            )
            for s in subnets
        ]

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        ec2 = ctx.clients.client("ec2")
        with aws_errors(f"creating subnet {want.name}"):
            def existing() -> tuple[str, dict[str, str]]:
                found = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [fields["vpc"]]},
                                                      {"Name": "cidr-block", "Values": [fields["cidr"]]}])["Subnets"]
                if not found:  # the conflict is with another subnet's range, not a repeat of ours
                    raise CloudError(f"subnet {want.name}: {fields['cidr']} overlaps another subnet of VPC {fields['vpc']}; "
                                     f"choose a free range in the spec (kopsy edit cluster), then re-run")
                return found[0]["SubnetId"], T.to_dict(found[0].get("Tags"))

            sid, _ = create_or_adopt(
                lambda: ec2.create_subnet(
                    VpcId=fields["vpc"],
                    CidrBlock=fields["cidr"],
                    AvailabilityZone=fields["zone"],
                    TagSpecifications=T.tag_spec("subnet", want.tags),
                )["Subnet"]["SubnetId"],
                ("InvalidSubnet.Conflict",), existing, what="subnet", name=want.name, cluster=ctx.cluster,
            )
        if fields["map_public_ip"]:
            # A default for launches; kopsy's templates ask for a public IP themselves, so the
            # load balancer need not wait for this.
            def public_ip() -> None:
                with aws_errors(f"setting public IPs on launch for subnet {want.name}"):
                    ec2.modify_subnet_attribute(SubnetId=sid, MapPublicIpOnLaunch={"Value": True})

            ctx.follow_up(want.key, public_ip)
        return {"id": sid}

    def modify(self, ctx: ApplyContext, want: Desired, have: Actual, fields: dict[str, Any], changed: set[str]) -> dict[str, Any]:
        with aws_errors(f"updating subnet {want.name}"):
            ctx.clients.client("ec2").modify_subnet_attribute(
                SubnetId=have.id, MapPublicIpOnLaunch={"Value": fields["map_public_ip"]}
            )
        return dict(have.outputs)

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        with aws_errors(f"deleting subnet {have.id}"):
            tolerate(lambda: ctx.clients.client("ec2").delete_subnet(SubnetId=have.id), "InvalidSubnetID.NotFound")


class InternetGateway(Kind):
    kind = "InternetGateway"
    service = "ec2"
    id_field = "InternetGatewayId"
    depends_on = ("VPC",)
    late_fields = ("vpc",)
    # AWS refuses to detach a gateway while public addresses in the VPC are mapped (the load
    # balancer, which depends on the gateway, is deleted first anyway).
    delete_after = ("Instance", "NetworkInterface", "AutoScalingGroup", "NatGateway")
    permissions = (
        "ec2:DescribeInternetGateways",
        "ec2:CreateInternetGateway",
        "ec2:CreateTags",
        "ec2:AttachInternetGateway",
        "ec2:DetachInternetGateway",
        "ec2:DeleteInternetGateway",
    )

    def find(self, facts: Facts) -> list[Actual]:
        with aws_errors("reading internet gateways"):
            igws = owned(facts, "describe_internet_gateways", "InternetGateways")
        out = []
        for g in igws:
            vpcs = sorted(a["VpcId"] for a in g.get("Attachments", []) if a.get("State") in ("available", "attached", "attaching"))
            out.append(
                Actual(
                    self.kind,
                    name_of(g, g["InternetGatewayId"]),
                    g["InternetGatewayId"],
                    fields={"vpc": vpcs[0] if len(vpcs) == 1 else (None if not vpcs else tuple(vpcs))},
                    outputs={"id": g["InternetGatewayId"], "vpcs": tuple(vpcs)},
                    tags=T.to_dict(g.get("Tags")),
                )
            )
        return out

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        """Created on its own, while the VPC is; attached to it in ``finish``. A run that stops in
        between leaves a tagged, detached gateway, which the next plan attaches (a modify)."""
        ec2 = ctx.clients.client("ec2")
        with aws_errors(f"creating internet gateway {want.name}"):
            gid = ec2.create_internet_gateway(TagSpecifications=T.tag_spec("internet-gateway", want.tags))[
                "InternetGateway"
            ]["InternetGatewayId"]
        return {"id": gid, "vpcs": ()}

    def finish(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any], created: dict[str, Any]) -> dict[str, Any]:
        have = Actual(self.kind, want.name, created["id"], outputs=created)
        return self.modify(ctx, want, have, fields, {"vpc"})

    def modify(self, ctx: ApplyContext, want: Desired, have: Actual, fields: dict[str, Any], changed: set[str]) -> dict[str, Any]:
        ec2 = ctx.clients.client("ec2")
        with aws_errors(f"attaching internet gateway {want.name}"):
            for v in have.outputs.get("vpcs", ()):
                if v != fields["vpc"]:
                    ec2.detach_internet_gateway(InternetGatewayId=have.id, VpcId=v)
            if fields["vpc"] not in have.outputs.get("vpcs", ()):
                tolerate(lambda: ec2.attach_internet_gateway(InternetGatewayId=have.id, VpcId=fields["vpc"]), "Resource.AlreadyAssociated")
        return {"id": have.id, "vpcs": (fields["vpc"],)}

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        """Detached, then deleted as a follow-up: the VPC needs it detached, not gone, so its
        delete does not wait a round trip for the gateway's."""
        ec2 = ctx.clients.client("ec2")
        with aws_errors(f"detaching internet gateway {have.id}"):
            for v in have.outputs.get("vpcs", ()):
                tolerate(partial(ec2.detach_internet_gateway, InternetGatewayId=have.id, VpcId=v),
                         "Gateway.NotAttached", "InvalidInternetGatewayID.NotFound")

        def delete_gateway() -> None:
            with aws_errors(f"deleting internet gateway {have.id}"):
                tolerate(lambda: ec2.delete_internet_gateway(InternetGatewayId=have.id), "InvalidInternetGatewayID.NotFound")

        ctx.follow_up(have.key, delete_gateway)


# A route's target, by the prefix of its id, and the parameter CreateRoute/ReplaceRoute take it in.
_TARGET_PARAMS = {
    "igw": "GatewayId",
    "vgw": "GatewayId",
    "nat": "NatGatewayId",
    "tgw": "TransitGatewayId",
    "pcx": "VpcPeeringConnectionId",
    "eigw": "EgressOnlyInternetGatewayId",
    "eni": "NetworkInterfaceId",
    "i": "InstanceId",
}
_TARGET_FIELDS = ("GatewayId", "NatGatewayId", "TransitGatewayId", "VpcPeeringConnectionId",
                  "EgressOnlyInternetGatewayId", "NetworkInterfaceId", "InstanceId")


def _route(r: dict[str, Any]) -> tuple[str, str] | None:
    """``(destination, target id)`` of one described route; None for the VPC's own ``local``
    route and for routes kopsy cannot name (IPv6 or prefix-list destinations)."""
    dest = r.get("DestinationCidrBlock")
    target = next((r[f] for f in _TARGET_FIELDS if r.get(f) and r[f] != "local"), None)
    if not dest or target is None:
        return None
    return (str(dest), str(target))


def _target(target: str) -> dict[str, str]:
    """The CreateRoute/ReplaceRoute keyword for a target id (``nat-...`` -> NatGatewayId)."""
    param = _TARGET_PARAMS.get(target.split("-", 1)[0])
    if param is None:
        raise ValueError(f"route target {target} is of no kind kopsy routes to")
    return {param: target}


class RouteTable(Kind):
    kind = "RouteTable"
    service = "ec2"
    id_field = "RouteTableId"
    depends_on = ("VPC", "InternetGateway", "Subnet", "NatGateway")
    late_fields = ("routes", "subnets")
    immutable = ("vpc",)
    permissions = (
        "ec2:DescribeRouteTables",
        "ec2:CreateRouteTable",
        "ec2:CreateTags",
        "ec2:CreateRoute",
        "ec2:ReplaceRoute",
        "ec2:AssociateRouteTable",
        "ec2:DisassociateRouteTable",
        "ec2:DeleteRouteTable",
    )

    def find(self, facts: Facts) -> list[Actual]:
        with aws_errors("reading route tables"):
            tables = owned(facts, "describe_route_tables", "RouteTables")
        out = []
        for t in tables:
            routes = frozenset(route for r in t.get("Routes", []) if (route := _route(r)) is not None)
            assoc = {a["SubnetId"]: a["RouteTableAssociationId"] for a in t.get("Associations", []) if a.get("SubnetId")}
            out.append(
                Actual(
                    self.kind,
                    name_of(t, t["RouteTableId"]),
                    t["RouteTableId"],
                    fields={"vpc": t["VpcId"], "routes": routes, "subnets": frozenset(assoc)},
                    outputs={"id": t["RouteTableId"], "associations": assoc},
                    tags=T.to_dict(t.get("Tags")),
                )
            )
        return out

    def same(self, field_name: str, desired: Any, have: Actual) -> bool:
        """A route kopsy did not ask for (a peering route a user added) is not kopsy's to
        remove: routes are up to date when every wanted destination has its wanted target."""
        if field_name == "routes":
            routes = dict(have.fields.get("routes") or ())
            return all(routes.get(dest) == target for dest, target in desired)
        return super().same(field_name, desired, have)

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        """Created as soon as the VPC is; its routes (which need the attached gateway) and subnet
        associations follow in ``finish``."""
        ec2 = ctx.clients.client("ec2")
        with aws_errors(f"creating route table {want.name}"):
            rid = ec2.create_route_table(VpcId=fields["vpc"], TagSpecifications=T.tag_spec("route-table", want.tags))[
                "RouteTable"
            ]["RouteTableId"]
        return {"id": rid, "associations": {}}

    def finish(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any], created: dict[str, Any]) -> dict[str, Any]:
        have = Actual(self.kind, want.name, created["id"], fields={"routes": frozenset(), "subnets": frozenset()}, outputs=created)
        return self.modify(ctx, want, have, fields, {"routes", "subnets"})

    def modify(self, ctx: ApplyContext, want: Desired, have: Actual, fields: dict[str, Any], changed: set[str]) -> dict[str, Any]:
        """Routes and associations are independent of each other: all sent at once."""
        ec2 = ctx.clients.client("ec2")
        assoc = dict(have.outputs.get("associations", {}))
        existing = dict(have.fields.get("routes", frozenset()))
        jobs: list[tuple[str, str, Callable[[], Any]]] = []  # (action, subnet, call)
        rt = have.id
        for dest, target in sorted(fields["routes"]):
            if dest not in existing:
                create = partial(ec2.create_route, RouteTableId=rt, DestinationCidrBlock=dest, **_target(target))
                jobs.append(("route", "", partial(tolerate, create, "RouteAlreadyExists")))
            elif existing[dest] != target:
                jobs.append(("route", "", partial(ec2.replace_route, RouteTableId=rt, DestinationCidrBlock=dest, **_target(target))))
        for sid in sorted(fields["subnets"] - set(assoc)):
            associate = partial(ec2.associate_route_table, RouteTableId=rt, SubnetId=sid)
            jobs.append(("associate", sid, partial(tolerate, associate, "Resource.AlreadyAssociated")))
        for sid in sorted(set(assoc) - fields["subnets"]):
            jobs.append(("disassociate", sid, partial(ec2.disassociate_route_table, AssociationId=assoc[sid])))
        with aws_errors(f"updating route table {want.name}"):
            answers = parallel(lambda job: job[2](), jobs, workers=8)
        for (action, sid, _), answer in zip(jobs, answers):
            if action == "associate" and answer:
                assoc[sid] = answer["AssociationId"]
            elif action == "disassociate":
                assoc.pop(sid)
        return {"id": have.id, "associations": assoc}

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        ec2 = ctx.clients.client("ec2")
        with aws_errors(f"deleting route table {have.id}"):
            parallel(lambda aid: tolerate(lambda: ec2.disassociate_route_table(AssociationId=aid), "InvalidAssociationID.NotFound"),
                     list(have.outputs.get("associations", {}).values()))
            tolerate(lambda: ec2.delete_route_table(RouteTableId=have.id), "InvalidRouteTableID.NotFound")

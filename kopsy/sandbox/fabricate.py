"""A test double for ``kopsy create`` + ``update``: a cluster's cloud resources made directly with boto3.

Tests and ``bench/sandbox.py`` use it to put instances in front of the sandbox without going
through the whole of kopsy: a state store with the cluster's CA and SSH key, a VPC, kops-style
security groups, an API NLB with its target group, a key pair, and instances launched with
user-data from the real renderer (``kopsy.bootstrap.render_user_data``) and kopsy's tags.
Faults (a wrong endpoint, a removed rule) are made by hand on top, as a user would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kopsy.cloud.aws import names as N
from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.session import AwsClients, aws_errors
from kopsy.spec.defaults import CreateOptions, new_cluster
from kopsy.spec.model import Cluster, InstanceGroup


@dataclass
class FabricatedCluster:
    name: str
    state_store: str  # s3://bucket/<name>
    cluster: Cluster
    groups: dict[str, InstanceGroup]  # by role: "ControlPlane", "Node"
    ca_hash: str
    key_name: str
    subnet_id: str
    security_groups: dict[str, str]  # "control-plane" | "nodes" | "api-elb" -> group id
    api_dns: str
    target_group: str
    instances: dict[str, list[str]] = field(default_factory=lambda: {"ControlPlane": [], "Node": []})

    @property
    def api_endpoint(self) -> str:
        return f"{self.api_dns}:443"


def _tags(name: str, resource: str, role: str = "", **extra: str) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in T.cluster_tags(name, resource, role, **extra).items()]


def fabricate_cluster(
    clients: AwsClients, *, name: str, bucket: str, public_key: str, zone: str = "us-east-1a",
    network_cidr: str = "172.20.0.0/16",
) -> FabricatedCluster:
    """Everything but the instances (see ``launch``). Give clusters sharing a sandbox their own
    ``network_cidr``: private addresses are only unique inside one VPC."""
    from kopsy.pki import ca_cert_hash, generate_cluster_pki

    cluster, igs = new_cluster(CreateOptions(name=name, zones=[zone], network_cidr=network_cidr))
    cluster.config_base = f"s3://{bucket}/{name}"
    pki = generate_cluster_pki(name)
    s3, ec2, elb = clients.client("s3"), clients.client("ec2"), clients.client("elbv2")
    with aws_errors("fabricating a cluster"):
        from kopsy.bootstrap.addons import render_addons

        # what create writes, and the addons update --yes writes before any launch template
        objects = {**pki.store_objects(), "ssh/public/admin": (public_key.strip() + "\n").encode(), **render_addons(cluster)}
        for key, data in objects.items():
            s3.put_object(Bucket=bucket, Key=f"{name}/{key}", Body=data)
        vpc = ec2.create_vpc(CidrBlock=cluster.network_cidr)["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=cluster.subnets[0].cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
        ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
        # A way out to the internet, as a public subnet has (the rules judge an instance's egress).
        igw = ec2.create_internet_gateway(TagSpecifications=[{"ResourceType": "internet-gateway", "Tags": _tags(name, name)}])[
            "InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
        (main,) = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                     {"Name": "association.main", "Values": ["true"]}])["RouteTables"]
        ec2.create_route(RouteTableId=main["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        sgs = {}
        for role in ("control-plane", "nodes", "api-elb"):
            sgs[role] = ec2.create_security_group(
                GroupName=N.security_group_name(role, name), Description=f"{role} of {name}", VpcId=vpc,
                TagSpecifications=[{"ResourceType": "security-group", "Tags": _tags(name, N.security_group_name(role, name))}],
            )["GroupId"]

        def allow(target: str, proto: str, lo: int | None, hi: int | None, source: str) -> None:
            perm: dict[str, Any] = {"IpProtocol": proto}
            if lo is not None:
                perm.update(FromPort=lo, ToPort=hi)
            if source.startswith("sg-"):
                perm["UserIdGroupPairs"] = [{"GroupId": source}]
            else:
                perm["IpRanges"] = [{"CidrIp": source}]
            ec2.authorize_security_group_ingress(GroupId=target, IpPermissions=[perm])

        cp, nodes, api = sgs["control-plane"], sgs["nodes"], sgs["api-elb"]
        allow(cp, "-1", None, None, cp)
        allow(cp, "tcp", 6443, 6443, api)
        allow(cp, "tcp", 1, 2378, nodes)
        allow(cp, "tcp", 2382, 65535, nodes)
        allow(nodes, "-1", None, None, cp)
        allow(nodes, "-1", None, None, nodes)
        allow(api, "tcp", 443, 443, "0.0.0.0/0")
        lb = elb.create_load_balancer(
            Name=f"api-{name.replace('.', '-')}"[:32], Type="network", Scheme="internet-facing", Subnets=[subnet],
            SecurityGroups=[api], Tags=_tags(name, N.api_name(name), T.ROLE_API),
        )["LoadBalancers"][0]
        tg = elb.create_target_group(
            Name=f"tcp-{name.replace('.', '-')}"[:32], Protocol="TCP", Port=6443, VpcId=vpc, TargetType="instance",
        )["TargetGroups"][0]["TargetGroupArn"]
        elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="TCP", Port=443, DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])
        key_name = f"kopsy-{name}"
        ec2.import_key_pair(KeyName=key_name, PublicKeyMaterial=public_key.strip().encode())
    groups = {ig.role: ig for ig in igs}
    return FabricatedCluster(
        name, cluster.config_base, cluster, groups, ca_cert_hash(pki.ca_cert), key_name, subnet, sgs, lb["DNSName"], tg,
    )


def user_data(fc: FabricatedCluster, role: str, *, api_endpoint: str | None = None) -> bytes:
    from kopsy.bootstrap import render_user_data

    return render_user_data(
        fc.cluster, fc.groups[role], api_endpoint=api_endpoint or fc.api_endpoint, ca_cert_hash=fc.ca_hash,
        state_store_url=fc.state_store,
    )


def launch(clients: AwsClients, fc: FabricatedCluster, role: str, count: int = 1, *, data: bytes | None = None) -> list[str]:
    """Launch ``count`` instances of the cluster's ``role`` group; control planes join the target group."""
    ig = fc.groups[role]
    sg = fc.security_groups["control-plane" if role == "ControlPlane" else "nodes"]
    ec2 = clients.client("ec2")
    with aws_errors("launching fabricated instances"):
        image = ec2.describe_images(Owners=["099720109477"])["Images"][0]["ImageId"]
        reservation = ec2.run_instances(
            ImageId=image, InstanceType=ig.machine_type, MinCount=count, MaxCount=count, KeyName=fc.key_name,
            SubnetId=fc.subnet_id, SecurityGroupIds=[sg],
            UserData=data if data is not None else user_data(fc, role),  # botocore base64-encodes it
            TagSpecifications=[{"ResourceType": "instance", "Tags": _tags(
                fc.name, N.asg_name(ig.name, fc.name), role, **{T.TAG_INSTANCE_GROUP: ig.name}
            )}],
        )
        ids = [i["InstanceId"] for i in reservation["Instances"]]
        if role == "ControlPlane":
            clients.client("elbv2").register_targets(TargetGroupArn=fc.target_group, Targets=[{"Id": i} for i in ids])
    fc.instances[role] += ids
    return ids

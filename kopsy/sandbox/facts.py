"""One read of the emulated cloud, turned into a typed ``World`` that the rules judge.

Reading is batched: per refresh, one filtered DescribeInstances, one DescribeSecurityGroups,
one DescribeLoadBalancers plus its tags, the API target groups' health, and one object per
state store (the cluster CA). Things that cannot change while an instance runs (its user-data,
a key pair's public key) are fetched once and cached. Reading never changes anything.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from kopsy.cloud.aws import groups as G
from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.ec2util import describe_all
from kopsy.cloud.aws.endpoint import pick_api_endpoint
from kopsy.cloud.aws.session import AwsClients, aws_errors
from kopsy.errors import KopsyError
from kopsy.sandbox.etcd import read_etcd_fact
from kopsy.sandbox.rules import decode_user_data
from kopsy.spec.model import SSH_KEY_ANNOTATION

log = logging.getLogger(__name__)

SANDBOX_STATES = ("pending", "running", "stopping", "stopped")


@dataclass(frozen=True)
class Instance:
    id: str
    state: str
    cluster: str | None
    role: str | None  # the role tag, if any
    instance_group: str | None
    zone: str
    instance_type: str
    image_id: str
    private_ip: str
    private_dns: str
    public_ip: str | None
    security_groups: tuple[str, ...]
    key_name: str | None
    launch_time: str  # RFC 3339, UTC
    user_data: bytes | None
    subnet: str = ""


@dataclass(frozen=True)
class IngressRule:
    protocol: str  # "tcp", "udp", "-1" (all)
    from_port: int
    to_port: int
    groups: frozenset[str]
    cidrs: tuple[str, ...]


@dataclass(frozen=True)
class ApiLoadBalancer:
    arn: str
    dns_name: str
    registered: frozenset[str]  # instance ids behind the API target group(s)
    security_groups: tuple[str, ...] = ()  # the NLB's own groups (targets must admit them)
    scheme: str = "internet-facing"  # or "internal": decides where a client's traffic comes from

    @property
    def endpoint(self) -> str:
        """``dns:443``, as kopsy renders it into user-data."""
        return self.dns_name if ":" in self.dns_name else f"{self.dns_name}:443"


@dataclass(frozen=True)
class CaFact:
    cert_hash: str | None
    error: str | None


@dataclass(frozen=True)
class World:
    """Everything the rules need, as read at ``taken_at`` (monotonic seconds)."""

    taken_at: float
    instances: tuple[Instance, ...]
    ingress: dict[str, tuple[IngressRule, ...]] = field(default_factory=dict)
    # cluster -> its API NLBs by endpoint ("dns:443"): the internet-facing one, and the internal
    # one kopsy points instances at
    api: dict[str, dict[str, ApiLoadBalancer]] = field(default_factory=dict)
    api_endpoint: dict[str, str] = field(default_factory=dict)  # cluster -> the endpoint kopsy renders into user-data
    ca: dict[str, CaFact] = field(default_factory=dict)  # state-store cluster URL -> CA hash
    # state-store cluster URL -> addon relkey -> sha256 hex of the stored bytes (None: missing or unreadable),
    # for the addons control planes pin: what the first control plane would fetch and check
    addons: dict[str, dict[str, str | None]] = field(default_factory=dict)
    public_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)  # instance id -> authorized keys
    identity_files: dict[str, str] = field(default_factory=dict)  # cluster -> private key path, when known
    # subnet id -> the target of its 0.0.0.0/0 route ("" for none), from its route table (or its
    # VPC's main one), for every subnet an instance is in; a subnet missing here was not read
    egress: dict[str, str] = field(default_factory=dict)
    nat_ips: dict[str, str] = field(default_factory=dict)  # available NAT gateway id -> its Elastic IP
    etcd: dict[str, Any] = field(default_factory=dict)  # state-store cluster URL -> sandbox.etcd.EtcdStoreFact
    # Kubernetes versions the package repository publishes (kubeadm, kubelet and kubectl all out),
    # from the sandbox's index (sandbox.packages); None: no index known, versions are not judged
    published: frozenset[str] | None = None


@dataclass(frozen=True)
class Machines:
    taken_at: float
    instances: tuple[Instance, ...]
    public_keys: dict[str, tuple[str, ...]]
    identity_files: dict[str, str]


@dataclass(frozen=True)
class Network:
    taken_at: float
    ingress: dict[str, tuple[IngressRule, ...]]
    api: dict[str, dict[str, ApiLoadBalancer]]
    api_endpoint: dict[str, str]
    ca: dict[str, CaFact]
    addons: dict[str, dict[str, str | None]] = field(default_factory=dict)
    egress: dict[str, str] = field(default_factory=dict)
    nat_ips: dict[str, str] = field(default_factory=dict)
    etcd: dict[str, Any] = field(default_factory=dict)  # state-store cluster URL -> sandbox.etcd.EtcdStoreFact


def combine(machines: Machines, network: Network, published: frozenset[str] | None = None) -> World:
    return World(
        taken_at=min(machines.taken_at, network.taken_at),
        instances=machines.instances,
        ingress=network.ingress,
        api=network.api,
        api_endpoint=network.api_endpoint,
        ca=network.ca,
        addons=network.addons,
        etcd=network.etcd,
        public_keys=machines.public_keys,
        identity_files=machines.identity_files,
        egress=network.egress,
        nat_ips=network.nat_ips,
        published=published,
    )


def _stores(instances: list[Instance] | tuple[Instance, ...]) -> dict[str, str]:
    """State-store URLs named in user-data -> a cluster using each."""
    stores: dict[str, str] = {}
    for i in instances:
        cfg = decode_user_data(i.user_data).config if i.user_data else None
        if cfg is not None:
            stores.setdefault(cfg.stateStore, cfg.clusterName)
    return stores


class CloudReader:
    """Reads the emulated cloud; keeps the caches that make a refresh cheap."""

    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients
        self._user_data: dict[str, bytes | None] = {}
        self._key_pairs: dict[str, str] = {}
        self._admin_keys: dict[str, str] = {}  # store URL -> ssh/public/admin
        self._identity: dict[str, str] = {}  # cluster -> private key path
        self._lt_data: dict[tuple[str, str], dict[str, Any]] = {}

    def read(self) -> World:
        machines = self.read_machines()
        return combine(machines, self.read_network(machines.instances))

    def read_machines(self) -> Machines:
        """The slow half (DescribeInstances slows with every instance returned): the poll loop's job."""
        started = time.monotonic()
        instances = self._instances()
        keys = self._public_keys(instances)
        identity = {cluster: path for url, cluster in _stores(instances).items() if (path := self._identity_file(url, cluster))}
        return Machines(started, tuple(instances), keys, identity)

    def read_network(self, instances: tuple[Instance, ...]) -> Network:
        """The fast half, re-read for answers: security groups, the API load balancers, the CAs."""
        started = time.monotonic()
        api = self._api_load_balancers({i.cluster for i in instances if i.cluster})
        lb_groups = {sg for lbs in api.values() for lb in lbs.values() for sg in lb.security_groups}
        ingress = self._ingress({sg for i in instances for sg in i.security_groups} | lb_groups)
        endpoints = {name: self._endpoint(lbs) for name, lbs in api.items()}
        ca = {url: self._ca(url) for url in _stores(instances)}
        egress, nat_ips = self._egress({i.subnet for i in instances if i.subnet})
        etcd = {url: read_etcd_fact(self.store(url)) for url in _stores(instances)}
        return Network(started, ingress, api, endpoints, ca, self._addons(instances), egress, nat_ips, etcd)

    # --- instances ------------------------------------------------------------------------------

    def _instances(self) -> list[Instance]:
        """Every instance of the emulated cloud, whatever cluster it belongs to (kopsy's shared
        instance reader, with no tag filter: the sandbox judges the whole world)."""
        with aws_errors("sandbox: listing instances"):
            raw = G.fetch_instances(self.clients.client("ec2"), [], SANDBOX_STATES)
        parsed = [G.parse_instance(r) for r in raw]
        live = {i.id for i in parsed}
        for gone in set(self._user_data) - live:
            del self._user_data[gone]
        out = []
        for i in parsed:
            if i.id not in self._user_data:
                self._user_data[i.id] = self._fetch_user_data(i)
            out.append(
                Instance(
                    id=i.id,
                    state=i.state,
                    cluster=i.cluster or None,
                    role=i.role or None,
                    instance_group=i.instance_group or None,
                    zone=i.zone,
                    instance_type=i.instance_type,
                    image_id=i.image_id,
                    private_ip=i.private_ip,
                    private_dns=i.private_dns,
                    public_ip=i.public_ip or None,
                    security_groups=self._security_groups(i),
                    key_name=i.key_name or None,
                    launch_time=i.launch_time,
                    user_data=self._user_data[i.id],
                    subnet=i.subnet,
                )
            )
        return sorted(out, key=lambda i: (i.launch_time, i.id))

    def _fetch_user_data(self, inst: G.InstanceFacts) -> bytes | None:
        """The instance's own user-data; else that of the launch template version it came from."""
        ec2 = self.clients.client("ec2")
        try:
            with aws_errors("sandbox: reading user-data"):
                value = ec2.describe_instance_attribute(InstanceId=inst.id, Attribute="userData")
            encoded = value.get("UserData", {}).get("Value")
            if encoded:
                return base64.b64decode(encoded)
        except KopsyError as exc:
            log.warning("%s: %s", inst.id, exc)
        data = self._template_data(inst).get("UserData")
        return base64.b64decode(data) if data else None

    def _template_data(self, inst: G.InstanceFacts) -> dict[str, Any]:
        """The launch template version an instance was launched from (versions never change: cached)."""
        lt, version = inst.launch_template_id, inst.launch_template_version
        if not lt or not version:
            return {}
        key = (lt, version)
        if key not in self._lt_data:
            try:
                with aws_errors("sandbox: reading a launch template"):
                    versions = self.clients.client("ec2").describe_launch_template_versions(LaunchTemplateId=lt, Versions=[version])
                self._lt_data[key] = versions["LaunchTemplateVersions"][0]["LaunchTemplateData"]
            except (KopsyError, IndexError) as exc:
                log.warning("launch template %s version %s: %s", lt, version, exc)
                return {}
        return self._lt_data[key]

    def _security_groups(self, inst: G.InstanceFacts) -> tuple[str, ...]:
        """The groups AWS would have given the instance. moto gives instances launched from a
        template the VPC's default group instead of the template's, so the template wins here."""
        data = self._template_data(inst)
        groups = set(data.get("SecurityGroupIds", []))
        for ni in data.get("NetworkInterfaces", []):
            groups.update(ni.get("Groups", []))
        return tuple(sorted(groups)) if groups else inst.security_groups

    # --- network --------------------------------------------------------------------------------

    def _ingress(self, group_ids: set[str]) -> dict[str, tuple[IngressRule, ...]]:
        if not group_ids:
            return {}
        ec2 = self.clients.client("ec2")
        with aws_errors("sandbox: reading security groups"):
            groups = ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": sorted(group_ids)}])
        out = {}
        for g in groups["SecurityGroups"]:
            rules = []
            for p in g.get("IpPermissions", []):
                proto = str(p.get("IpProtocol", "-1"))
                rules.append(
                    IngressRule(
                        protocol="-1" if proto in ("-1", "all") else proto,
                        from_port=int(p.get("FromPort", 0) if proto not in ("-1", "all") else 0),
                        to_port=int(p.get("ToPort", 65535) if proto not in ("-1", "all") else 65535),
                        groups=frozenset(x["GroupId"] for x in p.get("UserIdGroupPairs", []) if x.get("GroupId")),
                        cidrs=tuple(x["CidrIp"] for x in p.get("IpRanges", []) if x.get("CidrIp")),
                    )
                )
            out[g["GroupId"]] = tuple(rules)
        return out

    def _egress(self, subnets: set[str]) -> tuple[dict[str, str], dict[str, str]]:
        """Where each subnet's internet traffic goes (its table's 0.0.0.0/0 route, else its VPC's
        main table's), and the Elastic IP of each available NAT gateway: two describes."""
        if not subnets:
            return {}, {}
        ec2 = self.clients.client("ec2")
        with aws_errors("sandbox: reading routes"):
            tables = describe_all(ec2, "describe_route_tables", "RouteTables")
            described = describe_all(ec2, "describe_subnets", "Subnets", Filters=[{"Name": "subnet-id", "Values": sorted(subnets)}])
            gateways = describe_all(ec2, "describe_nat_gateways", "NatGateways", Filters=[{"Name": "state", "Values": ["available"]}])

        def default_route(table: dict[str, Any]) -> str:
            for r in table.get("Routes", []):
                if r.get("DestinationCidrBlock") == "0.0.0.0/0" and r.get("State", "active") == "active":
                    return str(r.get("GatewayId") or r.get("NatGatewayId") or r.get("InstanceId") or r.get("NetworkInterfaceId") or "")
            return ""

        explicit = {a["SubnetId"]: t for t in tables for a in t.get("Associations", []) if a.get("SubnetId")}
        main = {t["VpcId"]: t for t in tables if any(a.get("Main") for a in t.get("Associations", []))}
        egress = {}
        for s in described:
            table = explicit.get(s["SubnetId"]) or main.get(s["VpcId"])
            egress[s["SubnetId"]] = default_route(table) if table else ""
        nat_ips = {g["NatGatewayId"]: ip for g in gateways if g.get("State") == "available"
                   for ip in [next((a.get("PublicIp") for a in g.get("NatGatewayAddresses", []) if a.get("PublicIp")), "")] if ip}
        return egress, nat_ips

    def _api_load_balancers(self, clusters: set[str]) -> dict[str, dict[str, ApiLoadBalancer]]:
        """Each cluster's API load balancers (the internet-facing one chosen exactly as kopsy
        chooses it, and the internal one), by endpoint."""
        if not clusters:
            return {}
        elb = self.clients.client("elbv2")
        with aws_errors("sandbox: reading load balancers"):
            lbs = describe_all(elb, "describe_load_balancers", "LoadBalancers")
            arns = [lb["LoadBalancerArn"] for lb in lbs]
            tags: dict[str, dict[str, str]] = {}
            for start in range(0, len(arns), 20):
                for d in elb.describe_tags(ResourceArns=arns[start : start + 20])["TagDescriptions"]:
                    tags[d["ResourceArn"]] = {t["Key"]: t["Value"] for t in d.get("Tags", [])}
        pairs = [(lb, tags.get(lb["LoadBalancerArn"], {})) for lb in lbs]
        out: dict[str, dict[str, ApiLoadBalancer]] = {}
        for cluster in sorted(clusters):
            chosen = [pick_api_endpoint(pairs, cluster, role) for role in (T.ROLE_API, T.ROLE_API_INTERNAL)]
            for lb, _ in pairs:
                if lb.get("DNSName") and lb["DNSName"] in chosen:
                    found = ApiLoadBalancer(lb["LoadBalancerArn"], lb["DNSName"], self._registered(lb["LoadBalancerArn"]),
                                            tuple(lb.get("SecurityGroups", [])), lb.get("Scheme", "internet-facing"))
                    out.setdefault(cluster, {})[found.endpoint] = found
        return out

    def _registered(self, lb_arn: str) -> frozenset[str]:
        elb = self.clients.client("elbv2")
        ids: set[str] = set()
        with aws_errors("sandbox: reading target health"):
            for tg in elb.describe_target_groups(LoadBalancerArn=lb_arn)["TargetGroups"]:
                for d in elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])["TargetHealthDescriptions"]:
                    if d.get("TargetHealth", {}).get("State") not in ("draining", "unused"):
                        ids.add(d["Target"]["Id"])
        return frozenset(ids)

    @staticmethod
    def _endpoint(lbs: dict[str, ApiLoadBalancer]) -> str:
        """What kopsy puts in user-data: the internal load balancer's endpoint (a cluster made
        before there was one has only the internet-facing load balancer)."""
        internal = [e for e, lb in lbs.items() if lb.scheme == "internal"]
        return internal[0] if internal else next(iter(lbs))

    # --- state store ----------------------------------------------------------------------------

    def store(self, store_url: str) -> Any:
        """The cluster's state store (an ObjectStore rooted at its prefix)."""
        from kopsy.state import open_store

        return open_store(store_url, clients=self.clients, region=self.clients.region)

    def _get(self, store_url: str, key: str) -> bytes:
        return bytes(self.store(store_url).get(key).data)

    def _ca(self, store_url: str) -> CaFact:
        from kopsy.pki import ca_cert_hash

        try:
            return CaFact(ca_cert_hash(self._get(store_url, "pki/ca.crt")), None)
        except KopsyError as exc:
            return CaFact(None, f"cannot read {store_url}/pki/ca.crt: {exc}")
        except ValueError as exc:
            return CaFact(None, f"{store_url}/pki/ca.crt is not a certificate: {exc}")

    def _addons(self, instances: tuple[Instance, ...]) -> dict[str, dict[str, str | None]]:
        """The sha256 of each addon a control plane pins, as the store holds it now."""
        from kopsy.bootstrap.addons import sha256_hex

        wanted: dict[str, set[str]] = {}
        for i in instances:
            cfg = decode_user_data(i.user_data).config if i.user_data else None
            if cfg is not None and cfg.addons:
                wanted.setdefault(cfg.stateStore, set()).update(cfg.addons)
        out: dict[str, dict[str, str | None]] = {}
        for url, keys in wanted.items():
            out[url] = {}
            for key in sorted(keys):
                try:
                    out[url][key] = sha256_hex(self._get(url, key))
                except KopsyError:
                    out[url][key] = None
        return out

    def _admin_key(self, store_url: str) -> str | None:
        if store_url not in self._admin_keys:
            try:
                self._admin_keys[store_url] = self._get(store_url, "ssh/public/admin").decode().strip()
            except KopsyError:
                return None
        return self._admin_keys[store_url]

    def _identity_file(self, store_url: str, cluster: str) -> str | None:
        """The private key beside the public key the cluster was created with (docs/validate.md, "SSH"), if on this machine."""
        if cluster not in self._identity:
            from pathlib import Path

            import yaml

            try:
                doc = yaml.safe_load(self._get(store_url, "config")) or {}
            except (KopsyError, yaml.YAMLError):
                return None
            pub = ((doc.get("metadata") or {}).get("annotations") or {}).get(SSH_KEY_ANNOTATION, "")
            if not pub:
                return None
            private = Path(pub.removesuffix(".pub"))
            self._identity[cluster] = str(private) if private.is_file() else ""
        return self._identity[cluster] or None

    def _public_keys(self, instances: list[Instance]) -> dict[str, tuple[str, ...]]:
        names = sorted({i.key_name for i in instances if i.key_name and i.key_name not in self._key_pairs})
        if names:
            ec2 = self.clients.client("ec2")
            try:
                with aws_errors("sandbox: reading key pairs"):
                    pairs = ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": names}], IncludePublicKey=True)
                for kp in pairs["KeyPairs"]:
                    if kp.get("PublicKey"):
                        self._key_pairs[kp["KeyName"]] = kp["PublicKey"].strip()
            except KopsyError as exc:
                log.warning("%s", exc)
        out = {}
        for i in instances:
            keys: list[str] = []
            if i.key_name and i.key_name in self._key_pairs:
                keys.append(self._key_pairs[i.key_name])
            cfg = decode_user_data(i.user_data).config if i.user_data else None
            if cfg is not None and (admin := self._admin_key(cfg.stateStore)):
                keys.append(admin)
            out[i.id] = tuple(dict.fromkeys(keys))
        return out

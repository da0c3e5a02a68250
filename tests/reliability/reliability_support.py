"""Helpers for the reliability tests (no tests here).

One moto server process serves the whole reliability session (started with an Ubuntu 24.04
image through ``MOTO_AMIS_PATH``, so a reset keeps it), behind the fault proxy of
``bench/awsproxy.py``. ``Cloud`` resets moto between cases and restores the state store of a
cluster from a snapshot instead of creating it again (PKI generation is the slow part), runs the
real ``kopsy`` executable, and reads back the cloud *service by service* — not through tags
alone — so untagged leaks and duplicates are seen too.
"""

from __future__ import annotations

import base64
import gzip
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from awsproxy import AwsProxy, Call, busy_time, sequential_periods  # noqa: E402

from tests.conftest import start_moto_server  # noqa: E402

__all__ = ["AwsProxy", "Baseline", "Call", "Cloud", "Inventory", "busy_time", "sequential_periods", "start_moto"]

REGION = "us-east-1"
BUCKET = "kopsy-rel"
CLUSTER = "rel.example.com"
ZONES = "us-east-1a,us-east-1b"
KOPSY = shutil.which("kopsy", path=str(Path(sys.executable).parent)) or "kopsy"


def start_moto(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A moto server process on 127.0.0.1 that knows an Ubuntu 24.04 image (survives resets)."""
    from kopsy.sandbox.images import write_amis_file

    server = start_moto_server({"MOTO_AMIS_PATH": str(write_amis_file(work / "amis.json"))})
    return server.proc, server.url


def _tags(items: Any) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in items or []}


@dataclass
class Inventory:
    """Every non-default resource in the region, by kind: the ids, and the Name of each
    (the ``Name`` tag, or the resource's own name) to spot duplicates."""

    ids: dict[str, list[str]] = field(default_factory=dict)
    names: dict[str, list[str]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in sorted(self.ids.items()) if v}

    def total(self) -> int:
        return sum(len(v) for v in self.ids.values())

    def duplicates(self) -> dict[str, list[str]]:
        """Kinds where two resources carry the same name (instances, volumes and ENIs aside:
        the members of a group share one by design)."""
        out = {}
        for kind, names in self.names.items():
            if kind in ("instance", "volume", "eni"):
                continue
            dup = sorted(n for n, c in Counter(names).items() if c > 1)
            if dup:
                out[kind] = dup
        return out

    def shape(self) -> dict[str, Any]:
        """What must equal a clean run's: counts per kind and the names per kind."""
        return {"counts": self.counts(), "names": {k: sorted(v) for k, v in sorted(self.names.items()) if v and k not in ("instance", "volume", "eni")}}


@dataclass
class Baseline:
    """A clean create + update --yes: the store as create left it, and what update built."""

    store: dict[str, bytes]
    inventory: Inventory
    calls: int  # AWS calls of the clean update (S3 included)
    delete_calls: int  # AWS calls of the clean delete that followed


class Cloud:
    """moto + proxy + a throw-away HOME, and the ways a test drives and reads them."""

    def __init__(self, work: Path, moto_url: str, proxy: AwsProxy) -> None:
        self.work = work
        self.moto_url = moto_url
        self.proxy = proxy
        self.home = work / "home"
        self.home.mkdir(exist_ok=True)
        self.key = work / "id_ed25519"
        if not self.key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        self.outputs: list[str] = []  # every stdout/stderr of every kopsy run (for the secrets check)
        self._session: Any = None

    # driving

    def env(self, *, direct: bool = False, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KOPSY_"))}
        env.update({
            "AWS_ENDPOINT_URL": self.moto_url if direct else self.proxy.url,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
            "HOME": str(self.home), "KUBECONFIG": str(self.home / ".kube" / "config"),
            "KOPSY_STATE_STORE": f"s3://{BUCKET}", "NO_PROXY": "127.0.0.1,localhost", "EDITOR": "false",
        })
        env.pop("AWS_PROFILE", None)
        env.update(extra)
        return env

    def kopsy(self, args: list[str], *, direct: bool = False, timeout: float = 180, **extra: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([KOPSY, *args], env=self.env(direct=direct, **extra), capture_output=True, text=True, timeout=timeout)
        self.outputs += [r.stdout, r.stderr]
        return r

    def popen(self, args: list[str], **extra: str) -> subprocess.Popen[str]:
        env = self.env()
        env.update(extra)
        return subprocess.Popen([KOPSY, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def collect(self, proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str, str]:
        out, err = proc.communicate(timeout=timeout)
        self.outputs += [out, err]
        return proc.returncode, out, err

    def boto(self, service: str) -> Any:
        import boto3

        if self._session is None:
            self._session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
        return self._session.client(service, endpoint_url=self.moto_url)

    def reset(self) -> None:
        """An empty cloud with the state bucket, moto's backends warm, the proxy clean."""
        from botocore.exceptions import ClientError

        urllib.request.urlopen(urllib.request.Request(f"{self.moto_url}/moto-api/reset", method="POST"), timeout=30).read()
        self.proxy.set_faults(0.0)
        self.proxy.expire_after(None)
        self.proxy.release()
        self.proxy.reset()
        self.boto("s3").create_bucket(Bucket=BUCKET)
        for service, call in (
            ("ssm", lambda c: c.get_parameter(Name="/warm-up")),
            ("ec2", lambda c: c.describe_vpcs()),
            ("iam", lambda c: c.list_roles()),
            ("elbv2", lambda c: c.describe_load_balancers()),
            ("autoscaling", lambda c: c.describe_auto_scaling_groups()),
        ):
            try:
                call(self.boto(service))
            except ClientError:
                pass

    def create_cluster(self, name: str = CLUSTER, *extra: str) -> None:
        r = self.kopsy(["create", "cluster", name, "--zones", ZONES, "--node-count", "2",
                        "--ssh-public-key", f"{self.key}.pub", "--ssh-access", "10.0.0.0/8",
                        "--admin-access", "10.0.0.0/8", *extra], direct=True)
        assert r.returncode == 0, r.stderr

    # the state store

    def store_objects(self, prefix: str = "") -> dict[str, bytes]:
        s3 = self.boto("s3")
        out = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for o in page.get("Contents", []):
                out[o["Key"]] = s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
        return out

    def restore_store(self, objects: dict[str, bytes]) -> None:
        s3 = self.boto("s3")
        for k, v in objects.items():
            s3.put_object(Bucket=BUCKET, Key=k, Body=v)

    # reading the cloud back

    def inventory(self) -> Inventory:
        """Everything in the region but moto's defaults, read from each service directly."""
        ec2, elb, asg, iam = self.boto("ec2"), self.boto("elbv2"), self.boto("autoscaling"), self.boto("iam")
        inv = Inventory()

        def add(kind: str, items: list[tuple[str, str]]) -> None:
            inv.ids[kind] = [i for i, _ in items]
            inv.names[kind] = [n for _, n in items]

        vpcs = [v for v in ec2.describe_vpcs()["Vpcs"] if not v.get("IsDefault")]
        default_vpcs = {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if v.get("IsDefault")}
        add("vpc", [(v["VpcId"], _tags(v.get("Tags")).get("Name", "")) for v in vpcs])
        add("subnet", [(s["SubnetId"], _tags(s.get("Tags")).get("Name", ""))
                       for s in ec2.describe_subnets()["Subnets"] if s["VpcId"] not in default_vpcs])
        add("igw", [(g["InternetGatewayId"], _tags(g.get("Tags")).get("Name", ""))
                    for g in ec2.describe_internet_gateways()["InternetGateways"]
                    if not any(a.get("VpcId") in default_vpcs for a in g.get("Attachments", []))])
        add("route_table", [(t["RouteTableId"], _tags(t.get("Tags")).get("Name", ""))
                            for t in ec2.describe_route_tables()["RouteTables"]
                            if t["VpcId"] not in default_vpcs and not any(a.get("Main") for a in t.get("Associations", []))])
        add("security_group", [(g["GroupId"], g["GroupName"]) for g in ec2.describe_security_groups()["SecurityGroups"]
                               if g["VpcId"] not in default_vpcs and g["GroupName"] != "default"])
        add("key_pair", [(k["KeyPairId"], k["KeyName"]) for k in ec2.describe_key_pairs()["KeyPairs"]])
        # NAT gateways AWS lists as deleted (for an hour) are gone; released addresses are unlisted.
        add("nat_gateway", [(g["NatGatewayId"], _tags(g.get("Tags")).get("Name", ""))
                            for g in ec2.describe_nat_gateways()["NatGateways"] if g.get("State") != "deleted"])
        add("elastic_ip", [(a["AllocationId"], _tags(a.get("Tags")).get("Name", "")) for a in ec2.describe_addresses()["Addresses"]])
        add("launch_template", [(t["LaunchTemplateId"], t["LaunchTemplateName"])
                                for t in ec2.describe_launch_templates()["LaunchTemplates"]])
        all_instances = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
        gone = {i["InstanceId"] for i in all_instances if i["State"]["Name"] in ("terminated", "shutting-down")}
        add("instance", [(i["InstanceId"], _tags(i.get("Tags")).get("Name", "")) for i in all_instances if i["InstanceId"] not in gone])
        # moto keeps a terminated instance listed with its primary ENI and a root volume still
        # "attached"; AWS deletes both with the instance, so those are not leaks.
        add("volume", [(v["VolumeId"], "") for v in ec2.describe_volumes()["Volumes"]
                       if not v.get("Attachments") or any(a.get("InstanceId") not in gone for a in v["Attachments"])])
        # Likewise AWS deletes a NAT gateway's own (requester-managed) interface with the gateway;
        # moto keeps it, beside the gateway it lists as deleted.
        nat_enis = {a.get("NetworkInterfaceId") for g in ec2.describe_nat_gateways()["NatGateways"] if g.get("State") == "deleted"
                    for a in g.get("NatGatewayAddresses", [])}
        add("eni", [(n["NetworkInterfaceId"], "") for n in ec2.describe_network_interfaces()["NetworkInterfaces"]
                    if n.get("VpcId") not in default_vpcs and n.get("Attachment", {}).get("InstanceId") not in gone
                    and n["NetworkInterfaceId"] not in nat_enis])
        add("asg", [(g["AutoScalingGroupName"], g["AutoScalingGroupName"])
                    for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]])
        lbs = elb.describe_load_balancers()["LoadBalancers"]
        add("load_balancer", [(lb["LoadBalancerArn"], lb["LoadBalancerName"]) for lb in lbs])
        add("listener", [(li["ListenerArn"], f"{lb['LoadBalancerName']}:{li['Port']}") for lb in lbs
                         for li in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]])
        add("target_group", [(t["TargetGroupArn"], t["TargetGroupName"]) for t in elb.describe_target_groups()["TargetGroups"]])
        add("iam_role", [(r["RoleName"], r["RoleName"]) for r in iam.list_roles()["Roles"]])
        add("instance_profile", [(p["InstanceProfileName"], p["InstanceProfileName"])
                                 for p in iam.list_instance_profiles()["InstanceProfiles"]])
        return inv

    def user_data(self) -> list[bytes]:
        """The decoded user-data of every launch-template version (gunzipped when gzip)."""
        ec2 = self.boto("ec2")
        out = []
        for t in ec2.describe_launch_templates()["LaunchTemplates"]:
            for v in ec2.describe_launch_template_versions(LaunchTemplateId=t["LaunchTemplateId"])["LaunchTemplateVersions"]:
                raw = v.get("LaunchTemplateData", {}).get("UserData")
                if raw:
                    data = base64.b64decode(raw)
                    out.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
        return out


def measure_baseline(cloud: Cloud, *create_args: str) -> Baseline:
    """The clean run every suite compares with: create (``create_args``), update --yes, then
    delete --yes, on an empty cloud; its store, inventory and call counts."""
    cloud.reset()
    cloud.create_cluster(CLUSTER, *create_args)
    store = cloud.store_objects()
    cloud.proxy.reset()
    r = cloud.kopsy(["update", "cluster", CLUSTER, "--yes"])
    assert r.returncode == 0, r.stderr
    calls = len(cloud.proxy.calls)
    inv = cloud.inventory()
    assert not inv.duplicates()
    cloud.proxy.reset()
    r = cloud.kopsy(["delete", "cluster", CLUSTER, "--yes"])
    assert r.returncode == 0, r.stderr
    return Baseline(store, inv, calls, len(cloud.proxy.calls))


def one_error_line(stderr: str) -> list[str]:
    """The ``Error:`` lines of an output (the CLI promises exactly one)."""
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


CATCH_ALL = re.compile(r"Error: unexpected \w+")  # the CLI's line for an exception nobody translated


def caught_by_catch_all(outcomes: list[tuple[str, int, str]]) -> list[tuple[str, str]]:
    """(case id, line) of every recorded outcome that was the catch-all line (issue 19). Each
    bad-input module checks its own in a last test: pytest runs a file's tests in order, in one
    process, also under ``pytest -n --dist loadfile``."""
    return [(cid, line) for cid, _, line in outcomes if CATCH_ALL.match(line)]

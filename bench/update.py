"""Benchmark ``kopsy update cluster --yes`` (and a no-op update) through the latency proxy.

The real ``kopsy`` executable runs against a moto server process behind ``bench/awsproxy.py``,
which adds a fixed latency (default 50 ms) to every AWS call and records each call. For each
cluster shape this prints: wall time of ``update --yes``, calls by operation, the latency
periods spent in sequence, and wall time, calls and mutating calls of a no-op ``update --yes``,
each compared with the *dependency-forced minimum* (``FORCED`` below: the sequential calls AWS's
own data dependencies force on any tool). Figures only, never pass/fail.

Why three times: wall time includes starting Python and importing boto3 (about 1 s here, no
latency involved), so "span" (first call sent to last answer received) is reported too; the
ratio that judges the engine is span / (forced periods x latency).

moto has no Ubuntu 24.04 image and no Canonical SSM parameter: the benchmark runs the sandbox's
moto server (``kopsy sandbox _moto``), which serves both, so kopsy's default AMI resolution
(Canonical's SSM parameter) costs what it costs a user on AWS.

    .venv/bin/python bench/update.py [--shapes small,ha] [--latency-ms 50] [--timeline] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from awsproxy import AwsProxy, Call, busy_time, max_concurrency, sequential_periods  # noqa: E402

KOPSY = shutil.which("kopsy", path=str(Path(sys.executable).parent)) or "kopsy"
REGION = "us-east-1"
BUCKET = "kopsy-bench"
CLUSTER = "bench.example.com"
CLOUD_SERVICES = ("ec2", "iam", "elbv2", "autoscaling")
READ_PREFIXES = ("Describe", "Get", "List", "Head")


# --- shapes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A cluster shape: control planes, and the size of each node group."""

    name: str
    control_planes: int
    node_groups: tuple[int, ...]
    zones: tuple[str, ...] = ("us-east-1a", "us-east-1b", "us-east-1c")
    flags: tuple[str, ...] = ()  # more ``kopsy create cluster`` flags (the private topology's)

    @property
    def private(self) -> bool:
        return "private" in self.flags

    @property
    def nodes(self) -> int:
        return sum(self.node_groups)

    @property
    def instances(self) -> int:
        return self.nodes + self.control_planes

    def describe(self) -> str:
        groups = len(self.node_groups)
        return (f"{self.control_planes} control plane(s), {groups} node group(s), {self.nodes} nodes"
                + (f", {' '.join(self.flags)}" if self.flags else ""))


SHAPES: dict[str, Shape] = {
    "small": Shape("small", 1, (2,), ("us-east-1a", "us-east-1b")),
    "ha": Shape("ha", 3, (10, 10, 10)),
    "large": Shape("large", 3, (30,) * 10),
    # two zones, a NAT gateway and Elastic IP each, private route tables, a bastion
    "private": Shape("private", 1, (2,), ("us-east-1a", "us-east-1b"), ("--topology", "private", "--bastion")),
    "xl": Shape("xl", 3, (50,) * 20),  # 1,000 nodes
    "x3000": Shape("x3000", 3, (150,) * 20),  # 3,003 instances: bench/run_all.py measures only its delete
}


# --- the dependency-forced minimum ---------------------------------------------------------

# Each entry: an AWS call -> the calls whose results it needs first. This is what AWS itself
# forces on *any* tool creating kopsy's resources (an id, a DNS name or an attached gateway must
# exist before the next call can name it), not kopsy's own graph: a tool that does better than
# this is impossible, so the ratio to it measures kopsy's engine. Calls that can run at once
# (all the describes of the fact-finding, both IAM roles, every subnet) count once.
FORCED_UPDATE: dict[str, tuple[str, ...]] = {
    # state store: take the lock, then read the spec (list the instance groups, then read them)
    "s3:PutObject(lock)": (),
    "s3:GetObject(config)+ListObjectsV2(instancegroup/)": ("s3:PutObject(lock)",),
    "s3:GetObject(instancegroup/*)": ("s3:GetObject(config)+ListObjectsV2(instancegroup/)",),
    # facts: every describe at once (they need nothing but the cluster name)
    "describe*": ("s3:GetObject(instancegroup/*)",),
    # creates (no-op update: none of these)
    "iam:CreateRole": ("describe*",),
    "iam:PutRolePolicy": ("iam:CreateRole",),
    "iam:CreateInstanceProfile": ("describe*",),
    "iam:AddRoleToInstanceProfile": ("iam:CreateRole", "iam:CreateInstanceProfile"),
    "ec2:ImportKeyPair": ("describe*",),
    "ec2:CreateVpc": ("describe*",),
    "ec2:ModifyVpcAttribute": ("ec2:CreateVpc",),
    "ec2:CreateInternetGateway": ("describe*",),
    "ec2:AttachInternetGateway": ("ec2:CreateVpc", "ec2:CreateInternetGateway"),
    "ec2:CreateSubnet": ("ec2:CreateVpc",),
    "ec2:ModifySubnetAttribute": ("ec2:CreateSubnet",),
    "ec2:CreateRouteTable": ("ec2:CreateVpc",),
    "ec2:CreateRoute": ("ec2:CreateRouteTable", "ec2:AttachInternetGateway"),
    "ec2:AssociateRouteTable": ("ec2:CreateRouteTable", "ec2:CreateSubnet"),
    "ec2:CreateSecurityGroup": ("ec2:CreateVpc",),
    "ec2:AuthorizeSecurityGroupIngress": ("ec2:CreateSecurityGroup",),
    "elbv2:CreateTargetGroup": ("ec2:CreateVpc",),
    # an internet-facing NLB needs its subnets, its security group and an attached gateway
    "elbv2:CreateLoadBalancer": ("ec2:CreateSubnet", "ec2:CreateSecurityGroup", "ec2:AttachInternetGateway"),
    "elbv2:CreateListener": ("elbv2:CreateLoadBalancer", "elbv2:CreateTargetGroup"),
    # user-data names the API endpoint: the NLB's DNS name
    "ec2:CreateLaunchTemplate": ("elbv2:CreateLoadBalancer", "ec2:CreateSecurityGroup",
                                 "iam:AddRoleToInstanceProfile", "ec2:ImportKeyPair"),
    "autoscaling:CreateAutoScalingGroup": ("ec2:CreateLaunchTemplate", "ec2:ModifySubnetAttribute",
                                           "elbv2:CreateTargetGroup", "ec2:AssociateRouteTable"),
    "s3:DeleteObject(lock)": ("autoscaling:CreateAutoScalingGroup", "elbv2:CreateListener", "ec2:CreateRoute",
                              "ec2:AuthorizeSecurityGroupIngress", "iam:PutRolePolicy", "ec2:ModifyVpcAttribute"),
}
# The private topology adds the NAT chain: an address, the gateway in its Utility subnet, the
# wait until AWS says it is available (a route may not point at a pending one), then the
# private route; the Auto Scaling groups of the Private subnets launch after that route
# (their instances install packages through it). Nothing else waits for it.
FORCED_UPDATE_PRIVATE: dict[str, tuple[str, ...]] = {
    **FORCED_UPDATE,
    "ec2:AllocateAddress": ("describe*",),
    "ec2:CreateNatGateway": ("ec2:CreateSubnet", "ec2:AllocateAddress"),
    "ec2:DescribeNatGateways(available)": ("ec2:CreateNatGateway",),
    "ec2:CreateRoute(private)": ("ec2:CreateRouteTable", "ec2:DescribeNatGateways(available)"),
    # instances in Private subnets install packages through the gateway as they boot
    "autoscaling:CreateAutoScalingGroup": (*FORCED_UPDATE["autoscaling:CreateAutoScalingGroup"], "ec2:CreateRoute(private)"),
    "s3:DeleteObject(lock)": (*FORCED_UPDATE["s3:DeleteObject(lock)"], "ec2:CreateRoute(private)"),
}
NOOP_CALLS = ("s3:PutObject(lock)", "s3:GetObject(config)+ListObjectsV2(instancegroup/)",
              "s3:GetObject(instancegroup/*)", "describe*")
FORCED_NOOP: dict[str, tuple[str, ...]] = {
    **{k: FORCED_UPDATE[k] for k in NOOP_CALLS},
    # What exists has settings only a second describe returns, by the id the first one gave:
    # the VPC's DNS attributes, the load balancer's listeners, the target group's attributes.
    "describe(attributes, by id)": ("describe*",),
    "s3:DeleteObject(lock)": ("describe(attributes, by id)",),
}
FORCED_DELETE: dict[str, tuple[str, ...]] = {
    "s3:GetObject(config)": (),  # the region and the cluster's existence
    "s3:PutObject(lock)": (),  # independent of the spec read: both go at once
    "describe*": ("s3:GetObject(config)", "s3:PutObject(lock)"),
    # ForceDelete terminates the group's instances; AWS does it asynchronously, so at least one
    # describe must confirm they are gone before what they use can go.
    "autoscaling:DeleteAutoScalingGroup": ("describe*",),
    "elbv2:DeleteLoadBalancer": ("describe*",),
    "ec2:RevokeSecurityGroupIngress": ("describe*",),
    "ec2:DisassociateRouteTable": ("describe*",),
    "iam:RemoveRoleFromInstanceProfile": ("describe*",),
    "iam:DeleteRolePolicy": ("describe*",),
    "ec2:DeleteKeyPair": ("describe*",),
    "poll(instances, load balancer gone)": ("autoscaling:DeleteAutoScalingGroup", "elbv2:DeleteLoadBalancer"),
    "ec2:DeleteLaunchTemplate": ("autoscaling:DeleteAutoScalingGroup",),
    "elbv2:DeleteTargetGroup": ("elbv2:DeleteLoadBalancer",),
    "iam:DeleteInstanceProfile": ("iam:RemoveRoleFromInstanceProfile",),
    "iam:DeleteRole": ("iam:RemoveRoleFromInstanceProfile", "iam:DeleteRolePolicy"),
    "ec2:DeleteRouteTable": ("ec2:DisassociateRouteTable",),
    # public addresses must be unmapped (instances, NLB gone) before the gateway can be detached
    "ec2:DetachInternetGateway": ("poll(instances, load balancer gone)",),
    "ec2:DeleteSecurityGroup": ("poll(instances, load balancer gone)", "ec2:RevokeSecurityGroupIngress"),
    "ec2:DeleteSubnet": ("poll(instances, load balancer gone)",),
    "ec2:DeleteInternetGateway": ("ec2:DetachInternetGateway",),
    "ec2:DeleteVpc": ("ec2:DetachInternetGateway", "ec2:DeleteSecurityGroup", "ec2:DeleteSubnet", "ec2:DeleteRouteTable"),
    "describe*(confirm nothing left)": ("ec2:DeleteVpc", "ec2:DeleteInternetGateway", "iam:DeleteRole",
                                       "iam:DeleteInstanceProfile", "ec2:DeleteLaunchTemplate", "elbv2:DeleteTargetGroup",
                                       "ec2:DeleteKeyPair"),
    # the state objects can be listed once nothing that writes them (a node's etcd backup) runs
    "s3:ListObjectsV2(cluster/)": ("poll(instances, load balancer gone)",),
    "s3:DeleteObjects(cluster/)": ("describe*(confirm nothing left)", "s3:ListObjectsV2(cluster/)"),
    # config (which lists the cluster) goes last, alone, so a delete that stops half-way can be
    # re-run (the lock, whose taking counts as in update, is released with the batch)
    "s3:DeleteObject(config)": ("s3:DeleteObjects(cluster/)",),
}


def latency_periods(low: Measurement, high: Measurement) -> float:
    """Latency periods the run actually waits, whatever its fixed costs: how much its wall time
    grows per second of added latency. Python start-up, boto3's CPU work and moto's own answer
    time cost the same at any latency and drop out; what is left is the number of round trips
    the run spends one after another, which the forced minimum bounds from below."""
    return (high.wall - low.wall) / (high.latency - low.latency)


def forced_periods(graph: dict[str, tuple[str, ...]]) -> int:
    """Length (in calls) of the longest chain of the graph: the latency periods no tool can avoid."""
    memo: dict[str, int] = {}

    def depth(k: str) -> int:
        if k not in memo:
            memo[k] = 1 + max((depth(d) for d in graph[k]), default=0)
        return memo[k]

    return max(depth(k) for k in graph)


# --- running kopsy through the proxy -------------------------------------------------------


@dataclass
class Measurement:
    """One kopsy run through the proxy."""

    label: str
    wall: float
    calls: list[Call]
    latency: float
    stdout: str = ""
    first_call_after: float = 0.0  # seconds from process start to its first AWS call
    cpu: float = 0.0  # CPU seconds (user + system) of the kopsy process
    rss_mb: float = 0.0  # its peak resident set size, MiB
    yardstick_cpu: float | None = None  # CPU of plain boto3 making the same calls (bench/yardstick.py)

    @property
    def span(self) -> float:
        return (max(c.end for c in self.calls) - min(c.start for c in self.calls)) if self.calls else 0.0

    @property
    def sequential(self) -> int:
        return sequential_periods(self.calls)

    @property
    def by_operation(self) -> Counter[str]:
        return Counter(f"{c.service}:{c.operation}" for c in self.calls if not c.fault)

    @property
    def cloud_mutating(self) -> list[str]:
        """Mutating calls to EC2, IAM, ELB and Auto Scaling (the state store's own S3 writes aside)."""
        return [f"{c.service}:{c.operation}" for c in self.calls
                if c.service in CLOUD_SERVICES and not c.operation.startswith(READ_PREFIXES) and not c.fault]

    @property
    def lock_writes(self) -> int:
        """The state-store lock's own S3 writes (take + release), which issue 3 sets aside when
        counting a no-op; in a no-op these are the only S3 writes."""
        return sum(1 for c in self.calls if c.service == "s3" and c.operation in ("PutObject", "DeleteObject")
                   and not c.fault)

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "latency_ms": round(self.latency * 1000),
            "wall_s": round(self.wall, 3),
            "cpu_s": round(self.cpu, 3),
            "rss_mb": round(self.rss_mb, 1),
            "yardstick_cpu_s": None if self.yardstick_cpu is None else round(self.yardstick_cpu, 3),
            "span_s": round(self.span, 3),
            "first_call_after_s": round(self.first_call_after, 3),
            "calls": len(self.calls),
            "calls_without_lock_writes": len(self.calls) - self.lock_writes,
            "faults": sum(1 for c in self.calls if c.fault),
            "sequential_periods": self.sequential,
            "busy_s": round(busy_time(self.calls), 3),
            "max_concurrency": max_concurrency(self.calls),
            "cloud_mutating": len(self.cloud_mutating),
            "by_operation": dict(sorted(self.by_operation.items())),
            # moto's own slowness (answers far slower than the added latency), to tell it from kopsy's
            "slow_calls": [f"{c.service}:{c.operation} {c.end - c.start:.2f} s"
                           for c in sorted(self.calls, key=lambda c: c.start - c.end)[:4]
                           if c.end - c.start > self.latency + 0.2],
        }


def run_measured(argv: list[str], env: dict[str, str], *, timeout: float = 1800,
                 ) -> tuple[subprocess.CompletedProcess[str], Any]:
    """Run a process and return it with *its own* resource usage: CPU seconds from ``os.wait4``
    (that one process, not every child the bench has waited for), and as ``ru_maxrss`` its peak
    RSS in KiB, read from ``/proc/<pid>/status`` (``VmHWM``) while it runs: wait4's own
    ``ru_maxrss`` starts from the *bench's* size, which a forked child inherits until its exec."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        hwm = 0
        while True:
            hwm = max(hwm, _vm_hwm_kib(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                raise subprocess.TimeoutExpired(argv, timeout)
            time.sleep(0.005)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(argv, proc.returncode, out.read().decode(errors="replace"),
                                             err.read().decode(errors="replace"))
    return result, _Usage(usage.ru_utime, usage.ru_stime, float(hwm))


@dataclass(frozen=True)
class _Usage:
    ru_utime: float
    ru_stime: float
    ru_maxrss: float  # KiB, VmHWM of the process itself


def _vm_hwm_kib(pid: int) -> int:
    """The process's peak resident set so far (KiB), 0 once it has exited or before it has one."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bench:
    """A moto server process (with an Ubuntu 24.04 image) behind the latency proxy, and a
    throw-away HOME with an SSH key. Use as a context manager; everything started is stopped."""

    def __init__(self, latency_ms: float = 50.0, *, fault_rate: float = 0.0, seed: int | None = 1,
                 moto_url: str | None = None, extra_env: dict[str, str] | None = None) -> None:
        """Start a moto server, or use ``moto_url`` (e.g. the sandbox's; not stopped on close)."""
        self.latency = latency_ms / 1000.0
        self.extra_env = dict(extra_env or {})
        # As an installed kopsy has it: bytecode compiled once (an editable install run with
        # PYTHONDONTWRITEBYTECODE would compile kopsy's modules again in every process).
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(__file__).resolve().parent.parent / "kopsy")],
                       check=False, stdout=subprocess.DEVNULL)
        self._tmp = tempfile.TemporaryDirectory(prefix="kopsy-bench-")
        self.work = Path(self._tmp.name)
        self._moto: subprocess.Popen[bytes] | None = None
        if moto_url is None:
            from kopsy.sandbox.images import write_amis_file

            amis = write_amis_file(self.work / "amis.json")
            port = free_port()
            moto_url = f"http://127.0.0.1:{port}"
            # The sandbox's moto server: moto plus Canonical's public SSM parameters, as AWS has them.
            self._moto = subprocess.Popen(
                [KOPSY, "sandbox", "_moto", "--port", str(port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "MOTO_AMIS_PATH": str(amis)},
            )
        self.moto_url = moto_url
        try:
            self._wait_moto()
            self.proxy = AwsProxy(self.moto_url, latency_ms=latency_ms, fault_rate=fault_rate, seed=seed).start()
        except BaseException:
            if self._moto is not None:
                self._moto.kill()
                self._moto.wait()
            self._tmp.cleanup()
            raise
        self.key = self.work / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        (self.work / "home").mkdir()

    @contextlib.contextmanager
    def latency_of(self, latency_ms: float) -> Iterator[None]:
        """Run the block with another latency per call."""
        before = self.latency
        self.latency = self.proxy.latency = latency_ms / 1000.0
        try:
            yield
        finally:
            self.latency = self.proxy.latency = before

    def _wait_moto(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.moto_url}/moto-api/data.json", timeout=2).read()
                return
            except OSError:
                if time.monotonic() > deadline or (self._moto is not None and self._moto.poll() is not None):
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.05)

    def close(self) -> None:
        self.proxy.stop()
        if self._moto is not None:
            self._moto.terminate()
            try:
                self._moto.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._moto.kill()
                self._moto.wait()
        self._tmp.cleanup()

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def env(self, *, direct: bool = False) -> dict[str, str]:
        """The environment of a kopsy process: through the proxy, or ``direct`` to moto (set-up)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KOPSY_"))}
        env.update({
            "AWS_ENDPOINT_URL": self.moto_url if direct else self.proxy.url,
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
            "HOME": str(self.work / "home"), "KOPSY_STATE_STORE": f"s3://{BUCKET}",
            "NO_PROXY": "127.0.0.1,localhost",
        })
        env.update(self.extra_env)
        return env

    def boto(self, service: str) -> Any:
        import boto3

        session = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name=REGION)
        return session.client(service, endpoint_url=self.moto_url)

    def kopsy(self, args: list[str], *, direct: bool = False, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        r, _ = run_measured([KOPSY, *args], self.env(direct=direct), timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"kopsy {' '.join(args)} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return r

    def measure(self, label: str, args: list[str], *, check: bool = True) -> Measurement:
        """Run kopsy through the proxy and return its calls and timings."""
        self.proxy.reset()
        start = time.monotonic()
        r, usage = run_measured([KOPSY, *args], self.env(), timeout=1800)
        wall = time.monotonic() - start
        if check and r.returncode != 0:
            raise RuntimeError(f"kopsy {' '.join(args)} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        calls = self.proxy.calls
        first = (min(c.start for c in calls) - start) if calls else 0.0
        return Measurement(label, wall, calls, self.latency, r.stdout, first, usage.ru_utime + usage.ru_stime,
                           usage.ru_maxrss / 1024.0)

    def yardstick(self, args: list[str]) -> float:
        """CPU seconds of plain boto3 making the calls ``kopsy args`` makes (bench/yardstick.py):
        the calls are recorded in one run (through moto directly, not measured) and replayed."""
        here = Path(__file__).resolve().parent
        calls = self.work / "yardstick-calls.json"
        r, _ = run_measured([sys.executable, str(here / "yardstick.py"), "record", str(calls), "--", *args],
                            self.env(direct=True))
        if r.returncode != 0:
            raise RuntimeError(f"yardstick record failed: {r.stderr[-2000:]}")
        r, usage = run_measured([sys.executable, str(here / "yardstick.py"), "replay", str(calls)], self.env())
        if r.returncode != 0:
            raise RuntimeError(f"yardstick replay failed: {r.stderr[-2000:]}")
        # The replayed lock release carries the recorded ETag, so the replayed lock may stay: remove it.
        s3 = self.boto("s3")
        for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            if obj["Key"].endswith("/lock"):
                s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
        return float(usage.ru_utime + usage.ru_stime)

    def warm_up(self) -> None:
        """moto builds a service's backend on its first call after a reset (SSM loads its public
        parameters: ~2 s): pay that before measuring, so only kopsy and the latency are timed."""
        from botocore.exceptions import ClientError

        for service, call in (
            ("ssm", lambda c: c.get_parameter(Name="/aws/service/canonical/warm-up")),
            ("ec2", lambda c: c.describe_images(Owners=["099720109477"])),
            ("iam", lambda c: c.list_roles()),
            ("elbv2", lambda c: c.describe_load_balancers()),
            ("elb", lambda c: c.describe_load_balancers()),  # delete looks for the Services' classic ones
            ("autoscaling", lambda c: c.describe_auto_scaling_groups()),
        ):
            try:
                call(self.boto(service))
            except ClientError:
                pass

    def prepare(self, shape: Shape, name: str = CLUSTER) -> None:
        """Reset moto and write the shape's spec to the store (straight to moto: not measured)."""
        urllib.request.urlopen(urllib.request.Request(f"{self.moto_url}/moto-api/reset", method="POST"), timeout=30).read()
        self.boto("s3").create_bucket(Bucket=BUCKET)
        self.warm_up()
        self.kopsy(["create", "cluster", name, "--zones", ",".join(shape.zones),
                    "--control-plane-count", str(shape.control_planes), "--node-count", str(shape.node_groups[0]),
                    "--ssh-public-key", f"{self.key}.pub", "--ssh-access", "10.0.0.0/8", "--admin-access", "10.0.0.0/8",
                    *shape.flags], direct=True)
        extra = shape.node_groups[1:]
        if extra:
            docs = []
            for i, size in enumerate(extra, start=1):
                zone = shape.zones[i % len(shape.zones)]
                docs.append(
                    "apiVersion: kopsy.io/v1alpha1\nkind: InstanceGroup\n"
                    f"metadata: {{name: nodes-{i}, labels: {{kopsy.io/cluster: {name}}}}}\n"
                    f"spec: {{role: Node, machineType: t3.medium, minSize: {size}, maxSize: {size}, subnets: [{zone}]}}\n"
                )
            path = self.work / "groups.yaml"
            path.write_text("---\n".join(docs))
            self.kopsy(["create", "-f", str(path)], direct=True)


# --- reporting -----------------------------------------------------------------------------


@dataclass
class UpdateFigures:
    shape: Shape
    update: Measurement
    noop: Measurement
    update_slow: Measurement | None = None  # the same runs at a second latency (``slope_ms``)
    noop_slow: Measurement | None = None
    forced_update: int = field(default_factory=lambda: forced_periods(FORCED_UPDATE))
    forced_noop: int = field(default_factory=lambda: forced_periods(FORCED_NOOP))


def measure_update(bench: Bench, shape: Shape, name: str = CLUSTER, *, slope_ms: float = 0.0) -> UpdateFigures:
    """Create the cluster's resources and update again (a no-op); with ``slope_ms``, both once
    more at that latency, for ``latency_periods``."""

    def runs() -> tuple[Measurement, Measurement]:
        bench.prepare(shape, name)
        update = bench.measure("update --yes", ["update", "cluster", name, "--yes"])
        noop = bench.measure("no-op update --yes", ["update", "cluster", name, "--yes"])
        if "No changes need to be applied" not in noop.stdout:
            raise RuntimeError(f"the second update was not a no-op:\n{noop.stdout}")
        noop.yardstick_cpu = bench.yardstick(["update", "cluster", name, "--yes"])
        return update, noop

    fig = UpdateFigures(shape, *runs())
    if shape.private:
        fig.forced_update = forced_periods(FORCED_UPDATE_PRIVATE)
    if slope_ms:
        with bench.latency_of(slope_ms):
            fig.update_slow, fig.noop_slow = runs()
        bench.prepare(shape, name)  # leave the cluster as the first runs did (delete's benchmark builds on it)
        bench.kopsy(["update", "cluster", name, "--yes"], direct=True)
    return fig


def ratio_line(m: Measurement, forced: int, slow: Measurement | None = None) -> str:
    floor = forced * m.latency
    line = (f"{m.label}: {m.wall:.2f} s wall ({m.first_call_after:.2f} s before the first call, {m.cpu:.2f} s CPU), "
            f"span {m.span:.2f} s, {len(m.calls)} calls, {m.sequential} periods in sequence, "
            f"at most {max_concurrency(m.calls)} at once; forced minimum {forced} periods = {floor:.2f} s; "
            f"span/minimum {m.span / floor:.2f}x, wall/minimum {m.wall / floor:.2f}x, "
            f"sequential/forced {m.sequential / forced:.2f}x")
    if slow is not None:
        periods = latency_periods(m, slow)
        line += (f"; at {slow.latency * 1000:.0f} ms a call: {slow.wall:.2f} s wall, so {periods:.1f} latency periods "
                 f"waited = {periods / forced:.2f}x the forced minimum")
    return line


def print_operations(m: Measurement, indent: str = "      ") -> None:
    for op, n in sorted(m.by_operation.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"{indent}{n:5d}  {op}")


def print_timeline(m: Measurement) -> None:
    """Every call with its start offset and duration: where the sequential periods went."""
    if not m.calls:
        return
    t0 = min(c.start for c in m.calls)
    for c in sorted(m.calls, key=lambda c: c.start):
        print(f"      {1000 * (c.start - t0):8.0f} ms  {1000 * (c.end - c.start):5.0f} ms  {c.service}:{c.operation}"
              f"{'  [' + c.fault + ']' if c.fault else ''}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Benchmark kopsy update through a latency proxy in front of moto.")
    ap.add_argument("--shapes", default="small,ha", help=f"comma list of {', '.join(SHAPES)} (default small,ha)")
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--slope-ms", type=float, default=250.0,
                    help="also run at this latency, to count the latency periods waited (0: skip)")
    ap.add_argument("--timeline", action="store_true", help="print every call of each run with its timing")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    shapes = [SHAPES[s] for s in args.shapes.split(",") if s]
    results = []
    with Bench(args.latency_ms) as bench:
        print(f"kopsy update: moto server behind a {args.latency_ms:.0f} ms/call proxy; "
              f"forced minimum {forced_periods(FORCED_UPDATE)} periods (update), {forced_periods(FORCED_NOOP)} (no-op)")
        for shape in shapes:
            fig = measure_update(bench, shape, slope_ms=args.slope_ms)
            print(f"\n== {shape.name}: {shape.describe()}")
            print("  " + ratio_line(fig.update, fig.forced_update, fig.update_slow))
            print_operations(fig.update)
            if args.timeline:
                print_timeline(fig.update)
            print("  " + ratio_line(fig.noop, fig.forced_noop, fig.noop_slow))
            print(f"      calls with the lock's own S3 writes set aside (issue 3's count): "
                  f"{len(fig.noop.calls) - fig.noop.lock_writes}")
            print(f"      mutating calls to EC2/IAM/ELB/ASG: {len(fig.noop.cloud_mutating)} "
                  f"{sorted(Counter(fig.noop.cloud_mutating).items()) or ''}")
            print_operations(fig.noop)
            if args.timeline:
                print_timeline(fig.noop)
            results.append({"shape": shape.name, "update": fig.update.summary(), "noop": fig.noop.summary(),
                            "update_slow": fig.update_slow.summary() if fig.update_slow else None,
                            "noop_slow": fig.noop_slow.summary() if fig.noop_slow else None,
                            "forced_update": fig.forced_update, "forced_noop": fig.forced_noop})
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Golden cases over *raw* AWS answers: each kind's ``find`` parser, from what AWS returned.

A case is one JSON file, ``raw/<Kind>/<case>.json``, picked up by ``test_raw_answers.py``:

- ``cluster``: the cluster name ``find`` is asked about; ``detail`` (default true): ``Facts.detail``;
  ``sweep`` (only where ``Facts`` has it): ``Facts.sweep``;
- ``calls``: the recorded answers, each ``{"service", "operation", "params", "response"}`` (or
  ``"error": {"Code", "Message"}`` in place of ``response``), as botocore returned them;
- ``expected``: the parsed ``Actual`` values, sorted by name: ``name``, ``id``, ``fields``,
  ``outputs``, ``tags``. Sets and tuples are spelled ``{"frozenset": [...]}`` /
  ``{"tuple": [...]}`` (bytes ``{"bytes": base64}``) so a parser that returns a list where the planner compares a set fails.

``FakeClients`` is the test double: it stands in for ``kopsy.cloud.aws.session.AwsClients`` and
serves the recorded answers (a call that was not recorded fails the test, saying which).

``python -m rawkit`` (from tests/cloud) records every case again from in-process moto (the
golden baseline spec applied, plus a leftover volume and network interface and a NAT-gateway
route). moto's ids change between recordings, so it writes ``expected`` too: from today's
parser, except where a case says what the parser must return (``EXPECT`` below, written from the
AWS API's shapes, not from the parser). Review the diff: it is what the tests hold the parser to.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

RAW = Path(__file__).parent / "raw"


# encoding Actual values


def encode(value: Any) -> Any:
    """A parsed value as JSON, keeping set and tuple apart from list (sets sorted)."""
    if isinstance(value, (set, frozenset)):
        return {"frozenset": sorted((encode(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))}
    if isinstance(value, tuple):
        return {"tuple": [encode(v) for v in value]}
    if isinstance(value, bytes):
        import base64

        return {"bytes": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value


def encode_actuals(actuals: list[Any]) -> list[dict[str, Any]]:
    return [
        {"name": a.name, "id": a.id, "fields": encode(a.fields), "outputs": encode(a.outputs), "tags": encode(a.tags)}
        for a in sorted(actuals, key=lambda a: (a.name, a.id))
    ]


# the test double


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


class FakeClient:
    """One service's recorded answers. ``can_paginate`` is False, so kopsy's ``describe_all``
    asks for each answer directly (the recordings hold every item on one page)."""

    def __init__(self, service: str, calls: list[dict[str, Any]]) -> None:
        self.service = service
        self._calls = [c for c in calls if c["service"] == service]
        self.asked: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def can_paginate(self, operation: str) -> bool:
        return False

    def __getattr__(self, operation: str) -> Any:
        if operation.startswith("_"):
            raise AttributeError(operation)

        def call(**params: Any) -> Any:
            with self._lock:
                self.asked.append((operation, params))
            same_op = [c for c in self._calls if c["operation"] == operation]
            exact = [c for c in same_op if _key(c["params"]) == _key(params)]
            # Parameters the recording did not foresee (a filter added later) still get the
            # answer when the recording holds only one for that operation.
            found = exact or (same_op if len({_key(c["params"]) for c in same_op}) == 1 else [])
            if not found:
                raise AssertionError(
                    f"no recorded answer for {self.service}.{operation}({params}); re-record with python -m rawkit"
                )
            answer = found[0]
            if "error" in answer:
                from botocore.exceptions import ClientError

                raise ClientError({"Error": dict(answer["error"])}, operation)
            return json.loads(json.dumps(answer["response"]))  # a fresh copy each time

        return call


class FakeClients:
    """Stands in for ``AwsClients`` (``client(service)`` / ``clients(service)``) over recorded calls."""

    def __init__(self, calls: list[dict[str, Any]], region: str = "us-east-1") -> None:
        self.region = region
        self._calls = calls
        self._clients: dict[str, FakeClient] = {}
        self._lock = threading.Lock()

    def client(self, service: str) -> FakeClient:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = FakeClient(service, self._calls)
            return self._clients[service]

    __call__ = client

    def on_call(self, handler: Any) -> None:  # AwsClients' hook; nothing to count here
        pass


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def cases() -> list[Path]:
    return sorted(RAW.glob("*/*.json"))


def find(case: dict[str, Any], kind: Any) -> list[Any]:
    """``kind.find`` over a case's recorded answers."""
    from kopsy.cloud.aws.kind import Facts

    extra = {"sweep": case["sweep"]} if "sweep" in case else {}
    facts = Facts(FakeClients(case["calls"]), case["cluster"], detail=case.get("detail", True), **extra)  # type: ignore[arg-type]
    return kind.find(facts)  # type: ignore[no-any-return]


# recording


class _Recorder:
    def __init__(self, real: Any, service: str, log: list[dict[str, Any]]) -> None:
        self._real, self._service, self._log = real, service, log

    def can_paginate(self, operation: str) -> bool:
        return False

    def __getattr__(self, operation: str) -> Any:
        method = getattr(self._real, operation)

        def call(**params: Any) -> Any:
            entry: dict[str, Any] = {"service": self._service, "operation": operation, "params": json.loads(_key(params))}
            try:
                response = method(**params)
            except Exception as exc:
                err = getattr(exc, "response", {}).get("Error")
                if not err:
                    raise
                entry["error"] = {"Code": err.get("Code", ""), "Message": err.get("Message", "")}
                self._log.append(entry)
                raise
            clean = {k: v for k, v in response.items() if k != "ResponseMetadata"}
            entry["response"] = json.loads(json.dumps(clean, default=str))
            self._log.append(entry)
            return response

        return call


class _RecordingClients:
    def __init__(self, real: Any) -> None:
        self._real = real
        self.log: list[dict[str, Any]] = []
        self.region = real.region

    def client(self, service: str) -> _Recorder:
        return _Recorder(self._real.client(service), service, self.log)

    __call__ = client


# Where a described route names its target (EC2 API ``Route``), an instance's before its interface's.
ROUTE_TARGETS = ("GatewayId", "NatGatewayId", "TransitGatewayId", "VpcPeeringConnectionId", "EgressOnlyInternetGatewayId",
                 "CarrierGatewayId", "LocalGatewayId", "InstanceId", "NetworkInterfaceId")


def _every_non_local_route(case: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    """A route table's routes: (destination, target id) for every route but the VPC's local
    one, whatever the target (internet or NAT gateway, instance, peering, ...)."""
    (answer,) = [c["response"] for c in case["calls"] if c["operation"] == "describe_route_tables"]
    for table, want in zip(sorted(answer["RouteTables"], key=lambda t: t["RouteTableId"]), sorted(expected, key=lambda a: a["id"])):
        pairs = []
        for r in table["Routes"]:
            dest = r.get("DestinationCidrBlock") or r.get("DestinationIpv6CidrBlock") or r.get("DestinationPrefixListId")
            target = next(r[k] for k in ROUTE_TARGETS if r.get(k))
            if target != "local":
                pairs.append({"tuple": [dest, target]})
        want["fields"]["routes"] = {"frozenset": sorted(pairs, key=lambda v: json.dumps(v, sort_keys=True))}


EXPECT = {"RouteTable/nat-and-local-routes.json": _every_non_local_route}


def _record_case(clients: Any, kind: Any, cluster: str, path: Path, doc: str, detail: bool = True, **extra: Any) -> None:
    from kopsy.cloud.aws.kind import Facts

    rec = _RecordingClients(clients)
    actuals = kind.find(Facts(rec, cluster, detail=detail, **extra))  # type: ignore[arg-type]
    if not actuals:
        print(f"skipped {path.relative_to(RAW)}: {kind.kind}.find found nothing to hold its parser to")
        return
    case: dict[str, Any] = {"doc": doc, "cluster": cluster, "detail": detail, **extra, "calls": rec.log}
    case["expected"] = encode_actuals(actuals)
    fix = EXPECT.get(f"{path.parent.name}/{path.name}")
    if fix is not None:
        fix(case, case["expected"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(case, indent=1, sort_keys=False) + "\n")
    print(f"recorded {path.relative_to(RAW)}: {len(rec.log)} calls, {len(actuals)} found")


def record() -> None:
    """Apply the golden baseline to in-process moto and record every kind's find."""
    import os

    for k in list(os.environ):
        if k.startswith("AWS_"):
            del os.environ[k]
    os.environ["AWS_ACCESS_KEY_ID"] = os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    import boto3
    from goldenkit import HERE, inputs_for
    from moto import mock_aws

    from kopsy.cloud.aws import tags as T
    from kopsy.cloud.aws.registry import ALL_KINDS
    from kopsy.cloud.aws.session import AwsClients
    from kopsy.reconcile.update import apply_update, plan_update

    with mock_aws():
        clients = AwsClients("us-east-1", session=boto3.session.Session(region_name="us-east-1"))
        clients.client("s3").create_bucket(Bucket="golden-state")  # update reads its encryption
        inp = inputs_for((HERE / "_baseline" / "spec.yaml").read_text())
        cluster = inp.cluster.name
        result = apply_update(clients, plan_update(clients, inp))
        assert result.ok, result.failed
        ec2 = clients.client("ec2")
        # What a cluster's controllers leave besides kopsy's resources: a volume and its
        # snapshot, a network interface, a classic ELB; and a volume tagged the older way only.
        subnet = ec2.describe_subnets(Filters=T.owner_filter(cluster))["Subnets"][0]
        volume = ec2.create_volume(AvailabilityZone=subnet["AvailabilityZone"], Size=8, TagSpecifications=T.tag_spec(
            "volume", T.cluster_tags(cluster, f"pvc-data.{cluster}")))["VolumeId"]
        ec2.create_snapshot(VolumeId=volume, TagSpecifications=T.tag_spec("snapshot", T.cluster_tags(cluster, f"pvc-data-snap.{cluster}")))
        ec2.create_volume(AvailabilityZone=subnet["AvailabilityZone"], Size=8, TagSpecifications=T.tag_spec(
            "volume", {"KubernetesCluster": cluster, "Name": f"legacy-pvc.{cluster}"}))
        ec2.create_network_interface(SubnetId=subnet["SubnetId"], TagSpecifications=T.tag_spec(
            "network-interface", T.cluster_tags(cluster, f"leftover-eni.{cluster}")))
        clients.client("elb").create_load_balancer(
            LoadBalancerName="a1b2c3d4e5", Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 80, "InstancePort": 30080}],
            Subnets=[subnet["SubnetId"]], Tags=T.to_list(T.cluster_tags(cluster, "k8s-service-lb")))
        for kind in ALL_KINDS:
            _record_case(clients, kind, cluster, RAW / kind.kind / "baseline.json",
                         f"The golden baseline applied to moto: what {kind.kind}.find reads back.")
        import inspect

        from kopsy.cloud.aws.kind import Facts

        if "sweep" in inspect.signature(Facts).parameters:  # delete's inventory: both tag schemes
            for kind in ALL_KINDS:
                _record_case(clients, kind, cluster, RAW / kind.kind / "sweep.json",
                             f"{kind.kind}.find for delete's sweep: everything tagged for the cluster by either scheme.",
                             detail=False, sweep=True)
        for kind in ALL_KINDS:
            if kind.kind in ("VPC", "TargetGroup", "IAMRole"):  # kinds that read less for delete
                _record_case(clients, kind, cluster, RAW / kind.kind / "delete-detail.json",
                             f"{kind.kind}.find for delete (Facts.detail false): ids and references only.",
                             detail=False)
        # A NAT-gateway route beside the internet gateway's and the VPC's local route.
        eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
        nat = ec2.create_nat_gateway(SubnetId=subnet["SubnetId"], AllocationId=eip)["NatGateway"]["NatGatewayId"]
        (table,) = ec2.describe_route_tables(Filters=T.owner_filter(cluster))["RouteTables"]
        ec2.create_route(RouteTableId=table["RouteTableId"], DestinationCidrBlock="10.100.0.0/16", NatGatewayId=nat)
        route_table = next(k for k in ALL_KINDS if k.kind == "RouteTable")
        _record_case(clients, route_table, cluster, RAW / "RouteTable" / "nat-and-local-routes.json",
                     "Routes of every target type: the expected routes are every non-local (destination, target) pair.")


def record_private() -> None:
    """The kinds only a private topology has (``python -m rawkit private``): applies the
    private-topology golden spec and records just those, leaving the other cases as they are."""
    import os

    for k in list(os.environ):
        if k.startswith("AWS_"):
            del os.environ[k]
    os.environ["AWS_ACCESS_KEY_ID"] = os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    import boto3
    from goldenkit import HERE, inputs_for
    from moto import mock_aws

    from kopsy.cloud.aws.registry import KINDS
    from kopsy.cloud.aws.session import AwsClients
    from kopsy.reconcile.update import apply_update, plan_update

    with mock_aws():
        clients = AwsClients("us-east-1", session=boto3.session.Session(region_name="us-east-1"))
        clients.client("s3").create_bucket(Bucket="golden-state")
        inp = inputs_for((HERE / "private-topology" / "spec.yaml").read_text())
        cluster = inp.cluster.name
        result = apply_update(clients, plan_update(clients, inp))
        assert result.ok, result.failed
        from kopsy.cloud.aws import tags as T

        theirs = clients.client("ec2").create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]  # a user's VPC the cluster uses
        clients.client("ec2").create_tags(Resources=[theirs], Tags=[{"Key": T.ownership_key(cluster), "Value": "shared"}])
        for kind in (KINDS["ElasticIP"], KINDS["NatGateway"], KINDS["SharedTag"]):
            _record_case(clients, kind, cluster, RAW / kind.kind / "baseline.json",
                         f"The private-topology golden spec applied to moto: what {kind.kind}.find reads back.")
            _record_case(clients, kind, cluster, RAW / kind.kind / "sweep.json",
                         f"{kind.kind}.find for delete's sweep: everything tagged for the cluster by either scheme.",
                         detail=False, sweep=True)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["private"]:
        record_private()
    else:
        record()

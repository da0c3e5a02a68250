"""Golden plan cases: a folder per case under ``golden/`` holding

- ``spec.yaml``: the Cluster and InstanceGroup documents (as ``kopsy get -o yaml`` prints them);
- ``facts``: one line naming a recorded facts file in ``golden/_facts/`` (or ``none``);
- ``expected.txt``: the plan text (kops layout) the engine must produce.

Inputs other than the spec are fixed here so the cases do not change when the bootstrap
renderer, the PKI or the SSH key change. ``python -m goldenkit record`` (from tests/cloud)
re-records ``_facts/baseline.json`` by applying the baseline spec to in-process moto.
"""

from __future__ import annotations

import json
from pathlib import Path

from kopsy.reconcile.changes import actuals_from_json
from kopsy.reconcile.desired import ClusterInputs
from kopsy.spec.documents import parse_documents
from kopsy.spec.model import Cluster, InstanceGroup

HERE = Path(__file__).parent / "golden"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDQejHZELcqicyXSsZf72ax36KTJF6WbjO/zRkEirZPV golden@kopsy"
CA_HASH = "sha256:" + "ab" * 32
IMAGE = "ami-0123456789abcdef0"


def fixed_renderer(cluster: Cluster, ig: InstanceGroup, *, api_endpoint: str, ca_cert_hash: str, state_store_url: str,
                   init_control_plane: bool | None = None, api_public_host: str = "") -> bytes:
    """A stand-in for kopsy.bootstrap.render_user_data with a stable output."""
    doc = {"cluster": cluster.name, "ig": ig.name, "role": ig.role, "version": cluster.kubernetes_version,
           "endpoint": api_endpoint, "public": api_public_host, "ca": ca_cert_hash, "store": state_store_url}
    if ig.node_labels or ig.taints:  # only then, so recorded user-data of groups without them holds
        doc |= {"labels": ig.node_labels, "taints": [str(t) for t in ig.taints]}
    return json.dumps(doc, sort_keys=True).encode()


def inputs_for(spec_text: str, source: str = "spec.yaml") -> ClusterInputs:
    docs = parse_documents(spec_text, source)
    assert docs.cluster is not None
    igs = docs.instance_groups
    return ClusterInputs(
        cluster=docs.cluster,
        instance_groups=igs,
        ssh_public_key=SSH_KEY,
        ca_cert_hash=CA_HASH,
        state_store_url=f"s3://golden-state/{docs.cluster.name}",
        images={ig.name: IMAGE for ig in igs},
        renderer=fixed_renderer,
    )


def cases() -> list[Path]:
    return sorted(p for p in HERE.iterdir() if p.is_dir() and not p.name.startswith("_"))


def facts_for(case: Path) -> dict:  # type: ignore[type-arg]
    name = (case / "facts").read_text().strip()
    if name == "none":
        return {}
    return actuals_from_json(json.loads((HERE / "_facts" / name).read_text()))


def record() -> None:
    """Apply the baseline spec to in-process moto and save the facts it reads back."""
    import os

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    import boto3
    from moto import mock_aws

    from kopsy.cloud.aws.session import AwsClients
    from kopsy.reconcile.changes import actuals_to_json
    from kopsy.reconcile.planner import gather_facts
    from kopsy.reconcile.update import apply_update, plan_update

    with mock_aws():
        clients = AwsClients("us-east-1", session=boto3.session.Session(region_name="us-east-1"))
        clients.client("s3").create_bucket(Bucket="golden-state")  # update reads its encryption
        inp = inputs_for((HERE / "_baseline" / "spec.yaml").read_text())
        result = apply_update(clients, plan_update(clients, inp))
        assert result.ok, result.failed
        facts = gather_facts(clients, inp.cluster.name)
    (HERE / "_facts").mkdir(exist_ok=True)
    (HERE / "_facts" / "baseline.json").write_text(json.dumps(actuals_to_json(facts), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    record()

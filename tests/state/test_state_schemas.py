"""The JSON Schemas in state/ describe what kopsy really writes, and refuse what kopsy refuses."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kopsy.errors import SpecInvalid
from kopsy.spec.model import (
    cluster_from_dict,
    cluster_to_dict,
    instance_group_from_dict,
    instance_group_to_dict,
    replace,
)
from kopsy.state import open_store
from kopsy.state.clusters import ClusterStore
from state_support import sample_cluster, sample_groups

jsonschema = pytest.importorskip("jsonschema")

STATE_DIR = Path(__file__).resolve().parents[2] / "state"


def schema(kind: str) -> Any:
    doc = json.loads((STATE_DIR / f"{kind}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(doc)
    return jsonschema.Draft202012Validator(doc)


def cluster_docs() -> list[dict[str, Any]]:
    full = sample_cluster()
    bare = replace(sample_cluster("bare"), ssh_key_name="", config_base="", creation_timestamp="", annotations={})
    return [cluster_to_dict(full), cluster_to_dict(bare), cluster_to_dict(replace(full, networking="cilium"))]


def group_docs() -> list[dict[str, Any]]:
    return [instance_group_to_dict(ig) for ig in sample_groups()] + [
        instance_group_to_dict(replace(sample_groups()[1], image="ami-0123456789abcdef0"))
    ]


def test_model_output_validates() -> None:
    for doc in cluster_docs():
        schema("cluster").validate(doc)
    for doc in group_docs():
        schema("instancegroup").validate(doc)


def test_stored_objects_validate(tmp_path: Path) -> None:
    clusters = ClusterStore(open_store(f"file://{tmp_path}"))
    clusters.create_cluster(sample_cluster(), sample_groups(), {})
    name = sample_cluster().name
    schema("cluster").validate(yaml.safe_load(clusters.store.get(f"{name}/config").data))
    for key in clusters.store.list(f"{name}/instancegroup/"):
        schema("instancegroup").validate(yaml.safe_load(clusters.store.get(key).data))
    with clusters.lock(name, "update cluster"):
        schema("lock").validate(json.loads(clusters.store.get(f"{name}/lock").data))


def _with(doc: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    node = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize(
    "path,value",
    [
        (["spec", "unknownField"], 1),
        (["metadata", "namespace"], "x"),
        (["kind"], "InstanceGroup"),
        (["apiVersion"], "kops.k8s.io/v1alpha2"),
        (["spec", "subnets"], [{"name": "a", "zone": "us-east-1a"}]),
        (["spec", "networking"], {"calico": {}, "cilium": {}}),
        (["spec", "api"], {"loadBalancer": {"class": "Classic"}}),
    ],
)
def test_schema_and_model_both_refuse_bad_clusters(path: list[str], value: Any) -> None:
    bad = _with(cluster_docs()[0], path, value)
    assert not schema("cluster").is_valid(bad)
    with pytest.raises(SpecInvalid):
        cluster_from_dict(bad)


@pytest.mark.parametrize(
    "path,value",
    [
        (["spec", "unknownField"], 1),
        (["spec", "minSize"], "one"),
        (["spec", "maxSize"], True),
        (["spec", "taints"], ["no-effect"]),
        (["metadata", "extra"], "x"),
    ],
)
def test_schema_and_model_both_refuse_bad_groups(path: list[str], value: Any) -> None:
    bad = _with(group_docs()[0], path, value)
    assert not schema("instancegroup").is_valid(bad)
    with pytest.raises(SpecInvalid):
        instance_group_from_dict(bad)


def test_schema_also_states_simple_field_rules() -> None:
    """Rules kopsy.spec.validation enforces after parsing; the schema states them for hand editors."""
    ig = group_docs()[0]
    for path, value in [(["spec", "role"], "Master"), (["spec", "image"], "ubuntu"), (["metadata", "name"], "Nodes")]:
        assert not schema("instancegroup").is_valid(_with(ig, path, value))
    assert not schema("cluster").is_valid(_with(cluster_docs()[0], ["metadata", "name"], "Demo_Cluster"))


def test_lock_schema_requires_every_field() -> None:
    doc = {"holder": "u@h", "host": "h", "pid": 1, "operation": "update cluster",
           "acquired": "2026-11-22T00:00:00.000Z", "expires": "2026-11-22T00:10:00.000Z"}
    schema("lock").validate(doc)
    for field in doc:
        assert not schema("lock").is_valid({k: v for k, v in doc.items() if k != field})
    assert not schema("lock").is_valid(dict(doc, expires="tomorrow"))

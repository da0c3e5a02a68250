"""Reading spec files: multi-document YAML with one Cluster and any number of InstanceGroups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from kopsy.errors import SpecInvalid
from kopsy.spec.kops import convert_documents
from kopsy.spec.model import (
    KIND_CLUSTER,
    KIND_INSTANCE_GROUP,
    Cluster,
    InstanceGroup,
    cluster_from_dict,
    instance_group_from_dict,
)


@dataclass
class SpecDocuments:
    cluster: Cluster | None = None
    instance_groups: list[InstanceGroup] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # from converting kops manifests (spec/kops.py)


def load_yaml_documents(text: str, source: str) -> list[Any]:
    """Parse YAML, turning a syntax error into one line with the source and position."""
    from kopsy.spec.yamlsafe import load_all

    try:
        docs = [d for d in load_all(text) if d is not None]
    except RecursionError:
        raise SpecInvalid([f"{source}: malformed YAML: nested too deeply"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecInvalid([f"{source}: malformed YAML{where}: {problem}"]) from None
    if not docs:
        raise SpecInvalid([f"{source}: no documents found"])
    return docs


def parse_documents(text: str, source: str, cluster_name: str | None = None) -> SpecDocuments:
    """Every document in ``text`` typed; problems are prefixed with the source and document number."""
    result = SpecDocuments()
    problems: list[str] = []
    converted = convert_documents(load_yaml_documents(text, source), source)  # kops manifests, all or nothing
    result.notes = converted.notes
    for i, doc in enumerate(converted.documents):
        where = f"{source} document {i + 1}"
        kind = doc.get("kind") if isinstance(doc, dict) else None
        try:
            if kind == KIND_CLUSTER:
                if result.cluster is not None:
                    problems.append(f"{where}: more than one Cluster document")
                    continue
                result.cluster = cluster_from_dict(doc)
            elif kind == KIND_INSTANCE_GROUP:
                owner = result.cluster.name if result.cluster else cluster_name
                result.instance_groups.append(instance_group_from_dict(doc, owner))
            else:
                problems.append(f"{where}: kind must be {KIND_CLUSTER} or {KIND_INSTANCE_GROUP}, got {kind!r}")
        except SpecInvalid as exc:
            problems.extend(f"{where}: {p}" for p in exc.problems)
    if problems:
        raise SpecInvalid(problems)
    return result

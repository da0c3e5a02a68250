"""The spec reader refuses the same things, and reads the same values, through libyaml and without it."""

from __future__ import annotations

import pytest
import yaml

from kopsy.spec import yamlsafe

SPEC = """\
apiVersion: kopsy.io/v1alpha1
kind: Cluster
metadata:
  name: demo.example.com
  annotations: {kopsy.io/x: "1"}
spec:
  kubernetesVersion: 1.36.0
  subnets:
  - {name: us-east-1a, zone: us-east-1a, cidr: 172.20.32.0/19, type: Public}
  sshAccess: [10.0.0.0/8]
  count: 3
  ratio: 0.5
  enabled: yes
  empty:
  script: |
    #!/bin/sh
    echo hi
---
kind: InstanceGroup
spec: {minSize: 2, maxSize: 3}
"""

REFUSED = [
    ("a: &x 1\nb: *x\n", "anchors and aliases"),
    ("a: *x\n", "anchors and aliases"),
    ("a: 1\na: 2\n", "duplicate key 'a' (first at line 1)"),
    ("<<: {a: 1}\n", "merge keys"),
    ("a: " + "9" * 40 + "\n", "40 digits"),
    ("[" * 33 + "]" * 33, "nested deeper than 32 levels"),
    ("[" * 5000 + "]" * 5000, "nested deeper than 32 levels"),
    ("{a: " * 3000 + "1" + "}" * 3000, "nested deeper than 32 levels"),
    ("[" + "1, " * (yamlsafe.MAX_NODES + 1) + "]", f"more than {yamlsafe.MAX_NODES} values"),
]


@pytest.fixture(params=["libyaml", "python"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "libyaml":
        assert yamlsafe._CParser is not None, "PyYAML here is built without libyaml"
    else:
        monkeypatch.setattr(yamlsafe, "_CParser", None)
    return str(request.param)


def test_both_readers_read_a_spec_as_pyyaml_does(reader: str) -> None:
    assert yamlsafe.load_all(SPEC) == list(yaml.safe_load_all(SPEC))
    deepest = "[" * (yamlsafe.MAX_DEPTH - 1) + "1" + "]" * (yamlsafe.MAX_DEPTH - 1)  # the scalar is level 32
    assert yamlsafe.load_one(deepest) == yaml.safe_load(deepest)


@pytest.mark.parametrize(("text", "message"), REFUSED)
def test_both_readers_refuse_the_same_input(reader: str, text: str, message: str) -> None:
    with pytest.raises(yaml.YAMLError) as exc:
        yamlsafe.load_all(text)
    assert message in str(exc.value)
    mark = getattr(exc.value, "problem_mark", None)
    assert mark is not None and mark.line == text[: mark.index].count("\n")


def test_the_node_limit_counts_across_documents(reader: str) -> None:
    half = "[" + "1, " * (yamlsafe.MAX_NODES // 2) + "]"
    with pytest.raises(yaml.YAMLError, match="values"):
        yamlsafe.load_all(f"{half}\n---\n{half}\n")

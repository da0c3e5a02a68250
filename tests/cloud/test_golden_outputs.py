"""Plans and user-data stay byte-identical when kopsy is made faster.

For each golden case (``golden/<case>/``) the plan is built with kopsy's *real* renderer
(``test_golden_plans.py`` uses a fixed stand-in), and two things are compared with what the
implementation before the performance work produced (``outputs.sha256.json``, recorded then):

- the plan as ``update -o json`` prints it (``plan_to_dict``), user-data included;
- every instance group's uncompressed ``#cloud-config`` text.

Digests, not copies, because a case holds a dozen 15 KB user-data documents; on a mismatch the
test names the group, and ``render_cloud_config`` shows the text. The libyaml dumper is also
compared with the pure-Python one it replaced on every document, live.

KOPSY_UPDATE_GOLDEN=1 re-records after an intended change (say so in the commit).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from goldenkit import cases, facts_for, inputs_for

from kopsy.bootstrap import render as R
from kopsy.reconcile.changes import plan_to_dict
from kopsy.reconcile.desired import desired_resources
from kopsy.reconcile.planner import diff

API = "api-internal.golden.elb.us-east-1.amazonaws.com:443"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _outputs(case: Path) -> tuple[dict[str, object], dict[str, str]]:
    inp = replace(inputs_for((case / "spec.yaml").read_text(), str(case / "spec.yaml")), renderer=None)
    plan = diff(inp.cluster.name, desired_resources(inp), facts_for(case))
    plan_json = json.dumps(plan_to_dict(plan), sort_keys=True, default=str).encode()
    docs: dict[str, str] = {}
    for ig in inp.instance_groups:
        config = R.bootstrap_config(inp.cluster, ig, api_endpoint=API, ca_cert_hash=inp.ca_cert_hash,
                                    state_store_url=inp.state_store_url, api_public_host="api.golden.example")
        docs[ig.name] = R.render_cloud_config(config)
    digests = {"plan_json": _sha(plan_json), **{f"user_data/{k}": _sha(v.encode()) for k, v in sorted(docs.items())}}
    return digests, docs


@pytest.mark.parametrize("case", cases(), ids=lambda p: p.name)
def test_plan_and_user_data_are_what_the_previous_implementation_made(case: Path) -> None:
    got, _ = _outputs(case)
    expected = case / "outputs.sha256.json"
    if os.environ.get("KOPSY_UPDATE_GOLDEN"):
        expected.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(expected.read_text())
    assert sorted(got) == sorted(want)
    for key in sorted(want):
        assert got[key] == want[key], f"{case.name}: {key} differs from what the previous implementation rendered"


@pytest.mark.parametrize("case", cases(), ids=lambda p: p.name)
def test_the_libyaml_dumper_writes_what_the_python_one_wrote(case: Path) -> None:
    """The pure-Python dumper (``yaml.SafeDumper`` with the literal-block representer) was the
    previous implementation; the fast path must not change one byte of any document."""

    class PyDumper(yaml.SafeDumper):
        pass

    PyDumper.add_representer(str, R._str)
    _, docs = _outputs(case)
    for name, text in docs.items():
        doc = yaml.safe_load(text)
        python = "#cloud-config\n" + yaml.dump(doc, Dumper=PyDumper, sort_keys=False, width=1000)
        assert text == python, f"{case.name}/{name}"

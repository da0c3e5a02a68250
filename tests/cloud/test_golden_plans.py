"""Golden plan tests: each folder in golden/ is a case (spec + recorded facts in, plan text out).

Set KOPSY_UPDATE_GOLDEN=1 to rewrite expected.txt after an intended change (then review the diff).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from goldenkit import cases, facts_for, inputs_for

from kopsy.reconcile.desired import desired_resources
from kopsy.reconcile.planner import diff
from kopsy.reconcile.render import plan_text


@pytest.mark.parametrize("case", cases(), ids=lambda p: p.name)
def test_golden_plan(case: Path) -> None:
    inp = inputs_for((case / "spec.yaml").read_text(), str(case / "spec.yaml"))
    plan = diff(inp.cluster.name, desired_resources(inp), facts_for(case))
    got = plan_text(plan) or "No changes need to be applied\n"
    expected = case / "expected.txt"
    if os.environ.get("KOPSY_UPDATE_GOLDEN"):
        expected.write_text(got)
    assert got == expected.read_text()

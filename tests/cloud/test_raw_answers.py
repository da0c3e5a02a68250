"""Each kind's ``find`` parser over recorded raw AWS answers (``raw/<Kind>/<case>.json``, see
rawkit.py): a parser that drops or mistypes a field fails here, where the golden plan tests,
which start from parsed facts, cannot see it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rawkit import RAW, FakeClients, cases, encode_actuals, find, load

from kopsy.cloud.aws.registry import ALL_KINDS, KINDS

# Cases the parser fails today, each removed with the fix that makes it pass.
XFAIL: dict[str, str] = {}


def _params() -> list[Any]:
    out = []
    for path in cases():
        case_id = f"{path.parent.name}/{path.stem}"
        marks = [pytest.mark.xfail(strict=True, reason=XFAIL[case_id])] if case_id in XFAIL else []
        out.append(pytest.param(path, id=case_id, marks=marks))
    return out


@pytest.mark.parametrize("path", _params())
def test_find_parses_the_raw_answer(path: Path) -> None:
    case = load(path)
    kind = KINDS[path.parent.name]
    assert encode_actuals(find(case, kind)) == case["expected"]


def test_every_kind_has_a_raw_case() -> None:
    assert {k.kind for k in ALL_KINDS} <= {p.parent.name for p in cases()}


def test_every_raw_case_names_a_kind_and_finds_something() -> None:
    for path in cases():
        assert path.parent.name in KINDS, f"{path.parent} is not a kind in the registry"
        assert load(path)["expected"], f"{path} expects nothing: it cannot catch a dropped field"
    assert not XFAIL.keys() - {f"{p.parent.name}/{p.stem}" for p in cases()}, "an XFAIL names no case"


def test_the_fake_refuses_a_call_that_was_not_recorded() -> None:
    """A parser that starts reading something new must have its answer recorded, not get nothing."""
    ec2 = FakeClients([{"service": "ec2", "operation": "describe_vpcs", "params": {}, "response": {"Vpcs": []}}]).client("ec2")
    assert ec2.describe_vpcs() == {"Vpcs": []}
    with pytest.raises(AssertionError, match="no recorded answer for ec2.describe_subnets"):
        ec2.describe_subnets()


def test_the_fake_raises_recorded_errors_as_botocore_does() -> None:
    from botocore.exceptions import ClientError

    iam = FakeClients([{"service": "iam", "operation": "get_role", "params": {"RoleName": "x"},
                        "error": {"Code": "NoSuchEntity", "Message": "not found"}}]).client("iam")
    with pytest.raises(ClientError) as info:
        iam.get_role(RoleName="x")
    assert info.value.response["Error"]["Code"] == "NoSuchEntity"


def test_raw_cases_live_in_one_folder_per_kind() -> None:
    assert RAW.is_dir() and all(p.parent.parent == RAW for p in cases())

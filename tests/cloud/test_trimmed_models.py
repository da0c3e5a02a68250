"""The trimmed botocore models (kopsy/cloud/aws/models.py) can serve every call kopsy makes.

A botocore upgrade or a new call must never leave kopsy calling an operation its client lacks:
- every operation of a trimmed service that kopsy's source names (``describe_vpcs`` or
  ``DescribeVpcs``, as a call, a paginator or a string) is in ``OPERATIONS``;
- the generated folder holds each listed operation, and every shape in it is botocore's own
  (documentation aside), so requests serialize and answers parse as with the full model;
- a client built on it has the same methods and paginators for those operations.
The calls a whole update, no-op update and delete really make are checked against the list too
(tests/cloud/test_permissions_cover_calls.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import botocore
import botocore.session
import pytest
from botocore import xform_name

from kopsy.cloud.aws import models as M

KOPSY = Path(__file__).resolve().parents[2] / "kopsy"
# Code that runs inside the sandbox's moto server and names moto's backend methods, never a
# botocore call (moto's ``set_desired_capacity`` is not the SetDesiredCapacity operation).
MOTO_SIDE = {KOPSY / "sandbox" / "motoserver.py"}


def named_in_source(service: str) -> set[str]:
    tokens: set[str] = set()
    for path in set(KOPSY.rglob("*.py")) - MOTO_SIDE:
        tokens |= set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", path.read_text()))
    ops = botocore.session.get_session().get_service_model(service).operation_names
    return {op for op in ops if op in tokens or xform_name(op) in tokens}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = M.data_dir(tmp_path_factory.mktemp("cache"), botocore.__version__)
    M.generate(target)
    return target


@pytest.mark.parametrize("service", sorted(M.OPERATIONS))
def test_every_operation_the_source_names_is_listed(service: str) -> None:
    missing = named_in_source(service) - set(M.OPERATIONS[service])
    assert not missing, f"add to kopsy/cloud/aws/models.py OPERATIONS[{service!r}]: {sorted(missing)}"


def test_the_folder_is_keyed_by_botocore_version_and_the_list(tmp_path: Path) -> None:
    assert M.data_dir(tmp_path, "1.0.0") != M.data_dir(tmp_path, "1.0.1")
    assert M.data_dir(tmp_path, botocore.__version__).parent == tmp_path / "botocore"


@pytest.mark.parametrize("service", sorted(M.SERVED))
def test_every_kept_shape_is_botocores_own(folder: Path, service: str) -> None:
    full = botocore.session.get_session().get_component("data_loader")
    version = full.determine_latest_version(service, "service-2")
    model = full.load_service_model(service, "service-2", version)
    trimmed = json.loads((folder / service / version / "service-2.json").read_text())
    wanted = M.OPERATIONS.get(service) or list(model["operations"])
    assert sorted(trimmed["operations"]) == sorted(wanted)
    for name, shape in trimmed["shapes"].items():
        assert shape == M._strip_docs(model["shapes"][name]), f"{service} shape {name}"
    for name, op in trimmed["operations"].items():
        assert op == M._strip_docs(model["operations"][name])
    assert trimmed["metadata"] == model["metadata"]


def test_clients_on_the_folder_have_every_listed_method_and_paginator(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.loaders import Loader

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    trimmed_core = botocore.session.get_session()
    trimmed_core.register_component("data_loader", Loader(extra_search_paths=[str(folder)], include_default_search_paths=False))
    full_core = botocore.session.get_session()
    for service in sorted(M.SERVED):
        small = trimmed_core.create_client(service, region_name="us-east-1")
        big = full_core.create_client(service, region_name="us-east-1")
        for op in M.OPERATIONS.get(service) or big.meta.service_model.operation_names:
            method = xform_name(op)
            assert hasattr(small, method), f"{service}.{method}"
            assert small.can_paginate(method) == big.can_paginate(method), f"{service}.{method}"
        assert small.meta.endpoint_url == big.meta.endpoint_url
        assert small.meta.partition == big.meta.partition


def test_an_unwritable_cache_means_the_full_models(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    assert M.trimmed_loader(blocked) is None

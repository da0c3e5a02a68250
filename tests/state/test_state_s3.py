"""S3-only behaviour: bucket problems in words a user can act on, and the bucket-safety warnings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kopsy.cloud.aws.session import AwsClients
from kopsy.errors import StateStoreError
from kopsy.state import open_store
from state_support import point_at_moto

pytestmark = pytest.mark.slow  # S3 in the moto server process


@pytest.fixture
def moto_env(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    point_at_moto(monkeypatch, aws_env)
    return aws_env


def test_clients_come_from_the_environment_endpoint(moto_env: dict[str, str], state_bucket: str) -> None:
    store = open_store(state_bucket)
    store.create("demo/config", b"x")  # reaches moto only if AWS_ENDPOINT_URL was honoured
    assert store.list() == ["demo/config"]


def test_missing_bucket_is_explained(moto_env: dict[str, str]) -> None:
    store = open_store("s3://no-such-bucket/p")
    expected = (
        "state store bucket no-such-bucket does not exist; create it (aws s3 mb s3://no-such-bucket) "
        "or fix --state/KOPSY_STATE_STORE"
    )
    for action in (store.check, store.list, lambda: store.get("demo/config"), lambda: store.create("demo/config", b"x")):
        with pytest.raises(StateStoreError) as err:
            action()
        assert str(err.value) == expected


def test_warns_about_versioning_and_encryption(
    moto_env: dict[str, str], state_bucket: str, boto: Callable[[str], Any]
) -> None:
    store = open_store(state_bucket)
    warnings = store.check()
    assert any("has no versioning" in w for w in warnings), warnings
    assert any("has no default encryption" in w for w in warnings), warnings
    s3 = boto("s3")
    s3.put_bucket_versioning(Bucket="kopsy-state", VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket="kopsy-state",
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
    )
    assert store.check() == []


def test_explicit_clients_and_region(aws_env: dict[str, str], state_bucket: str) -> None:
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-west-1"
    )

    class EndpointSession:
        """Points every client at moto without touching the environment."""

        def __init__(self) -> None:
            self.events = session.events

        def client(self, service: str, **kw: Any) -> Any:
            return session.client(service, endpoint_url=aws_env["AWS_ENDPOINT_URL"], **kw)

    clients = AwsClients("eu-west-1", session=EndpointSession())
    store = open_store(state_bucket, clients=clients)
    store.create("x/config", b"1")
    assert store.get("x/config").data == b"1"
    made: list[str] = []
    open_store(state_bucket, region="eu-west-1", clients_factory=lambda r: made.append(r) or clients)
    assert made == ["eu-west-1"]

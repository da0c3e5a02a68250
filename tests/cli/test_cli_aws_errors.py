"""AWS trouble becomes one actionable line: missing or expired credentials, access denied,
a missing bucket, throttling that outlasts the retries, an unreachable endpoint."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from kopsy.cloud.aws.session import aws_errors, translate
from kopsy.errors import AccessDenied, CloudError, CredentialsError, StateStoreError

pytestmark = pytest.mark.e2e  # drives the real kopsy executable against moto server


def client_error(code: str, message: str = "boom") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "SomeOperation")


@pytest.mark.parametrize(
    "exc, kind, needle",
    [
        (NoCredentialsError(), CredentialsError, "no AWS credentials found"),
        (client_error("ExpiredToken"), CredentialsError, "credentials have expired"),
        (client_error("RequestExpired"), CredentialsError, "credentials have expired"),
        (client_error("InvalidClientTokenId"), CredentialsError, "rejected the credentials"),
        (client_error("AccessDenied", "not allowed"), AccessDenied, "denied access (AccessDenied: not allowed)"),
        (client_error("UnauthorizedOperation"), AccessDenied, "more IAM permissions"),
        (client_error("NoSuchBucket"), StateStoreError, "bucket does not exist"),
        (client_error("RequestLimitExceeded"), CloudError, "kept throttling"),
        (client_error("SlowDown"), CloudError, "kept throttling"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), CloudError, "cannot reach the AWS endpoint"),
    ],
)
def test_sdk_errors_become_actionable_kopsy_errors(exc: Exception, kind: type, needle: str) -> None:
    err = translate(exc, "creating VPC")
    assert isinstance(err, kind)
    assert err.message.startswith("creating VPC: ") and needle in err.message
    assert "\n" not in err.message
    with pytest.raises(kind) as raised, aws_errors("creating VPC"):
        raise exc
    assert raised.value.__cause__ is exc  # --debug still shows the SDK's own traceback


def test_missing_credentials_through_the_cli(run_kopsy, aws_env, state_bucket) -> None:
    env = {k: v for k, v in aws_env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    r = run_kopsy(["get", "clusters", "--state", state_bucket], env)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"Error: listing {state_bucket}: no AWS credentials found; set AWS_PROFILE or "
        f"AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or run 'aws configure'), then re-run"
    ]


def test_create_warns_about_an_unversioned_bucket(run_kopsy, aws_env, state_bucket, ssh_keypair) -> None:
    _, pub = ssh_keypair
    env = dict(aws_env, KOPSY_STATE_STORE=state_bucket)
    r = run_kopsy(["create", "cluster", "a.example.com", "--zones", "us-east-1a", "--ssh-public-key", str(pub)], env)
    assert r.returncode == 0, r.stderr
    assert "Warning: state store bucket kopsy-state has no versioning" in r.stderr

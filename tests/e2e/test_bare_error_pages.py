"""An answer botocore cannot parse (an HTML 500 page, an empty 5xx) is a retryable server error.

A loopback proxy in front of moto answers chosen operations with an HTML 500 a few times, as a
crashing moto or a proxy's error page does, and kopsy rides it out: botocore's own retries pick
it up (kopsy's client factory gives the page a well-formed error body), and a delete keeps
trying. When the page never stops, the user gets one clear line, not "invalid XML received".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_update_support import HTML_500, RecordingProxy, create_cluster, owned_resources, register_image, total

pytestmark = pytest.mark.e2e

NAME = "bare.example.com"


def test_html_500s_during_update_and_delete_are_retried(
    env: dict[str, str], boto: Callable[[str], Any], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path]
) -> None:
    image = register_image(boto)
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], image)
    empty_503 = (503, b"", "text/plain")
    with RecordingProxy(env["AWS_ENDPOINT_URL"]) as proxy:
        via = {**env, "AWS_ENDPOINT_URL": proxy.url}
        proxy.fail["CreateVpc"] = [HTML_500, HTML_500]  # EC2's protocol
        proxy.fail["CreateRole"] = [HTML_500]  # IAM (query protocol)
        proxy.fail["CreateAutoScalingGroup"] = [empty_503]
        r = run_kopsy(["update", "--yes"], via)
        assert r.returncode == 0, r.stdout + r.stderr
        assert len(proxy.sent("CreateVpc")) == 3
        assert len(boto("ec2").describe_vpcs(Filters=[{"Name": "tag:kopsy.io/cluster", "Values": [NAME]}])["Vpcs"]) == 1

        proxy.fail["DeleteAutoScalingGroup"] = [HTML_500, HTML_500]
        proxy.fail["DeleteSecurityGroup"] = [HTML_500]
        proxy.fail["DeleteVpc"] = [HTML_500, HTML_500]
        r = run_kopsy(["delete", "cluster", NAME, "--yes"], via)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "invalid XML" not in r.stderr
        assert len(proxy.sent("DeleteVpc")) >= 3
    assert total(owned_resources(boto, NAME)) == 0


def test_a_page_that_never_stops_is_one_clear_error(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from kopsy.cloud.aws.session import AwsClients, aws_errors
    from kopsy.errors import CloudError

    with RecordingProxy(aws_env["AWS_ENDPOINT_URL"]) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        proxy.fail["DescribeVpcs"] = [HTML_500] * 10
        proxy.fail["ListRoles"] = [(502, b"", "text/plain")] * 10
        clients = AwsClients("us-east-1", max_attempts=3)
        for call, action in ((lambda: clients.client("ec2").describe_vpcs(), "DescribeVpcs"),
                             (lambda: clients.client("iam").list_roles(), "ListRoles")):
            with pytest.raises(CloudError) as err:
                with aws_errors("reading the network"):
                    call()
            assert len(proxy.sent(action)) == 4  # the first try and 3 retries: botocore retried it
            message = str(err.value)
            assert "server error (HTTP 50" in message and "after retries" in message, message
            assert "invalid XML" not in message and "\n" not in message


def test_an_unparseable_answer_that_is_not_a_server_error_is_one_clear_line() -> None:
    """A 200 with an HTML body (a captive portal, a wrong endpoint) is not retried, but it is
    translated: botocore's ResponseParserError is not a BotoCoreError, so it needs its own case."""
    from botocore.parsers import ResponseParserError

    from kopsy.cloud.aws.retry import is_server_error
    from kopsy.cloud.aws.session import aws_errors
    from kopsy.errors import CloudError

    with pytest.raises(CloudError) as err:
        with aws_errors("reading the network"):
            raise ResponseParserError("Unable to parse response (syntax error), invalid XML received:\nb'<html>'")
    assert "not an AWS answer" in str(err.value) and "\n" not in str(err.value)
    assert is_server_error(err.value)  # deletes keep retrying it within their deadline

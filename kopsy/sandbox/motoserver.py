"""moto's server, with Canonical's public SSM parameters present and AWS-like internal errors.

moto refuses ``PutParameter`` under ``/aws/`` (AccessDeniedException "reserved parameter name",
as AWS does), and it only ships the Amazon Linux and ECS public parameters. Its parameter table
loads those lazily when a ``/aws/service/...`` name is first looked up; this module adds
Canonical's names to that same lazy load, so the parameters also survive ``/moto-api/reset``.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def install_public_parameters(parameters: dict[str, str]) -> bool:
    """Make moto's SSM serve ``parameters`` as public ``/aws/service`` ones; False if moto changed shape."""
    try:
        from moto.core.utils import utcnow
        from moto.ssm import models

        table = models.ParameterDict
        original = table._check_loading_status
    except (ImportError, AttributeError):  # a moto without this internal: DescribeImages still works
        log.warning("this moto version cannot serve Canonical's SSM parameters")
        return False

    def check_loading_status(self: Any, key: str) -> None:
        original(self, key)
        if not str(key or "").startswith("/aws/service/canonical") or getattr(self, "_kopsy_loaded", False):
            return
        self._kopsy_loaded = True
        for name, value in parameters.items():
            versions = super(table, self).__getitem__(name)
            if not versions:
                versions.append(
                    models.Parameter(  # type: ignore[abstract]
                        account_id=self.account_id,
                        name=name,
                        value=value,
                        parameter_type="String",
                        description=None,
                        allowed_pattern=None,
                        keyid=None,
                        last_modified_date=utcnow(),
                        version=1,
                        data_type="aws:ec2:image",
                    )
                )

    table._check_loading_status = check_loading_status  # type: ignore[method-assign]
    return True


def aws_like_errors(app: Any) -> Any:
    """WSGI middleware: moto's HTML "500 Internal Server Error" page becomes an empty 500.

    A crash inside moto (concurrent requests can race in its backends: 13 CreateAutoScalingGroup
    calls launching 300 instances at once, say) comes back as an HTML page that botocore can
    neither parse nor retry. AWS answers its own internal errors with a retryable 500, and an
    empty 500 is what botocore treats as one: the client retries, as it would on AWS.
    """

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        html_500 = False

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal html_500
            if status.startswith("500") and any(k.lower() == "content-type" and "text/html" in v for k, v in headers):
                html_500 = True
                headers = [(k, v) for k, v in headers if k.lower() not in ("content-type", "content-length")]
                headers.append(("Content-Length", "0"))
            return start_response(status, headers, exc_info) if exc_info is not None else start_response(status, headers)

        body = app(environ, start)
        if not html_500:
            return body
        close = getattr(body, "close", None)
        if close is not None:
            close()
        return [b""]

    return wrapped


def serve(host: str, port: int, parameters: dict[str, str]) -> None:
    """Run moto's server in this process until it is signalled (never returns normally).
    What ``moto.server.main`` does, with ``aws_like_errors`` around the application."""
    import os
    import signal
    import sys

    from moto import server
    from werkzeug.serving import run_simple

    install_public_parameters(parameters)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    os.environ.setdefault("MOTO_PORT", str(port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    app = server.DomainDispatcherApplication(server.create_backend_app)
    app.debug = True  # type: ignore[attr-defined]  # as moto.server.main sets it
    run_simple(host, port, aws_like_errors(app), threaded=True, request_handler=server.MotoRequestHandler)

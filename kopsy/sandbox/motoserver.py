"""moto's server, with Canonical's public SSM parameters present.

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


def serve(host: str, port: int, parameters: dict[str, str]) -> None:
    """Run moto's server in this process until it is signalled (never returns normally)."""
    from moto import server

    install_public_parameters(parameters)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server.main(["-H", host, "-p", str(port)])

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

    Under ``debug`` the app does not render the page itself: the exception propagates, and
    werkzeug's server would render its own HTML 500 outside any middleware. So an exception
    raised by the app, or while its answer is read, is answered here with the same empty 500.
    """

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        started: list[tuple[str, list[tuple[str, str]]]] = []
        written: list[bytes] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [(status, list(headers))]  # a later call (with exc_info) replaces it
            return written.append

        try:
            body = app(environ, start)
            # Read the answer here (moto's are small) and only then pass the status on, so a
            # crash while producing it is still ours to answer.
            try:
                chunks = written + list(body)
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
            if not started:
                raise RuntimeError("the application did not start a response")
        except Exception:
            log.warning("moto raised while answering %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"),
                        exc_info=True)
            start_response("500 INTERNAL SERVER ERROR", [("Content-Length", "0")])
            return [b""]
        status, headers = started[0]
        if status.startswith("500") and any(k.lower() == "content-type" and "text/html" in v for k, v in headers):
            headers = [(k, v) for k, v in headers if k.lower() not in ("content-type", "content-length")]
            start_response(status, headers + [("Content-Length", "0")])
            return [b""]
        start_response(status, headers)
        return chunks

    return wrapped


def install_asg_launch_versions() -> bool:
    """Make moto's Auto Scaling groups launch from, and report, the version AWS would.

    moto 5.x launches a group's instances with the template but no version (so EC2 tags them
    with the template's *default* version), and lists every member with the template's current
    default version rather than the one it was launched from. A rolling update judges exactly
    that field, so: launches carry the group's version, and each member reports its own.
    moto also keeps a version made by CreateLaunchTemplateVersion with its UserData as a plain
    string, then fails an assertion (an internal error) whenever a group launches from it:
    such a string is read as the base64 text it is.
    False if moto changed shape (then docs/sandbox.md's caveat applies)."""
    import threading

    try:
        from moto.autoscaling import models as asg
        from moto.core.types import Base64EncodedString
        from moto.ec2.models.instances import InstanceBackend
        from moto.ec2.models.launch_templates import LaunchTemplateVersion
    except ImportError:
        return False
    if getattr(asg.InstanceState, "_kopsy_patched", False):
        return True
    local = threading.local()
    run_instances = InstanceBackend.run_instances
    replace = asg.FakeAutoScalingGroup.replace_autoscaling_group_instances

    def patched_run(self: Any, *args: Any, **kwargs: Any) -> Any:
        version = getattr(local, "version", None)
        template = kwargs.get("launch_template")
        if version and template and "Version" not in template:
            kwargs["launch_template"] = {**template, "Version": version}
        reservation = run_instances(self, *args, **kwargs)
        if version and template:
            for inst in reservation.instances:
                setattr(inst, "_kopsy_lt_version", str(self._get_template_from_args(kwargs["launch_template"]).number))
        return reservation

    def patched_replace(self: Any, *args: Any, **kwargs: Any) -> Any:
        local.version = getattr(self, "launch_template_version", None) if self.ec2_launch_template else None
        try:
            return replace(self, *args, **kwargs)
        finally:
            local.version = None

    original = asg.InstanceState.launch_template

    def launch_template(self: Any) -> Any:
        lt = original.fget(self)  # type: ignore[attr-defined]
        own = getattr(self.instance, "_kopsy_lt_version", None)
        if lt is not None and own:
            lt = {**lt, "Version": own}
        return lt

    def user_data(self: Any) -> Any:
        raw = self.data.get("UserData")
        return Base64EncodedString(raw) if isinstance(raw, str) else raw

    LaunchTemplateVersion.user_data = property(user_data)  # type: ignore[assignment,method-assign]
    InstanceBackend.run_instances = patched_run  # type: ignore[method-assign]
    asg.FakeAutoScalingGroup.replace_autoscaling_group_instances = patched_replace  # type: ignore[method-assign]
    asg.InstanceState.launch_template = property(launch_template)  # type: ignore[assignment,method-assign]
    asg.InstanceState._kopsy_patched = True  # type: ignore[attr-defined]
    return True


# The AutoScalingBackend methods that change which instances a group has. AWS runs a group's
# scaling activities one at a time; moto runs each request on its own thread with no lock.
GROUP_MEMBERSHIP_CHANGES = (
    "create_auto_scaling_group", "update_auto_scaling_group", "delete_auto_scaling_group",
    "set_desired_capacity", "attach_instances", "detach_instances", "terminate_instance",
    "notify_terminate_instances",
)


def install_asg_serialised_changes() -> bool:
    """Make moto's Auto Scaling groups change membership one activity at a time, as AWS does.

    A group being deleted launches no replacements on AWS. In moto, ``TerminateInstances`` on a
    group's instances (it notifies the group, which replaces them) can run beside the group's
    ``DeleteAutoScalingGroup(ForceDelete)`` (from two clients, or an older kopsy's delete): the
    replacements are then added to a group that is already gone and run on, untracked, with the
    cluster's tags (and the same race crashed on the group table changing size mid-iteration).
    One lock around every membership change gives AWS's outcome: the replacements are launched
    first and the deletion terminates them, or the group is gone first and nothing is replaced.
    False if moto changed shape."""
    import functools
    import threading

    try:
        from moto.autoscaling.models import AutoScalingBackend
    except ImportError:
        return False
    if getattr(AutoScalingBackend, "_kopsy_serialised", False):
        return True
    if not all(callable(getattr(AutoScalingBackend, name, None)) for name in GROUP_MEMBERSHIP_CHANGES):
        return False
    lock = threading.RLock()  # re-entrant: a change may make another (delete sets desired to 0)

    def serialised(method: Any) -> Any:
        @functools.wraps(method)
        def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return method(self, *args, **kwargs)
        return locked

    for name in GROUP_MEMBERSHIP_CHANGES:
        setattr(AutoScalingBackend, name, serialised(getattr(AutoScalingBackend, name)))
    AutoScalingBackend._kopsy_serialised = True  # type: ignore[attr-defined]
    return True


def serve(host: str, port: int, parameters: dict[str, str]) -> None:
    """Run moto's server in this process until it is signalled (never returns normally).
    What ``moto.server.main`` does, with ``aws_like_errors`` around the application."""
    import os
    import signal
    import sys

    from moto import server
    from werkzeug.serving import run_simple

    install_public_parameters(parameters)
    install_asg_launch_versions()
    install_asg_serialised_changes()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    os.environ.setdefault("MOTO_PORT", str(port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    app = server.DomainDispatcherApplication(server.create_backend_app)
    app.debug = True  # type: ignore[attr-defined]  # as moto.server.main sets it
    run_simple(host, port, aws_like_errors(app), threaded=True, request_handler=server.MotoRequestHandler)

"""``kopsy sandbox up / down / status / env``: start and stop the LOCAL EMULATION.

``up`` starts, on 127.0.0.1 only, a moto server (with an Ubuntu 24.04 image and Canonical's
SSM parameter), a versioned and encrypted state-store bucket, and the node supervisor, then
records what it started in ``sandbox.json``. ``down`` stops exactly those processes, then every
process that still carries this sandbox's marker (sshd connection children included).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from kopsy.cloud.aws.session import AwsClients, aws_errors
from kopsy.errors import KopsyError
from kopsy.sandbox import SandboxError, client, images, packages, procs, sshd
from kopsy.sandbox.layout import Layout

BUCKET = "kopsy-sandbox-state"
DEFAULT_BOOT_TIME = 1.0  # short, so tests and the demo stay fast; AWS takes minutes
ACCESS_KEY = "sandbox"
SECRET_KEY = "sandbox-not-a-secret"
DEFAULT_REGION = "us-east-1"
NOTICE = "kopsy sandbox: LOCAL EMULATION on 127.0.0.1 (moto + OpenSSH stand-ins), NOT AWS. Nothing here costs money or reaches the internet."


@dataclass
class SandboxInfo:
    """What ``up`` started; saved as ``sandbox.json``."""

    id: str
    dir: str
    region: str
    endpoint: str
    bucket: str
    ssh_config: str
    user: str
    ssh_port: int
    moto_pid: int = 0
    supervisor_pid: int = 0
    started: str = ""
    ready_seconds: float = 0.0
    ssm_parameter: bool = False  # did moto serve Canonical's SSM parameter
    boot_time: float = DEFAULT_BOOT_TIME  # seconds from launch until an instance has joined (`up --boot-time`)

    @property
    def state_store(self) -> str:
        return f"s3://{self.bucket}"

    def environment(self) -> dict[str, str]:
        """What a shell needs to point kopsy (and the AWS CLI) at the sandbox."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "KOPSY_STATE_STORE": self.state_store,
            "KOPSY_SSH_CONFIG": self.ssh_config,
            "KOPSY_K8S_PACKAGES": Layout.at(self.dir).packages_dir.as_uri(),  # upgrade's patch lookup stays here
        }


@dataclass
class ProcessState:
    name: str
    pid: int
    running: bool


@dataclass
class Status:
    info: SandboxInfo | None
    processes: list[ProcessState] = field(default_factory=list)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    supervisor_answers: bool = False

    @property
    def running(self) -> bool:
        return self.info is not None and all(p.running for p in self.processes) and self.supervisor_answers


@dataclass
class DownReport:
    info: SandboxInfo | None
    stopped: list[int] = field(default_factory=list)
    survivors: list[int] = field(default_factory=list)


def load(layout: Layout) -> SandboxInfo | None:
    try:
        return SandboxInfo(**json.loads(layout.state_file.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _save(layout: Layout, info: SandboxInfo) -> None:
    tmp = layout.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(info), indent=1) + "\n")
    tmp.replace(layout.state_file)


class SandboxClients(AwsClients):
    """kopsy's client factory, pointed at the sandbox explicitly, whatever the caller's environment says
    (the CLI process running ``up`` may have AWS_PROFILE or no AWS_ENDPOINT_URL at all)."""

    def __init__(self, endpoint: str, region: str) -> None:
        import boto3

        session = boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=region)
        super().__init__(region, retry_mode="standard", max_attempts=3, session=session)
        self.endpoint = endpoint

    def _make(self, service: str) -> Any:
        return self.session.client(service, config=self._config, endpoint_url=self.endpoint)


def sandbox_clients(endpoint: str, region: str) -> AwsClients:
    return SandboxClients(endpoint, region)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PASSED_THROUGH = ("KOPSY_SANDBOX_ETCD_BACKUP_INTERVAL",)  # the sandbox's own settings, for its supervisor


def _child_env(base: Mapping[str, str], info: SandboxInfo, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith(("AWS_", "KOPSY_", "MOTO_")) or k in PASSED_THROUGH}
    env.update(info.environment())
    env[procs.MARKER] = info.id
    env.update(extra or {})
    return env


def _wait(what: str, check: Any, deadline: float, proc: subprocess.Popen[bytes], log: str) -> None:
    while True:
        if proc.poll() is not None:
            raise SandboxError(f"{what} exited during start-up (code {proc.returncode}); see {log}")
        try:
            if check():
                return
        except (OSError, KopsyError):
            pass
        if time.monotonic() > deadline:
            raise SandboxError(f"{what} did not become ready in time; see {log}")
        time.sleep(0.05)


def up(layout: Layout, *, python: str, user: str, base_env: Mapping[str, str], region: str = DEFAULT_REGION,
       boot_time: float | None = None) -> tuple[SandboxInfo, bool]:
    """Start the sandbox (or find it running); returns (info, already_running)."""
    current = status(layout)
    if current.running and current.info is not None:
        return current.info, True
    if current.info is not None and current.processes and current.processes[0].running:
        # moto (and with it every emulated cluster) is fine, only the supervisor died: restart
        # just that; nodes come back on the same addresses with the same host keys.
        return _restart_supervisor(layout, current.info, python, base_env), True
    if current.info is not None:  # left over from a crash: clean it before starting again
        down(layout)
    sshd_path = sshd.find_sshd()
    if sshd_path is None:
        raise SandboxError("OpenSSH's sshd is not installed; install it (apt-get install -y openssh-server) and re-run")
    if not sshd.PRIVSEP_DIR.is_dir():
        try:
            sshd.PRIVSEP_DIR.mkdir(mode=0o755, parents=True)
        except OSError as exc:
            raise SandboxError(f"sshd needs {sshd.PRIVSEP_DIR} ({exc}); create it (sudo mkdir -p {sshd.PRIVSEP_DIR})") from exc
    started = time.monotonic()
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.nodes_dir.mkdir(exist_ok=True)
    port = _free_port()
    info = SandboxInfo(
        id=secrets.token_hex(8),
        dir=str(layout.root),
        region=region,
        endpoint=f"http://127.0.0.1:{port}",
        bucket=BUCKET,
        ssh_config=str(layout.ssh_config),
        user=user,
        ssh_port=22 if os.geteuid() == 0 else 2222,
        started=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        boot_time=DEFAULT_BOOT_TIME if boot_time is None else boot_time,
    )
    amis = images.write_amis_file(layout.amis_file)
    packages.write_index(layout.packages_dir)
    # Saved before anything starts: from here on, ``down`` finds whatever ``up`` started (by pid
    # once recorded, by the marker before that) even if this process dies between two steps.
    _save(layout, info)
    try:
        moto = procs.spawn(
            [python, "-m", "kopsy.cli.sandbox", "_moto", "--port", str(port)],
            env=_child_env(base_env, info, {"MOTO_AMIS_PATH": str(amis)}),
            log_path=layout.moto_log,
        )
        info.moto_pid = moto.pid
        _save(layout, info)
        # The supervisor starts alongside moto (it waits for the endpoint): importing moto and
        # boto3 in parallel is most of the start-up time saved.
        supervisor = _spawn_supervisor(layout, info, python, base_env)
        deadline = time.monotonic() + 20
        _wait("the moto server", lambda: urllib.request.urlopen(f"{info.endpoint}/moto-api/data.json", timeout=1).read(), deadline, moto, str(layout.moto_log))
        clients = sandbox_clients(info.endpoint, region)
        _create_state_bucket(clients, info.bucket, region)
        info.ssm_parameter = _check_image(clients)
        _wait(
            "the node supervisor",
            lambda: client.request(layout.socket_id, {"op": "ping"}, timeout=2).get("cycles", 0) >= 1,
            deadline, supervisor, str(layout.supervisor_log),
        )
    except BaseException:
        down(layout)
        raise
    info.ready_seconds = round(time.monotonic() - started, 2)
    _save(layout, info)
    return info, False


def _spawn_supervisor(layout: Layout, info: SandboxInfo, python: str, base_env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start the node supervisor and record its pid, so down finds it even if up dies next."""
    supervisor = procs.spawn(
        [python, "-m", "kopsy.cli.sandbox", "_supervise", "--dir", str(layout.root)],
        env=_child_env(base_env, info),
        log_path=layout.supervisor_log,
    )
    info.supervisor_pid = supervisor.pid
    _save(layout, info)
    return supervisor


def _restart_supervisor(layout: Layout, info: SandboxInfo, python: str, base_env: Mapping[str, str]) -> SandboxInfo:
    orphans = procs.pids_with_cmdline(f"-f {layout.nodes_dir}/")
    procs.stop([*orphans, *procs.descendants(*orphans)], grace=3.0)
    if info.supervisor_pid and procs.alive(info.supervisor_pid) and procs.carries_marker(info.supervisor_pid, info.id):
        procs.stop([info.supervisor_pid])  # running but not answering: replace it
    supervisor = _spawn_supervisor(layout, info, python, base_env)
    _wait(
        "the node supervisor",
        lambda: client.request(layout.socket_id, {"op": "ping"}, timeout=2).get("cycles", 0) >= 1,
        time.monotonic() + 20, supervisor, str(layout.supervisor_log),
    )
    return info


def _create_state_bucket(clients: AwsClients, bucket: str, region: str) -> None:
    """A bucket kopsy accepts without warnings: versioned, encrypted by default, not public."""
    s3 = clients.client("s3")
    with aws_errors("sandbox: creating the state-store bucket"):
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
        )
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={k: True for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")},
        )


def _check_image(clients: AwsClients) -> bool:
    """Fail unless kopsy's DescribeImages fallback finds Ubuntu 24.04; return whether SSM serves it too."""
    ec2 = clients.client("ec2")
    with aws_errors("sandbox: checking the Ubuntu image"):
        found = ec2.describe_images(
            Owners=[images.CANONICAL_OWNER],
            Filters=[{"Name": "name", "Values": ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"]}],
        )["Images"]
    if not any(i["ImageId"] == images.UBUNTU_2404_AMD64 for i in found):
        raise SandboxError("the emulated cloud does not list the Ubuntu 24.04 image (MOTO_AMIS_PATH was not honoured)")
    name = next(iter(images.SSM_PARAMETERS))
    try:
        with aws_errors("sandbox: reading the Ubuntu SSM parameter"):
            value = clients.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
    except KopsyError:
        return False
    return bool(value == images.SSM_PARAMETERS[name])


def down(layout: Layout) -> DownReport:
    """Stop what ``up`` started, then anything else carrying this sandbox's marker."""
    info = load(layout)
    report = DownReport(info)
    if info is None:
        return report
    ordered = [p for p in (info.supervisor_pid, info.moto_pid) if p and procs.carries_marker(p, info.id)]
    tree = procs.descendants(*ordered)
    for pid in ordered:  # the supervisor first: it stops its sshds on SIGTERM
        if procs.alive(pid):
            report.stopped.append(pid)
            report.survivors += procs.stop([pid], grace=10.0)
    left = procs.still_running(tree)  # e.g. sshd sessions of a supervisor that had to be killed
    # sshds orphaned by a supervisor that died before down (SIGKILL, OOM), and their sessions
    orphans = procs.pids_with_cmdline(f"-f {layout.nodes_dir}/")
    left += [p for p in [*orphans, *procs.descendants(*orphans)] if p not in left]
    report.stopped += left
    report.survivors += procs.stop(left, grace=3.0)
    for _ in range(3):  # processes that started while we swept
        left = procs.marked_pids(info.id)
        if not left:
            break
        report.stopped += left
        report.survivors = procs.stop(left, grace=3.0)
    for path in (layout.state_file, layout.ssh_config, layout.status_file):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
    return report


def status(layout: Layout) -> Status:
    info = load(layout)
    if info is None:
        return Status(None)
    st = Status(info)
    for name, pid in (("moto server", info.moto_pid), ("node supervisor", info.supervisor_pid)):
        st.processes.append(ProcessState(name, pid, bool(pid) and procs.alive(pid) and procs.carries_marker(pid, info.id)))
    try:
        st.supervisor_answers = bool(client.request(layout.socket_id, {"op": "ping"}, timeout=2).get("ok"))
    except SandboxError:
        st.supervisor_answers = False
    try:
        st.nodes = json.loads(layout.status_file.read_text()).get("nodes", {})
    except (OSError, ValueError):
        st.nodes = {}
    return st


def node_action(layout: Layout, op: str, instance_id: str) -> None:
    reply = client.request(layout.socket_id, {"op": op, "instance": instance_id})
    if reply.get("error"):
        raise SandboxError(str(reply["error"]))

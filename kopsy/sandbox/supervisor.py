"""The node supervisor: keeps one sshd per running emulated instance, and answers node shells.

A loop reads the emulated cloud (``facts``) every ``poll_interval`` seconds (stretched when
reads get slow, so 100 instances do not keep moto busy), starts an sshd for each new running
instance, stops the sshd of each instance that is gone, and rewrites the ssh config and the
status file when they change. An sshd that exits on its own is not restarted: its instance
counts as a machine that went down, which is how the "node sshd stopped" fault is emulated
(``start-node`` brings it back).

Node shells ask over a unix socket; answers are judged by ``rules`` and formatted by
``answers`` from the instances of the last poll and a network read (security groups, load
balancers, CAs) at most ``answer_max_age`` seconds old. The socket serves threads, and one lock
makes concurrent answers share a single network read instead of each reading the cloud.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kopsy.errors import KopsyError
from kopsy.sandbox import packages, sshd
from kopsy.sandbox.answers import Answer, answer, command_argv
from kopsy.sandbox.asgheal import register_replacements
from kopsy.sandbox.etcd import EtcdEmulator, etcd_answer
from kopsy.sandbox.facts import CloudReader, Instance, Machines, Network, World, combine
from kopsy.sandbox.layout import Layout
from kopsy.sandbox.rules import Verdict, evaluate, ssh_route
from kopsy.sandbox.workloads import Workloads

log = logging.getLogger(__name__)


def _helper_args(command: str) -> list[str]:
    """``sudo /usr/local/lib/kopsy/kopsy-helper etcd-snapshot`` -> ``["etcd-snapshot"]``."""
    argv = command_argv(command) or []
    return argv[1:]


@dataclass(frozen=True)
class SupervisorConfig:
    layout: Layout
    sshd_path: str
    python: str  # the interpreter the node shell runs with
    user: str  # the Unix user sshd lets in (sshd can only log in real users)
    port: int  # 22 when root, else an unprivileged port
    salt: str  # the sandbox id: keeps loopback addresses apart between sandboxes
    sshd_env: dict[str, str]
    endpoint: str = ""  # the AWS endpoint to wait for before the first poll
    poll_interval: float = 0.5
    answer_max_age: float = 0.5
    boot_time: float = 0.0  # seconds from an instance's first sight until it has joined
    etcd_backup_interval: float = 0.0  # seconds between emulated etcd snapshots; 0: the spec's interval


class Supervisor:
    def __init__(self, config: SupervisorConfig, reader: CloudReader) -> None:
        self.config = config
        self.reader = reader
        self.nodes: dict[str, sshd.NodeServer] = {}
        self.stopping = threading.Event()
        self._machines: Machines | None = None
        self._network: tuple[Machines, Network] | None = None
        self._verdicts: tuple[tuple[Instance, ...], frozenset[str], Network, dict[str, Verdict], Any] | None = None
        self.workloads = Workloads()
        self._first_seen: dict[str, float] = {}  # instance id -> when the poll first saw it running
        self._joined: set[str] = set()  # instances that have joined once (rules.evaluate's joined_before)
        self._published = packages.published_versions(config.layout.packages_dir)
        self._machines_lock = threading.Lock()
        self._network_lock = threading.Lock()
        self._last_world: World | None = None
        self._nodes_lock = threading.RLock()
        self._written: dict[Path, str] = {}
        self.cycles = 0
        self.etcd = EtcdEmulator(reader.store, config.etcd_backup_interval)
        self.etcd_calls: list[tuple[str, str, str]] = []  # (instance id, helper arguments, time) answered
        self._etcd_calls_lock = threading.Lock()
        self._registered_for: frozenset[str] = frozenset()

    # --- the world, shared by the loop and the node shells --------------------------------------

    def snapshot(self, max_age: float) -> tuple[World, dict[str, Verdict]]:
        """The world for an answer: instances from the poll loop's last read (at most one cycle
        old), the network half re-read when older than ``max_age`` -- so a rule removed by hand
        shows at once, while a 100-instance DescribeInstances never sits in an answer's path."""
        machines = self._machines
        if machines is None:
            machines = self.refresh_machines()
        with self._network_lock:
            net = self._network
            if net is None or net[0] is not machines or time.monotonic() - net[1].taken_at > max_age:
                net = (machines, self.reader.read_network(machines.instances))
                self._network = net
            world = combine(machines, net[1], self._published)
            down = frozenset(i for i, n in list(self.nodes.items()) if n.down)
            cached = self._verdicts
            booting = self._booting(world)
            key = tuple(sorted((i, round(p, 1)) for i, p in booting.items()))
            if (cached is None or cached[0] is not world.instances or cached[1] != down or cached[2] is not net[1]
                    or cached[4] != key):
                verdicts = evaluate(world, down, booting, frozenset(self._joined))
                self._joined.update(i for i, v in verdicts.items() if v.joined)
                cached = (world.instances, down, net[1], verdicts, key)
                self._verdicts = cached
            return world, cached[3]

    def refresh_machines(self) -> Machines:
        with self._machines_lock:
            self._machines = self.reader.read_machines()
            return self._machines

    def _booting(self, world: World) -> dict[str, float]:
        """Instances still booting (``boot_time``), with how far along (0..1)."""
        if self.config.boot_time <= 0:
            return {}
        now = time.monotonic()
        out = {}
        for inst in world.instances:
            if inst.state != "running":
                continue
            seen = self._first_seen.setdefault(inst.id, now)
            progress = (now - seen) / self.config.boot_time
            if progress < 1:
                out[inst.id] = progress
        return out

    def answer(self, instance_id: str, command: str) -> dict[str, Any]:
        world, verdicts = self.snapshot(self.config.answer_max_age)
        now = datetime.now(timezone.utc)
        self.workloads.observe(world, verdicts)
        etcd = etcd_answer(self.etcd, world, verdicts, instance_id, command, now)
        if etcd is not None:  # recorded, so a test can check the roll's etcd steps and where they ran
            with self._etcd_calls_lock:
                self.etcd_calls.append((instance_id, " ".join(_helper_args(command)), now.strftime("%Y-%m-%dT%H:%M:%SZ")))
        a = etcd if etcd is not None else (
            self.workloads.answer(world, verdicts, instance_id, command, now)
            or self._cordons_shown(verdicts.get(instance_id), command, answer(world, verdicts, instance_id, command, now)))
        return {"stdout": a.stdout, "stderr": a.stderr, "exit": a.exit}

    def _cordons_shown(self, verdict: Verdict | None, command: str, a: Answer) -> Answer:
        """``get nodes`` shows which nodes are cordoned (``workloads`` remembers it)."""
        if a.exit or verdict is None or " get nodes" not in command or not self.workloads.cordoned.get(verdict.cluster or ""):
            return a
        doc = self.workloads.mark_cordoned(verdict.cluster or "", json.loads(a.stdout))
        return Answer(json.dumps(doc, indent=4) + "\n", a.stderr, a.exit)

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until ``stopping`` is set; always stops every sshd it started."""
        server = _SocketServer(self.config.layout.socket_name, self)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        thread.start()
        try:
            self._await_endpoint()
            while not self.stopping.is_set():
                started = time.monotonic()
                try:
                    self.cycle()
                except KopsyError as exc:
                    log.warning("poll failed: %s", exc)
                except Exception:  # a daemon: one bad poll must not take every node down with it
                    log.exception("poll failed")
                took = time.monotonic() - started
                self.stopping.wait(max(self.config.poll_interval, 3 * took))
        finally:
            server.shutdown()
            server.server_close()
            self.stop_all()

    def _await_endpoint(self) -> None:
        """``up`` starts us next to moto: wait (without retry noise) until its port accepts."""
        if not self.config.endpoint:
            return
        parts = urlsplit(self.config.endpoint)
        while not self.stopping.is_set():
            try:
                socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=1).close()
                return
            except OSError:
                self.stopping.wait(0.05)

    def cycle(self) -> None:
        self.refresh_machines()
        world, verdicts = self.snapshot(max_age=0.0)
        self._last_world = world
        self._reconcile(world)
        running = frozenset(i.id for i in world.instances if i.state == "running")
        try:
            if running != self._registered_for:
                register_replacements(self.reader.clients, {i.cluster for i in world.instances if i.cluster})
                self._registered_for = running
            self.etcd.tick(world, verdicts, datetime.now(timezone.utc))
        except KopsyError as exc:  # the store is unreachable this cycle: the next one retries
            log.warning("emulated AWS step (target registration, etcd snapshot) failed: %s", exc)
        self.cycles += 1

    def _reconcile(self, world: World) -> None:
        running = {i.id: i for i in world.instances if i.state == "running"}
        with self._nodes_lock:
            gone = [self.nodes.pop(i) for i in [i for i in self.nodes if i not in running]]
            if gone:
                log.info("instances gone, stopping their sshds: %s", " ".join(n.instance_id for n in gone))
                sshd.stop_many(gone)
            for node in self.nodes.values():
                if node.proc is not None and node.proc.poll() is not None and not node.down:
                    log.warning("sshd of %s exited (code %s): the instance now counts as down", node.instance_id, node.proc.returncode)
                    node.down = True
                    node.listening = False
            new: list[sshd.NodeServer] = []
            for iid, inst in running.items():
                existing = self.nodes.get(iid)
                keys = world.public_keys.get(iid, ())
                if existing is None:
                    taken = [n.address for n in self.nodes.values()]
                    address = sshd.loopback_address(self.config.salt, iid, taken, self.config.port)
                    node = sshd.NodeServer(iid, address, self.config.port, self.config.layout.node_dir(iid), keys=keys)
                    self.nodes[iid] = node
                    self._start(node)
                    new.append(node)
                else:
                    node = existing
                    if keys != node.keys and node.directory.exists():
                        sshd.write_authorized_keys(node, keys)
                # An instance with only a private address is not routable from outside the VPC:
                # mapped only behind its cluster's bastion, and not at all without one.
                reachable, node.jump = ssh_route(world, inst)
                node.hosts = tuple(h for h in (inst.public_ip, inst.private_ip, inst.private_dns) if h) if reachable else ()
            self._await_listening(new, deadline=time.monotonic() + 5.0)
            self._write_files(world)

    def _start(self, node: sshd.NodeServer) -> None:
        cmd = sshd.force_command(self.config.python, self.config.layout.socket_id, node.instance_id)
        sshd.start(node, sshd=self.config.sshd_path, force_command=cmd, env=self.config.sshd_env)
        sshd.write_authorized_keys(node, node.keys)

    def _await_listening(self, nodes: list[sshd.NodeServer], deadline: float) -> None:
        pending = list(nodes)
        while pending:
            up = sshd.listening_sockets()
            for n in pending:
                if (n.address, n.port) in up:
                    n.listening = True
            pending = [n for n in pending if not n.listening and n.proc is not None and n.proc.poll() is None]
            if not pending or time.monotonic() > deadline:
                return
            time.sleep(0.02)

    def _write_files(self, world: World) -> None:
        clusters = {i.id: i.cluster or "" for i in world.instances}
        serving = [n for n in self.nodes.values() if n.listening or n.down]
        launched = {i.id: i.launch_time for i in world.instances}
        text = sshd.render_ssh_config(
            serving, user=self.config.user, identity_files=world.identity_files, clusters=clusters, launched=launched
        )
        self._write_if_changed(self.config.layout.ssh_config, text)
        roles = {i.id: i.role or "" for i in world.instances}
        status = {
            "nodes": {
                n.instance_id: {
                    "address": n.address,
                    "port": n.port,
                    "pid": n.pid,
                    "state": "down" if n.down else ("serving" if n.listening else "starting"),
                    "cluster": clusters.get(n.instance_id, ""),
                    "role": roles.get(n.instance_id, ""),
                    "hosts": list(n.hosts),
                }
                for n in sorted(self.nodes.values(), key=lambda n: n.instance_id)
            }
        }
        self._write_if_changed(self.config.layout.status_file, json.dumps(status, indent=1) + "\n")

    def _write_if_changed(self, path: Path, text: str) -> None:
        if self._written.get(path) == text:
            return
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
        self._written[path] = text

    # --- operator actions -----------------------------------------------------------------------

    def stop_node(self, instance_id: str) -> dict[str, Any]:
        with self._nodes_lock:
            node = self.nodes.get(instance_id)
            if node is None:
                return {"error": f"no sandbox node for {instance_id}"}
            sshd.stop(node)
            node.down = True
            if self._last_world is not None:
                self._write_files(self._last_world)
        return {"ok": True}

    def start_node(self, instance_id: str) -> dict[str, Any]:
        with self._nodes_lock:
            node = self.nodes.get(instance_id)
            if node is None:
                return {"error": f"no sandbox node for {instance_id}"}
            if node.pid is None:
                self._start(node)
                self._await_listening([node], deadline=time.monotonic() + 5.0)
            if self._last_world is not None:
                self._write_files(self._last_world)
        return {"ok": True}

    def stop_all(self) -> None:
        with self._nodes_lock:
            sshd.stop_many(list(self.nodes.values()))


class _Handler(socketserver.StreamRequestHandler):
    server: _SocketServer

    def handle(self) -> None:
        sup = self.server.supervisor
        try:
            req = json.loads(self.rfile.readline())
            op = req.get("op")
            if op == "answer":
                reply = sup.answer(str(req["instance"]), str(req.get("command", "")))
            elif op == "ping":
                reply = {"ok": True, "cycles": sup.cycles, "nodes": len(sup.nodes)}
            elif op == "stop-node":
                reply = sup.stop_node(str(req["instance"]))
            elif op == "start-node":
                reply = sup.start_node(str(req["instance"]))
            elif op == "workload":  # tests: place pods and PodDisruptionBudgets (kopsy.sandbox.workloads)
                reply = sup.workloads.place(str(req["cluster"]), req)
            elif op == "etcd-calls":
                with sup._etcd_calls_lock:
                    reply = {"calls": [list(c) for c in sup.etcd_calls]}
            else:
                reply = {"error": f"unknown op {op!r}"}
        except KopsyError as exc:
            reply = {"stdout": "", "stderr": f"kopsy sandbox: {exc.message}\n", "exit": 1, "error": exc.message}
        except Exception as exc:  # a bug: answer it rather than hang the SSH session
            log.exception("request failed")
            reply = {"stdout": "", "stderr": f"kopsy sandbox: internal error: {exc}\n", "exit": 1, "error": str(exc)}
        self.wfile.write(json.dumps(reply).encode())


class _SocketServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, name: str, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        super().__init__(name, _Handler)

"""The result of one validation: what is wrong, and the state of every node.

The engine *returns* a ``ValidationResult`` rather than raising: a not-ready cluster is the
normal answer of a poll under ``--wait``, not an exceptional one. The CLI decides what it means
(print, poll again, or exit 1 by raising ``ValidationFailed(result=...)``).

``to_dict()`` is the documented machine format (``-o json|yaml``):
``{failures: [{type, name, message[, details]}], nodes: [{name, instanceId, role, instanceGroup, ready}]}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Failure types, as kops names them where kops has the same concept.
INSTANCE_GROUP = "InstanceGroup"
MACHINE = "Machine"  # an instance that has not joined the cluster
NODE = "Node"  # a joined node that is not Ready
POD = "Pod"  # a system-critical pod not Running/Ready
CONTROL_PLANE = "ControlPlane"  # the control plane cannot be asked, or misses a component


@dataclass
class Failure:
    type: str
    name: str
    message: str
    details: list[str] = field(default_factory=list)  # e.g. the bootstrap log tail
    instance_id: str = ""  # not serialised: links Machine/Node failures to their diagnosis

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "name": self.name, "message": self.message}
        if self.details:
            out["details"] = list(self.details)
        return out


@dataclass
class NodeStatus:
    name: str
    instance_id: str
    role: str
    instance_group: str
    ready: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "instanceId": self.instance_id,
            "role": self.role,
            "instanceGroup": self.instance_group,
            "ready": self.ready,
        }


@dataclass
class ValidationResult:
    cluster: str
    failures: list[Failure] = field(default_factory=list)
    nodes: list[NodeStatus] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # e.g. host keys recorded on first use
    ssh_connections: int = 0  # SSH connections this validation opened (jump hops included)

    @property
    def valid(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "failures": [f.to_dict() for f in self.failures],
            "nodes": [n.to_dict() for n in self.nodes],
        }

    def summary(self) -> str:
        """One line for progress output: how many problems, and the first one."""
        if self.valid:
            return f"cluster {self.cluster} is ready"
        first = self.failures[0]
        text = first.message if len(first.message) <= 120 else first.message[:119] + "…"
        return f"{len(self.failures)} problem(s), first: {first.type} {first.name}: {text}"

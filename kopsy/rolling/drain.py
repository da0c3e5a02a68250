"""Cordon and drain nodes with ``kubectl`` over SSH on a control plane.

``kubectl drain`` uses the Eviction API, so PodDisruptionBudgets are respected; DaemonSet pods
are ignored and emptyDir data deleted, as kops drains. When a drain times out, kubectl names
the pods it could not evict but not the budget that refused them: we read the budgets and the
pods (two ``get -o json``) and match each budget's selector to the pod's labels, so the error
says which PDB to look at.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kopsy.errors import KopsyError
from kopsy.remote import CommandResult, SSHConnection
from kopsy.validate.facts import KUBECTL

_EVICT_ERROR = re.compile(r'pods?/"?([A-Za-z0-9.-]+)"? -n "?([A-Za-z0-9.-]+)"?')


class DrainFailed(KopsyError):
    """A drain did not finish; ``blocking`` names the pods (and the PDBs) that held it."""

    def __init__(self, message: str, blocking: list[str]) -> None:
        super().__init__(message)
        self.blocking = blocking


def cordon_command(node: str, undo: bool = False) -> str:
    return f"{KUBECTL} {'uncordon' if undo else 'cordon'} {shlex.quote(node)}"


def drain_command(node: str, timeout: float) -> str:
    return (f"{KUBECTL} drain {shlex.quote(node)} --ignore-daemonsets --delete-emptydir-data "
            f"--timeout={int(max(1, timeout))}s")


def blocked_pods(stderr: str) -> list[tuple[str, str]]:
    """(namespace, pod) pairs kubectl could not evict, from its error text, in order, once each."""
    seen: list[tuple[str, str]] = []
    for name, ns in _EVICT_ERROR.findall(stderr):
        if (ns, name) not in seen:
            seen.append((ns, name))
    return seen


def blocking_budgets(pods: list[tuple[str, str]], pdb_json: str, pods_json: str) -> dict[tuple[str, str], str]:
    """(namespace, pod) -> the PDB whose selector matches the pod (matchLabels and matchExpressions In)."""
    try:
        budgets = json.loads(pdb_json).get("items", [])
        listed = {(p["metadata"].get("namespace", ""), p["metadata"]["name"]): p["metadata"].get("labels") or {}
                  for p in json.loads(pods_json).get("items", [])}
    except (ValueError, KeyError, AttributeError, TypeError):
        return {}
    out = {}
    for key in pods:
        labels = listed.get(key)
        if labels is None:
            continue
        for b in budgets:
            meta, selector = b.get("metadata", {}), (b.get("spec", {}) or {}).get("selector") or {}
            if meta.get("namespace") == key[0] and _selects(selector, labels):
                out[key] = str(meta.get("name"))
                break
    return out


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        if e.get("operator") == "In" and labels.get(e.get("key")) not in (e.get("values") or []):
            return False
        if e.get("operator") == "NotIn" and labels.get(e.get("key")) in (e.get("values") or []):
            return False
        if e.get("operator") == "Exists" and e.get("key") not in labels:
            return False
    return True


def _fail(r: CommandResult) -> str:
    if r.error:
        return r.error
    last = (r.stderr.strip().splitlines() or r.stdout.strip().splitlines() or [""])[-1]
    return f"exit {r.exit_status}" + (f": {last}" if last else "")


@dataclass
class Kube:
    """kubectl on a control plane. ``connect(avoid)`` opens a connection to a control plane
    other than ``avoid`` when there is one (draining a control plane from itself works too,
    but its API server is about to go)."""

    connect: Callable[[str], SSHConnection]

    def _run(self, command: str, node: str, timeout: float | None = None) -> CommandResult:
        with self.connect(node) as conn:
            return conn.run(command, timeout=timeout)

    def cordon(self, node: str, undo: bool = False) -> None:
        r = self._run(cordon_command(node, undo), node)
        if not r.ok:
            raise KopsyError(f"cannot {'uncordon' if undo else 'cordon'} node {node}: {_fail(r)}")

    def drain(self, node: str, timeout: float) -> str:
        """Drain ``node``; its stdout (what was evicted) on success, ``DrainFailed`` otherwise."""
        with self.connect(node) as conn:
            r = conn.run(drain_command(node, timeout), timeout=timeout + 30)
            if r.ok:
                return r.stdout
            pods = blocked_pods(r.stderr + "\n" + r.stdout)
            names = {}
            if pods:
                pdb, listed = conn.run_many([f"{KUBECTL} get pdb -A -o json", f"{KUBECTL} get pods -A -o json"])
                if pdb.ok and listed.ok:
                    names = blocking_budgets(pods, pdb.stdout, listed.stdout)
        blocking = [f"pod {ns}/{name}" + (f" (PodDisruptionBudget {ns}/{names[(ns, name)]})" if (ns, name) in names else "")
                    for ns, name in pods]
        if blocking or r.error:
            why = f"blocked by {', '.join(blocking)}" if blocking else _fail(r)
            raise DrainFailed(f"drain of node {node} did not finish within {int(timeout)}s: {why}", blocking)
        raise DrainFailed(f"drain of node {node} failed: {_fail(r)}", [])

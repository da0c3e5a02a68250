"""What every AWS resource kind declares: one small class per kind.

A ``Kind`` names its service, the id field, the kinds it depends on, the IAM permissions it
needs, how to *find* its resources (one batched, read-only describe filtered by the cluster's
tag, plus a pure parser), and how to create, modify and delete one. The values it finds and
applies (``Desired``, ``Actual``, ``Facts``, ``ApplyContext``) are the engine's, in
``kopsy/reconcile/values.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from kopsy.parallel import parallel
from kopsy.reconcile.values import Actual, ApplyContext, Desired, Facts


class Kind:
    """Base of every resource kind. Subclasses are small and declarative."""

    kind: ClassVar[str] = ""
    service: ClassVar[str] = ""
    id_field: ClassVar[str] = ""
    depends_on: ClassVar[tuple[str, ...]] = ()  # kinds whose resources this one references
    # Of those, kinds referenced only by value (a DNS name, a key name, a group id in a template):
    # their deletion need not wait for this kind's.
    soft_deps: ClassVar[tuple[str, ...]] = ()
    delete_after: ClassVar[tuple[str, ...]] = ()  # kinds that must be gone before this one is deleted
    permissions: ClassVar[tuple[str, ...]] = ()  # IAM actions kopsy needs to manage this kind
    immutable: ClassVar[tuple[str, ...]] = ()  # fields a modify cannot change
    create_only: ClassVar[tuple[str, ...]] = ()  # inputs to create that AWS does not describe back
    managed: ClassVar[bool] = True  # False: only discovered for delete (e.g. instances launched by ASGs)
    batch_delete: ClassVar[bool] = False  # delete all of this kind in one change (``delete_many``)
    # Fields a create sets in a second step (``finish``): their refs hold back only that step, so
    # the resource itself is created while what it attaches to is still being made (a gateway
    # while its VPC is, a profile while its role is). Dependents wait for both steps.
    late_fields: ClassVar[tuple[str, ...]] = ()
    quiet_fields: ClassVar[tuple[str, ...]] = ()  # left out of a create's plan lines (noise, shown elsewhere)
    # its user-data pins objects ``update`` publishes to the state store: created or changed only after them
    pins_published: ClassVar[bool] = False

    def find(self, facts: Facts) -> list[Actual]:
        """Read-only discovery of this cluster's resources of this kind."""
        raise NotImplementedError

    def same(self, field_name: str, desired: Any, have: Actual) -> bool:
        """Whether ``have`` (the resource as found) already has field ``field_name`` as desired."""
        return bool(desired == have.fields.get(field_name))

    def outputs_after_modify(self, actual: Actual, changed: set[str]) -> dict[str, Any]:
        """The outputs dependents may rely on at plan time after a modify (default: unchanged)."""
        return dict(actual.outputs)

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def finish(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any], created: dict[str, Any]) -> dict[str, Any]:
        """Second step of a create, for kinds with ``late_fields``: ``fields`` are all known now,
        ``created`` is what ``create`` returned (it was given every field but the late ones)."""
        raise NotImplementedError

    def modify(self, ctx: ApplyContext, want: Desired, have: Actual, fields: dict[str, Any], changed: set[str]) -> dict[str, Any]:
        raise NotImplementedError

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        raise NotImplementedError

    def delete_many(self, ctx: ApplyContext, haves: list[Actual]) -> None:
        """Delete several at once (kinds with a batch API override this)."""
        parallel(lambda h: self.delete(ctx, h), haves, workers=8)

    def needs_delete(self, have: Actual) -> bool:
        """Whether ``delete`` has to act on this resource itself (default: yes). A kind whose
        resources mostly vanish with their parent says when one does not."""
        return True

    def goes_with(self, have: Actual, deleting: Mapping[str, Actual]) -> bool:
        """Whether this resource is removed by AWS with another one being deleted (``deleting``
        holds them by id), so it needs no delete call of its own (a listener goes with its load
        balancer)."""
        return False

    def notes(self, changed: set[str]) -> list[str]:
        """Extra lines for the plan (e.g. 'instances pick this up when replaced')."""
        return []

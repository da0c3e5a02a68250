"""Model builders: each turns one area of the spec into desired resources.

A builder is a pure function ``ClusterInputs -> list[Desired]`` that refers to other areas'
resources only by ``Ref`` to their deterministic names (``base.py``). Adding a resource type
is one kind (``kopsy/cloud/aws/``), one registry line (``registry.ALL_KINDS``) and a builder
here: a new area is one more entry in ``BUILDERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kopsy.reconcile.builders import api, iam, instancegroups, network
from kopsy.reconcile.values import Desired

if TYPE_CHECKING:
    from kopsy.reconcile.desired import ClusterInputs

Builder = Callable[["ClusterInputs"], list[Desired]]

BUILDERS: tuple[Builder, ...] = (iam.build, network.build, api.build, instancegroups.build)

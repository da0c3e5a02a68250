"""IAM: one role and instance profile per instance role (control plane, nodes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kopsy.cloud.aws.iam import EC2_TRUST, policy_document
from kopsy.cloud.aws.names import role_name
from kopsy.reconcile.builders.base import resource
from kopsy.reconcile.values import Desired
from kopsy.spec.model import ROLE_CONTROL_PLANE, ROLE_NODE

if TYPE_CHECKING:
    from kopsy.reconcile.desired import ClusterInputs


def build(inp: ClusterInputs) -> list[Desired]:
    name = inp.cluster.name
    out: list[Desired] = []
    for role, krole in (("control-plane", ROLE_CONTROL_PLANE), ("nodes", ROLE_NODE)):
        rn = role_name(role, name)
        policy = policy_document(role, inp.state_store_url, inp.partition, name, inp.state_kms_key)
        out.append(resource(name, "IAMRole", rn, {"assume_role_policy": EC2_TRUST, "policy": policy}, krole))
        profile = resource(name, "IAMInstanceProfile", rn, {"role": rn}, krole)
        # The role is named, not referenced (names are deterministic, so the plan can show them):
        # the profile waits for it only to add it (``late_deps``), not to be created.
        profile.late_deps = (("IAMRole", rn),)
        out.append(profile)
    return out

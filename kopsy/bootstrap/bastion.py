"""The bastion's user-data: an SSH jump host runs no Kubernetes component, so it gets no boot
script, no state-store location and no secret, only what hardens its sshd."""

from __future__ import annotations

BASTION_USER_DATA = b"#cloud-config\n# kopsy bastion: an SSH jump host into the cluster's private subnets\nssh_pwauth: false\n"


def render_bastion_user_data() -> bytes:
    """Plain #cloud-config (the instance has nothing of the cluster's to fetch)."""
    return BASTION_USER_DATA

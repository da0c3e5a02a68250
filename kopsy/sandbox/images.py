"""The machine image the emulated cloud serves, so kopsy's default AMI resolution finds one.

kopsy resolves Ubuntu 24.04 through Canonical's public SSM parameter, falling back to
DescribeImages on Canonical's owner id and name pattern. moto ships neither: the image goes in
through ``MOTO_AMIS_PATH`` (read by moto at import), the parameter through ``motoserver``.
"""

from __future__ import annotations

import json
from pathlib import Path

CANONICAL_OWNER = "099720109477"
UBUNTU_2404_AMD64 = "ami-0a7d80731ae1b2435"
UBUNTU_2404_ARM64 = "ami-0b8f41c7b1a3d5e92"
SSM_PARAMETERS = {
    "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id": UBUNTU_2404_AMD64,
    "/aws/service/canonical/ubuntu/server/24.04/stable/current/arm64/hvm/ebs-gp3/ami-id": UBUNTU_2404_ARM64,
}


def _image(ami_id: str, arch: str, moto_arch: str) -> dict[str, object]:
    name = f"ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-20250115"
    return {
        "ami_id": ami_id,
        "name": name,
        "description": f"Canonical, Ubuntu, 24.04, {arch} noble image (kopsy sandbox copy)",
        "owner_id": CANONICAL_OWNER,
        "public": True,
        "virtualization_type": "hvm",
        "architecture": moto_arch,
        "state": "available",
        "platform": None,
        "image_type": "machine",
        "hypervisor": "xen",
        "root_device_name": "/dev/sda1",
        "root_device_type": "ebs",
        "sriov": "simple",
        "creation_date": "2025-01-15T00:00:00.000Z",
    }


def images() -> list[dict[str, object]]:
    """The image records in the form ``MOTO_AMIS_PATH`` expects (see ``moto.ec2.utils.gen_moto_amis``)."""
    return [_image(UBUNTU_2404_AMD64, "amd64", "x86_64"), _image(UBUNTU_2404_ARM64, "arm64", "arm64")]


def write_amis_file(path: Path) -> Path:
    path.write_text(json.dumps(images(), indent=1))
    return path

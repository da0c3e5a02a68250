"""Which AMI an instance group boots: its ``image``, else the current Ubuntu 24.04 LTS.

Canonical publishes the current image id in a public SSM parameter; when that parameter cannot
be read (a partition or endpoint without it), DescribeImages over Canonical's images picks the
newest by creation date. Both are read-only facts.
"""

from __future__ import annotations

import re

from kopsy.cloud.aws.session import AwsClients, aws_errors, error_code
from kopsy.errors import KopsyError

CANONICAL_OWNER = "099720109477"
SSM_PARAMETER = "/aws/service/canonical/ubuntu/server/24.04/stable/current/{arch}/hvm/ebs-gp3/ami-id"
NAME_PATTERN = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-*"


def architecture(machine_type: str) -> str:
    """'arm64' for Graviton families (m7g, t4g, c6gn, ...), else 'amd64'."""
    family = machine_type.split(".", 1)[0]
    return "arm64" if re.fullmatch(r"[a-z]+\d+[a-z]*g[a-z]*", family) and "g" in family[1:] else "amd64"


def split_owner(image: str) -> tuple[str, str]:
    """('099720109477', 'ubuntu/images/...') for kops' ``OWNER/NAME`` form; ('', image) otherwise."""
    owner, _, rest = image.partition("/")
    if rest and (re.fullmatch(r"\d{12}", owner) or owner in ("amazon", "aws-marketplace", "self")):
        return owner, rest
    return "", image


def resolve_image(clients: AwsClients, image: str, machine_type: str) -> str:
    """The AMI id for an instance group; raises with a hint when none can be found."""
    if image.startswith("ami-"):
        return image
    ec2 = clients.client("ec2")
    if image:
        owner, name = split_owner(image)
        with aws_errors(f"looking up image {image}"):
            found = ec2.describe_images(
                **({"Owners": [owner]} if owner else {}), Filters=[{"Name": "name", "Values": [name]}]
            ).get("Images", [])
        if not found:
            whose = f" owned by {owner}" if owner else ""
            raise KopsyError(f'image "{name}"{whose} not found in region {clients.region}; set the instance group\'s image '
                             f'to an AMI id or an existing OWNER/NAME')
        return str(max(found, key=lambda i: i.get("CreationDate", ""))["ImageId"])
    arch = architecture(machine_type)
    with aws_errors("reading Canonical's Ubuntu 24.04 image parameter"):
        try:
            value = clients.client("ssm").get_parameter(Name=SSM_PARAMETER.format(arch=arch))["Parameter"]["Value"]
            if str(value).startswith("ami-"):
                return str(value)
        except Exception as exc:
            if error_code(exc) in ("AccessDeniedException", "AccessDenied"):
                raise
    with aws_errors("looking up Ubuntu 24.04 images"):
        found = ec2.describe_images(
            Owners=[CANONICAL_OWNER],
            Filters=[{"Name": "name", "Values": [NAME_PATTERN.format(arch=arch)]}, {"Name": "state", "Values": ["available"]}],
        ).get("Images", [])
    if not found:
        raise KopsyError(
            f"no Ubuntu 24.04 image found in {clients.region} (neither Canonical's SSM parameter nor DescribeImages); "
            f"set 'image' on the instance group to an AMI id"
        )
    return str(max(found, key=lambda i: i.get("CreationDate", ""))["ImageId"])

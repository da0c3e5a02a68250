"""The region's real availability zones, checked before anything is created.

The spec's validation only knows what a zone *looks* like (``us-east-1a``). A zone that is well
shaped but not in the region (``us-east-1z``) would otherwise be refused by AWS only at
CreateSubnet, after the VPC exists. One DescribeAvailabilityZones call tells them apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kopsy.cloud.aws.session import aws_errors
from kopsy.errors import SpecInvalid

def region_zones(clients: Any, region: str) -> list[str]:
    """The zone names of ``region`` (``clients`` is an ``AwsClients`` for that region)."""
    with aws_errors(f"listing the availability zones of {region}"):
        answer = clients.client("ec2").describe_availability_zones(
            Filters=[{"Name": "region-name", "Values": [region]}]
        )
    return sorted(z["ZoneName"] for z in answer.get("AvailabilityZones", []) if z.get("ZoneName"))


def unknown_zones(wanted: Iterable[str], known: list[str], region: str) -> str | None:
    """The problem with the zones of ``wanted`` that ``region`` does not have, or None (pure)."""
    missing = [z for z in dict.fromkeys(wanted) if z not in known]
    if not missing:
        return None
    listing = ", ".join(known) if known else "no zones at all (is it a region?)"
    what = f"zone {missing[0]!r} is" if len(missing) == 1 else f"zones {', '.join(map(repr, missing))} are"
    return (f"{what} not in region {region}, which has {listing}; fix --zones (or the cluster's "
            f"subnets with 'kopsy edit cluster') and re-run")


def check_zones(clients: Any, region: str, wanted: Iterable[str]) -> None:
    """Raise ``SpecInvalid`` listing the region's zones when one of ``wanted`` is not among them."""
    problem = unknown_zones(wanted, region_zones(clients, region), region)
    if problem:
        raise SpecInvalid([problem])

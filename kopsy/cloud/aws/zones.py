"""What the spec names that must already exist in the region, checked before anything is created:
the availability zones, and the instance groups' ``additionalSecurityGroups``.

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


def missing_security_groups(clients: Any, wanted: Iterable[str]) -> list[str]:
    """The ids of ``wanted`` that do not exist in the region (one DescribeSecurityGroups by
    filter, which, unlike GroupIds, answers for the ones that exist instead of failing)."""
    ids = sorted(set(wanted))
    if not ids:
        return []
    from kopsy.cloud.aws.ec2util import describe_all

    with aws_errors("looking up the instance groups' additionalSecurityGroups"):
        found = describe_all(clients.client("ec2"), "describe_security_groups", "SecurityGroups",
                             Filters=[{"Name": "group-id", "Values": ids}])
    have = {g["GroupId"] for g in found}
    return [i for i in ids if i not in have]


def check_security_groups(clients: Any, groups: dict[str, list[str]]) -> None:
    """Raise ``SpecInvalid`` naming each instance group whose additionalSecurityGroups do not exist."""
    missing = set(missing_security_groups(clients, [g for ids in groups.values() for g in ids]))
    problems = [
        f"instancegroup {ig!r}: spec.additionalSecurityGroups: {', '.join(sorted(set(ids) & missing))} "
        f"not found in {clients.region}; create it first or remove it (kopsy attaches existing groups, it does not make them)"
        for ig, ids in sorted(groups.items()) if set(ids) & missing
    ]
    if problems:
        raise SpecInvalid(problems)

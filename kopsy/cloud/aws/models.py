"""botocore service models trimmed to the operations kopsy calls, made from the installed botocore.

Why: building kopsy's clients cost ~0.3 s of CPU per run, mostly JSON. ec2's model describes
830 operations (kopsy calls ~60), IAM's 181, and botocore also scans its ~400 service folders
and reads the whole ``endpoints.json`` on the way. A no-op update pays that every run.

How (botocore's own data path, nothing patched): the first run for a botocore version writes
a data folder under the cache directory (``<cache>/botocore/<botocore version>-<digest>``,
the digest covering ``OPERATIONS`` and this module's format):

- for each service in ``OPERATIONS``: ``service-2.json`` with just those operations and the
  shapes they reach (documentation dropped), the paginators and waiters of those operations,
  and the service's endpoint rule set unchanged;
- ``endpoints.json`` with only those services' entries; ``partitions.json``,
  ``sdk-default-configuration.json`` and ``_retry.json`` copied.

A ``botocore.loaders.Loader`` whose only search path is that folder is registered as the
session's ``data_loader`` component. The small services kopsy uses (``COMPLETE``) are
copied whole into the same folder; any other service is served by a second, ordinary session
(``AwsClients``), so a new service works before it is listed here.

The list is kept honest by tests/cloud/test_trimmed_models.py: it fails when kopsy's source
names an operation of a trimmed service that is not listed, or a recorded call falls outside
it, and it checks every kept shape is botocore's own. A botocore upgrade changes the folder
name, so stale data is never served.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FORMAT = 2  # bump when the folder's layout or the trimming changes

# service -> the operations kopsy calls (tests/cloud/test_trimmed_models.py keeps this complete).
OPERATIONS: dict[str, tuple[str, ...]] = {
    "ec2": (
        "AssociateRouteTable", "AttachInternetGateway", "AttachVolume", "AuthorizeSecurityGroupEgress",
        "AuthorizeSecurityGroupIngress", "CreateInternetGateway", "CreateLaunchTemplate",
        "CreateLaunchTemplateVersion", "CreateRoute", "CreateRouteTable", "CreateSecurityGroup", "CreateSnapshot",
        "CreateSubnet", "CreateTags", "CreateVolume", "CreateVpc", "DeleteInternetGateway", "DeleteKeyPair",
        "DeleteLaunchTemplate", "DeleteNetworkInterface", "DeleteRoute", "DeleteRouteTable", "DeleteSecurityGroup",
        "DeleteSnapshot", "DeleteSubnet", "DeleteTags", "DeleteVolume", "DeleteVpc", "DescribeAvailabilityZones",
        "DescribeImages", "DescribeInstanceAttribute", "DescribeInstanceTypes", "DescribeInstances",
        "DescribeInternetGateways",
        "DescribeKeyPairs", "DescribeLaunchTemplateVersions", "DescribeLaunchTemplates",
        "DescribeNetworkInterfaces", "DescribeRegions", "DescribeRouteTables", "DescribeSecurityGroups",
        "DescribeSnapshots", "DescribeSubnets", "DescribeTags", "DescribeVolumes", "DescribeVolumesModifications",
        "DescribeVpcAttribute", "DescribeVpcs", "DetachInternetGateway", "DetachVolume", "DisassociateRouteTable",
        "ImportKeyPair", "ModifyInstanceAttribute", "ModifyLaunchTemplate", "ModifySubnetAttribute",
        "ModifyVolume", "ModifyVpcAttribute", "ReplaceRoute", "RevokeSecurityGroupEgress",
        "RevokeSecurityGroupIngress", "RunInstances", "TerminateInstances",
        # NAT gateways, Elastic IPs and the rest of a private topology (networks are being built out)
        "AllocateAddress", "AssociateAddress", "CreateNatGateway", "DeleteNatGateway", "DescribeAddresses",
        "DescribeNatGateways", "DisassociateAddress", "ReleaseAddress", "CreateKeyPair",
    ),
    "iam": (
        "AddRoleToInstanceProfile", "CreateInstanceProfile", "CreateRole", "CreateServiceLinkedRole",
        "DeleteInstanceProfile", "DeleteRole", "DeleteRolePolicy", "GetInstanceProfile", "GetRole",
        "GetRolePolicy", "ListInstanceProfilesForRole", "ListRolePolicies", "PutRolePolicy",
        "RemoveRoleFromInstanceProfile", "TagInstanceProfile", "TagRole", "UpdateAssumeRolePolicy",
        "ListRoles", "ListInstanceProfiles", "ListAttachedRolePolicies", "AttachRolePolicy", "DetachRolePolicy",
        "UntagRole", "UntagInstanceProfile", "ListRoleTags", "ListInstanceProfileTags",
    ),
    # Auto Scaling and ELBv2 describe 68 and 51 operations; kopsy calls a few of each.
    "autoscaling": (
        "AttachLoadBalancerTargetGroups", "CreateAutoScalingGroup", "CreateOrUpdateTags", "DeleteAutoScalingGroup",
        "DeleteTags", "DescribeAutoScalingGroups", "DescribeLaunchConfigurations", "DescribeLoadBalancers",
        "DescribeTags", "DetachInstances", "DetachLoadBalancerTargetGroups", "TerminateInstanceInAutoScalingGroup",
        "UpdateAutoScalingGroup",
    ),
    "elbv2": (
        "AddTags", "CreateListener", "CreateLoadBalancer", "CreateTargetGroup", "DeleteListener", "DeleteLoadBalancer",
        "DeleteTargetGroup", "DeregisterTargets", "DescribeListeners", "DescribeLoadBalancerAttributes",
        "DescribeLoadBalancers", "DescribeTags", "DescribeTargetGroupAttributes", "DescribeTargetGroups",
        "DescribeTargetHealth", "ModifyListener", "ModifyLoadBalancerAttributes", "ModifyTargetGroup",
        "ModifyTargetGroupAttributes", "RegisterTargets", "SetSecurityGroups", "SetSubnets",
    ),
    # Canonical's public AMI parameter. SSM describes ~150 operations, and botocore builds a
    # client method for each: trimmed, its client costs about half as much CPU to build.
    # (ListCommands and PutParameter only because the source names them: the sandbox, click.)
    "ssm": ("GetParameter", "GetParameters", "ListCommands", "PutParameter"),
    # The state store. S3 describes ~110 operations; its client is the first a command builds,
    # before its first call, and builds in ~12 ms instead of ~24 trimmed to these.
    "s3": (
        "CreateBucket", "DeleteObject", "DeleteObjects", "GetBucketEncryption", "GetBucketVersioning", "GetObject",
        "HeadBucket", "ListObjectsV2", "PutBucketEncryption", "PutBucketVersioning", "PutObject",
        "PutPublicAccessBlock",
    ),
}


# Services served whole from the same folder (their models are small): one folder means one
# short service listing and one small endpoints.json for every client kopsy builds.
COMPLETE = ("elb", "kms", "sts")
SERVED = frozenset(OPERATIONS) | frozenset(COMPLETE)


def data_dir(cache_root: Path, botocore_version: str) -> Path:
    """The folder for this botocore version and this operation list."""
    digest = hashlib.sha256(json.dumps([FORMAT, OPERATIONS, COMPLETE], sort_keys=True).encode()).hexdigest()[:12]
    return cache_root / "botocore" / f"{botocore_version}-{digest}"


def _strip_docs(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_docs(v) for k, v in value.items() if k not in ("documentation", "documentationUrl")}
    if isinstance(value, list):
        return [_strip_docs(v) for v in value]
    return value


def _shape_refs(shape: dict[str, Any]) -> Iterable[str]:
    for key in ("member", "key", "value"):
        if key in shape:
            yield shape[key]["shape"]
    for member in shape.get("members", {}).values():
        yield member["shape"]


def trim_service(model: dict[str, Any], operations: Iterable[str]) -> dict[str, Any]:
    """``model`` (a service-2 document) with only ``operations`` and the shapes they reach."""
    ops = {name: model["operations"][name] for name in sorted(operations)}
    wanted: list[str] = []
    for op in ops.values():
        wanted += [op[k]["shape"] for k in ("input", "output") if k in op]
        wanted += [e["shape"] for e in op.get("errors", [])]
    shapes: dict[str, Any] = {}
    while wanted:
        name = wanted.pop()
        if name in shapes:
            continue
        shapes[name] = model["shapes"][name]
        wanted.extend(_shape_refs(shapes[name]))
    # Documentation is dropped from operations and shapes only (botocore reads those with
    # .get); elsewhere, e.g. clientContextParams, it is required.
    out = {k: v for k, v in model.items() if k not in ("operations", "shapes", "documentation")}
    out["operations"], out["shapes"] = _strip_docs(ops), _strip_docs(shapes)
    return out


def _write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, separators=(",", ":")))


def generate(target: Path) -> None:
    """Write the trimmed data folder at ``target`` from the installed botocore (atomically:
    built beside it and renamed, so a concurrent run sees a whole folder or none)."""
    import botocore
    from botocore.loaders import Loader

    full = Loader()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        prefixes = set()
        for service in sorted(SERVED):
            version = full.determine_latest_version(service, "service-2")
            model = full.load_service_model(service, "service-2", version)
            operations: Iterable[str] = OPERATIONS.get(service) or model["operations"]
            prefixes.add(model["metadata"].get("endpointPrefix", service))
            _write_json(tmp / service / version / "service-2.json", trim_service(model, operations))
            _write_json(tmp / service / version / "endpoint-rule-set-1.json",
                        full.load_service_model(service, "endpoint-rule-set-1", version))
            for type_name, key in (("paginators-1", "pagination"), ("waiters-2", "waiters")):
                try:
                    doc = full.load_service_model(service, type_name, version)
                except Exception:  # botocore's DataNotFoundError: this service has none
                    continue
                if key == "pagination":
                    kept = {k: v for k, v in doc[key].items() if k in operations}
                else:
                    kept = {k: v for k, v in doc[key].items() if v.get("operation") in operations}
                _write_json(tmp / service / version / f"{type_name}.json", {**doc, key: kept})
        endpoints = full.load_data("endpoints")
        for partition in endpoints["partitions"]:
            partition["services"] = {k: v for k, v in partition["services"].items() if k in prefixes}
        _write_json(tmp / "endpoints.json", endpoints)
        for name in ("partitions", "sdk-default-configuration", "_retry"):
            _write_json(tmp / f"{name}.json", full.load_data(name))
        (tmp / "SOURCE").write_text(f"botocore {botocore.__version__} at {Path(botocore.__file__).parent}\n")
        try:
            os.rename(tmp, target)
        except OSError:  # another run made it first
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def trimmed_loader(cache_root: Path) -> Any:
    """A botocore ``Loader`` serving the trimmed folder (generated first if missing), or
    ``None`` when it cannot be made (an unwritable cache: kopsy then runs on the full models)."""
    import botocore
    from botocore.loaders import Loader

    target = data_dir(cache_root, botocore.__version__)
    if not (target / "SOURCE").is_file():
        try:
            generate(target)
        except OSError:
            return None
    return Loader(extra_search_paths=[str(target)], include_default_search_paths=False)

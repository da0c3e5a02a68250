"""Launch templates, one per instance group, named ``<ig>.<cluster>``.

A changed field never edits a version in place (EC2 cannot): it adds a new version, which the
Auto Scaling group is then pointed at; running instances keep theirs until replaced. Versions
are created with a ``ClientToken`` derived from their content and the template's id, so a rerun
after a crash reuses the version instead of adding a duplicate.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from typing import Any

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.ec2util import describe_all, owned
from kopsy.cloud.aws.idempotency import create_or_adopt, tolerate
from kopsy.cloud.aws.kind import Kind
from kopsy.cloud.aws.session import aws_errors
from kopsy.parallel import parallel
from kopsy.reconcile.values import UNKNOWN, Actual, ApplyContext, Desired, Facts

ROOT_DEVICE = "/dev/sda1"  # Ubuntu's root device name


def _plain(user_data: Any) -> Any:
    if isinstance(user_data, bytes) and user_data[:2] == b"\x1f\x8b":
        return gzip.decompress(user_data)
    return user_data


def template_data(fields: dict[str, Any], tags: dict[str, str]) -> dict[str, Any]:
    """EC2 ``LaunchTemplateData`` from resolved desired fields."""
    data: dict[str, Any] = {
        "ImageId": fields["image"],
        "InstanceType": fields["instance_type"],
        "NetworkInterfaces": [
            {
                "DeviceIndex": 0,
                "AssociatePublicIpAddress": fields["public_ip"],
                "Groups": sorted(fields["security_groups"]),
                "DeleteOnTermination": True,
            }
        ],
        "BlockDeviceMappings": [
            {
                "DeviceName": ROOT_DEVICE,
                "Ebs": {
                    "VolumeSize": fields["root_volume_size"],
                    "VolumeType": fields["root_volume_type"],
                    "Encrypted": fields["root_volume_encrypted"],
                    "DeleteOnTermination": True,
                },
            }
        ],
        "MetadataOptions": {"HttpTokens": fields["http_tokens"], "HttpPutResponseHopLimit": 1, "HttpEndpoint": "enabled"},
        "UserData": base64.b64encode(fields["user_data"]).decode(),
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": T.to_list(tags)},
            {"ResourceType": "volume", "Tags": T.to_list(tags)},
        ],
    }
    if fields.get("key_name"):
        data["KeyName"] = fields["key_name"]
    if fields["instance_profile"]:  # a bastion has none: it calls no AWS API and reads no secret
        data["IamInstanceProfile"] = {"Name": fields["instance_profile"]}
    return data


def _token(name: str, data: dict[str, Any]) -> str:
    return hashlib.sha256((name + json.dumps(data, sort_keys=True)).encode()).hexdigest()[:64]


def parse_version(v: dict[str, Any]) -> dict[str, Any]:
    """Desired-comparable fields from one launch-template version (pure)."""
    d = v.get("LaunchTemplateData", {})
    nic = (d.get("NetworkInterfaces") or [{}])[0]
    ebs: dict[str, Any] = next((b.get("Ebs", {}) for b in d.get("BlockDeviceMappings", []) if b.get("DeviceName") == ROOT_DEVICE), {})
    profile = d.get("IamInstanceProfile", {})
    tagspecs = {t.get("ResourceType"): T.to_dict(t.get("Tags")) for t in d.get("TagSpecifications", [])}
    raw_ud = d.get("UserData")
    return {
        "image": d.get("ImageId"),
        "instance_type": d.get("InstanceType"),
        "key_name": d.get("KeyName", ""),
        "security_groups": frozenset(nic.get("Groups", []) or d.get("SecurityGroupIds", [])),
        "public_ip": bool(nic.get("AssociatePublicIpAddress")),
        "instance_profile": profile.get("Name") or str(profile.get("Arn", "")).rsplit("/", 1)[-1],
        "root_volume_size": ebs.get("VolumeSize"),
        "root_volume_type": ebs.get("VolumeType"),
        "root_volume_encrypted": bool(ebs.get("Encrypted")),
        "http_tokens": d.get("MetadataOptions", {}).get("HttpTokens"),
        "user_data": base64.b64decode(raw_ud) if raw_ud else b"",
        "instance_tags": tagspecs.get("instance", {}),
    }


class LaunchTemplate(Kind):
    kind = "LaunchTemplate"
    service = "ec2"
    id_field = "LaunchTemplateId"
    depends_on = ("SecurityGroup", "IAMInstanceProfile", "KeyPair", "LoadBalancer")
    soft_deps = depends_on  # a template only names them: each can be deleted while it exists
    quiet_fields = ("instance_tags",)  # the instances' tags: the template's own, again
    pins_published = True  # the addons and the etcd module (docs/addons.md)
    permissions = (
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribeLaunchTemplateVersions",
        "ec2:CreateLaunchTemplate",
        "ec2:CreateLaunchTemplateVersion",
        "ec2:ModifyLaunchTemplate",
        "ec2:CreateTags",
        "ec2:DeleteLaunchTemplate",
        "ec2:DescribeImages",
        "ssm:GetParameter",
        "iam:PassRole",
    )

    def find(self, facts: Facts) -> list[Actual]:
        ec2 = facts.clients.client("ec2")
        with aws_errors("reading launch templates"):
            # Both at once: the latest version of every template is one call that needs no ids.
            templates, versions = parallel(
                lambda f: f(),
                [
                    lambda: owned(facts, "describe_launch_templates", "LaunchTemplates"),
                    lambda: describe_all(ec2, "describe_launch_template_versions", "LaunchTemplateVersions", Versions=["$Latest"]),
                ],
            )
            if not templates:
                return []
            ids = {t["LaunchTemplateId"] for t in templates}
            latest = {v["LaunchTemplateId"]: v for v in versions if v["LaunchTemplateId"] in ids}
            missing = ids - set(latest)
            for tid in sorted(missing):  # endpoints that insist on an id: fall back per template
                for v in describe_all(ec2, "describe_launch_template_versions", "LaunchTemplateVersions", LaunchTemplateId=tid, Versions=["$Latest"]):
                    latest[tid] = v
        out = []
        for t in templates:
            v = latest.get(t["LaunchTemplateId"], {})
            out.append(
                Actual(
                    self.kind,
                    t["LaunchTemplateName"],
                    t["LaunchTemplateId"],
                    fields=parse_version(v) if v else {},
                    outputs={
                        "id": t["LaunchTemplateId"],
                        "name": t["LaunchTemplateName"],
                        "version": str(v.get("VersionNumber", t.get("LatestVersionNumber", ""))),
                    },
                    tags=T.to_dict(t.get("Tags")),
                )
            )
        return out

    def same(self, field_name: str, desired: Any, have: Actual) -> bool:
        if field_name == "user_data":
            return bool(_plain(desired) == _plain(have.fields.get(field_name)))
        return super().same(field_name, desired, have)

    def outputs_after_modify(self, actual: Actual, changed: set[str]) -> dict[str, Any]:
        return {**actual.outputs, "version": UNKNOWN}

    def notes(self, changed: set[str]) -> list[str]:
        return ["a new launch template version; running instances pick it up only when they are replaced"]

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        ec2 = ctx.clients.client("ec2")
        data = template_data(fields, fields["instance_tags"])
        with aws_errors(f"creating launch template {want.name}"):
            def existing() -> tuple[dict[str, Any], dict[str, str]]:
                found = ec2.describe_launch_templates(LaunchTemplateNames=[want.name])["LaunchTemplates"][0]
                return found, T.to_dict(found.get("Tags"))

            # No content-derived token here: the name is unique already (a repeat fails with
            # AlreadyExists, and the template is adopted), and a template deleted with its
            # instance group then re-added with the same content would get the deleted one's id
            # back from AWS's idempotency cache. botocore's per-call token covers its own retries.
            t, adopted = create_or_adopt(
                lambda: ec2.create_launch_template(
                    LaunchTemplateName=want.name,
                    LaunchTemplateData=data,
                    TagSpecifications=T.tag_spec("launch-template", want.tags),
                )["LaunchTemplate"],
                ("InvalidLaunchTemplateName.AlreadyExistsException",), existing,
                what="launch template", name=want.name, cluster=ctx.cluster,
            )
            if adopted:
                have = Actual(self.kind, want.name, t["LaunchTemplateId"], outputs={"id": t["LaunchTemplateId"], "name": want.name})
                return self.modify(ctx, want, have, fields, set(fields))
        return {"id": t["LaunchTemplateId"], "name": want.name, "version": str(t.get("LatestVersionNumber", 1))}

    def modify(self, ctx: ApplyContext, want: Desired, have: Actual, fields: dict[str, Any], changed: set[str]) -> dict[str, Any]:
        ec2 = ctx.clients.client("ec2")
        data = template_data(fields, fields["instance_tags"])
        with aws_errors(f"adding a version to launch template {want.name}"):
            # Content-derived and bound to this template's id, so a rerun after a crash reuses
            # the version it made, and a re-created template never gets an old one's version.
            v = ec2.create_launch_template_version(
                LaunchTemplateId=have.id, LaunchTemplateData=data, ClientToken=_token(f"{have.id}/{want.name}", data)
            )["LaunchTemplateVersion"]
            version = str(v["VersionNumber"])
            ec2.modify_launch_template(LaunchTemplateId=have.id, DefaultVersion=version)
        return {"id": have.id, "name": want.name, "version": version}

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        with aws_errors(f"deleting launch template {have.name}"):
            tolerate(lambda: ctx.clients.client("ec2").delete_launch_template(LaunchTemplateId=have.id),
                     "InvalidLaunchTemplateId.NotFound", "InvalidLaunchTemplateName.NotFoundException")

"""IAM roles (with their inline policy) and instance profiles for control planes and nodes.

Names are deterministic (``control-plane.<cluster>``, ``nodes.<cluster>``, as kops) because IAM
has no tag filter: discovery is a GetRole/GetInstanceProfile per known name, and a role only
counts as the cluster's when it carries the cluster's ownership tag.

Policies follow docs/bootstrap.md ("What is fetched from where"): nodes may read just ``pki/ca.crt`` and
``secrets/bootstrap-token`` of their cluster; control planes read ``pki/*``, ``secrets/*``,
``config`` and ``instancegroup/*`` and may rewrite the bootstrap token.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlparse

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.ec2util import describe_all
from kopsy.cloud.aws.idempotency import create_or_adopt, tolerate
from kopsy.cloud.aws.kind import Kind
from kopsy.cloud.aws.names import role_name
from kopsy.cloud.aws.session import aws_errors, error_code
from kopsy.parallel import parallel
from kopsy.reconcile.values import Actual, ApplyContext, Desired, Facts

ROLES = ("control-plane", "nodes")
ETCD_BACKUP_PREFIX = "backups/etcd/"  # kopsy.etcd.backups reads the same prefix
ETCD_BACKUP_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]

EC2_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}

NODE_ACTIONS = ["ec2:DescribeInstances", "ec2:DescribeRegions", "ec2:DescribeInstanceTypes"]
ECR_READ = [
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:GetRepositoryPolicy",
    "ecr:DescribeRepositories",
    "ecr:ListImages",
    "ecr:BatchGetImage",
]
# What the AWS cloud-controller-manager and the EBS CSI driver on a control plane read (their
# documented policies): describes only, so unscoped.
CONTROL_PLANE_ACTIONS = [
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeTags",
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeInstances",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeRegions",
    "ec2:DescribeRouteTables",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSnapshots",
    "ec2:DescribeSubnets",
    "ec2:DescribeTags",
    "ec2:DescribeVolumes",
    "ec2:DescribeVolumesModifications",
    "ec2:DescribeVpcs",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeLoadBalancerAttributes",
    "elasticloadbalancing:DescribeLoadBalancerPolicies",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeTags",
    "elasticloadbalancing:DescribeTargetGroupAttributes",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth",
]
# No kms: actions here: volumes are encrypted with the account's aws/ebs key, which needs none; a
# customer key (the state bucket's) is granted on that key alone (``_state_store_statements``).
# What they create: allowed only when the request tags it for the cluster
# (``aws:RequestTag/KubernetesCluster``), which both do when the instances carry the tag (the
# CCM) or are told to (the driver's ``--extra-tags KubernetesCluster=<name>``).
CONTROL_PLANE_TAGGED_CREATES = [
    "ec2:CreateSecurityGroup",  # k8s-elb-... groups
    "ec2:CreateSnapshot",
    "ec2:CreateVolume",
    "elasticloadbalancing:CreateLoadBalancer",
    "elasticloadbalancing:CreateTargetGroup",
]
# What they change, attach or delete: only resources that carry the cluster's tag
# (``aws:ResourceTag/KubernetesCluster``), kopsy's own groups included (the CCM adds NodePort and
# health-check rules to the nodes' group): unscoped, a control plane could open, retarget or
# delete anything in the account.
CONTROL_PLANE_SCOPED_WRITES = [
    "ec2:AttachVolume",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:CreateTags",
    "ec2:DeleteSecurityGroup",
    "ec2:DeleteSnapshot",
    "ec2:DeleteTags",
    "ec2:DeleteVolume",
    "ec2:DetachVolume",
    "ec2:ModifyVolume",
    "ec2:RevokeSecurityGroupIngress",
    "elasticloadbalancing:AddTags",
    "elasticloadbalancing:ApplySecurityGroupsToLoadBalancer",
    "elasticloadbalancing:AttachLoadBalancerToSubnets",
    "elasticloadbalancing:ConfigureHealthCheck",
    "elasticloadbalancing:CreateListener",
    "elasticloadbalancing:CreateLoadBalancerListeners",
    "elasticloadbalancing:CreateLoadBalancerPolicy",
    "elasticloadbalancing:DeleteListener",
    "elasticloadbalancing:DeleteLoadBalancer",
    "elasticloadbalancing:DeleteLoadBalancerListeners",
    "elasticloadbalancing:DeleteTargetGroup",
    "elasticloadbalancing:DeregisterInstancesFromLoadBalancer",
    "elasticloadbalancing:DeregisterTargets",
    "elasticloadbalancing:DetachLoadBalancerFromSubnets",
    "elasticloadbalancing:ModifyListener",
    "elasticloadbalancing:ModifyLoadBalancerAttributes",
    "elasticloadbalancing:ModifyTargetGroup",
    "elasticloadbalancing:ModifyTargetGroupAttributes",
    "elasticloadbalancing:RegisterInstancesWithLoadBalancer",
    "elasticloadbalancing:RegisterTargets",
    "elasticloadbalancing:SetLoadBalancerPoliciesForBackendServer",
    "elasticloadbalancing:SetLoadBalancerPoliciesOfListener",
]
# Tagging a resource in the call that creates it (TagSpecifications) is authorized as CreateTags
# with the creating action named in ``ec2:CreateAction``.
TAG_ON_CREATE = ["CreateSecurityGroup", "CreateSnapshot", "CreateVolume"]
# Not granted (the earlier policy had them): cloud routes are off (``--configure-cloud-routes=
# false``) and no CNI kopsy installs (Calico IP-in-IP, Cilium and Flannel VXLAN) needs
# ec2:CreateRoute, ec2:DeleteRoute or ec2:ModifyInstanceAttribute (source/destination checks).


def _control_plane_statements(cluster: str, partition: str) -> list[dict[str, Any]]:
    """The cloud-controller-manager's and the EBS CSI driver's permissions, scoped to ``cluster``."""
    tag = T.TAG_KUBERNETES_CLUSTER
    return [
        {"Effect": "Allow", "Action": CONTROL_PLANE_ACTIONS, "Resource": "*"},
        {"Effect": "Allow", "Action": CONTROL_PLANE_TAGGED_CREATES, "Resource": "*",
         "Condition": {"StringEquals": {f"aws:RequestTag/{tag}": cluster}}},
        # A security group is created in a VPC: only the cluster's.
        {"Effect": "Allow", "Action": ["ec2:CreateSecurityGroup"], "Resource": f"arn:{partition}:ec2:*:*:vpc/*",
         "Condition": {"StringEquals": {f"aws:ResourceTag/{tag}": cluster}}},
        {"Effect": "Allow", "Action": ["ec2:CreateTags"], "Resource": "*",
         "Condition": {"StringEquals": {"ec2:CreateAction": TAG_ON_CREATE, f"aws:RequestTag/{tag}": cluster}}},
        {"Effect": "Allow", "Action": CONTROL_PLANE_SCOPED_WRITES, "Resource": "*",
         "Condition": {"StringEquals": {f"aws:ResourceTag/{tag}": cluster}}},
        # The load balancers' service-linked role, once per account, and nothing else.
        {"Effect": "Allow", "Action": ["iam:CreateServiceLinkedRole"], "Resource": "*",
         "Condition": {"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}}},
    ]


def _s3_location(state_store_url: str) -> tuple[str, str] | None:
    """(bucket, key prefix of the cluster) of an s3:// config base; None for file:// stores."""
    u = urlparse(state_store_url)
    if u.scheme != "s3":
        return None
    return u.netloc, u.path.strip("/")


def _state_store_statements(role: str, bucket: str, prefix: str, partition: str, kms_key: str) -> list[dict[str, Any]]:
    """What ``role`` may do in the state store: read its objects, and list its own prefix only.

    ``s3:ListBucket`` scoped by an ``s3:prefix`` condition makes a missing object a 404 on real
    S3 (without it, a 403), which is what the boot script tells apart; other clusters' prefixes
    stay unlisted. ``kms_key`` is the ARN of the customer key the bucket encrypts with ("" for
    none): reading needs ``kms:Decrypt`` on it, writing (control planes) ``kms:GenerateDataKey``."""
    arn = f"arn:{partition}:s3:::{bucket}/{prefix}"
    if role == "nodes":
        reads = [f"{arn}/pki/ca.crt", f"{arn}/secrets/bootstrap-token"]
    else:
        reads = [f"{arn}/pki/*", f"{arn}/secrets/*", f"{arn}/config", f"{arn}/instancegroup/*", f"{arn}/addons/*",
                 f"{arn}/bootstrap/*"]
    out: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": reads},
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:{partition}:s3:::{bucket}"],
            "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}},
        },
    ]
    if role == "nodes":  # nodes do not list the etcd backups either (an explicit Deny wins over the Allow above)
        out.append({"Effect": "Deny", "Action": ["s3:ListBucket"], "Resource": [f"arn:{partition}:s3:::{bucket}"],
                    "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/{ETCD_BACKUP_PREFIX.rstrip('/')}",
                                                                f"{prefix}/{ETCD_BACKUP_PREFIX}*"]}}})
    else:
        out.append({"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": [f"{arn}/secrets/bootstrap-token"]})
        # etcd snapshots hold every Secret: only control planes, only their own cluster's prefix
        # (listing it is the s3:prefix-scoped ListBucket above). Delete is for the retention prune.
        out.append({"Effect": "Allow", "Action": ETCD_BACKUP_ACTIONS, "Resource": [f"{arn}/{ETCD_BACKUP_PREFIX}*"]})
    if kms_key:
        actions = ["kms:Decrypt"] if role == "nodes" else ["kms:Decrypt", "kms:GenerateDataKey"]
        out.append({"Effect": "Allow", "Action": actions, "Resource": [kms_key]})
    return out


def policy_document(
    role: str, state_store_url: str, partition: str = "aws", cluster: str = "", kms_key: str = ""
) -> dict[str, Any]:
    """The inline policy of ``role`` ('control-plane' or 'nodes'), least privilege (docs/bootstrap.md, "What is fetched from where").

    ``cluster`` (default: the last part of the state-store URL, which is the cluster's prefix)
    scopes the control plane's writes (what the cloud-controller-manager and the EBS CSI driver
    do) to resources, and creates to requests, tagged ``KubernetesCluster=<cluster>``.
    ``kms_key`` is the ARN of the customer KMS key the state bucket encrypts with, if any
    (``kopsy.cloud.aws.bucketkms``)."""
    statements: list[dict[str, Any]] = []
    loc = _s3_location(state_store_url)
    if role == "nodes":
        statements.append({"Effect": "Allow", "Action": NODE_ACTIONS, "Resource": "*"})
        statements.append({"Effect": "Allow", "Action": ECR_READ, "Resource": "*"})
    else:
        statements += _control_plane_statements(cluster or state_store_url.rstrip("/").rsplit("/", 1)[-1], partition)
        statements.append({"Effect": "Allow", "Action": ECR_READ, "Resource": "*"})
    if loc:
        statements += _state_store_statements(role, loc[0], loc[1], partition, kms_key)
    return {"Version": "2012-10-17", "Statement": statements}


def _doc(value: Any) -> Any:
    """IAM documents come back URL-decoded as dicts from boto3, or as JSON strings from some endpoints."""
    if isinstance(value, str):
        from urllib.parse import unquote

        return json.loads(unquote(value))
    return value


def _read(facts: Facts, name: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None, Any]:
    """(role, instance profile, inline policy document) named ``name``, each None if absent.

    The profile's answer embeds its role (trust policy included), so a steady-state run reads
    the profile and the policy at once and needs no GetRole: 2 calls per role, not 3, in one
    round trip."""
    iam = facts.clients.client("iam")

    def get(call: Callable[[], Any]) -> Any:
        return tolerate(call, "NoSuchEntity")  # None when absent

    def fetch() -> tuple[dict[str, Any] | None, dict[str, Any] | None, Any]:
        with aws_errors(f"reading IAM role and instance profile {name}"):
            reads = [
                lambda: iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"],
                lambda: iam.get_role_policy(RoleName=name, PolicyName=name),
            ]
            if not facts.detail:
                # Delete must find a role whatever else is left of it (a run killed right after
                # CreateRole leaves nothing else), so it asks GetRole too, in the same round trip.
                reads.append(lambda: iam.get_role(RoleName=name)["Role"])
            profile, pol, *rest = parallel(get, reads)
            role = rest[0] if rest else next((r for r in (profile or {}).get("Roles", []) if r["RoleName"] == name), None)
            if role is not None and "Tags" not in role and not rest:
                # A profile lists its role without the role's tags: trust the profile's ownership
                # for it only when the profile is ours (kopsy adds only its own roles). A role from
                # GetRole has its own tags, or none.
                if profile is not None and T.is_owned(T.to_dict(profile.get("Tags")), facts.cluster):
                    role = {**role, "Tags": profile.get("Tags")}
                else:
                    role = None
            if role is None and not rest and (profile is not None or pol is not None):
                # The role exists (its policy or profile does) but the profile did not vouch for it.
                # With neither, it almost never does (a fresh cluster): plan a create, which adopts a
                # role left by a run that crashed between CreateRole and PutRolePolicy. Asking GetRole
                # here would put a second round trip before every first apply.
                role = get(lambda: iam.get_role(RoleName=name)["Role"])
        return role, profile, (_doc(pol["PolicyDocument"]) if pol else None)

    return facts.once(f"iam.{name}", fetch)  # type: ignore[no-any-return]


def _with_tags(entity: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    return entity, T.to_dict(entity.get("Tags"))


class IAMRole(Kind):
    kind = "IAMRole"
    service = "iam"
    id_field = "RoleName"
    permissions = (
        "iam:GetRole",
        "iam:GetRolePolicy",
        "iam:CreateRole",
        "iam:TagRole",
        "iam:PutRolePolicy",
        "iam:UpdateAssumeRolePolicy",
        "iam:ListRolePolicies",
        "iam:DeleteRolePolicy",
        "iam:ListInstanceProfilesForRole",
        "iam:RemoveRoleFromInstanceProfile",
        "iam:DeleteRole",
        # the policy grants kms:Decrypt on the state bucket's key: update reads which key it is
        "s3:GetEncryptionConfiguration",
        "kms:DescribeKey",
    )

    def find(self, facts: Facts) -> list[Actual]:
        def one(name: str) -> Actual | None:
            r, _, policy = _read(facts, name)
            if r is None:
                return None
            tags = T.to_dict(r.get("Tags"))
            if not T.is_owned(tags, facts.cluster):
                return None  # same name, not ours: never touch it
            return Actual(
                self.kind,
                name,
                name,
                fields={"assume_role_policy": _doc(r["AssumeRolePolicyDocument"]), "policy": policy},
                outputs={"id": name, "arn": r["Arn"]},
                tags=tags,
            )

        return [a for a in parallel(one, [role_name(r, facts.cluster) for r in ROLES]) if a is not None]

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        iam = ctx.clients.client("iam")
        with aws_errors(f"creating IAM role {want.name}"):
            # A role left by a run that crashed between CreateRole and PutRolePolicy is adopted
            # (if ours), and its trust policy made right.
            r, adopted = create_or_adopt(
                lambda: iam.create_role(
                    RoleName=want.name,
                    AssumeRolePolicyDocument=json.dumps(fields["assume_role_policy"]),
                    Tags=T.to_list(want.tags),
                )["Role"],
                ("EntityAlreadyExists",), lambda: _with_tags(iam.get_role(RoleName=want.name)["Role"]),
                what="IAM role", name=want.name, cluster=ctx.cluster,
            )
            if adopted:
                if _doc(r.get("AssumeRolePolicyDocument")) != fields["assume_role_policy"]:
                    iam.update_assume_role_policy(RoleName=want.name, PolicyDocument=json.dumps(fields["assume_role_policy"]))
            iam.put_role_policy(RoleName=want.name, PolicyName=want.name, PolicyDocument=json.dumps(fields["policy"]))
        return {"id": want.name, "arn": r["Arn"]}

    def modify(self, ctx: ApplyContext, want: Desired, have: Actual, fields: dict[str, Any], changed: set[str]) -> dict[str, Any]:
        iam = ctx.clients.client("iam")
        with aws_errors(f"updating IAM role {want.name}"):
            if "assume_role_policy" in changed:
                iam.update_assume_role_policy(RoleName=want.name, PolicyDocument=json.dumps(fields["assume_role_policy"]))
            if "policy" in changed:
                iam.put_role_policy(RoleName=want.name, PolicyName=want.name, PolicyDocument=json.dumps(fields["policy"]))
        return dict(have.outputs)

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        """Inline policy deleted, then the role (its profile's delete has taken it out already).

        kopsy's own policy shares the role's name, so it goes without listing first (one round
        trip less); only a role that still has something else attached (DeleteConflict: a policy
        or profile someone added) is listed and emptied."""
        iam = ctx.clients.client("iam")
        name = have.id

        def gone(call: Callable[[], Any]) -> None:
            tolerate(call, "NoSuchEntity")

        with aws_errors(f"deleting IAM role {have.name}"):
            gone(lambda: iam.delete_role_policy(RoleName=name, PolicyName=name))
            try:
                gone(lambda: iam.delete_role(RoleName=name))
                return
            except Exception as exc:
                if error_code(exc) != "DeleteConflict":
                    raise
            policies, profiles = parallel(lambda f: f(), [
                lambda: describe_all(iam, "list_role_policies", "PolicyNames", RoleName=name),
                lambda: describe_all(iam, "list_instance_profiles_for_role", "InstanceProfiles", RoleName=name),
            ])
            parallel(lambda f: f(), [
                *(lambda p=p: gone(lambda: iam.delete_role_policy(RoleName=name, PolicyName=p)) for p in policies),
                *(lambda n=prof["InstanceProfileName"]: gone(lambda: iam.remove_role_from_instance_profile(
                    InstanceProfileName=n, RoleName=name)) for prof in profiles),
            ])
            gone(lambda: iam.delete_role(RoleName=name))


class IAMInstanceProfile(Kind):
    kind = "IAMInstanceProfile"
    service = "iam"
    id_field = "InstanceProfileName"
    depends_on = ("IAMRole",)
    late_fields = ("role",)
    permissions = (
        "iam:GetInstanceProfile",
        "iam:CreateInstanceProfile",
        "iam:TagInstanceProfile",
        "iam:AddRoleToInstanceProfile",
        "iam:RemoveRoleFromInstanceProfile",
        "iam:DeleteInstanceProfile",
        "iam:PassRole",
    )

    def find(self, facts: Facts) -> list[Actual]:
        def one(name: str) -> Actual | None:
            _, p, _ = _read(facts, name)
            if p is None:
                return None
            tags = T.to_dict(p.get("Tags"))
            if not T.is_owned(tags, facts.cluster):
                return None
            roles = sorted(r["RoleName"] for r in p.get("Roles", []))
            return Actual(
                self.kind,
                name,
                name,
                fields={"role": roles[0] if len(roles) == 1 else tuple(roles)},
                outputs={"id": name, "arn": p["Arn"], "roles": tuple(roles)},
                tags=tags,
            )

        return [a for a in parallel(one, [role_name(r, facts.cluster) for r in ROLES]) if a is not None]

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        iam = ctx.clients.client("iam")
        with aws_errors(f"creating IAM instance profile {want.name}"):
            p, _ = create_or_adopt(
                lambda: iam.create_instance_profile(InstanceProfileName=want.name, Tags=T.to_list(want.tags))["InstanceProfile"],
                ("EntityAlreadyExists",),
                lambda: _with_tags(iam.get_instance_profile(InstanceProfileName=want.name)["InstanceProfile"]),
                what="IAM instance profile", name=want.name, cluster=ctx.cluster,
            )
        return {"id": want.name, "arn": p["Arn"], "roles": tuple(r["RoleName"] for r in p.get("Roles", []))}

    def finish(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any], created: dict[str, Any]) -> dict[str, Any]:
        """The role goes in once it exists (it is created alongside the profile)."""
        return self.modify(ctx, want, Actual(self.kind, want.name, want.name, outputs=created), fields, {"role"})

    def modify(self, ctx: ApplyContext, want: Desired, have: Actual, fields: dict[str, Any], changed: set[str]) -> dict[str, Any]:
        iam = ctx.clients.client("iam")
        with aws_errors(f"updating IAM instance profile {want.name}"):
            for r in have.outputs.get("roles", ()):
                if r != fields["role"]:
                    iam.remove_role_from_instance_profile(InstanceProfileName=want.name, RoleName=r)
            if fields["role"] not in have.outputs.get("roles", ()):
                self._add_role(iam, want.name, fields["role"])
        return {**have.outputs, "roles": (fields["role"],)}

    @staticmethod
    def _add_role(iam: Any, profile: str, role: str) -> None:
        """A profile holds one role: a repeated add (first answer lost) fails with LimitExceeded."""
        try:
            iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=role)
        except Exception as exc:
            if error_code(exc) != "LimitExceeded":
                raise
            roles = [r["RoleName"] for r in iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"]["Roles"]]
            if roles != [role]:
                raise

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        """Emptied (roles from the facts just read), then deleted as a follow-up: the role's
        delete needs it out of the profile, not the profile gone."""
        iam = ctx.clients.client("iam")
        with aws_errors(f"deleting IAM instance profile {have.name}"):
            roles = have.outputs.get("roles")
            if roles is None:
                p = tolerate(lambda: iam.get_instance_profile(InstanceProfileName=have.id)["InstanceProfile"], "NoSuchEntity")
                if p is None:
                    return  # gone already
                roles = [r["RoleName"] for r in p.get("Roles", [])]
            for r in roles:
                tolerate(partial(iam.remove_role_from_instance_profile, InstanceProfileName=have.id, RoleName=r),
                         "NoSuchEntity", "LimitExceeded")

        def delete_profile() -> None:
            with aws_errors(f"deleting IAM instance profile {have.name}"):
                tolerate(lambda: iam.delete_instance_profile(InstanceProfileName=have.id), "NoSuchEntity")

        ctx.follow_up(have.key, delete_profile)

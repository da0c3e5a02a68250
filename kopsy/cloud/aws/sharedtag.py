"""The cluster's ``kubernetes.io/cluster/<name>=shared`` tag on resources it uses but does not
own: an existing VPC and the subnets a user named (``spec.networkID``, ``subnets[].id``).

The tag is how Kubernetes' controllers (the cloud-controller-manager, the load balancer
controller) recognise the cluster's subnets; it is the one thing kopsy writes on them. Each tag
is a resource of this kind, named ``shared:<id>``: ``update`` adds it, ``delete`` takes it off
again and leaves the VPC or subnet itself alone (no other kind ever finds them: they carry no
``owned`` tag).
"""

from __future__ import annotations

from typing import Any

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.ec2util import describe_all
from kopsy.cloud.aws.idempotency import tolerate
from kopsy.cloud.aws.kind import Kind
from kopsy.cloud.aws.names import shared_tag_name
from kopsy.cloud.aws.session import aws_errors
from kopsy.reconcile.values import Actual, ApplyContext, Desired, Facts

SHARED = "shared"


class SharedTag(Kind):
    kind = "SharedTag"
    service = "ec2"
    id_field = "ResourceId"
    immutable = ("resource",)
    permissions = ("ec2:DescribeTags", "ec2:CreateTags", "ec2:DeleteTags")

    def find(self, facts: Facts) -> list[Actual]:
        with aws_errors("reading the cluster's shared tags"):
            found = describe_all(facts.clients.client("ec2"), "describe_tags", "Tags", Filters=[
                {"Name": "key", "Values": [T.ownership_key(facts.cluster)]}, {"Name": "value", "Values": [SHARED]}])
        out = []
        for t in found:
            if t.get("Value") != SHARED or t.get("Key") != T.ownership_key(facts.cluster):
                continue
            rid = str(t["ResourceId"])
            # The tag is kopsy's own even though the resource is not: it carries kopsy's mark here
            # so that update manages it (and only it) and delete takes it off.
            out.append(Actual(self.kind, shared_tag_name(rid), rid, fields={"resource": rid}, outputs={"id": rid},
                              tags=T.cluster_tags(facts.cluster, shared_tag_name(rid))))
        return out

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        with aws_errors(f"tagging {fields['resource']} shared"):
            ctx.clients.client("ec2").create_tags(Resources=[fields["resource"]],
                                                  Tags=[{"Key": T.ownership_key(ctx.cluster), "Value": SHARED}])
        return {"id": fields["resource"]}

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        with aws_errors(f"removing the shared tag from {have.id}"):
            tolerate(lambda: ctx.clients.client("ec2").delete_tags(
                Resources=[have.id], Tags=[{"Key": T.ownership_key(ctx.cluster), "Value": SHARED}]),
                "InvalidVpcID.NotFound", "InvalidSubnetID.NotFound")

"""What Kubernetes' own AWS controllers create for the cluster, which kopsy never creates and
only sweeps on ``delete`` (``managed = False``): classic ELBs, the cloud-controller-manager's
answer to a ``type: LoadBalancer`` Service without the NLB annotation, and EBS snapshots, the
EBS CSI driver's VolumeSnapshots. (Their NLBs, target groups and ``k8s-elb-`` security groups
are found by the load balancer and security group kinds; their volumes by ``Volume``.)

Both schemes count: the ownership tag, and ``KubernetesCluster=<name>``, which the controllers
put on what they make when the instances carry it, and the EBS CSI driver's ``--extra-tags``.
"""

from __future__ import annotations

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.ec2util import describe_all, name_of, owned_ids
from kopsy.cloud.aws.idempotency import tolerate
from kopsy.cloud.aws.kind import Kind
from kopsy.cloud.aws.session import aws_errors
from kopsy.reconcile.values import Actual, ApplyContext, Facts

TAG_BATCH = 20  # the classic ELB DescribeTags takes at most 20 names


class ClassicLoadBalancer(Kind):
    kind = "ClassicLoadBalancer"
    service = "elasticloadbalancing"
    id_field = "LoadBalancerName"
    managed = False
    depends_on = ("Subnet", "SecurityGroup")
    permissions = (
        "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:DescribeTags",
        "elasticloadbalancing:DeleteLoadBalancer",
    )

    def find(self, facts: Facts) -> list[Actual]:
        elb = facts.clients.client("elb")
        with aws_errors("reading classic load balancers"):
            lbs = describe_all(elb, "describe_load_balancers", "LoadBalancerDescriptions")
            names = [lb["LoadBalancerName"] for lb in lbs]
            tags: dict[str, dict[str, str]] = {}
            for start in range(0, len(names), TAG_BATCH):
                for d in elb.describe_tags(LoadBalancerNames=names[start : start + TAG_BATCH]).get("TagDescriptions", []):
                    tags[d["LoadBalancerName"]] = T.to_dict(d.get("Tags"))
        ours = T.belongs if facts.sweep else T.is_owned
        return [
            Actual(
                self.kind,
                tags[lb["LoadBalancerName"]].get("Name", lb["LoadBalancerName"]),
                lb["LoadBalancerName"],
                fields={"vpc": lb.get("VPCId"), "subnets": frozenset(lb.get("Subnets", [])),
                        "security_groups": frozenset(lb.get("SecurityGroups", []))},
                outputs={"id": lb["LoadBalancerName"]},
                tags=tags[lb["LoadBalancerName"]],
            )
            for lb in lbs
            if ours(tags.get(lb["LoadBalancerName"], {}), facts.cluster)
        ]

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        with aws_errors(f"deleting classic load balancer {have.id}"):
            tolerate(lambda: ctx.clients.client("elb").delete_load_balancer(LoadBalancerName=have.id), "LoadBalancerNotFound")


class Snapshot(Kind):
    kind = "Snapshot"
    service = "ec2"
    id_field = "SnapshotId"
    managed = False
    permissions = ("ec2:DescribeTags", "ec2:DescribeSnapshots", "ec2:DeleteSnapshot")

    def find(self, facts: Facts) -> list[Actual]:
        with aws_errors("reading snapshots"):
            snaps = owned_ids(facts, "snapshot", "describe_snapshots", "Snapshots", "snapshot-id")
        return [
            Actual(self.kind, name_of(s, s["SnapshotId"]), s["SnapshotId"], fields={"volume": s.get("VolumeId"), "state": s.get("State")},
                   outputs={"id": s["SnapshotId"]}, tags=T.to_dict(s.get("Tags")))
            for s in snaps
        ]

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        with aws_errors(f"deleting snapshot {have.id}"):
            tolerate(lambda: ctx.clients.client("ec2").delete_snapshot(SnapshotId=have.id), "InvalidSnapshot.NotFound")


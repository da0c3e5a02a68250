"""What Auto Scaling and load balancers create on the cluster's behalf: instances, volumes and
network interfaces. kopsy never creates these itself (``managed = False``); they are discovered
by the propagated ownership tag so that ``delete`` can wait for them and clean up leftovers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.ec2util import describe_all, name_of, owned_ids
from kopsy.cloud.aws.groups import fetch_instances, parse_instance
from kopsy.cloud.aws.idempotency import tolerate
from kopsy.cloud.aws.kind import Kind
from kopsy.cloud.aws.retry import NotYet, wait_until
from kopsy.cloud.aws.session import aws_errors, error_code
from kopsy.reconcile.values import Actual, ApplyContext, Facts

LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


class Instance(Kind):
    kind = "Instance"
    service = "ec2"
    id_field = "InstanceId"
    managed = False
    batch_delete = True
    depends_on = ("Subnet", "SecurityGroup", "IAMInstanceProfile")
    # A profile can be deleted under a running instance (which is going away anyway).
    soft_deps = ("IAMInstanceProfile",)
    permissions = ("ec2:DescribeInstances", "ec2:TerminateInstances")

    def find(self, facts: Facts) -> list[Actual]:
        ec2 = facts.clients.client("ec2")
        with aws_errors("reading instances"):
            raw = facts.once(
                "ec2.describe_instances", lambda: fetch_instances(ec2, T.owner_filter(facts.cluster), LIVE_STATES)
            )
        return [
            Actual(
                self.kind,
                i.tags.get("Name") or i.id,
                i.id,
                fields={"state": i.state},
                outputs={"id": i.id},
                tags=dict(i.tags),
            )
            for i in map(parse_instance, raw)
        ]

    def goes_with(self, have: Actual, deleting: Mapping[str, Actual]) -> bool:
        """A member of an Auto Scaling group being deleted: its ``ForceDelete`` terminates it, and
        the group is only gone once its members are, so what waits for the group waits for them.
        A TerminateInstances of its own, beside the group's deletion, would have the group replace
        the instance in the instant before the deletion starts (moto, racing, launched such
        replacements into the deleted group, where they ran on). Instances outside any group
        being deleted (a detached one, or one whose group went in an interrupted delete) are
        terminated here."""
        group = deleting.get(have.tags.get(T.TAG_ASG_NAME, ""))
        return group is not None and group.kind == "AutoScalingGroup" and have.id in group.outputs.get("instances", ())

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        self.delete_many(ctx, [have])

    def delete_many(self, ctx: ApplyContext, haves: list[Actual]) -> None:
        """One TerminateInstances per 1000 instances, then one bounded wait for all of them
        (never a call per instance: a 300-node cluster costs two calls, not 600)."""
        ec2 = ctx.clients.client("ec2")
        ids = [h.id for h in haves]
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            with aws_errors(f"terminating {len(chunk)} instance(s)"):
                try:
                    states = ec2.terminate_instances(InstanceIds=chunk).get("TerminatingInstances", [])
                except Exception as exc:
                    if error_code(exc) != "InvalidInstanceID.NotFound":
                        raise
                    live = _live(ec2, chunk)  # some were gone already: terminate the rest
                    states = ec2.terminate_instances(InstanceIds=live).get("TerminatingInstances", []) if live else []
                if all(st.get("CurrentState", {}).get("Name") == "terminated" for st in states):
                    continue  # nothing left to wait for

                def terminated(chunk: list[str] = chunk) -> None:
                    # Only the instances not terminated yet come back: a poll of 300 that are done
                    # answers with nothing, not with 300 descriptions.
                    live = _live(ec2, chunk)
                    if live:
                        raise NotYet(f"{len(live)} instance(s) still terminating ({', '.join(live[:3])}...)")

                wait_until(terminated, timeout=ctx.retry_timeout, first_delay=5.0)


BATCH = 1000  # TerminateInstances' limit


def _live(ec2: Any, ids: list[str]) -> list[str]:
    out = describe_all(ec2, "describe_instances", "Reservations", Filters=[{"Name": "instance-id", "Values": ids},
                                                                          {"Name": "instance-state-name", "Values": LIVE_STATES}])
    return [i["InstanceId"] for r in out for i in r.get("Instances", [])]


class Volume(Kind):
    kind = "Volume"
    service = "ec2"
    id_field = "VolumeId"
    managed = False
    delete_after = ("Instance", "AutoScalingGroup")  # a group's deletion terminates its members
    permissions = ("ec2:DescribeTags", "ec2:DescribeVolumes", "ec2:DeleteVolume")

    def find(self, facts: Facts) -> list[Actual]:
        with aws_errors("reading volumes"):
            vols = owned_ids(facts, "volume", "describe_volumes", "Volumes", "volume-id")
        return [
            Actual(self.kind, name_of(v, v["VolumeId"]), v["VolumeId"], fields={"state": v.get("State")}, outputs={"id": v["VolumeId"]}, tags=T.to_dict(v.get("Tags")))
            for v in vols
            if v.get("State") != "deleting"
        ]

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        with aws_errors(f"deleting volume {have.id}"):
            tolerate(lambda: ctx.clients.client("ec2").delete_volume(VolumeId=have.id), "InvalidVolume.NotFound")


class NetworkInterface(Kind):
    kind = "NetworkInterface"
    service = "ec2"
    id_field = "NetworkInterfaceId"
    managed = False
    delete_after = ("Instance", "AutoScalingGroup", "LoadBalancer")
    permissions = ("ec2:DescribeTags", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface")

    def find(self, facts: Facts) -> list[Actual]:
        with aws_errors("reading network interfaces"):
            enis = owned_ids(facts, "network-interface", "describe_network_interfaces", "NetworkInterfaces", "network-interface-id")
        return [
            Actual(
                self.kind,
                name_of(n, n["NetworkInterfaceId"]),
                n["NetworkInterfaceId"],
                fields={"status": n.get("Status")},
                outputs={"id": n["NetworkInterfaceId"]},
                tags=T.to_dict(n.get("TagSet") or n.get("Tags")),
            )
            for n in enis
        ]

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        with aws_errors(f"deleting network interface {have.id}"):
            tolerate(lambda: ctx.clients.client("ec2").delete_network_interface(NetworkInterfaceId=have.id),
                     "InvalidNetworkInterfaceID.NotFound")

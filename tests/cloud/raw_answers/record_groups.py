"""Re-record ``groups/describe_*.json``: the raw answers ``kopsy.cloud.aws.groups`` parses.

Run from the repository root: ``.venv/bin/python tests/cloud/raw_answers/record_groups.py``.
It makes, in in-process moto, two groups as kopsy makes them (tags propagated at launch, an
explicit launch-template version; the control plane behind a target group, the nodes group
through a mixed-instances policy), puts one node in Standby and stops it (its group lists it,
the running-instances read does not), marks one Unhealthy and one protected from scale-in, and
writes the botocore answers as JSON (timestamps as ISO strings, as ``aws --output json``
prints them). Then update ``expected.json`` and check it against the new answers field by
field: it is the parser's contract, not a snapshot of whatever the parser says.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent / "groups"
CLUSTER = "raw.example.com"


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value))


def record() -> None:
    import boto3
    from moto import mock_aws

    from kopsy.cloud.aws import tags as T

    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    with mock_aws():
        ec2, asg = boto3.client("ec2"), boto3.client("autoscaling")
        vpc = ec2.create_vpc(CidrBlock="172.20.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"172.20.{n}.0/24", AvailabilityZone=f"us-east-1{z}")["Subnet"]["SubnetId"]
                   for n, z in ((32, "a"), (64, "b"))]
        for subnet in subnets:
            ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
        sg = ec2.create_security_group(GroupName=f"nodes.{CLUSTER}", Description="nodes", VpcId=vpc)["GroupId"]
        tg = boto3.client("elbv2").create_target_group(
            Name="tcp-raw-example-com", Protocol="TCP", Port=6443, VpcId=vpc, TargetType="instance",
        )["TargetGroups"][0]["TargetGroupArn"]
        image = ec2.describe_images(Owners=["099720109477"])["Images"][0]["ImageId"]
        ec2.import_key_pair(KeyName=f"kubernetes.{CLUSTER}-aa", PublicKeyMaterial=(
            b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDQejHZELcqicyXSsZf72ax36KTJF6WbjO/zRkEirZPV raw"))
        for ig, role, count, mixed in (("control-plane-us-east-1a", "ControlPlane", 1, False), ("nodes", "Node", 3, True)):
            name = f"{ig}.{CLUSTER}"
            tags = T.cluster_tags(CLUSTER, name, role, **{T.TAG_INSTANCE_GROUP: ig})
            ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={
                "ImageId": image, "InstanceType": "t3.medium", "KeyName": f"kubernetes.{CLUSTER}-aa",
                "NetworkInterfaces": [{"DeviceIndex": 0, "AssociatePublicIpAddress": True, "Groups": [sg]}],
            })
            ec2.create_launch_template_version(LaunchTemplateName=name, SourceVersion="1", LaunchTemplateData={"InstanceType": "t3.large"})
            spec = {"LaunchTemplateName": name, "Version": "2"}
            placement: dict[str, Any] = (
                {"MixedInstancesPolicy": {"LaunchTemplate": {"LaunchTemplateSpecification": spec}}} if mixed else {"LaunchTemplate": spec}
            )
            asg.create_auto_scaling_group(
                AutoScalingGroupName=name, MinSize=count, MaxSize=count + 2, DesiredCapacity=count,
                VPCZoneIdentifier=",".join(subnets if mixed else subnets[:1]),
                TargetGroupARNs=[] if mixed else [tg],
                Tags=[{"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v, "PropagateAtLaunch": True}
                      for k, v in sorted(tags.items())],
                **placement,
            )
        nodes = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[f"nodes.{CLUSTER}"])["AutoScalingGroups"][0]["Instances"]
        ids = sorted(i["InstanceId"] for i in nodes)
        asg.enter_standby(AutoScalingGroupName=f"nodes.{CLUSTER}", InstanceIds=[ids[0]], ShouldDecrementDesiredCapacity=False)
        ec2.stop_instances(InstanceIds=[ids[0]])  # still listed by its group, no longer running
        asg.set_instance_health(InstanceId=ids[1], HealthStatus="Unhealthy")
        asg.set_instance_protection(AutoScalingGroupName=f"nodes.{CLUSTER}", InstanceIds=[ids[2]], ProtectedFromScaleIn=True)

        flt = T.cluster_filter(CLUSTER)
        groups = asg.describe_auto_scaling_groups(Filters=flt)
        instances = ec2.describe_instances(Filters=[*flt, {"Name": "instance-state-name", "Values": ["pending", "running"]}])
    for name, answer in (("describe_auto_scaling_groups", groups), ("describe_instances", instances)):
        answer.pop("ResponseMetadata", None)
        (HERE / f"{name}.json").write_text(json.dumps(answer, indent=1, sort_keys=True, default=_json) + "\n")


if __name__ == "__main__":
    record()

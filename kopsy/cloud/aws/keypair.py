"""The EC2 key pair imported from the cluster's admin SSH public key.

Named like kops, ``kubernetes.<cluster>-<md5 fingerprint>`` (``names.key_pair_name``): a new key gets
a new name, so a key rotation is a create plus a delete of the old pair rather than an in-place
change EC2 cannot do.
"""

from __future__ import annotations

from typing import Any

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.ec2util import owned
from kopsy.cloud.aws.idempotency import create_or_adopt, tolerate
from kopsy.cloud.aws.kind import Kind
from kopsy.cloud.aws.session import aws_errors
from kopsy.reconcile.values import Actual, ApplyContext, Desired, Facts


class KeyPair(Kind):
    kind = "KeyPair"
    service = "ec2"
    id_field = "KeyName"
    create_only = ("public_key",)  # the name carries its fingerprint
    permissions = ("ec2:DescribeKeyPairs", "ec2:ImportKeyPair", "ec2:CreateTags", "ec2:DeleteKeyPair")

    def find(self, facts: Facts) -> list[Actual]:
        with aws_errors("reading key pairs"):
            pairs = owned(facts, "describe_key_pairs", "KeyPairs")
        return [
            Actual(self.kind, k["KeyName"], k["KeyName"], fields={}, outputs={"id": k["KeyName"]}, tags=T.to_dict(k.get("Tags")))
            for k in pairs
        ]

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        ec2 = ctx.clients.client("ec2")
        with aws_errors(f"importing key pair {want.name}"):
            # The name carries the key's fingerprint, so an existing pair of that name holds the
            # same key; it is still adopted only if it is ours.
            def existing() -> tuple[None, dict[str, str]]:
                pair = ec2.describe_key_pairs(KeyNames=[want.name])["KeyPairs"][0]
                return None, T.to_dict(pair.get("Tags"))

            create_or_adopt(
                lambda: ec2.import_key_pair(
                    KeyName=want.name,
                    PublicKeyMaterial=fields["public_key"].encode(),
                    TagSpecifications=T.tag_spec("key-pair", want.tags),
                ),
                ("InvalidKeyPair.Duplicate",), existing, what="key pair", name=want.name, cluster=ctx.cluster,
            )
        return {"id": want.name}

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        with aws_errors(f"deleting key pair {have.id}"):
            tolerate(lambda: ctx.clients.client("ec2").delete_key_pair(KeyName=have.id), "InvalidKeyPair.NotFound")

"""validate finds the cluster's bastion by its tags (a running ``Bastion`` instance with a
public IP) and routes through it, unless ``--bastion`` named one, which wins."""

from __future__ import annotations

from pathlib import Path

from kopsy.cloud.aws.groups import InstanceFacts
from kopsy.remote import SSHConnector, SSHSettings
from kopsy.validate.engine import find_bastion


def test_the_running_bastion_with_a_public_ip_is_found() -> None:
    instances = [
        InstanceFacts("i-2", role="Bastion", state="running", public_ip="198.51.100.2"),
        InstanceFacts("i-1", role="Bastion", state="terminated", public_ip="198.51.100.1"),
        InstanceFacts("i-0", role="Bastion", state="running"),  # no public IP: no way in through it
        InstanceFacts("i-3", role="Node", state="running", public_ip="198.51.100.3"),
    ]
    found = find_bastion(instances)
    assert found is not None and found.id == "i-2"
    assert find_bastion([i for i in instances if i.id != "i-2"]) is None


def test_an_explicit_bastion_wins_over_the_one_found(tmp_path: Path) -> None:
    given = SSHConnector(SSHSettings(known_hosts=tmp_path / "kh", bastion="admin@jump.example.com"))
    assert not given.use_bastion("198.51.100.2") and given.settings.bastion == "admin@jump.example.com"
    none = SSHConnector(SSHSettings(known_hosts=tmp_path / "kh"))
    assert none.use_bastion("198.51.100.2") and none.settings.bastion == "198.51.100.2"

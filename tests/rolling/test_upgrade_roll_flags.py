"""``upgrade --roll`` takes rolling-update's roll flags from one declaration, and the dry-run
step list names the flags the user gave."""

from __future__ import annotations

import click

from kopsy.cli import rolling, upgrade
from kopsy.cli.rolling import RollFlags


def _params(command: click.Command) -> dict[str, click.Parameter]:
    return {p.name: p for p in command.params if p.name}


def test_the_roll_flags_are_the_same_in_both_commands() -> None:
    roll, up = _params(rolling.command), _params(upgrade.command)
    shared = set(RollFlags.__dataclass_fields__)
    assert shared <= set(roll) and shared <= set(up)
    for name in shared:
        assert (roll[name].opts, roll[name].default, getattr(roll[name], "help", None)) == \
               (up[name].opts, up[name].default, getattr(up[name], "help", None)), name
    assert not {"instance_groups", "instance_group_roles", "force", "cloudonly"} & set(up)


def test_the_steps_pass_the_given_roll_flags_on() -> None:
    steps = upgrade.steps("c.example.com", RollFlags(max_surge="25%", interval=2.0, fail_on_drain_error=False,
                                                     ssh_key="/k"))
    assert steps[1] == ("kopsy rolling-update cluster c.example.com --yes --instance-group-roles ControlPlane "
                        "--max-surge=25% --interval=2s --fail-on-drain-error=false")
    assert steps[3].endswith("--instance-group-roles Node,Bastion --max-surge=25% --interval=2s --fail-on-drain-error=false")
    assert steps[4] == "kopsy validate cluster c.example.com --wait 900s --count 2"

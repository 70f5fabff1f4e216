"""The actuator carries out every kind of planned action: its handler table covers the ``Action`` union,
so an action added to the planner without a handler fails here instead of being silently dropped."""

from __future__ import annotations

import typing
from pathlib import Path

from emulator.supervisor.actions import Action
from tests.supervisor.world import World


async def test_every_action_type_has_a_handler(tmp_path: Path) -> None:
    world = await World.create(tmp_path / "data")
    try:
        planned = set(typing.get_args(Action))
        assert len(planned) >= 14
        handled = world.sup.actuator.handled()
        assert planned - handled == set(), f"actions without a handler: {planned - handled}"
        assert handled - planned == set(), f"handlers for types outside the Action union: {handled - planned}"
    finally:
        await world.sup.stop()
        world.core.close()

"""The reconcile loop does not lose a wake-up that arrives while it is busy.

A change (a job queued, an endpoint created) wakes the loop through ``hub.changed()``. A change that
happened while a tick was running (awaiting the container listing) or during the short pause after
it used to find no one waiting, and the loop then slept its whole ``reconcile_interval_s``: found by
``python -m bench`` as cold starts 300 ms slower one time in two (the job arrived during the tick
that the endpoint's creation had started, and waited for the next 0.25 s tick).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from emulator.runtime.fake import FakeRuntime
from tests.supervisor.world import World

INTERVAL_S = 5.0  # long: a lost wake-up shows as a missing tick, not as a few ms


async def _started(tmp_path: Path) -> tuple[World, list[str]]:
    fake = FakeRuntime()
    world = await World.create(tmp_path, fake=fake, reconcile_interval_s=INTERVAL_S)
    listed: list[str] = []
    real_list = fake.list
    plan: dict[str, Any] = {"change_during_list": False}

    async def slow_list(labels: dict[str, str]) -> Any:
        listed.append("list")
        await asyncio.sleep(0.05)  # a listing takes time: the tick is parked here
        if plan["change_during_list"]:
            plan["change_during_list"] = False
            world.core.hub.changed()  # e.g. a job queued while the tick waits for Docker
        return await real_list(labels)

    fake.list = slow_list  # type: ignore[method-assign]
    world.plan = plan  # type: ignore[attr-defined]
    world.sup.loop.start()
    return world, listed


async def _settle(world: World) -> int:
    """Wait until the loop is idle (no tick for a while); its tick count."""
    last = -1
    while world.sup.loop.ticks != last:
        last = world.sup.loop.ticks
        await asyncio.sleep(0.3)
    return last


async def test_a_change_during_a_tick_brings_the_next_tick_at_once(tmp_path: Path) -> None:
    world, _ = await _started(tmp_path)
    try:
        before = await _settle(world)
        world.plan["change_during_list"] = True  # type: ignore[attr-defined]
        world.sup.loop.poke()  # a tick with a fresh listing, during which the change arrives
        await asyncio.sleep(0.6)  # far less than INTERVAL_S
        assert world.sup.loop.ticks >= before + 2, "the change during the tick did not bring another tick"
    finally:
        await world.sup.loop.stop()


async def test_a_change_in_the_pause_after_a_tick_is_not_lost(tmp_path: Path) -> None:
    world, _ = await _started(tmp_path)
    try:
        before = await _settle(world)
        world.core.hub.changed()
        await asyncio.sleep(0.01)  # the tick for that change is running or pausing now
        world.core.hub.changed()
        await asyncio.sleep(0.6)
        assert world.sup.loop.ticks >= before + 2, "the second change was lost"
    finally:
        await world.sup.loop.stop()


async def test_an_idle_loop_stays_idle(tmp_path: Path) -> None:
    """Registering for changes before a tick must not make a tick wake the loop by itself."""
    world, _ = await _started(tmp_path)
    try:
        world.endpoint(workersMin=1, workersMax=1)
        before = await _settle(world)
        await asyncio.sleep(1.0)
        assert world.sup.loop.ticks <= before + 1  # at most the interval's tick (5 s) or a straggler
    finally:
        await world.sup.loop.stop()

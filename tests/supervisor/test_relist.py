"""The reconcile loop lists containers on a change the engine reported, not on every tick (#19).

While the event stream delivers, a tick reuses the last listing unless an event (a container died,
started, ...) or a finished operation poked the loop, or ``relist_interval_s`` passed; while the
stream is down, every tick lists again (the engine's state is not known any other way).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from emulator.runtime.base import ContainerInfo
from emulator.runtime.fake import FakeRuntime
from tests.supervisor.world import World


async def _world(tmp_path: Path) -> tuple[World, list[str]]:
    fake = FakeRuntime()
    world = await World.create(tmp_path, fake=fake, reconcile_interval_s=0.02, relist_interval_s=60.0)
    listed: list[str] = []
    real_list = fake.list

    async def counting_list(labels: dict[str, str]) -> list[ContainerInfo]:
        listed.append("list")
        return await real_list(labels)

    fake.list = counting_list  # type: ignore[method-assign]
    return world, listed


async def _until(predicate: object, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_ticks_reuse_the_listing_while_events_flow_and_an_event_brings_a_new_one(
    tmp_path: Path,
) -> None:
    world, listed = await _world(tmp_path)
    world.endpoint(workersMin=1)
    world.sup.loop.start()
    try:
        await _until(lambda: world.live_containers())  # its start event made the stream live
        await _until(lambda: world.sup.loop._events_live)
        await asyncio.sleep(0.2)  # operations settle
        before_ticks, before_lists = world.sup.loop.ticks, len(listed)
        for _ in range(10):
            world.core.hub.changed()  # e.g. jobs queued and finished: ticks, no listing
            await asyncio.sleep(0.03)
        assert world.sup.loop.ticks >= before_ticks + 5
        assert len(listed) == before_lists, "a tick without a container change listed the containers"

        container = world.live_containers()[0]
        world.fake.crash(container.id)  # a die event: the next tick lists and sees it
        await _until(lambda: len(listed) > before_lists)
    finally:
        await world.sup.loop.stop()


async def test_without_a_live_event_stream_every_tick_lists(tmp_path: Path) -> None:
    world, listed = await _world(tmp_path)
    world.sup.loop.start()
    try:
        await asyncio.sleep(0.05)
        assert not world.sup.loop._events_live  # nothing happened yet: not known to deliver
        before = len(listed)
        for _ in range(5):
            world.core.hub.changed()
            await asyncio.sleep(0.04)
        assert len(listed) >= before + 3
    finally:
        await world.sup.loop.stop()

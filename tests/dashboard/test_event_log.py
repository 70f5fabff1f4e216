"""The in-memory transition ring: bounded, ordered, fed by the worker registry, wakes the hub."""

from __future__ import annotations

import asyncio
from pathlib import Path

from emulator.api.events import EventLog
from emulator.clock import FakeClock
from emulator.config import Settings
from emulator.service.core import build_core
from emulator.workers.states import WorkerEvent


def test_ring_is_bounded_per_endpoint_and_keeps_the_newest(tmp_path: Path) -> None:
    core = build_core(Settings(data_dir=tmp_path, runtime="none"), FakeClock())
    try:
        log = EventLog(core, per_endpoint=5)
        worker = core.workers.create("a", 1)
        core.workers.create("b", 1)
        for _ in range(10):  # INITIALIZING -> IDLE -> RUNNING -> IDLE -> RUNNING ...
            core.workers.touch(worker)
            core.workers.jobs_assigned(worker, ["j"])
            core.workers.job_released(worker, "j")
        items = log.for_endpoint("a")
        assert len(items) == 5 and items[-1].seq == log.last_seq
        assert [t.to_state for t in items][-2:] == ["RUNNING", "IDLE"]
        assert [t.seq for t in items] == sorted(t.seq for t in items)
        assert len(log.for_endpoint("b")) == 1 and log.for_endpoint("missing") == []
        assert log.for_endpoint("a", limit=2) == items[-2:]
        assert log.for_endpoint("a", after=items[-2].seq) == items[-1:]
        # the stream's view: everything after a sequence number, across endpoints, oldest first
        assert [t.seq for t in log.since(log.last_seq - 3)] == [
            log.last_seq - 2,
            log.last_seq - 1,
            log.last_seq,
        ]
        assert log.since(log.last_seq) == []
        replay = log.replay(per_endpoint=2)
        assert {t.endpoint for t in replay} == {"a", "b"} and len(replay) == 3

        core.workers.remove(worker.id, "gone")
        last = log.for_endpoint("a")[-1]
        assert (last.from_state, last.to_state, last.reason) == ("IDLE", "REMOVED", "removed: gone")
        assert last.public()["to"] == "REMOVED"
    finally:
        core.close()


async def test_each_transition_wakes_dashboard_streams(tmp_path: Path) -> None:
    core = build_core(Settings(data_dir=tmp_path, runtime="none"), FakeClock())
    try:
        EventLog(core)
        waiter = asyncio.create_task(core.hub.wait_for_change(5))
        await asyncio.sleep(0)
        worker = core.workers.create("a", 1)
        core.workers.apply(worker, WorkerEvent.FAILED, "crashed")  # two changes, one wake-up
        assert await asyncio.wait_for(waiter, 2) is True
    finally:
        core.close()

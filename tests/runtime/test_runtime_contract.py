"""One contract, two runtimes: every test here runs against FakeRuntime and against real Docker.

The Docker run is marked ``docker`` and skipped (with the reason) only when no engine answers.
Scenarios ("sleep", "exit3", "count") run a real command on Docker and an image behaviour on the fake.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from emulator.errors import (
    ContainerNotFound,
    GpuUnavailable,
    ImageNotFound,
    InvalidInput,
    RuntimeFailure,
    RuntimeUnavailable,
)
from emulator.runtime import VOLUME_MOUNT
from emulator.runtime.base import ContainerEvent, classify_exit
from tests.runtime.harness import MISSING_IMAGE, TEST_LABEL, Harness, collect_until, poll

MIB = 1024 * 1024
GONE = "0" * 64  # an id no engine has


async def test_ping_and_image_exists(harness: Harness) -> None:
    rt = harness.runtime
    await rt.ping()
    assert await rt.image_exists(harness.spec().image)
    assert not await rt.image_exists(MISSING_IMAGE)


async def test_image_info_and_a_refused_pull(harness: Harness) -> None:
    rt = harness.runtime
    found = await rt.image_info(harness.spec().image)
    assert found is not None and found.id
    assert await rt.image_info(MISSING_IMAGE) is None
    nowhere = "127.0.0.1:9/serverless-emulator/nowhere:v1"  # nothing listens on port 9: refused at once
    with pytest.raises(RuntimeFailure) as caught:
        async for _ in rt.pull(nowhere, None):
            pass
    assert caught.value.data.get("reason")


async def test_lifecycle_create_start_inspect_list_logs_stop_remove(harness: Harness) -> None:
    rt = harness.runtime
    spec = harness.spec("sleep")
    container_id = await rt.create(spec)

    created = await rt.inspect(container_id)
    assert (created.id, created.name, created.status) == (container_id, spec.name, "created")
    assert created.labels[TEST_LABEL] == harness.labels[TEST_LABEL]
    assert created.exit_code is None and created.started_at is None

    await rt.start(container_id)
    await rt.start(container_id)  # starting a running container is harmless
    running = await harness.wait_status(container_id, "running")
    assert running.started_at is not None and running.finished_at is None

    listed = await rt.list(harness.labels)
    assert [info.id for info in listed] == [container_id]
    assert await rt.list({**harness.labels, "serverless-emulator.other": "x"}) == []

    async def said_ready() -> bool:
        return "ready" in await rt.logs(container_id, tail=10)

    await poll(said_ready, 20, lambda: "the container never printed 'ready'")

    await rt.stop(container_id, timeout_s=5)
    stopped = await harness.wait_status(container_id, "exited")
    assert stopped.exit_code == 0, classify_exit(stopped.exit_code, stopped.oom_killed)
    assert stopped.finished_at is not None and stopped.started_at is not None
    assert stopped.finished_at >= stopped.started_at
    assert [info.status for info in await rt.list(harness.labels)] == ["exited"]  # stopped ones are listed

    await rt.remove(container_id)
    with pytest.raises(ContainerNotFound):
        await rt.inspect(container_id)
    assert await rt.list(harness.labels) == []


async def test_exit_code_is_reported_and_classified(harness: Harness) -> None:
    container_id = await harness.started("exit3")
    info = await harness.wait_status(container_id, "exited")
    assert (info.exit_code, info.oom_killed) == (3, False)
    assert classify_exit(info.exit_code, info.oom_killed) == "exited with code 3"


async def test_kill_gives_137_and_is_classified_as_killed(harness: Harness) -> None:
    rt = harness.runtime
    container_id = await harness.started("sleep")
    await harness.wait_status(container_id, "running")
    await rt.kill(container_id, "SIGKILL")
    info = await harness.wait_status(container_id, "exited")
    assert info.exit_code == 137
    assert "killed" in classify_exit(info.exit_code, info.oom_killed)
    await rt.kill(container_id)  # killing a dead container is harmless
    await rt.stop(container_id)


async def test_pause_and_unpause(harness: Harness) -> None:
    rt = harness.runtime
    container_id = await harness.started("sleep")
    await harness.wait_status(container_id, "running")
    await rt.pause(container_id)
    assert (await rt.inspect(container_id)).status == "paused"
    with pytest.raises(RuntimeFailure):
        await rt.start(container_id)  # a paused container must be unpaused, not started
    await rt.unpause(container_id)
    assert (await rt.inspect(container_id)).status == "running"
    with pytest.raises(RuntimeFailure):
        await rt.unpause(container_id)


async def test_events_for_start_and_die(harness: Harness) -> None:
    rt = harness.runtime
    events = rt.events(harness.labels)  # subscribed now: nothing after this call is missed
    container_id = await harness.started("exit3")

    def is_our_die(event: ContainerEvent) -> bool:
        return event.container_id == container_id and event.action == "die"

    try:
        seen = await collect_until(events, is_our_die)
    finally:
        await events.aclose()
    ours = [event for event in seen if event.container_id == container_id]
    actions = [event.action for event in ours]
    assert "start" in actions and actions.index("start") < actions.index("die")
    die = ours[-1]
    assert die.exit_code == 3
    assert die.labels[TEST_LABEL] == harness.labels[TEST_LABEL]
    assert die.time > 0
    await poll(_no_open_streams(rt), 5, lambda: f"{rt.open_streams} event streams still open")


async def test_events_ignore_other_labels(harness: Harness) -> None:
    rt = harness.runtime
    events = rt.events({**harness.labels, "serverless-emulator.other": "x"})
    mine = rt.events(harness.labels)
    container_id = await harness.started("exit3")
    try:
        await collect_until(mine, lambda e: e.container_id == container_id and e.action == "die")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(events), 0.5)
    finally:
        await events.aclose()
        await mine.aclose()


async def test_follow_logs_yields_lines_until_the_container_stops(harness: Harness) -> None:
    container_id = await harness.started("count")
    lines = await asyncio.wait_for(_all(harness.runtime.follow_logs(container_id)), 20)
    assert lines == ["line 0", "line 1", "line 2"]
    assert (await harness.runtime.logs(container_id, tail=2)).splitlines() == ["line 1", "line 2"]


async def test_follow_logs_stops_when_the_consumer_stops(harness: Harness) -> None:
    rt = harness.runtime
    container_id = await harness.started("sleep")
    stream = rt.follow_logs(container_id)
    assert await asyncio.wait_for(anext(stream), 20) == "ready"
    await stream.aclose()
    await poll(_no_open_streams(rt), 5, lambda: f"{rt.open_streams} log streams still open")


async def test_missing_container(harness: Harness) -> None:
    rt = harness.runtime
    for call in (rt.inspect, rt.start, rt.pause, rt.unpause, rt.logs, rt.stats):
        with pytest.raises(ContainerNotFound):
            await call(GONE)
    with pytest.raises(ContainerNotFound):
        await anext(rt.follow_logs(GONE))
    await rt.stop(GONE)  # tolerated: the goal is reached
    await rt.kill(GONE)
    await rt.remove(GONE)


async def test_missing_image_names_the_image_and_the_fix(harness: Harness) -> None:
    with pytest.raises(ImageNotFound) as caught:
        await harness.runtime.create(harness.spec("sleep", image=MISSING_IMAGE))
    assert MISSING_IMAGE in caught.value.message
    assert "serverless-emulator images build" in caught.value.message


async def test_remove_running_container_needs_force(harness: Harness) -> None:
    rt = harness.runtime
    container_id = await harness.started("sleep")
    await harness.wait_status(container_id, "running")
    with pytest.raises(RuntimeFailure):
        await rt.remove(container_id, force=False)
    await rt.remove(container_id, force=True)
    assert await rt.list(harness.labels) == []


async def test_env_labels_and_string_command(harness: Harness) -> None:
    rt = harness.runtime
    container_id = await rt.create(harness.spec("sleep", command="python3 -c 'print(42)'"))
    raw = await rt.inspect_raw(container_id)
    assert raw["Config"]["Cmd"] == ["python3", "-c", "print(42)"]
    assert "SE_TEST=1" in raw["Config"]["Env"]
    assert raw["Config"]["Labels"][TEST_LABEL] == harness.labels[TEST_LABEL]


async def test_named_volume_is_mounted_at_runpod_volume(harness: Harness) -> None:
    rt = harness.runtime
    volume = f"se-test-{harness.run_id}-vol"
    container_id = await rt.create(harness.spec("sleep", volume=volume))  # created on demand, labelled
    raw = await rt.inspect_raw(container_id)
    mounts = [m for m in raw["Mounts"] if m["Destination"] == VOLUME_MOUNT]
    assert [(m["Type"], m["Name"]) for m in mounts] == [("volume", volume)]
    await rt.ensure_volume(volume, harness.labels)  # idempotent


async def test_memory_limit_and_no_escalation(harness: Harness) -> None:
    rt = harness.runtime
    container_id = await rt.create(harness.spec("sleep", memory_mb=64, nano_cpus=500_000_000))
    raw = await rt.inspect_raw(container_id)
    host = raw["HostConfig"]
    assert host["Memory"] == 64 * MIB
    assert host["NanoCpus"] == 500_000_000
    assert host["Privileged"] is False
    assert host["NetworkMode"] != "host"
    assert not any("docker.sock" in str(m.get("Source", "")) for m in raw["Mounts"])
    await rt.start(container_id)
    await harness.wait_status(container_id, "running")
    for network in ("host", "none"):
        with pytest.raises(InvalidInput):
            await rt.create(harness.spec("sleep", network=network))


async def test_network_gateway_and_extra_hosts(harness: Harness) -> None:
    rt = harness.runtime
    network = f"se-test-{harness.run_id}-net"
    gateway = await rt.ensure_network(network, harness.labels)
    assert ipaddress.ip_address(gateway).version == 4
    assert await rt.ensure_network(network, harness.labels) == gateway  # idempotent
    spec = harness.spec("sleep", network=network, extra_hosts={"control-plane": gateway})
    container_id = await rt.create(spec)
    raw = await rt.inspect_raw(container_id)
    assert raw["HostConfig"]["NetworkMode"] == network
    assert f"control-plane:{gateway}" in raw["HostConfig"]["ExtraHosts"]
    await rt.start(container_id)
    await harness.wait_status(container_id, "running")
    await rt.remove(container_id)
    await rt.remove_network(network)
    await rt.remove_network(network)  # a missing network is not an error


async def test_gpu_request_refused_names_the_fix(harness: Harness) -> None:
    rt = harness.runtime
    await harness.refuse_gpus()
    assert await rt.gpu_runtime_available() is False
    with pytest.raises(GpuUnavailable) as caught:
        container_id = await rt.create(harness.spec("sleep", gpu_device_ids=("0",)))
        raw = await rt.inspect_raw(container_id)
        [request] = raw["HostConfig"]["DeviceRequests"]
        assert (request["Driver"], request["DeviceIDs"], request["Capabilities"]) == (
            "nvidia",
            ["0"],
            [["gpu"]],
        )
        await rt.start(container_id)
    assert "NVIDIA Container Toolkit" in caught.value.message
    assert "EMULATOR_GPU_MODE=emulate" in caught.value.message


async def test_stats_of_a_running_container(harness: Harness) -> None:
    container_id = await harness.started("sleep")
    await harness.wait_status(container_id, "running")
    stats = await harness.runtime.stats(container_id)
    assert set(stats) == {"memory_mb", "cpu_percent"}
    assert stats["memory_mb"] > 0 and stats["cpu_percent"] >= 0


async def test_unreachable_runtime_raises_runtime_unavailable(harness: Harness) -> None:
    rt = harness.unavailable_runtime()
    try:
        for call in (rt.ping(), rt.list(harness.labels), rt.create(harness.spec("sleep")), rt.inspect(GONE)):
            with pytest.raises(RuntimeUnavailable) as caught:
                await call
            assert harness.unavailable_hint in caught.value.message
        with pytest.raises(RuntimeUnavailable):
            await anext(rt.events(harness.labels))
    finally:
        if hasattr(rt, "close"):
            await rt.close()


def _no_open_streams(rt: Any) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(rt.open_streams == 0)

    return check


async def _all(stream: AsyncIterator[str]) -> list[str]:
    return [line async for line in stream]

"""The fake's own knobs (the contract it shares with Docker is in test_runtime_contract.py)."""

from __future__ import annotations

import asyncio

import pytest

from emulator.clock import FakeClock
from emulator.errors import GpuUnavailable, RuntimeFailure, RuntimeUnavailable
from emulator.runtime import make_runtime
from emulator.runtime.base import ContainerSpec, classify_exit
from emulator.runtime.fake import FakeContainer, FakeRuntime, ImageBehavior

LABELS = {"serverless-emulator.endpoint": "ep1"}


def spec(name: str = "w1", image: str = "img", **fields: object) -> ContainerSpec:
    return ContainerSpec(name=name, image=image, env={}, labels=dict(LABELS), **fields)  # type: ignore[arg-type]


async def started(rt: FakeRuntime, name: str = "w1", image: str = "img") -> str:
    container_id = await rt.create(spec(name, image))
    await rt.start(container_id)
    return container_id


def actions(rt: FakeRuntime) -> list[str]:
    return [event.action for event in rt.event_log]


async def test_timestamps_come_from_the_injected_clock() -> None:
    clock = FakeClock(start=1000.0)
    rt = FakeRuntime(clock)
    container_id = await started(rt)
    clock.advance(5)
    rt.crash(container_id, exit_code=2)
    info = await rt.inspect(container_id)
    assert (info.started_at, info.finished_at, info.exit_code) == (1000.0, 1005.0, 2)
    assert [event.time for event in rt.event_log] == [1000.0, 1000.0, 1005.0]


async def test_crash_and_oom_emit_die_with_the_code() -> None:
    rt = FakeRuntime(FakeClock())
    first, second = await started(rt, "a"), await started(rt, "b")
    rt.crash(first)
    rt.crash(second, oom=True)
    assert (await rt.inspect(first)).exit_code == 1
    oom = await rt.inspect(second)
    assert (oom.exit_code, oom.oom_killed) == (137, True)
    assert classify_exit(oom.exit_code, oom.oom_killed).startswith("out of memory")
    assert actions(rt)[-3:] == ["die", "oom", "die"]
    rt.crash(first)  # crashing a dead container changes nothing
    assert actions(rt)[-1] == "die" and len(rt.event_log) == 7


async def test_image_behaviour_exit_right_after_start() -> None:
    rt = FakeRuntime(FakeClock())
    rt.set_image_behavior("broken", exit_code=4, logs=("Traceback: boom",))
    container_id = await started(rt, image="broken")
    info = await rt.inspect(container_id)
    assert (info.status, info.exit_code) == ("exited", 4)
    assert "boom" in await rt.logs(container_id)
    rt.set_image_behavior("oomer", ImageBehavior(oom=True))
    assert (await rt.inspect(await started(rt, "b", "oomer"))).oom_killed


async def test_readiness_hooks_and_hang_startup() -> None:
    rt = FakeRuntime(FakeClock())
    became_ready: list[str] = []
    rt.ready_hooks.append(lambda container: became_ready.append(container.spec.name))
    rt.hang_startup("slow")
    quick = await started(rt, "quick", "img")
    slow = await started(rt, "slow", "slow")
    assert became_ready == ["quick"]
    assert rt.is_ready(quick) and not rt.is_ready(slow)
    rt.make_ready(slow)
    assert became_ready == ["quick", "slow"] and rt.is_ready(slow)
    rt.crash(slow)
    assert not rt.is_ready(slow)


async def test_start_error_behaviour_leaves_the_container_created() -> None:
    rt = FakeRuntime(FakeClock())
    rt.set_image_behavior("bad", start_error=RuntimeFailure("exec format error", reason="exec format error"))
    container_id = await rt.create(spec(image="bad"))
    with pytest.raises(RuntimeFailure, match="exec format error"):
        await rt.start(container_id)
    info = await rt.inspect(container_id)
    assert (info.status, info.error) == ("created", "exec format error")


async def test_set_unavailable_makes_every_call_fail_and_recovers() -> None:
    rt = FakeRuntime(FakeClock())
    container_id = await started(rt)
    rt.set_unavailable(True)
    with pytest.raises(RuntimeUnavailable):
        await rt.inspect(container_id)
    with pytest.raises(RuntimeUnavailable):
        await rt.stop(container_id)
    with pytest.raises(RuntimeUnavailable):
        await anext(rt.follow_logs(container_id))
    rt.set_unavailable(False)
    assert (await rt.inspect(container_id)).status == "running"


async def test_refuse_gpus_only_affects_gpu_containers() -> None:
    rt = FakeRuntime(FakeClock(), refuse_gpus=True)
    await started(rt, "cpu")
    gpu = await rt.create(spec("gpu", gpu_device_ids=("0", "1")))
    with pytest.raises(GpuUnavailable) as caught:
        await rt.start(gpu)
    assert caught.value.data["device_ids"] == ["0", "1"]
    assert (await rt.inspect(gpu)).status == "created"
    rt.refuse_gpus = False
    await rt.start(gpu)
    assert (await rt.inspect(gpu)).status == "running"


async def test_every_call_is_recorded() -> None:
    rt = FakeRuntime(FakeClock())
    container_id = await started(rt)
    await rt.stop(container_id, timeout_s=3)
    await rt.remove(container_id)
    assert [call.method for call in rt.calls] == ["create", "start", "stop", "remove"]
    assert rt.calls_to("stop") == [(container_id, 3)]
    assert rt.calls_to("create")[0][0].name == "w1"


async def test_appended_logs_reach_followers_and_tail() -> None:
    rt = FakeRuntime(FakeClock())
    container_id = await started(rt)
    stream = rt.follow_logs(container_id)
    rt.append_log(container_id, "one")
    assert await asyncio.wait_for(anext(stream), 1) == "one"
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    rt.append_log(container_id, "two", "three")
    assert await asyncio.wait_for(waiting, 1) == "two"
    assert await asyncio.wait_for(anext(stream), 1) == "three"
    await rt.stop(container_id)
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(stream), 1)
    assert await rt.logs(container_id, tail=2) == "two\nthree\n"
    assert await rt.logs(container_id, tail=0) == ""


async def test_event_sequence_mirrors_docker() -> None:
    rt = FakeRuntime(FakeClock())
    container_id = await started(rt)
    await rt.pause(container_id)
    await rt.unpause(container_id)
    await rt.stop(container_id)
    await rt.start(container_id)  # an exited container can be started again
    await rt.remove(container_id, force=True)
    assert actions(rt) == [
        "create", "start", "pause", "unpause", "kill", "die", "stop", "start", "kill", "die", "destroy",
    ]  # fmt: skip


async def test_kill_with_another_signal_and_stop_exit_code() -> None:
    rt = FakeRuntime(FakeClock())
    rt.set_image_behavior("stubborn", stop_exit_code=137)
    first, second = await started(rt, "a"), await started(rt, "b", "stubborn")
    await rt.kill(first, "SIGTERM")
    await rt.stop(second)
    assert (await rt.inspect(first)).exit_code == 143
    assert (await rt.inspect(second)).exit_code == 137


async def test_stats_knob_and_network_in_use() -> None:
    rt = FakeRuntime(FakeClock())
    gateway = await rt.ensure_network("net", {})
    container_id = await rt.create(spec(network="net"))
    await rt.start(container_id)
    rt.set_stats(container_id, memory_mb=512.0, cpu_percent=75.0)
    assert await rt.stats(container_id) == {"memory_mb": 512.0, "cpu_percent": 75.0}
    with pytest.raises(RuntimeFailure):
        await rt.remove_network("net")
    await rt.remove(container_id)
    await rt.remove_network("net")
    assert "net" not in rt.networks and gateway.endswith(".1")


async def test_create_needs_existing_network_and_unique_name() -> None:
    rt = FakeRuntime(FakeClock())
    with pytest.raises(RuntimeFailure, match="network"):
        await rt.create(spec(network="missing"))
    await rt.create(spec("same"))
    with pytest.raises(RuntimeFailure, match="already in use"):
        await rt.create(spec("same"))


async def test_volume_created_on_demand_keeps_only_owner_labels() -> None:
    rt = FakeRuntime(FakeClock())
    labels = {"serverless-emulator.instance": "i1", "serverless-emulator.worker": "w1", **LABELS}
    await rt.create(ContainerSpec(name="v", image="img", env={}, labels=labels, volume="data"))
    assert rt.volumes["data"] == {"serverless-emulator.instance": "i1"}


def test_make_runtime() -> None:
    assert isinstance(make_runtime("fake"), FakeRuntime)
    assert type(make_runtime("docker")).__name__ == "DockerRuntime"  # lazy: no engine contact yet
    with pytest.raises(ValueError, match="unknown runtime"):
        make_runtime("podman")


def test_fake_container_is_a_plain_record() -> None:
    container = FakeContainer(id="x", spec=spec())
    assert container.info().status == "created" and container.info().exit_code is None

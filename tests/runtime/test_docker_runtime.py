"""What only a real engine can show: data in a volume, the OOM killer, stop timeouts, a free event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from emulator.errors import RuntimeFailure, RuntimeUnavailable
from emulator.runtime.base import classify_exit
from emulator.runtime.docker import DockerRuntime
from tests.runtime.harness import Harness, poll

pytestmark = pytest.mark.docker


@pytest.fixture
async def docker_harness(test_labels: dict[str, str], docker_cleanup: None) -> AsyncIterator[Harness]:
    runtime = DockerRuntime()
    try:
        await runtime.ping()
    except RuntimeUnavailable as exc:
        await runtime.close()
        pytest.skip(f"no Docker engine answers: {exc.message}")
    try:
        yield Harness("docker", runtime, test_labels)
    finally:
        await runtime.close()


def python(code: str) -> list[str]:
    return ["python3", "-c", code]


def stream_threads(before: frozenset[int] = frozenset()) -> list[str]:
    """Stream threads started since ``before`` (other runtimes in this process, e.g. the pytest
    plugin's session emulator, keep their own streams open)."""
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("docker-") and "stream" in t.name and t.ident not in before
    ]


def thread_ids() -> frozenset[int]:
    return frozenset(t.ident for t in threading.enumerate() if t.ident is not None)


async def test_volume_data_outlives_the_container(docker_harness: Harness) -> None:
    h, rt = docker_harness, docker_harness.runtime
    volume = f"se-test-{h.run_id}-data"
    write = python("open('/runpod-volume/model.txt', 'w').write('weights')")
    writer = await h.started("sleep", command=write, volume=volume)
    assert (await h.wait_status(writer, "exited")).exit_code == 0
    reader = await h.started(
        "sleep", command=python("print(open('/runpod-volume/model.txt').read())"), volume=volume
    )
    assert (await h.wait_status(reader, "exited")).exit_code == 0
    assert (await rt.logs(reader)).strip() == "weights"


async def test_memory_limit_is_enforced_by_the_oom_killer(docker_harness: Harness) -> None:
    h = docker_harness
    container_id = await h.started("sleep", command=python("x = bytearray(256 * 1024 * 1024)"), memory_mb=32)
    info = await h.wait_status(container_id, "exited")
    assert (info.exit_code, info.oom_killed) == (137, True)
    assert classify_exit(info.exit_code, info.oom_killed).startswith("out of memory")


async def test_stop_kills_a_process_that_ignores_sigterm_and_keeps_the_loop_free(
    docker_harness: Harness,
) -> None:
    h, rt = docker_harness, docker_harness.runtime
    ignore = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(300)"
    container_id = await h.started("sleep", command=python(ignore))
    await h.wait_status(container_id, "running")

    async def said_ready() -> bool:
        return "ready" in await rt.logs(container_id)

    await poll(said_ready, 20, lambda: "never printed ready")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    loop = asyncio.get_running_loop()
    began = loop.time()
    await rt.stop(container_id, timeout_s=1)
    took = loop.time() - began
    ticking.cancel()
    info = await rt.inspect(container_id)
    assert info.exit_code == 137
    assert 0.9 <= took < 10
    assert ticks >= 10  # the event loop ran while the engine waited for the timeout


async def test_idle_event_stream_closes_when_the_consumer_stops(docker_harness: Harness) -> None:
    rt = docker_harness.runtime
    before = thread_ids()
    events = rt.events(docker_harness.labels)
    waiting = asyncio.create_task(anext(events))
    await poll(_async(lambda: rt.open_streams == 1), 5, lambda: "the stream never opened")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await events.aclose()
    await poll(
        _async(lambda: rt.open_streams == 0 and not stream_threads(before)),
        5,
        lambda: str(stream_threads(before)),
    )


async def test_chatty_log_stream_closes_when_the_consumer_stops(docker_harness: Harness) -> None:
    h, rt = docker_harness, docker_harness.runtime
    before = thread_ids()
    chatty = "import itertools\nfor i in itertools.count():\n    print('line', i, flush=True)"
    container_id = await h.started("sleep", command=python(chatty))
    stream = rt.follow_logs(container_id)
    first = [await asyncio.wait_for(anext(stream), 20) for _ in range(50)]
    assert first[:2] == ["line 0", "line 1"]
    await stream.aclose()
    await poll(
        _async(lambda: rt.open_streams == 0 and not stream_threads(before)),
        5,
        lambda: str(stream_threads(before)),
    )


async def test_unknown_network_is_a_runtime_failure_not_a_missing_container(docker_harness: Harness) -> None:
    h = docker_harness
    container_id = await h.runtime.create(h.spec("sleep", network=f"se-test-{h.run_id}-absent"))
    with pytest.raises(RuntimeFailure) as caught:  # Docker 20.10 refuses at start, not at create
        await h.runtime.start(container_id)
    assert type(caught.value) is RuntimeFailure and "not found" in caught.value.message


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return bool(check())

    return run

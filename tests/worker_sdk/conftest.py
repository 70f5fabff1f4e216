from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import pytest

from tests.worker_sdk.procs import HANDLERS, WorkerProcess
from tests.worker_sdk.stub_control_plane import StubControlPlane

if TYPE_CHECKING:
    from worker_sdk.config import Settings
    from worker_sdk.loop import Worker

T = TypeVar("T")
# run_worker(config, env=None, **tunables) -> (the Worker, the task running Worker.run)
RunWorker = Callable[..., Awaitable[tuple["Worker", "asyncio.Future[int]"]]]


@pytest.fixture
def stub() -> Iterator[StubControlPlane]:
    plane = StubControlPlane(hold_s=1.0).start()
    yield plane
    plane.stop()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """spawn(env, handler="generic.py", args=(), python=None) -> WorkerProcess; all killed at teardown."""
    started: list[WorkerProcess] = []

    def _spawn(
        env: dict[str, Any],
        handler: str = "generic.py",
        args: Sequence[str] = (),
        python: str | None = None,
        cwd: str | Path | None = None,
    ) -> WorkerProcess:
        n = len(started)
        proc = WorkerProcess(
            HANDLERS / handler, env, tmp_path / f"worker-{n}.log", args=args, cwd=cwd, python=python
        )
        started.append(proc)
        return proc

    yield _spawn
    for proc in started:
        proc.close()


def fast(settings: Settings) -> Settings:
    """Shrink the worker's timeouts and backoffs for tests."""
    settings.backoff_initial_s = 0.05
    settings.backoff_max_s = 0.3
    settings.too_many_requests_s = 0.5
    settings.min_poll_gap_s = 0.05
    settings.progress_flush_s = 3.0
    return settings


async def until(
    predicate: Callable[[], T | None | Literal[False]], timeout: float = 10.0, what: str = "condition"
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def run_worker(stub: StubControlPlane) -> AsyncIterator[RunWorker]:
    """Run a Worker in this event loop against the stub; always shut down at teardown."""
    from worker_sdk.config import Settings
    from worker_sdk.loop import Worker

    running: list[tuple[Worker, asyncio.Future[int]]] = []

    async def _run(
        config: dict[str, Any], env: dict[str, str] | None = None, **tunables: float
    ) -> tuple[Worker, asyncio.Future[int]]:
        settings = fast(Settings(stub.env(**(env or {}))))
        for name, value in tunables.items():
            setattr(settings, name, value)
        worker = Worker(config, settings)
        task = asyncio.ensure_future(worker.run())
        running.append((worker, task))
        await until(lambda: getattr(worker, "shutdown", None) is not None, 5, "worker start")
        return worker, task

    yield _run
    for worker, task in running:
        if not task.done():
            worker.request_shutdown("test teardown")
            worker.force.set()
        try:
            await asyncio.wait_for(task, 15)
        finally:
            if worker.heartbeat is not None:
                worker.heartbeat.stop()

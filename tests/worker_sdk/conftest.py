import asyncio
import time

import pytest

from tests.worker_sdk.procs import HANDLERS, WorkerProcess
from tests.worker_sdk.stub_control_plane import StubControlPlane


@pytest.fixture
def stub():
    plane = StubControlPlane(hold_s=1.0).start()
    yield plane
    plane.stop()


@pytest.fixture
def spawn(tmp_path):
    """spawn(env, handler="generic.py", args=(), python=None) -> WorkerProcess; all killed at teardown."""
    started = []

    def _spawn(env, handler="generic.py", args=(), python=None, cwd=None):
        n = len(started)
        proc = WorkerProcess(
            HANDLERS / handler, env, tmp_path / f"worker-{n}.log", args=args, cwd=cwd, python=python
        )
        started.append(proc)
        return proc

    yield _spawn
    for proc in started:
        proc.close()


def fast(settings):
    """Shrink the worker's timeouts and backoffs for tests."""
    settings.backoff_initial_s = 0.05
    settings.backoff_max_s = 0.3
    settings.too_many_requests_s = 0.5
    settings.min_poll_gap_s = 0.05
    settings.progress_flush_s = 3.0
    return settings


async def until(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def run_worker(stub):
    """Run a Worker in this event loop against the stub; always shut down at teardown."""
    from worker_sdk.config import Settings
    from worker_sdk.loop import Worker

    running = []

    async def _run(config, env=None, **tunables):
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

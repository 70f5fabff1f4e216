"""Real worker processes (handlers/generic.py) against the stub: SIGTERM drain, refresh, heartbeat, logs."""

import re
import signal
import time
from collections.abc import Callable

import pytest

from tests.worker_sdk.procs import WorkerProcess, find_python
from tests.worker_sdk.stub_control_plane import StubControlPlane, wait_until


def test_sigterm_drains_in_flight_job_and_exits_zero(
    stub: StubControlPlane, spawn: Callable[..., WorkerProcess]
) -> None:
    worker = spawn(stub.env(HANDLER_KIND="sync"))
    job = stub.add_job({"sleep": 1.5, "echo": "drain"})
    wait_until(lambda: stub.state(job) == "IN_PROGRESS", 10, "job taken")
    queued = stub.add_job({"echo": "never"})
    worker.send(signal.SIGTERM)
    assert worker.wait(15) == 0
    assert stub.final(job)["output"]["echo"] == "drain"
    assert stub.state(queued) == "IN_QUEUE"  # no new job after SIGTERM
    assert "SIGTERM received" in worker.log()


def test_sigterm_grace_period_expires(stub: StubControlPlane, spawn: Callable[..., WorkerProcess]) -> None:
    worker = spawn(stub.env(HANDLER_KIND="async", WORKER_SDK_GRACE_S="0.5"))
    job = stub.add_job({"sleep": 30})
    wait_until(lambda: stub.state(job) == "IN_PROGRESS", 10, "job taken")
    t0 = time.monotonic()
    worker.send(signal.SIGTERM)
    assert worker.wait(10) == 0
    assert time.monotonic() - t0 < 5
    assert stub.recorded("job-done", job) == []
    assert "its result was NOT posted" in worker.log()


def test_sigterm_on_idle_worker_exits_promptly(
    stub: StubControlPlane, spawn: Callable[..., WorkerProcess]
) -> None:
    worker = spawn(stub.env(HANDLER_KIND="sync"))
    wait_until(lambda: stub.recorded("job-take"), 10, "first job-take")
    t0 = time.monotonic()
    worker.send(signal.SIGTERM)
    assert worker.wait(10) == 0 and time.monotonic() - t0 < 3


def test_refresh_worker_exits_after_job(stub: StubControlPlane, spawn: Callable[..., WorkerProcess]) -> None:
    worker = spawn(stub.env(HANDLER_KIND="sync", REFRESH="1"))
    job = stub.add_job({"echo": 1})
    assert worker.wait(15) == 0
    body = stub.final(job)
    assert body["stopPod"] is True and body["output"]["echo"] == 1


def test_returned_refresh_worker_exits(stub: StubControlPlane, spawn: Callable[..., WorkerProcess]) -> None:
    worker = spawn(stub.env(HANDLER_KIND="async"))
    job = stub.add_job({"refresh": True})
    assert worker.wait(15) == 0
    assert stub.final(job)["stopPod"] is True


def test_heartbeat_survives_a_cpu_bound_sync_handler(
    stub: StubControlPlane, spawn: Callable[..., WorkerProcess]
) -> None:
    worker = spawn(stub.env(HANDLER_KIND="sync"))
    job = stub.add_job({"spin": 3.5})
    wait_until(lambda: stub.state(job) == "IN_PROGRESS", 10, "job taken")
    t0 = time.time()
    stub.wait_final(job, 15)
    during = [p for p in stub.recorded("ping") if t0 <= p.t <= t0 + 3.5 and p.query.get("job_id") == job]
    assert len(during) >= 2, stub.recorded("ping")
    worker.send(signal.SIGTERM)
    assert worker.wait(10) == 0


def test_log_lines_have_level_job_message(
    stub: StubControlPlane, spawn: Callable[..., WorkerProcess]
) -> None:
    worker = spawn(stub.env(HANDLER_KIND="sync", RUNPOD_LOG_LEVEL="DEBUG"))
    job = stub.add_job({"echo": 1})
    stub.wait_final(job, 10)
    worker.wait_log("finished")
    worker.send(signal.SIGTERM)
    worker.wait(10)
    lines = [line for line in worker.log().splitlines() if line.strip()]
    assert lines and all(re.match(r"^(TRACE|DEBUG|INFO|WARN|ERROR) *\| \S+ \| ", line) for line in lines), (
        lines
    )
    assert any(re.match(rf"^INFO +\| {job} \| started", line) for line in lines)
    assert any(line.startswith("DEBUG") for line in lines)


def test_unreachable_control_plane_is_logged_then_recovers(
    stub: StubControlPlane, spawn: Callable[..., WorkerProcess]
) -> None:
    port = stub.port
    stub.stop()
    worker = spawn(stub.env(HANDLER_KIND="sync"))
    worker.wait_log("cannot reach the control plane", 10)
    stub.start(port)
    job = stub.add_job({"echo": "back"})
    assert stub.wait_final(job, 15)["output"]["echo"] == "back"
    assert "reachable again" in worker.log()
    worker.send(signal.SIGTERM)
    assert worker.wait(10) == 0


@pytest.mark.parametrize("kind", ["sync", "async", "gen", "agen"])
def test_every_handler_kind_in_a_process(
    stub: StubControlPlane, spawn: Callable[..., WorkerProcess], kind: str
) -> None:
    worker = spawn(stub.env(HANDLER_KIND=kind, AGGREGATE="1"))
    job = stub.add_job({"items": ["a", "b"], "echo": kind})
    body = stub.wait_final(job, 15)
    if kind in ("gen", "agen"):
        assert body == {"output": ["a", "b"]} and stub.chunks(job) == [{"output": "a"}, {"output": "b"}]
    else:
        assert body["output"]["echo"] == kind
    worker.send(signal.SIGTERM)
    assert worker.wait(10) == 0


@pytest.mark.parametrize("version", ["3.9", "3.10", "3.12", "3.13"])
def test_other_python_versions(
    stub: StubControlPlane, spawn: Callable[..., WorkerProcess], version: str
) -> None:
    python = find_python(version)
    if python is None:
        pytest.skip(f"no Python {version} interpreter on this machine")
    worker = spawn(stub.env(HANDLER_KIND="gen", AGGREGATE="1"), python=python)
    job = stub.add_job({"items": [1, 2, 3]})
    assert stub.wait_final(job, 20) == {"output": [1, 2, 3]}
    sync_job = stub.add_job({})
    stub.wait_final(sync_job, 20)
    worker.send(signal.SIGTERM)
    assert worker.wait(10) == 0

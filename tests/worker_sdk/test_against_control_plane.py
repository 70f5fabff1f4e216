"""worker_sdk workers (real processes) against the real control plane (a subprocess, --runtime none)."""

import importlib.util
import itertools
import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.worker_sdk.control_plane import ControlPlane
from tests.worker_sdk.procs import WorkerProcess
from tests.worker_sdk.stub_control_plane import wait_until

_COUNTER = itertools.count()
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("emulator") is None, reason="control plane not available"
)


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    root = tmp_path_factory.mktemp("cp")
    (root / "data").mkdir()
    plane = ControlPlane(root / "data", root)
    try:
        yield plane.start()
    finally:
        plane.close()


@pytest.fixture
def endpoint(cp: ControlPlane, request: pytest.FixtureRequest) -> str:
    """A fresh endpoint per test, so jobs and workers of different tests never mix."""
    name = (
        f"t{next(_COUNTER)}-" + request.node.name.replace("[", "-").replace("]", "").replace("_", "-")[5:30]
    )
    name = str(name).lower()
    cp.create_endpoint(name)
    return name


@pytest.fixture
def worker(
    cp: ControlPlane, endpoint: str, spawn: Callable[..., WorkerProcess]
) -> Callable[..., WorkerProcess]:
    """worker(**env) registers an external worker on the endpoint and starts generic.py with its env."""

    def _start(**env: str) -> WorkerProcess:
        registration = cp.register_worker(endpoint)
        proc = spawn(dict(registration["env"], **env))
        proc.registration = registration
        return proc

    return _start


def stream_all(
    cp: ControlPlane, endpoint: str, job_id: str, timeout: float = 30.0
) -> tuple[list[Any], dict[str, Any]]:
    """Poll /stream until the job is terminal; return (chunks in order, final status body)."""
    chunks: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = cp.stream(endpoint, job_id)
        chunks += [c["output"] for c in body.get("stream", [])]
        if body["status"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"):
            chunks += [c["output"] for c in cp.stream(endpoint, job_id).get("stream", [])]
            return chunks, cp.status(endpoint, job_id)
        time.sleep(0.1)
    raise AssertionError("stream did not end")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_plain_handler_kinds(
    cp: ControlPlane, endpoint: str, worker: Callable[..., WorkerProcess], kind: str
) -> None:
    proc = worker(HANDLER_KIND=kind)
    job = cp.run(endpoint, {"echo": {"kind": kind}})
    body = cp.wait_status(endpoint, job)
    assert body["status"] == "COMPLETED", body
    assert body["output"]["echo"] == {"kind": kind}
    assert body["workerId"] == proc.registration["id"]


@pytest.mark.parametrize("kind", ["gen", "agen"])
def test_generator_kinds_stream_and_aggregate(
    cp: ControlPlane, endpoint: str, worker: Callable[..., WorkerProcess], kind: str
) -> None:
    worker(HANDLER_KIND=kind, AGGREGATE="1")
    items = ["a", {"b": 1}, [2], 3]
    job = cp.run(endpoint, {"items": items, "item_gap": 0.2})
    chunks, body = stream_all(cp, endpoint, job)
    assert chunks == items
    assert body["status"] == "COMPLETED" and body["output"] == items


def test_generator_without_aggregation_streams_only(
    cp: ControlPlane, endpoint: str, worker: Callable[..., WorkerProcess]
) -> None:
    worker(HANDLER_KIND="gen")
    job = cp.run(endpoint, {"items": [1, 2]})
    chunks, body = stream_all(cp, endpoint, job)
    assert chunks == [1, 2] and body["status"] == "COMPLETED" and body.get("output") in ([], None)


@pytest.mark.parametrize("kind", ["sync", "agen"])
def test_handler_error_fails_the_job(
    cp: ControlPlane, endpoint: str, worker: Callable[..., WorkerProcess], kind: str
) -> None:
    worker(HANDLER_KIND=kind)
    job = cp.run(endpoint, {"fail": "kaboom", "items": [1]})
    body = cp.wait_status(endpoint, job)
    assert body["status"] == "FAILED"
    info = json.loads(body["error"])
    assert info["error_type"] == "<class 'ValueError'>" and info["error_message"] == "kaboom"
    assert set(info) >= {"error_traceback", "hostname", "worker_id"}


def test_generator_error_item_fails_the_job(
    cp: ControlPlane, endpoint: str, worker: Callable[..., WorkerProcess]
) -> None:
    worker(HANDLER_KIND="gen", AGGREGATE="1")
    job = cp.run(endpoint, {"items": [1, 2, 3], "error_at": 1})
    chunks, body = stream_all(cp, endpoint, job)
    assert chunks == [1] and body["status"] == "FAILED" and body["error"] == "bad item 1"


def test_sync_handler_concurrency_overlaps(
    cp: ControlPlane, endpoint: str, worker: Callable[..., WorkerProcess]
) -> None:
    worker(HANDLER_KIND="sync", CONCURRENCY="2")
    t0 = time.monotonic()
    jobs = [cp.run(endpoint, {"sleep": 1.5, "echo": i}) for i in range(2)]
    outs = [cp.wait_status(endpoint, j)["output"] for j in jobs]
    assert max(o["started"] for o in outs) < min(o["ended"] for o in outs), outs  # they really overlapped
    assert outs[0]["thread"] != outs[1]["thread"]
    assert time.monotonic() - t0 < 2.9


def test_progress_is_visible_then_replaced_by_the_result(
    cp: ControlPlane, endpoint: str, worker: Callable[..., WorkerProcess]
) -> None:
    worker(HANDLER_KIND="sync")
    job = cp.run(endpoint, {"progress": ["step 1", "step 2"], "progress_gap": 1.0, "echo": "final"})
    seen: set[str] = set()

    def progress_seen() -> bool:
        body = cp.status(endpoint, job)
        if body["status"] == "IN_PROGRESS" and body.get("output") is not None:
            seen.add(json.dumps(body["output"]))
        return len(seen) >= 1 and body["status"] in ("IN_PROGRESS", "COMPLETED")

    wait_until(progress_seen, 15, "an IN_PROGRESS status carrying progress output", interval=0.1)
    body = cp.wait_status(endpoint, job)
    assert body["status"] == "COMPLETED" and body["output"]["echo"] == "final"
    assert seen <= {'"step 1"', '"step 2"'} and seen
    time.sleep(0.5)
    assert cp.status(endpoint, job)["output"]["echo"] == "final"  # no late progress overwrote it


def test_cancel_stops_the_handler_and_posts_nothing(
    cp: ControlPlane, endpoint: str, worker: Callable[..., WorkerProcess]
) -> None:
    proc = worker(HANDLER_KIND="async")
    job = cp.run(endpoint, {"sleep": 60})
    cp.wait_status(endpoint, job, ("IN_PROGRESS",), 15)
    assert cp.cancel(endpoint, job)["status"] == "CANCELLED"
    proc.wait_log("stopped: no result posted", 15)
    assert "result posted" not in proc.log().split("stopped: no result posted")[0].split(job)[-1]
    assert cp.status(endpoint, job)["status"] == "CANCELLED"
    nxt = cp.run(endpoint, {"echo": "after cancel"})  # the slot was freed
    assert cp.wait_status(endpoint, nxt, timeout=20)["output"]["echo"] == "after cancel"


def test_cancel_sync_handler_discards_result(
    cp: ControlPlane, endpoint: str, worker: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    proc = worker(HANDLER_KIND="sync")
    marker = tmp_path / "sync-finished"
    job = cp.run(endpoint, {"sleep": 2, "touch": str(marker)})
    cp.wait_status(endpoint, job, ("IN_PROGRESS",), 15)
    cp.cancel(endpoint, job)
    proc.wait_log("stopped: no result posted", 15)
    wait_until(marker.exists, 10, "the sync handler to run to its end")
    time.sleep(0.5)
    assert cp.status(endpoint, job)["status"] == "CANCELLED"
    assert "refused the result" not in proc.log()  # nothing was even attempted


def test_execution_timeout(cp: ControlPlane, endpoint: str, worker: Callable[..., WorkerProcess]) -> None:
    proc = worker(HANDLER_KIND="async")
    job = cp.run(endpoint, {"sleep": 60}, policy={"executionTimeout": 5000})
    body = cp.wait_status(endpoint, job, timeout=30)
    assert body["status"] == "TIMED_OUT", body
    proc.wait_log("stopped: no result posted", 15)
    nxt = cp.run(endpoint, {"echo": "next"})
    assert cp.wait_status(endpoint, nxt, timeout=20)["output"]["echo"] == "next"


def test_sigterm_drains_and_exits_zero(
    cp: ControlPlane, endpoint: str, worker: Callable[..., WorkerProcess]
) -> None:
    proc = worker(HANDLER_KIND="sync")
    job = cp.run(endpoint, {"sleep": 2, "echo": "drained"})
    cp.wait_status(endpoint, job, ("IN_PROGRESS",), 15)
    proc.send(signal.SIGTERM)
    assert proc.wait(30) == 0
    body = cp.status(endpoint, job)
    assert body["status"] == "COMPLETED" and body["output"]["echo"] == "drained"


def test_refresh_worker_posts_and_exits(
    cp: ControlPlane, endpoint: str, worker: Callable[..., WorkerProcess]
) -> None:
    proc = worker(HANDLER_KIND="sync", REFRESH="1")
    job = cp.run(endpoint, {"echo": "once"})
    assert proc.wait(30) == 0
    body = cp.status(endpoint, job)
    assert body["status"] == "COMPLETED" and body["output"]["echo"] == "once"


def test_heartbeat_reaches_the_control_plane(
    cp: ControlPlane, endpoint: str, worker: Callable[..., WorkerProcess]
) -> None:
    proc = worker(HANDLER_KIND="sync")
    job = cp.run(endpoint, {"sleep": 3})
    cp.wait_status(endpoint, job, ("IN_PROGRESS",), 15)

    def listed() -> dict[str, Any] | None:
        r = cp.client.get(f"/v1/endpoints/{endpoint}/workers").json()
        me = [w for w in r["workers"] if w["id"] == proc.registration["id"]]
        return me[0] if me else None

    state = wait_until(listed, 10, "the worker in the worker list")
    assert state["status"] in ("RUNNING", "IDLE"), state
    cp.wait_status(endpoint, job)


@pytest.fixture
def own_cp(tmp_path: Path) -> Iterator[ControlPlane]:
    (tmp_path / "data").mkdir()
    plane = ControlPlane(tmp_path / "data", tmp_path)
    try:
        yield plane.start()
    finally:
        plane.close()


def test_control_plane_killed_and_restarted_under_a_running_worker(
    own_cp: ControlPlane, spawn: Callable[..., WorkerProcess]
) -> None:
    cp = own_cp
    cp.create_endpoint("restart")
    registration = cp.register_worker("restart")
    proc = spawn(dict(registration["env"], HANDLER_KIND="sync"))
    job = cp.run("restart", {"sleep": 1.5, "echo": "survived"})
    cp.wait_status("restart", job, ("IN_PROGRESS",), 15)
    cp.kill()
    # The handler finishes while the control plane is down: the result POST fails and is retried.
    proc.wait_log("result not delivered", 20)
    cp.start()
    body = cp.wait_status("restart", job, timeout=45)
    assert body["status"] == "COMPLETED" and body["output"]["echo"] == "survived", (body, proc.log())
    proc.wait_log("result delivered after", 10)
    assert proc.proc.poll() is None  # the worker kept going
    nxt = cp.run("restart", {"echo": "after restart"})
    assert cp.wait_status("restart", nxt, timeout=30)["output"]["echo"] == "after restart"
    assert proc.proc.poll() is None

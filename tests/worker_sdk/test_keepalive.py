"""worker_sdk's persistent connections: requests of many jobs share a few kept-alive connections, and
a control-plane restart (every connection closed, the port reopened) is crossed without losing a result."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.worker_sdk.conftest import RunWorker, until
from tests.worker_sdk.stub_control_plane import StubControlPlane
from worker_sdk import transport
from worker_sdk.config import Settings
from worker_sdk.heartbeat import Heartbeat


async def _final(stub: StubControlPlane, job_id: str, timeout: float = 10.0) -> Any:
    await until(lambda: stub.final(job_id) is not None, timeout, "final result of " + job_id)
    return stub.final(job_id)


async def test_sequential_jobs_reuse_kept_connections(stub: StubControlPlane, run_worker: RunWorker) -> None:
    await run_worker({"handler": lambda job: job["input"]["n"]})
    for n in range(8):
        job = stub.add_job({"n": n})
        assert await _final(stub, job) == {"output": n}
    wire = [r for r in stub.recorded() if r.route in ("job-take", "job-done")]
    used = {r.conn for r in wire}
    # one connection per request would give >= 16 distinct connections; kept-alive ones give a few
    assert len(wire) >= 16 and len(used) <= 3, (len(wire), sorted(used))
    assert stub.accepted <= 5  # job-take, job-done, job-stop, the heartbeat, and one spare


async def test_request_after_a_restart_reconnects_transparently(stub: StubControlPlane) -> None:
    url = f"{stub.base}/v2/{stub.endpoint}/ping/w-1"
    headers = {"Authorization": stub.token}
    try:
        first = await transport.request("GET", url, headers=headers, timeout=5)
        again = await transport.request("GET", url, headers=headers, timeout=5)
        assert first.status == again.status == 200
        assert stub.accepted == 1  # the second ping rode the kept connection
        port = stub.port
        stub.stop()  # closes the kept connection, like a control plane that exits
        stub.start(port)
        after = await transport.request("GET", url, headers=headers, timeout=5)
        assert after.status == 200  # no TransportError: the dead pooled connection was replaced
        assert stub.accepted == 2
    finally:
        transport.close_idle()


async def test_cancelled_long_poll_is_not_reused(stub: StubControlPlane) -> None:
    url = f"{stub.base}/v2/{stub.endpoint}/job-take/w-1"
    headers = {"Authorization": stub.token}
    try:
        poll = asyncio.ensure_future(transport.request("GET", url, headers=headers, timeout=5))
        await until(lambda: stub.recorded("job-take"), 5, "the poll to arrive")
        poll.cancel()
        await asyncio.wait({poll})
        job = stub.add_job({"x": 1})
        # the held poll may still take a job on the abandoned connection; a new request never reads its answer
        answer = await transport.request("GET", url, headers=headers, timeout=5)
        assert answer.status in (200, 204)
        if answer.status == 200:
            assert answer.json()["id"] == job
        assert stub.accepted == 2
    finally:
        transport.close_idle()


async def test_result_lands_across_a_restart_on_kept_connections(
    stub: StubControlPlane, run_worker: RunWorker
) -> None:
    def handler(job: dict[str, Any]) -> Any:
        time.sleep(job["input"].get("sleep_s", 0))
        return "ok"

    await run_worker({"handler": handler})
    warm = stub.add_job({})
    assert await _final(stub, warm) == {"output": "ok"}  # the pool now holds kept connections
    job = stub.add_job({"sleep_s": 0.6})
    await until(lambda: stub.state(job) == "IN_PROGRESS", 5, "the job to start")
    before = stub.accepted
    port = stub.port
    stub.stop()
    stub.start(port)  # back at once: the result must ride a new connection, not a dead kept one
    assert await _final(stub, job, 10) == {"output": "ok"}
    nxt = stub.add_job({})
    assert await _final(stub, nxt, 10) == {"output": "ok"}
    assert stub.accepted > before


def test_heartbeat_keeps_one_connection_and_survives_a_restart(stub: StubControlPlane) -> None:
    beat = Heartbeat(Settings(stub.env()), lambda: ())
    try:
        assert [beat.ping_once() for _ in range(3)] == [200, 200, 200]
        assert {r.conn for r in stub.recorded("ping")} == {1}
        port = stub.port
        stub.stop()
        stub.start(port)
        assert beat.ping_once() == 200  # the closed connection is noticed and replaced
        assert stub.accepted == 2 and beat.sent == 4
    finally:
        beat._pinger.close()

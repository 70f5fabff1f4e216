"""The proxy over real sockets, without Docker: a control plane (no container runtime) in front of the
sample load-balancing app served by uvicorn on 127.0.0.1, entered in the routing pool by hand (the
health poller, which needs containers, is covered by the Docker tests)."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets

from emulator.config import default_settings_for_tests
from emulator.control_plane import ControlPlane
from emulator.models import WorkerState

APP = Path(__file__).resolve().parents[2] / "sample_workers" / "load-balancer" / "app.py"
KEY = "lb-test-key"


def _sample_app() -> Any:
    spec = importlib.util.spec_from_file_location("lb_sample_app", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Setup:
    cp: ControlPlane
    api: httpx.AsyncClient
    port: int  # the sample app's

    def add_worker(self, endpoint_id: str, routable: bool = True) -> str:
        """A worker record for ``endpoint_id`` served by the sample app, in the routing pool."""
        assert self.cp.core is not None and self.cp.lb is not None
        endpoint = self.cp.core.endpoints.require(endpoint_id)
        worker = self.cp.core.workers.create(endpoint_id, endpoint.version, state=WorkerState.IDLE)
        worker.container_id = "local"
        self.cp.core.workers.save(worker)
        slot = self.cp.lb.pool.slot(worker.id)
        slot.address = "127.0.0.1"
        self.cp.lb.pool.set_routable(worker.id, routable)
        return worker.id


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(_sample_app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    settings = default_settings_for_tests(
        tmp_path / "data", api_key=KEY, lb_wait_for_worker_s=0.5, lb_affinity_wait_s=0.5
    )
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn's flag: no event to wait on
            await asyncio.sleep(0.01)
        async with (
            ControlPlane(settings) as cp,
            httpx.AsyncClient(
                base_url=cp.client_url, timeout=30, headers={"Authorization": f"Bearer {KEY}"}
            ) as api,
        ):
            for body in (
                {"id": "lb", "type": "LB", "env": {"PORT": str(port)}},
                {"id": "empty", "type": "LOAD_BALANCER"},
                {"id": "deaf", "type": "LB", "env": {"PORT": str(_free_port())}},
                {"id": "queue"},
            ):
                r = await api.post("/v1/endpoints", json={"name": body["id"], "imageName": "unused", **body})
                assert r.status_code == 201, r.text
            yield Setup(cp, api, port)
    finally:
        server.should_exit = True
        await serving


async def test_any_method_and_body_reach_the_worker_without_the_key(setup: Setup) -> None:
    worker = setup.add_worker("lb")
    r = await setup.api.put(
        "/lb/lb/echo?x=1&y=2", content=b"\x00binary\xff", headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-runpod-worker-id"] == worker
    body = r.json()
    assert (body["method"], body["path"], body["query"], body["bytes"]) == ("PUT", "/echo", "x=1&y=2", 8)
    assert "authorization" not in body["headers"]
    assert body["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert body["headers"]["x-forwarded-proto"] == "http"
    # RunPod's host form, same worker
    r = await setup.api.get("/stats", headers={"Host": "lb.localhost"})
    assert r.status_code == 200 and r.headers["x-runpod-worker-id"] == worker


async def test_the_api_key_is_required(setup: Setup) -> None:
    setup.add_worker("lb")
    async with httpx.AsyncClient(base_url=setup.cp.client_url) as anonymous:
        r = await anonymous.get("/lb/lb/stats")
        assert r.status_code == 401 and "API key" in r.json()["error"]
        r = await anonymous.get("/lb/lb/stats", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401


async def test_a_streamed_answer_arrives_before_the_handler_ends(setup: Setup) -> None:
    setup.add_worker("lb")
    received: list[tuple[float, str]] = []
    async with setup.api.stream("GET", "/lb/lb/stream", params={"count": 3, "delay": 0.4}) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line:
                received.append((time.time(), line))
    assert len(received) == 3
    made_last = float(received[-1][1].rsplit(" ", 1)[1])  # the worker's clock when it wrote the last chunk
    assert received[0][0] < made_last, "the first chunk came only after the handler had written the last"


async def test_a_31_mb_body_is_refused_and_20_mb_pass(setup: Setup) -> None:
    setup.add_worker("lb")
    big = b"x" * (31 * 1024 * 1024)
    r = await setup.api.post("/lb/lb/echo", content=big)
    assert r.status_code == 413 and "30 MB" in r.json()["error"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while it streams
        for _ in range(31):
            yield b"y" * (1024 * 1024)

    r = await setup.api.post("/lb/lb/echo", content=chunks())
    assert r.status_code == 413, r.text
    r = await setup.api.post("/lb/lb/echo", content=b"z" * (20 * 1024 * 1024))
    assert r.status_code == 200 and r.json()["bytes"] == 20 * 1024 * 1024


async def test_nothing_listening_is_a_502_naming_the_worker(setup: Setup) -> None:
    worker = setup.add_worker("deaf")
    r = await setup.api.get("/lb/deaf/anything")
    assert r.status_code == 502
    assert worker in r.json()["error"] and "connection refused" in r.json()["error"]
    assert r.headers["x-runpod-worker-id"] == worker


async def test_no_worker_in_time_and_the_scaler_sees_the_wait(setup: Setup) -> None:
    assert setup.cp.lb is not None
    pending = asyncio.create_task(setup.api.get("/lb/empty/x"))
    for _ in range(200):
        if setup.cp.lb.pool.stats("empty").in_queue == 1:
            break
        await asyncio.sleep(0.005)
    assert setup.cp.lb.pool.stats("empty").in_queue_scaling == 1
    r = await pending
    assert (r.status_code, r.json()) == (400, {"error": "no workers available"})
    assert setup.cp.lb.pool.stats("empty").in_queue == 0


async def test_a_waiting_request_takes_the_first_worker_that_becomes_ready(setup: Setup) -> None:
    worker = setup.add_worker("lb", routable=False)
    pending = asyncio.create_task(setup.api.get("/lb/lb/stats"))
    await asyncio.sleep(0.05)
    assert setup.cp.lb is not None
    setup.cp.lb.pool.set_routable(worker, True)
    r = await pending
    assert r.status_code == 200 and r.headers["x-runpod-worker-id"] == worker


async def test_affinity(setup: Setup) -> None:
    a, b = setup.add_worker("lb"), setup.add_worker("lb")
    for target in (a, b, a):
        for form in (target, f"strict {target}", f"strict-resume {target}"):
            r = await setup.api.get("/lb/lb/stats", headers={"X-Runpod-Worker-Id": form})
            assert r.headers["x-runpod-worker-id"] == target, form
    r = await setup.api.get("/lb/lb/stats", headers={"X-Runpod-Worker-Id": "strict nobody"})
    assert r.status_code == 404 and r.json()["error"] == "affinity_worker_gone"
    assert setup.cp.lb is not None
    setup.cp.lb.pool.set_routable(b, False)  # not ready: strict waits, then times out
    r = await setup.api.get("/lb/lb/stats", headers={"X-Runpod-Worker-Id": f"strict {b}"})
    assert r.status_code == 400 and r.json()["error"] == "worker_timeout"
    r = await setup.api.get("/lb/lb/stats", headers={"X-Runpod-Worker-Id": b})  # soft: falls back
    assert r.status_code == 200 and r.headers["x-runpod-worker-id"] == a
    r = await setup.api.get("/lb/lb/stats", headers={"X-Runpod-Worker-Id": "strict"})
    assert r.status_code == 400 and "names no worker" in r.json()["error"]


async def test_requests_in_flight_make_the_worker_running(setup: Setup) -> None:
    assert setup.cp.core is not None
    worker = setup.add_worker("lb")
    pending = asyncio.create_task(setup.api.get("/lb/lb/slow", params={"seconds": 0.5}))
    record = setup.cp.core.workers.get(worker)
    assert record is not None

    def state() -> WorkerState:  # read afresh each time (the record changes under the test)
        assert record is not None
        return record.state

    for _ in range(200):
        if state() == WorkerState.RUNNING:
            break
        await asyncio.sleep(0.005)
    assert state() == WorkerState.RUNNING and record.job_ids == ["http-requests"]
    assert (await pending).status_code == 200
    for _ in range(200):  # IDLE once no request has been in flight for a moment (pool.LINGER_S)
        if state() == WorkerState.IDLE:
            break
        await asyncio.sleep(0.005)
    assert state() == WorkerState.IDLE and record.job_ids == []
    rows = (await setup.api.get("/v1/endpoints/lb/requests")).json()["requests"]
    assert rows[0]["method"] == "GET" and rows[0]["path"] == "/slow" and rows[0]["status"] == 200
    assert rows[0]["workerId"] == worker and rows[0]["ms"] >= 500
    # the dashboard's snapshot has the same rows, and the queue line counts requests
    (ep,) = [e for e in (await setup.api.get("/v1/dashboard")).json()["endpoints"] if e["id"] == "lb"]
    assert ep["type"] == "LB" and ep["requests"][0] == rows[0]
    assert ep["queue"]["inQueue"] == 0 and ep["queue"]["inProgress"] == 0


async def test_wrong_endpoints(setup: Setup) -> None:
    r = await setup.api.get("/lb/queue/x")
    assert r.status_code == 400 and "queue-based" in r.json()["error"]
    r = await setup.api.get("/lb/missing/x")
    assert r.status_code == 404
    r = await setup.api.post("/v2/lb/runsync", json={"input": {}})
    assert r.status_code == 400 and "/lb/lb/" in r.json()["error"]
    r = await setup.api.post("/v2/queue/run", json={"input": {}})  # queue-based: the job API as before
    assert r.status_code == 200 and r.json()["status"] == "IN_QUEUE"
    r = await setup.api.get("/v1/endpoints/lb")
    assert r.json()["type"] == "LB" and r.json()["scalerType"] == "REQUEST_COUNT"
    assert (await setup.api.get("/v1/endpoints/queue")).json()["type"] == "QB"


async def test_websocket_echo(setup: Setup) -> None:
    worker = setup.add_worker("lb")
    url = setup.cp.client_url.replace("http://", "ws://") + "/lb/lb/ws"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
        assert ws.response is not None and ws.response.headers["x-runpod-worker-id"] == worker
        await ws.send("hello")
        assert await ws.recv() == "echo: hello"
        await ws.send(b"\x01\x02")
        assert await ws.recv() == b"\x01\x02"
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(url):  # no key: refused before the upgrade
            pass


async def test_a_client_hanging_up_mid_stream_frees_the_worker(setup: Setup) -> None:
    assert setup.cp.lb is not None
    worker = setup.add_worker("lb")
    slot = setup.cp.lb.pool.slots[worker]
    async with setup.api.stream("GET", "/lb/lb/stream", params={"count": 1000, "delay": 0.05}) as r:
        async for line in r.aiter_lines():
            assert line.startswith("chunk 0")
            break
        assert slot.in_flight == 1
    for _ in range(400):  # the proxy notices the hang-up and lets go of the worker
        if slot.in_flight == 0:
            break
        await asyncio.sleep(0.01)
    assert slot.in_flight == 0
    row = (await setup.api.get("/v1/endpoints/lb/requests")).json()["requests"][0]
    assert row["path"] == "/stream" and row["workerId"] == worker


async def test_a_request_past_the_time_limit_gets_524(setup: Setup) -> None:
    assert setup.cp.lb is not None
    setup.add_worker("lb")
    setup.cp.lb.settings.lb_request_timeout_s = 0.3  # the settings object is the control plane's own
    r = await setup.api.get("/lb/lb/slow", params={"seconds": 3})
    assert r.status_code == 524 and "0.3s" in r.json()["error"]


async def test_an_answer_past_the_body_limit_is_cut(setup: Setup) -> None:
    assert setup.cp.lb is not None
    worker = setup.add_worker("lb")
    setup.cp.lb.settings.lb_max_body_mb = 1  # the settings object is the control plane's own
    received = 0
    with pytest.raises(httpx.RemoteProtocolError):  # the head went out: only the connection can end
        async with setup.api.stream("GET", "/lb/lb/bytes", params={"n": 3 * 1024 * 1024}) as r:
            assert r.status_code == 200 and r.headers["x-runpod-worker-id"] == worker
            async for chunk in r.aiter_raw():
                received += len(chunk)
    assert 0 < received <= 1024 * 1024
    assert setup.cp.lb.pool.slots[worker].in_flight == 0


async def test_a_waiting_request_ends_when_its_endpoint_is_deleted(setup: Setup) -> None:
    assert setup.cp.lb is not None
    setup.cp.lb.settings.lb_wait_for_worker_s = 60.0
    pending = asyncio.create_task(setup.api.get("/lb/empty/x"))
    for _ in range(200):
        if setup.cp.lb.pool.stats("empty").in_queue == 1:
            break
        await asyncio.sleep(0.005)
    assert (await setup.api.delete("/v1/endpoints/empty")).status_code in (200, 204)
    r = await asyncio.wait_for(pending, timeout=10)  # not the 60 s wait: it looks again within RECHECK_S
    assert (r.status_code, r.json()) == (400, {"error": "no workers available"})


async def test_graphql_save_endpoint_takes_the_type(setup: Setup) -> None:
    r = await setup.api.post(
        "/v1/templates", json={"name": "lb-t", "imageName": "unused", "isServerless": True}
    )
    assert r.status_code in (200, 201), r.text
    fields = f'name: "lb-gql", templateId: "{r.json()["id"]}", type: "LB", scalerType: "REQUEST_COUNT", workersMax: 1'
    query = "mutation { saveEndpoint(input: {" + fields + "}) { id type scalerType } }"
    saved = (await setup.api.post("/graphql", json={"query": query})).json()["data"]["saveEndpoint"]
    assert (saved["type"], saved["scalerType"]) == ("LB", "REQUEST_COUNT")
    assert (await setup.api.get(f"/v1/endpoints/{saved['id']}")).json()["type"] == "LB"
    listed = (
        await setup.api.post("/graphql", json={"query": "query { myself { endpoints { id type } } }"})
    ).json()
    assert {"id": saved["id"], "type": "LB"} in listed["data"]["myself"]["endpoints"]

"""The load balancer's whole path on the fake runtime, in milliseconds: each fake worker serves a tiny
ASGI app with uvicorn on its own loopback address (``ImageBehavior.http_app``), so the health poller,
the supervisor's scaling on requests in flight, the proxy and affinity run as they do on Docker (the
Docker tests in tests/integration/test_loadbalancer_docker.py cover the same things with containers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.control_plane import ControlPlane
from emulator.runtime.fake import FakeRuntime
from tests.supervisor.world import settings_for

pytestmark = pytest.mark.timeout(60)
IMAGE = "fake/lb:latest"


@dataclass
class Behaviour:
    """What every fake worker's app does; the test changes it while they run."""

    health: int = 200  # what /ping answers
    gate: asyncio.Event = field(default_factory=asyncio.Event)  # /hold waits for it
    seen: list[str] = field(default_factory=list)  # worker ids of the requests served

    def app(self, env: Mapping[str, str]) -> Any:
        """A raw ASGI app for one worker: /ping, /hold (until ``gate``), anything else echoes."""
        worker_id = env.get("RUNPOD_POD_ID", "?")

        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
                return
            if scope["path"] == "/ping":
                status, body = self.health, b""
            else:
                self.seen.append(worker_id)
                if scope["path"] == "/hold":
                    await self.gate.wait()
                status, body = 200, f'{{"worker": "{worker_id}", "path": "{scope["path"]}"}}'.encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        return asgi


@dataclass
class Setup:
    cp: ControlPlane
    api: httpx.AsyncClient
    fake: FakeRuntime
    behaviour: Behaviour

    async def workers(self, endpoint: str) -> list[dict[str, Any]]:
        r = await self.api.get(f"/v1/endpoints/{endpoint}/workers")
        r.raise_for_status()
        return [w for w in r.json()["workers"] if not w["standby"]]

    async def until(self, endpoint: str, check: Callable[[list[dict[str, Any]]], bool], what: str) -> Any:
        for _ in range(1000):
            found = await self.workers(endpoint)
            if check(found):
                return found
            await asyncio.sleep(0.01)
        raise AssertionError(f"not reached: {what}; workers: {await self.workers(endpoint)}")


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    behaviour = Behaviour()
    fake = FakeRuntime(images={IMAGE})
    fake.set_image_behavior(IMAGE, http_app=behaviour.app)
    settings = settings_for(
        tmp_path / "data",
        worker_host="127.0.0.1",  # the fake network's gateway is not an address of this machine
        lb_health_interval_s=0.05,
        lb_health_fast_interval_s=0.01,
        lb_unhealthy_after_s=0.2,
        lb_wait_for_worker_s=20.0,
    )
    try:
        async with (
            ControlPlane(settings, runtime=fake) as cp,
            httpx.AsyncClient(base_url=cp.client_url, timeout=30) as api,
        ):
            yield Setup(cp, api, fake, behaviour)
    finally:
        behaviour.gate.set()
        await fake.close()


async def create(s: Setup, **body: Any) -> None:
    # PORT: a fake worker binds its own loopback address; a high port keeps clear of anything else
    body = {
        "name": body["id"],
        "imageName": IMAGE,
        "type": "LB",
        "extraWorkers": 0,
        "env": {"PORT": "18080"},
        **body,
    }
    r = await s.api.post("/v1/endpoints", json=body)
    assert r.status_code == 201, r.text


async def until_seen(behaviour: Behaviour, count: int) -> None:
    for _ in range(1000):
        if len(behaviour.seen) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} requests wanted at the workers, {behaviour.seen} arrived")


async def test_health_states_from_initializing_to_unhealthy(setup: Setup) -> None:
    setup.behaviour.health = 204  # initializing
    await create(setup, id="h", workersMin=1)
    (w,) = await setup.until(
        "h", lambda ws: len(ws) == 1 and "answered 204" in (ws[0]["health"] or ""), "a 204"
    )
    assert w["status"] == "INITIALIZING"
    setup.behaviour.health = 200
    (w,) = await setup.until("h", lambda ws: ws[0]["status"] == "IDLE", "IDLE after the first 200")
    assert w["readyAt"] >= w["startedAt"] and "answered 200" in w["health"]
    setup.behaviour.health = 503
    await setup.until("h", lambda ws: any(x["status"] == "UNHEALTHY" for x in ws), "UNHEALTHY on 503s")
    failed = next(
        x
        for x in (await setup.api.get("/v1/endpoints/h/workers")).json()["workers"]
        if x["status"] == "UNHEALTHY"
    )
    assert "503" in (failed["reason"] or ""), failed


async def test_scale_from_zero_worker_id_and_affinity(setup: Setup) -> None:
    await create(setup, id="z", workersMax=2)
    assert await setup.workers("z") == []
    r = await setup.api.get("/lb/z/hello")  # no worker yet: one is started for it
    assert r.status_code == 200, r.text
    worker = r.headers["x-runpod-worker-id"]
    assert r.json() == {"worker": worker, "path": "/hello"}
    row = (await setup.api.get("/v1/endpoints/z/requests")).json()["requests"][0]
    assert row["workerId"] == worker and row["status"] == 200 and row["coldStart"] is not None
    for form in (worker, f"strict {worker}"):
        r = await setup.api.get("/lb/z/again", headers={"X-Runpod-Worker-Id": form})
        assert r.status_code == 200 and r.headers["x-runpod-worker-id"] == worker
    r = await setup.api.get("/again", headers={"Host": "z.localhost"})  # RunPod's host form
    assert r.status_code == 200 and r.headers["x-runpod-worker-id"] == worker
    r = await setup.api.get("/lb/z/again", headers={"X-Runpod-Worker-Id": "strict z-gone"})
    assert r.status_code == 404 and r.json()["error"] == "affinity_worker_gone"
    # an endpoint deleted and made again under the same id starts with no request rows
    assert (await setup.api.delete("/v1/endpoints/z")).status_code == 204
    await create(setup, id="z", workersMax=2)
    assert (await setup.api.get("/v1/endpoints/z/requests")).json()["requests"] == []


async def test_requests_in_flight_scale_out_and_spread(setup: Setup) -> None:
    await create(setup, id="c", workersMin=1, workersMax=3, scalerValue=1)
    await setup.until("c", lambda ws: [w["status"] for w in ws] == ["IDLE"], "one IDLE worker")
    tasks = [asyncio.ensure_future(setup.api.get("/lb/c/hold")) for _ in range(3)]
    # three requests, one in flight per worker wanted: two more workers start, and the two requests
    # the first worker cannot take wait for them (a worker on its way is preferred over a second request)
    running = await setup.until(
        "c", lambda ws: len(ws) == 3 and all(w["status"] == "RUNNING" for w in ws), "three RUNNING workers"
    )
    await until_seen(setup.behaviour, 3)  # leased before they reach the app: wait for them to arrive
    assert sorted(setup.behaviour.seen) == sorted(w["id"] for w in running), setup.behaviour.seen
    setup.behaviour.gate.set()
    answers = await asyncio.gather(*tasks)
    assert [r.status_code for r in answers] == [200, 200, 200]
    # six at once on three ready workers: two each (fewest in flight first)
    setup.behaviour.gate.clear()
    setup.behaviour.seen.clear()
    tasks = [asyncio.ensure_future(setup.api.get("/lb/c/hold")) for _ in range(6)]
    await until_seen(setup.behaviour, 6)
    setup.behaviour.gate.set()
    answers = await asyncio.gather(*tasks)
    assert [r.status_code for r in answers] == [200] * 6
    per_worker = sorted(setup.behaviour.seen.count(w["id"]) for w in running)
    assert per_worker == [2, 2, 2], setup.behaviour.seen


async def test_a_worker_serves_on_its_own_address_until_its_container_goes(setup: Setup) -> None:
    await create(setup, id="p", workersMin=1)
    (w,) = await setup.until("p", lambda ws: len(ws) == 1 and ws[0]["status"] == "IDLE", "IDLE")
    address = setup.fake.containers[w["containerId"]].address
    assert address is not None and address.startswith("127.") and address in w["health"]
    async with httpx.AsyncClient(timeout=5) as direct:
        assert (await direct.get(f"http://{address}:18080/ping")).status_code == 200
        assert (await setup.api.delete("/v1/endpoints/p")).status_code == 204
        with pytest.raises(httpx.ConnectError):  # the container was removed: so was its server
            await direct.get(f"http://{address}:18080/ping")


def test_listen_ports_and_loopback_addresses() -> None:
    from emulator.runtime.fake_http import AddressPool, listen_ports

    assert listen_ports({}) == [80]
    assert listen_ports({"PORT": "5000"}) == [5000]
    assert listen_ports({"PORT": "5000", "PORT_HEALTH": "5001"}) == [5000, 5001]
    assert listen_ports({"PORT": "x", "PORT_HEALTH": "5000"}) == [80, 5000]
    pool = AddressPool()
    taken = {pool.take() for _ in range(1000)}
    assert len(taken) == 1000 and all(a.startswith("127.") and a.count(".") == 3 for a in taken)

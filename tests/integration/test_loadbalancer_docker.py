"""Load-balancing endpoints with real Docker and the ``load-balancer`` sample (FastAPI + uvicorn):
scale from zero with the cold start reported, concurrent requests scaled out and spread, worker ids
and strict affinity, streaming, WebSockets and the body limit through real containers, a worker with
no health route going UNHEALTHY with the reason, a port nothing listens on (502), and a rolling update
under load with no failed request. Every container is removed by its instance label (docker_fixtures)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
import websockets

from emulator.config import Settings
from emulator.control_plane import ControlPlane
from tests.integration import docker_fixtures
from tests.integration.docker_fixtures import Instance, docker_settings, eventually, sample

docker_session = docker_fixtures.docker_session
instance = docker_fixtures.instance

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]
IMAGE = sample("load-balancer")


@pytest.fixture(autouse=True)
def _image(docker_session: docker_fixtures.DockerSession) -> None:
    if not docker_session.client.images.list(name=IMAGE):
        pytest.skip(f"{IMAGE} is missing: run `python -m emulator.images build-samples load-balancer`")


def settings(inst: Instance, **overrides: Any) -> Settings:
    return docker_settings(inst, **{"lb_unhealthy_after_s": 1.0, "lb_health_interval_s": 0.5, **overrides})


async def create(api: httpx.AsyncClient, **body: Any) -> None:
    body = {"name": body["id"], "imageName": IMAGE, "type": "LB", "extraWorkers": 0, **body}
    r = await api.post("/v1/endpoints", json=body)
    assert r.status_code == 201, r.text


async def workers(api: httpx.AsyncClient, endpoint: str) -> list[dict[str, Any]]:
    r = await api.get(f"/v1/endpoints/{endpoint}/workers")
    r.raise_for_status()
    return [w for w in r.json()["workers"] if not w["standby"]]


async def test_scale_from_zero_then_affinity_streaming_websocket_and_limits(instance: Instance) -> None:
    async with (
        ControlPlane(settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=150) as api,
    ):
        await create(api, id="lbz", workersMax=2, env={"WARMUP_S": "1.0"})
        assert await workers(api, "lbz") == []
        # RunPod's template request (worker-load-balancing README), from zero workers
        r = await api.post("/lb/lbz/generate", json={"prompt": "Hello, world!"})
        assert r.status_code == 200, r.text
        assert r.json()["generated_text"] == "Response to: Hello, world!"
        worker = r.headers["x-runpod-worker-id"]
        (w,) = await workers(api, "lbz")
        assert w["id"] == worker and w["status"] in ("IDLE", "RUNNING")
        assert w["readyAt"] - w["startedAt"] >= 1.0  # its /ping answered 204 for its first second
        assert "answered 200" in w["health"]
        row = (await api.get("/v1/endpoints/lbz/requests")).json()["requests"][0]
        assert row["workerId"] == worker and row["status"] == 200 and row["path"] == "/generate"
        cold = row["coldStart"]
        assert cold["readyS"] >= 1.0 and cold["startS"] > 0 and cold["createS"] > 0
        assert row["waitMs"] >= cold["readyS"] * 1000  # the request waited through the cold start

        # the id comes back on every answer; strict affinity keeps to it; RunPod's host form
        for form in (worker, f"strict {worker}", f"strict-resume {worker}"):
            r = await api.get("/lb/lbz/stats", headers={"X-Runpod-Worker-Id": form})
            assert r.headers["x-runpod-worker-id"] == worker
        r = await api.get("/stats", headers={"Host": "lbz.localhost"})
        assert r.status_code == 200 and r.json()["worker"] == worker
        r = await api.get("/lb/lbz/stats", headers={"X-Runpod-Worker-Id": "strict lbz-gone"})
        assert r.status_code == 404 and r.json()["error"] == "affinity_worker_gone"

        # a streamed answer: the first chunk arrives before the handler writes its last
        first_at = None
        async with api.stream("GET", "/lb/lbz/stream", params={"count": 3, "delay": 0.5}) as s:
            lines = []
            async for line in s.aiter_lines():
                if line:
                    first_at = first_at or time.time()
                    lines.append(line)
        assert len(lines) == 3 and first_at is not None
        assert first_at < float(lines[-1].rsplit(" ", 1)[1])

        url = cp.client_url.replace("http://", "ws://") + "/lb/lbz/ws"
        async with websockets.connect(url) as ws:
            assert ws.response is not None and ws.response.headers["x-runpod-worker-id"] == worker
            await ws.send("ping over the proxy")
            assert await ws.recv() == "echo: ping over the proxy"

        r = await api.post("/lb/lbz/echo", content=b"x" * (31 * 1024 * 1024))
        assert r.status_code == 413
        before = (await api.get("/lb/lbz/stats")).json()["total_requests"]
        r = await api.post("/lb/lbz/echo", content=b"x" * (5 * 1024 * 1024))
        assert r.status_code == 200 and r.json()["bytes"] == 5 * 1024 * 1024
        assert (await api.get("/lb/lbz/stats")).json()[
            "total_requests"
        ] == before + 2  # the 31 MB never got there
        metrics = (await api.get("/metrics")).text
        assert 'emulator_lb_requests_total{endpoint="lbz",status="413"}' in metrics


async def test_concurrent_requests_scale_out_and_spread(instance: Instance) -> None:
    async with (
        ControlPlane(settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=150) as api,
    ):
        # one request in flight per worker (scalerValue 1): three at once want three workers
        await create(api, id="lbc", workersMin=1, workersMax=3, scalerValue=1, env={"WARMUP_S": "0.3"})
        await eventually(
            lambda: _has(api, "lbc", lambda ws: [w["status"] for w in ws] == ["IDLE"]), "one IDLE worker"
        )
        answers = await asyncio.gather(*(api.get("/lb/lbc/slow", params={"seconds": 2}) for _ in range(3)))
        assert [r.status_code for r in answers] == [200, 200, 200]
        # three in flight on one worker: the scaler asked for two more (a free worker may have taken the
        # later requests before the new ones were ready: a warm worker beats a cold start)
        ready = await eventually(
            lambda: _has(api, "lbc", lambda ws: [w["status"] for w in ws] == ["IDLE"] * 3 and ws),
            "three IDLE workers",
        )
        # six at once on three ready workers: two each (fewest in flight, then least recently used)
        answers = await asyncio.gather(*(api.get("/lb/lbc/slow", params={"seconds": 2}) for _ in range(6)))
        assert [r.status_code for r in answers] == [200] * 6
        per_worker = sorted(
            sum(1 for r in answers if r.headers["x-runpod-worker-id"] == w["id"]) for w in ready
        )
        assert per_worker == [2, 2, 2]


async def test_no_health_route_goes_unhealthy_and_a_deaf_port_is_a_502(instance: Instance) -> None:
    async with (
        ControlPlane(settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=60) as api,
    ):
        await create(
            api, id="nohealth", workersMin=1, workersMax=1, env={"HEALTH_CHECK_PATH": "/no-such-route"}
        )
        # the app listens on 80 and answers its health there, but requests go to PORT 81
        await create(
            api,
            id="deaf",
            workersMin=1,
            workersMax=1,
            env={"PORT": "81", "PORT_HEALTH": "80", "LISTEN_PORT": "80", "WARMUP_S": "0"},
        )
        failed = await eventually(
            lambda: _has(api, "nohealth", lambda ws: ws and "answered 404" in (ws[0]["reason"] or "") and ws),
            "the worker without a health route failing",
        )
        assert "health check failed" in failed[0]["reason"] and "/no-such-route" in failed[0]["reason"]
        deaf = await eventually(
            lambda: _has(api, "deaf", lambda ws: ws and ws[0]["status"] == "IDLE" and ws), "deaf IDLE"
        )
        r = await api.get("/lb/deaf/anything")
        assert r.status_code == 502
        assert deaf[0]["id"] in r.json()["error"] and "port 81" in r.json()["error"]
        assert "connection refused" in r.json()["error"]


async def test_a_health_port_nothing_listens_on_times_out_the_start_naming_it(instance: Instance) -> None:
    """RunPod's worker-load-balancing README once said PORT 5000 and PORT_HEALTH 5001 while its app
    listens on PORT only: the health check never answers, the start-up times out with the port in the
    reason, and a request waiting meanwhile gets "no workers available"."""
    async with (
        ControlPlane(settings(instance, startup_timeout_s=3.0, lb_wait_for_worker_s=2.0)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=60) as api,
    ):
        env = {"PORT": "5000", "PORT_HEALTH": "5001", "LISTEN_PORT": "5000", "WARMUP_S": "0"}
        await create(api, id="hp", workersMin=1, workersMax=1, env=env)
        r = await api.post("/lb/hp/generate", json={"prompt": "Hello, world!"})
        assert r.status_code == 400 and r.json() == {"error": "no workers available"}
        failed = await eventually(
            lambda: _has(api, "hp", lambda ws: ws and "start-up timed out" in (ws[0]["reason"] or "") and ws),
            "the start-up timing out",
        )
        reason = failed[0]["reason"]
        assert ":5001/ping: no answer" in reason and "connection refused" in reason, reason


async def test_rolling_update_under_load_fails_no_request(instance: Instance) -> None:
    async with (
        ControlPlane(settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=150) as api,
    ):
        await create(api, id="roll", workersMin=2, workersMax=2, env={"WARMUP_S": "0.3", "V": "1"})
        old = await eventually(
            lambda: _has(api, "roll", lambda ws: [w["status"] for w in ws] == ["IDLE", "IDLE"] and ws),
            "2 IDLE",
        )
        results: list[tuple[int, str]] = []
        stop = asyncio.Event()

        async def client() -> None:
            while not stop.is_set():
                r = await api.get("/lb/roll/slow", params={"seconds": 0.1})
                results.append((r.status_code, r.headers.get("x-runpod-worker-id", "")))

        load = [asyncio.create_task(client()) for _ in range(4)]
        await eventually(lambda: _true(len(results) >= 8), "load running")
        r = await api.patch("/v1/endpoints/roll", json={"env": {"WARMUP_S": "0.3", "V": "2"}})
        assert r.status_code == 200 and r.json()["version"] == 2

        def updated(ws: list[dict[str, Any]]) -> bool:
            return len(ws) == 2 and all(w["version"] == 2 and w["status"] in ("IDLE", "RUNNING") for w in ws)

        new = await eventually(
            lambda: _has(api, "roll", lambda ws: updated(ws) and ws), "2 workers of version 2", 90
        )
        after = len(results)
        await eventually(lambda: _true(len(results) >= after + 8), "load on the new workers")
        stop.set()
        await asyncio.gather(*load)
        assert {status for status, _ in results} == {200}, [r for r in results if r[0] != 200][:5]
        served = {worker for _, worker in results}
        assert {w["id"] for w in old} <= served and {w["id"] for w in new} <= served
        r = await api.get("/lb/roll/stats", headers={"X-Runpod-Worker-Id": f"strict {old[0]['id']}"})
        assert r.status_code == 404 and r.json()["error"] == "affinity_worker_gone"


async def _has(api: httpx.AsyncClient, endpoint: str, check: Any) -> Any:
    return check(await workers(api, endpoint))


async def _true(value: bool) -> bool:
    return value


async def test_flashboot_pauses_an_idle_worker_and_strict_resume_brings_it_back(instance: Instance) -> None:
    async with (
        ControlPlane(settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=120) as api,
    ):
        await create(api, id="lbf", workersMax=1, idleTimeout=1, flashboot=True, env={"WARMUP_S": "0"})
        r = await api.get("/lb/lbf/stats")
        assert r.status_code == 200
        worker = r.headers["x-runpod-worker-id"]
        await eventually(
            lambda: _has(api, "lbf", lambda ws: ws and ws[0]["paused"] and ws), "the idle worker paused", 30
        )
        r = await api.get("/lb/lbf/stats", headers={"X-Runpod-Worker-Id": f"strict-resume {worker}"})
        assert r.status_code == 200 and r.headers["x-runpod-worker-id"] == worker
        row = (await api.get("/v1/endpoints/lbf/requests")).json()["requests"][0]
        assert row["coldStart"] is not None and "resumeS" in row["coldStart"]  # resumed, not started anew
        (w,) = await workers(api, "lbf")
        assert w["id"] == worker and not w["paused"]

"""The fault-injection API (``POST /v1/workers/{id}/faults``) over real HTTP with FakeRuntime: validation,
auth, 404, and what kill, oom, hang_startup and throttle do to a worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.clock import FakeClock
from emulator.control_plane import ControlPlane
from emulator.models import JobStatus, WorkerState
from emulator.runtime.fake import FakeRuntime
from emulator.supervisor.launch import HANG_WORKER_URL
from tests.supervisor.world import World, settings_for, state_now

IMAGE = "serverless-emulator/sample-echo:latest"
KEY = {"Authorization": "Bearer sekrit"}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, FakeRuntime]]:
    fake = FakeRuntime(images={IMAGE})
    settings = settings_for(
        tmp_path / "data", worker_host="127.0.0.1", api_key="sekrit", reconcile_interval_s=0.05
    )
    async with (
        ControlPlane(settings, runtime=fake) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=10, headers=KEY) as client,
    ):
        body = {"name": "e", "id": "e", "imageName": IMAGE, "workersMin": 1, "extraWorkers": 0}
        assert (await client.post("/v1/endpoints", json=body)).status_code == 201
        yield client, fake


async def until(probe: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def worker(client: httpx.AsyncClient, **match: Any) -> dict[str, Any] | None:
    for w in (await client.get("/v1/endpoints/e/workers")).json()["workers"]:
        if all(w.get(k) == v for k, v in match.items()):
            return w  # type: ignore[no-any-return]
    return None


async def test_bad_bodies_unknown_workers_and_the_api_key(api: tuple[httpx.AsyncClient, FakeRuntime]) -> None:
    client, _ = api
    w = await until(lambda: worker(client, status="INITIALIZING"), "a worker")
    url = f"/v1/workers/{w['id']}/faults"
    r = await client.post(url, json={"kind": "explode"})
    assert r.status_code == 422 and r.json()["field"] == "kind"
    r = await client.post(url, json={"kind": "throttle", "durationS": -1})
    assert r.status_code == 422 and r.json()["field"] == "durationS"
    r = await client.post(url, json={"kind": "kill", "signal": 9})
    assert r.status_code == 422 and r.json()["field"] == "signal"
    r = await client.post(url, json={})
    assert r.status_code == 422 and r.json()["field"] == "kind"
    r = await client.post(url, content=b"not json")
    assert r.status_code == 400
    r = await client.post("/v1/workers/nobody/faults", json={"kind": "kill"})
    assert r.status_code == 404 and "nobody" in r.json()["error"]
    async with httpx.AsyncClient(base_url=str(client.base_url)) as anonymous:
        r = await anonymous.post(url, json={"kind": "kill"})
        assert r.status_code == 401


async def test_kill_and_oom_make_the_worker_unhealthy_saying_why(
    api: tuple[httpx.AsyncClient, FakeRuntime],
) -> None:
    client, fake = api
    w = await until(lambda: worker(client, status="INITIALIZING"), "a worker")
    r = await client.post(f"/v1/workers/{w['id']}/faults", json={"kind": "kill"})
    assert r.status_code == 202 and r.json()["status"] == "applied"
    assert fake.containers[w["containerId"]].exit_code == 137
    reasons: list[str] = []

    async def restarted_after(text: str) -> bool:
        found = await worker(client, id=w["id"])
        if found and found["reason"]:
            reasons.append(found["reason"])
        return bool(found and found["restarts"] >= 1 and any(text in r for r in reasons))

    await until(lambda: restarted_after("(injected fault: kill)"), "the kill reported")
    assert any("killed (exit 137" in r for r in reasons)
    again = await until(lambda: worker(client, id=w["id"], status="INITIALIZING", restarts=1), "the restart")
    r = await client.post(f"/v1/workers/{w['id']}/faults", json={"kind": "oom"})
    assert r.status_code == 202
    await until(lambda: restarted_after("out of memory (exit 137; injected fault: oom)"), "the oom reported")
    assert again["containerId"] != w["containerId"]


async def test_hang_startup_makes_the_next_start_never_reach_the_control_plane(
    api: tuple[httpx.AsyncClient, FakeRuntime],
) -> None:
    client, fake = api
    w = await until(lambda: worker(client, status="INITIALIZING"), "a worker")
    r = await client.post(f"/v1/workers/{w['id']}/faults", json={"kind": "hang_startup"})
    assert r.status_code == 202 and r.json()["status"] == "armed"
    assert not fake.spec_of(w["containerId"]).env["RUNPOD_WEBHOOK_GET_JOB"].startswith(HANG_WORKER_URL)
    await client.post(f"/v1/workers/{w['id']}/faults", json={"kind": "kill"})
    hung = await until(
        lambda: worker(client, id=w["id"], status="INITIALIZING", restarts=1), "the restarted worker"
    )
    hung = await until(
        lambda: worker(client, id=w["id"], containerId=hung["containerId"] or "-"), "its container"
    )
    env = fake.spec_of(hung["containerId"]).env
    assert env["RUNPOD_WEBHOOK_GET_JOB"].startswith(HANG_WORKER_URL)


async def test_throttle_takes_the_worker_off_for_a_while(api: tuple[httpx.AsyncClient, FakeRuntime]) -> None:
    client, fake = api
    w = await until(lambda: worker(client, status="INITIALIZING"), "a worker")
    r = await client.post(f"/v1/workers/{w['id']}/faults", json={"kind": "throttle", "durationS": 0.6})
    assert r.status_code == 202 and r.json()["durationS"] == 0.6
    throttled = await worker(client, id=w["id"])
    assert throttled is not None and throttled["status"] == "THROTTLED"
    assert "injected fault: throttle" in throttled["reason"] and throttled["containerId"] is None
    assert throttled["nextRetryAt"] == pytest.approx(time.time() + 0.6, abs=0.5)
    assert w["containerId"] not in fake.containers
    health = (await client.get("/v2/e/health")).json()
    assert health["workers"]["throttled"] == 1
    back = await until(lambda: worker(client, id=w["id"], status="INITIALIZING"), "the worker back", 5)
    assert back["containerId"] and back["containerId"] in fake.containers
    r = await client.post(f"/v1/workers/{w['id']}/faults", json={"kind": "throttle"})
    assert r.status_code == 202
    r = await client.post(f"/v1/workers/{w['id']}/faults", json={"kind": "kill"})
    assert r.status_code == 409 and "no running container" in r.json()["error"]


# --- the same faults in the deterministic world (FakeClock, simulated workers) --------------------------
class HangAware(FakeRuntime):
    """A container told the hang_startup address never becomes ready (as a real worker never connects)."""

    async def start(self, container_id: str) -> None:
        await super().start(container_id)
        container = self.containers[container_id]
        if container.spec.env.get("RUNPOD_WEBHOOK_GET_JOB", "").startswith(HANG_WORKER_URL):
            container.ready = False


async def test_kill_mid_job_requeues_it_and_hang_startup_ends_in_a_startup_timeout(tmp_path: Path) -> None:
    clock = FakeClock()
    world = await World.create(tmp_path / "w", fake=HangAware(clock=clock), clock=clock, startup_timeout_s=3)
    try:
        world.endpoint(workersMin=1, workersMax=1)
        await world.step()
        (w,) = world.workers()
        (job,) = world.submit(seconds=5)
        await world.step()
        assert w.state == WorkerState.RUNNING
        answer = await world.sup.inject_fault(w.id, "kill", 30)
        assert answer["jobIds"] == [job.id]
        await world.sup.inject_fault(w.id, "hang_startup", 30)
        await world.step()
        assert state_now(w) == WorkerState.UNHEALTHY and "(injected fault: kill)" in (w.reason or "")
        assert world.job(job.id).retries == 1 and world.job(job.id).status == JobStatus.IN_QUEUE
        await world.step()
        assert state_now(w) == WorkerState.INITIALIZING  # restarted, but this start hangs
        await world.step(2)
        assert state_now(w) == WorkerState.INITIALIZING
        await world.step(1.5)
        assert state_now(w) == WorkerState.UNHEALTHY
        assert "start-up timed out" in (w.reason or "") and "(injected fault: hang_startup)" in (
            w.reason or ""
        )
        for _ in range(6):
            await world.step(3)
        assert world.job(job.id).status == JobStatus.COMPLETED and world.job(job.id).worker_id == w.id
    finally:
        await world.sup.stop()
        world.core.close()

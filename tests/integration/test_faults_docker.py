"""Issue #13 items 1 to 3 with real containers running RunPod's own SDK (runpod 1.12.0, unmodified).

A small test image is built on ``serverless-emulator/sample-runpod-sdk`` with one handler file and
removed after the module: a result the SDK cannot serialise, a sync sleep past the execution timeout,
a result over the payload limit. Every container carries the test's instance label (docker_fixtures).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.control_plane import ControlPlane
from tests.integration import docker_fixtures
from tests.integration.docker_fixtures import DockerSession, Instance, docker_settings, eventually, sample

docker_session = docker_fixtures.docker_session
instance = docker_fixtures.instance

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]

HANDLER = """\
import time

import runpod


def handler(job):
    job_input = job.get("input") or {}
    print(f"handler ran {job['id']}", flush=True)
    mode = job_input.get("mode")
    if mode == "bytes":  # the SDK cannot serialise it: it logs an error and drops the result
        return {"blob": b"x"}
    if mode == "sleep":  # a sync handler the SDK cannot interrupt
        time.sleep(float(job_input["seconds"]))
        return {"slept": job_input["seconds"]}
    if mode == "big":
        return "x" * int(job_input["bytes"])
    return {"echo": job_input}


runpod.serverless.start({"handler": handler})
"""


@pytest.fixture(scope="module")
def faults_image(docker_session: DockerSession, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    context: Path = tmp_path_factory.mktemp("faults-image")
    (context / "handler.py").write_text(HANDLER)
    (context / "Dockerfile").write_text(f"FROM {sample('runpod-sdk')}\nCOPY handler.py /app/handler.py\n")
    tag = f"serverless-emulator/test-faults-{docker_session.run_id}-{uuid.uuid4().hex[:6]}:latest"
    docker_session.client.images.build(
        path=str(context), tag=tag, rm=True, labels={"serverless-emulator.test": "faults"}
    )
    try:
        yield tag
    finally:
        docker_session.client.images.remove(tag, force=True)


async def _endpoint(api: httpx.AsyncClient, image: str, **extra: Any) -> None:
    body = dict(id="rp", name="rp", imageName=image, workersMin=1, workersMax=1, extraWorkers=0) | extra
    r = await api.post("/v1/endpoints", json=body)
    assert r.status_code == 201, r.text


async def _workers(api: httpx.AsyncClient) -> list[dict[str, Any]]:
    return (await api.get("/v1/endpoints/rp/workers")).json()["workers"]  # type: ignore[no-any-return]


async def _idle_worker(api: httpx.AsyncClient) -> dict[str, Any]:
    async def idle() -> dict[str, Any] | None:
        workers = await _workers(api)
        return workers[0] if len(workers) == 1 and workers[0]["status"] == "IDLE" else None

    return await eventually(idle, "one IDLE worker", timeout_s=90)


async def _terminal(api: httpx.AsyncClient, job_id: str, timeout_s: float = 60) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        body = (await api.get(f"/v2/rp/status/{job_id}")).json()
        return body if body["status"] not in ("IN_QUEUE", "IN_PROGRESS") else None

    return await eventually(done, f"job {job_id} to end", timeout_s=timeout_s)


async def test_results_the_sdk_cannot_post_are_not_run_again_and_time_out(
    instance: Instance, faults_image: str
) -> None:
    """Item 1: a result the SDK cannot serialise, and item 3: a 12 MB result on /run, whose post gets
    400 (the client never sees it). The SDK drops both; RunPod does not re-run the job: TIMED_OUT."""
    async with (
        ControlPlane(docker_settings(instance, worker_lost_after_s=3.0)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=60) as api,
    ):
        await _endpoint(api, faults_image)
        worker = await _idle_worker(api)
        policy = {"executionTimeout": 6000}
        unserialisable = (
            await api.post("/v2/rp/run", json={"input": {"mode": "bytes"}, "policy": policy})
        ).json()["id"]
        too_big = (
            await api.post(
                "/v2/rp/run", json={"input": {"mode": "big", "bytes": 12 * 1024 * 1024}, "policy": policy}
            )
        ).json()["id"]
        for job_id in (unserialisable, too_big):
            final = await _terminal(api, job_id)
            assert final["status"] == "TIMED_OUT" and "output" not in final, {
                k: str(v)[:300] for k, v in final.items()
            }
            assert final["retries"] == 0 and final["workerId"] == worker["id"]
            assert "stopped reporting the job" in final["error"]
        assert "a result was refused" in final["error"] and "10 MB" in final["error"]
        detail = (await api.get(f"/v1/endpoints/rp/jobs/{too_big}")).json()
        assert "10 MB" in detail["resultRefused"] and "/run" in detail["resultRefused"]
        logs = (await api.get(f"/v1/workers/{worker['id']}/logs", params={"tail": 500})).text
        assert (
            logs.count(f"handler ran {unserialisable}") == 1 and logs.count(f"handler ran {too_big}") == 1
        ), logs
        # the worker is free and serves the next job
        r = await api.post("/v2/rp/runsync", json={"input": {"mode": "echo", "n": 2}})
        assert r.json()["status"] == "COMPLETED" and r.json()["output"] == {"echo": {"mode": "echo", "n": 2}}
        assert r.json()["workerId"] == worker["id"]


async def test_a_timed_out_sync_handler_stops_its_worker_and_the_next_job_gets_a_fresh_one(
    instance: Instance, faults_image: str
) -> None:
    """Item 2: "When exceeded, the job fails and the worker stops" (RunPod's endpoint settings)."""
    async with (
        ControlPlane(docker_settings(instance, ended_job_grace_s=2.0)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=120) as api,
    ):
        await _endpoint(api, faults_image)
        first = await _idle_worker(api)
        r = await api.post(
            "/v2/rp/run",
            json={"input": {"mode": "sleep", "seconds": 60}, "policy": {"executionTimeout": 5000}},
        )
        job_id = r.json()["id"]
        final = await _terminal(api, job_id, timeout_s=30)
        assert final["status"] == "TIMED_OUT"
        second = asyncio.create_task(api.post("/v2/rp/runsync", json={"input": {"mode": "echo", "n": 2}}))
        seen: list[str] = []

        async def replaced() -> bool:
            workers = await _workers(api)
            seen.extend(w["status"] for w in workers if w["id"] == first["id"])
            return all(w["id"] != first["id"] for w in workers)

        await eventually(replaced, "the first worker to be stopped", timeout_s=30, every_s=0.05)
        assert seen and "IDLE" not in seen, seen  # while its handler ran it was never shown IDLE
        assert seen[0] == "RUNNING"
        body = (await second).json()
        assert body["status"] == "COMPLETED" and body["workerId"] != first["id"], body
        events = (await api.get("/v1/endpoints/rp/events")).json()
        text = str(events)
        assert "execution timeout: worker stopped" in text, text[-2000:]

"""Worker lifecycle with real Docker and the sample images: a rolling update of 10 workers under steady
load, a crash loop backing off in real seconds, GPU pinning and THROTTLED in emulate mode, NVIDIA device
requests as the engine receives (and refuses) them, a FlashBoot resume against a cold start, and the
fault-injection API. Every container a test makes is removed by its instance label (docker_fixtures)."""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections.abc import Awaitable
from typing import Any

import httpx
import pytest

from emulator.config import Settings
from emulator.control_plane import ControlPlane
from tests.integration import docker_fixtures
from tests.integration.docker_fixtures import Instance, T, docker_settings, eventually, sample

docker_session = docker_fixtures.docker_session  # fixtures, shared without a conftest of our own
instance = docker_fixtures.instance

pytestmark = [pytest.mark.docker, pytest.mark.timeout(240)]


def settings(inst: Instance, **overrides: Any) -> Settings:
    return docker_settings(inst, **{"worker_lost_after_s": 10.0, **overrides})


async def create(api: httpx.AsyncClient, **body: Any) -> httpx.Response:
    body.setdefault("name", body["id"])
    body.setdefault("extraWorkers", 0)
    return await api.post("/v1/endpoints", json=body)


async def workers(api: httpx.AsyncClient, endpoint: str) -> list[dict[str, Any]]:
    r = await api.get(f"/v1/endpoints/{endpoint}/workers")
    r.raise_for_status()
    return [w for w in r.json()["workers"] if not w["standby"]]


async def statuses(api: httpx.AsyncClient, endpoint: str) -> list[str]:
    return sorted(w["status"] for w in await workers(api, endpoint))


async def run_job(api: httpx.AsyncClient, endpoint: str, job_input: dict[str, Any]) -> dict[str, Any]:
    """runsync, then status until the job ends: its final body."""
    body = (await api.post(f"/v2/{endpoint}/runsync?wait=30000", json={"input": job_input})).json()
    while body.get("status") in ("IN_QUEUE", "IN_PROGRESS"):
        await asyncio.sleep(0.1)
        body = (await api.get(f"/v2/{endpoint}/status/{body['id']}")).json()
    return body  # type: ignore[no-any-return]


# --- rolling update ------------------------------------------------------------------------------------
async def test_rolling_update_of_ten_workers_under_steady_load(instance: Instance) -> None:
    async with (
        ControlPlane(settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=60) as api,
    ):
        r = await create(
            api, id="roll", imageName=sample("echo"), workersMin=10, workersMax=10, env={"V": "1"}
        )
        assert r.status_code == 201, r.text
        await eventually(
            lambda: _equals(statuses(api, "roll"), ["IDLE"] * 10), "10 IDLE workers", timeout_s=90
        )
        results: list[dict[str, Any]] = []
        stop = asyncio.Event()

        async def client(n: int) -> None:
            i = 0
            while not stop.is_set():
                results.append(await run_job(api, "roll", {"sleep": 0.1, "client": n, "i": i}))
                i += 1

        load = [asyncio.create_task(client(n)) for n in range(4)]
        await asyncio.sleep(1.0)  # steady load before the change
        began = time.monotonic()
        r = await api.patch("/v1/endpoints/roll", json={"env": {"V": "2"}})
        assert r.status_code == 200 and r.json()["version"] == 2
        peak, samples = 0, 0
        try:
            while True:
                listed = await workers(api, "roll")
                draining = sum(1 for w in listed if w["version"] == 1 and w["stopping"])
                starting = sum(
                    1
                    for w in listed
                    if w["version"] == 2
                    and w["status"] in ("INITIALIZING", "UNHEALTHY")
                    and not w["stopping"]
                )
                in_flight = max(draining, starting)
                peak, samples = max(peak, in_flight), samples + 1
                assert in_flight <= 1, listed  # the budget: max(1, ceil(10% of 10))
                endpoint = (await api.get("/v1/endpoints/roll")).json()
                if (endpoint["rollout"] or {}).get("status") == "completed":
                    break
                assert time.monotonic() - began < 120, f"the rollout did not finish: {endpoint['rollout']}"
                await asyncio.sleep(0.05)
            took = time.monotonic() - began
            await asyncio.sleep(1.0)  # steady load after the change
        finally:
            stop.set()
            await asyncio.gather(*load)
        final = await workers(api, "roll")
        assert len(final) == 10 and all(w["version"] == 2 for w in final)
        failed = [b for b in results if b.get("status") != "COMPLETED"]
        assert failed == [], failed[:3]
        by_version = {"old": 0, "new": 0}
        new_ids = {w["id"] for w in final}
        for b in results:
            by_version["new" if b["workerId"] in new_ids else "old"] += 1
        print(
            f"\nrolling update of 10 workers: {took:.1f}s, {len(results)} jobs, 0 failed, "
            f"peak replacements in flight {peak} (budget 1, {samples} samples), jobs by version {by_version}"
        )
        assert peak == 1 and by_version["old"] > 0 and by_version["new"] > 0


async def _equals(probe: Awaitable[T], expected: T) -> bool:
    return await probe == expected


# --- crash loop with back-off ------------------------------------------------------------------------
async def test_a_crash_looping_worker_backs_off_with_growing_delays_in_real_seconds(
    instance: Instance,
) -> None:
    async with (
        ControlPlane(settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=30) as api,
    ):
        r = await create(
            api,
            id="loop",
            imageName=sample("crashy"),
            workersMin=1,
            workersMax=1,
            env={"CRASH_ON_START": "1", "CRASH_EXIT_CODE": "7"},
            backoff={"initialDelayS": 1, "factor": 2, "maxDelayS": 8},
        )
        assert r.status_code == 201, r.text
        starts: dict[int, float] = {}  # restarts -> startedAt of that container
        delays: dict[int, float] = {}  # restarts made when it failed -> the delay that failure chose
        began = time.monotonic()

        async def four_delays() -> bool:
            for w in await workers(api, "loop"):
                assert w["status"] not in ("IDLE", "RUNNING"), w  # never reported ready
                if w["startedAt"] is not None:
                    starts.setdefault(w["restarts"], w["startedAt"])
                if w["status"] != "UNHEALTHY":
                    continue
                assert "exited with code 7" in w["reason"] and "CRASH_ON_START=1" in w["reason"]
                match = re.search(r"restart (\d+) in ([\d.]+)s", w["reason"])
                if match:
                    delays.setdefault(int(match.group(1)) - 1, float(match.group(2)))
            return all(k in delays for k in range(1, 5))

        await eventually(four_delays, "4 delays of the crash loop", timeout_s=90, every_s=0.05)
        chosen = [delays[k] for k in range(1, 5)]
        gaps = {
            k: round(starts[k + 1] - starts[k], 2) for k in range(1, 4) if k in starts and k + 1 in starts
        }
        print(
            f"\ncrash loop (initialDelayS 1, factor 2, maxDelayS 8): the first restart at once, then delays "
            f"{chosen} s; seconds between container starts {gaps}; {time.monotonic() - began:.1f}s"
        )
        assert chosen == [1, 2, 4, 8]
        assert len(gaps) >= 2
        for k, gap in gaps.items():
            assert gap >= delays[k] - 0.2  # each start waited at least its delay, in real seconds
        ordered = [gaps[k] for k in sorted(gaps)]
        assert ordered == sorted(ordered) and ordered[-1] - ordered[0] >= 1.5  # growing


# --- GPUs ----------------------------------------------------------------------------------------------
async def test_three_emulated_gpus_five_workers_three_run_two_throttled_then_promoted(
    instance: Instance,
) -> None:
    image = _gpu_image(instance)
    async with (
        ControlPlane(settings(instance, gpu_mode="emulate", emulated_gpus=3)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=30) as api,
    ):
        assert (
            await create(api, id="hog", imageName=image, workersMin=3, workersMax=3, gpuCount=1)
        ).status_code == 201
        await eventually(lambda: _equals(statuses(api, "hog"), ["IDLE"] * 3), "3 GPU workers IDLE")
        assert (
            await create(api, id="wait", imageName=image, workersMin=2, workersMax=2, gpuCount=1)
        ).status_code == 201
        throttled = await eventually(
            lambda: _all(workers(api, "wait"), status="THROTTLED", n=2), "2 THROTTLED workers"
        )
        assert all("no free GPU" in w["reason"] and w["containerId"] is None for w in throttled)
        hog = await workers(api, "hog")
        assert sorted(g for w in hog for g in w["gpuIds"]) == ["0", "1", "2"]
        for w in hog:
            attrs = (await asyncio.to_thread(instance.client.containers.get, w["containerId"])).attrs
            env = dict(item.split("=", 1) for item in attrs["Config"]["Env"])
            assert env["NVIDIA_VISIBLE_DEVICES"] == w["gpuIds"][0] and env["RUNPOD_GPU_COUNT"] == "1"
            assert not attrs["HostConfig"].get("DeviceRequests")  # emulate: no device requests

        r = await api.patch("/v1/endpoints/hog", json={"workersMin": 1, "workersMax": 1})  # 2 GPUs free
        assert r.status_code == 200
        promoted = await eventually(lambda: _all(workers(api, "wait"), status="IDLE", n=2), "both promoted")
        everyone = await workers(api, "hog") + promoted
        held = [g for w in everyone for g in w["gpuIds"]]
        assert sorted(held) == ["0", "1", "2"]  # each GPU held by one worker
        out = (await run_job(api, "wait", {}))["output"]
        assert out["env"]["RUNPOD_GPU_COUNT"] == "1"
        assert out["env"]["NVIDIA_VISIBLE_DEVICES"] in {w["gpuIds"][0] for w in promoted}


async def test_device_requests_reach_docker_and_its_refusal_is_the_clear_message(instance: Instance) -> None:
    image = _gpu_image(instance)
    gpu_runtime = "nvidia" in (await asyncio.to_thread(instance.client.info)).get("Runtimes", {})
    if gpu_runtime:
        pytest.skip("this engine has an NVIDIA runtime: it would not refuse device requests")
    async with (
        ControlPlane(settings(instance, gpu_mode="auto", gpus="0")) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=30) as api,
    ):
        r = await create(api, id="gpu", imageName=image, gpuCount=1, workersMin=1)
        assert r.status_code == 422 and r.json()["field"] == "gpuCount"
        assert "no NVIDIA runtime" in r.json()["error"] and "NVIDIA Container Toolkit" in r.json()["error"]
        assert "EMULATOR_GPU_MODE=emulate" in r.json()["error"]
        print(f"\nendpoint creation on a host without NVIDIA: 422 {r.json()['error']}")
    async with (
        ControlPlane(settings(instance, gpu_mode="nvidia", gpus="0")) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=30) as api,
    ):
        r = await create(
            api,
            id="gpu",
            imageName=image,
            gpuCount=1,
            workersMin=1,
            workersMax=1,
            backoff={"initialDelayS": 300},
        )
        assert r.status_code == 201, r.text  # forced: the device requests are made

        async def refused() -> dict[str, Any] | None:
            found = [w for w in await workers(api, "gpu") if w["status"] == "UNHEALTHY"]
            return found[0] if found else None

        w = await eventually(refused, "the engine's refusal")
        assert "could not start its container" in w["reason"]
        assert "could not select device driver" in w["reason"]  # the engine's own words
        assert "NVIDIA Container Toolkit" in w["reason"] and "EMULATOR_GPU_MODE=emulate" in w["reason"]
        (container,) = await asyncio.to_thread(instance.containers)
        (request,) = container.attrs["HostConfig"]["DeviceRequests"]  # as the engine received it
        assert request["Driver"] == "nvidia" and request["DeviceIDs"] == ["0"]
        assert request["Capabilities"] == [["gpu"]]
        print(f"\nworker reason with EMULATOR_GPU_MODE=nvidia: {w['reason']}")


def _gpu_image(inst: Instance) -> str:
    image = sample("gpu-info")
    if not inst.client.images.list(name=image):
        pytest.skip(f"{image} is missing: run `bash scripts/setup.sh`")
    return image


async def _all(probe: Awaitable[list[dict[str, Any]]], status: str, n: int) -> list[dict[str, Any]] | None:
    listed = await probe
    return listed if len(listed) == n and all(w["status"] == status for w in listed) else None


# --- FlashBoot -------------------------------------------------------------------------------------------
async def test_flashboot_resume_is_faster_than_a_cold_start(instance: Instance) -> None:
    async with (
        ControlPlane(settings(instance, flashboot_pause_s=120)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=60) as api,
    ):
        r = await create(
            api, id="fb", imageName=sample("echo"), workersMin=0, workersMax=1, idleTimeout=1, flashboot=True
        )
        assert r.status_code == 201, r.text
        began = time.monotonic()
        cold = await run_job(api, "fb", {"n": 0})
        cold_s = time.monotonic() - began
        assert cold["status"] == "COMPLETED" and cold["coldStart"]["coldStart"] is True
        worker_id = cold["workerId"]
        resumes: list[float] = []
        breakdowns: list[dict[str, Any]] = []
        for n in range(1, 4):

            async def paused() -> dict[str, Any] | None:
                listed = await workers(api, "fb")
                return listed[0] if len(listed) == 1 and listed[0]["paused"] else None

            w = await eventually(paused, "the idle worker paused", timeout_s=30)
            assert w["status"] == "IDLE" and w["id"] == worker_id
            container = await asyncio.to_thread(instance.client.containers.get, w["containerId"])
            assert container.status == "paused"
            began = time.monotonic()
            body = await run_job(api, "fb", {"n": n})
            resumes.append(time.monotonic() - began)
            assert body["status"] == "COMPLETED" and body["workerId"] == worker_id  # the same worker, resumed
            breakdowns.append(body["coldStart"])
        resume_s = statistics.median(resumes)
        print(
            f"\nFlashBoot: cold start (scale from zero, job done) {cold_s * 1000:.0f} ms "
            f"[{ {k: v for k, v in cold['coldStart'].items() if k.endswith('Ms')} }]; "
            f"resume from pause, job done: median {resume_s * 1000:.0f} ms of {[round(x * 1000) for x in resumes]} "
            f"(unpause {[b.get('resumeMs') for b in breakdowns]} ms); {cold_s / resume_s:.1f}x faster"
        )
        assert all("resumeMs" in b for b in breakdowns)
        assert resume_s < cold_s


# --- fault injection ----------------------------------------------------------------------------------
async def test_fault_injection_kill_mid_job_and_a_hanging_start(instance: Instance) -> None:
    async with (
        ControlPlane(settings(instance, startup_timeout_s=4.0)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=30) as api,
    ):
        r = await create(api, id="fault", imageName=sample("slow"), workersMin=1, workersMax=1)
        assert r.status_code == 201, r.text
        await eventually(lambda: _equals(statuses(api, "fault"), ["IDLE"]), "an IDLE worker")
        job_id = (await api.post("/v2/fault/run", json={"input": {"seconds": 2, "steps": 2}})).json()["id"]
        (w,) = await eventually(lambda: _all(workers(api, "fault"), status="RUNNING", n=1), "the job running")
        r = await api.post(f"/v1/workers/{w['id']}/faults", json={"kind": "hang_startup"})
        assert r.status_code == 202 and r.json()["status"] == "armed"
        r = await api.post(f"/v1/workers/{w['id']}/faults", json={"kind": "kill"})
        assert r.status_code == 202 and r.json()["jobIds"] == [job_id]

        async def timed_out() -> str | None:
            for x in await workers(api, "fault"):
                if "start-up timed out" in (x["reason"] or ""):
                    return str(x["reason"])
            return None

        reason = await eventually(timed_out, "the hanging start to time out", timeout_s=40, every_s=0.05)
        assert "(injected fault: hang_startup)" in reason
        done = await eventually(lambda: _completed(api, job_id), "the job completed after the restarts", 60)
        assert done["retries"] == 1 and done["workerId"] == w["id"]
        r = await api.post("/v1/workers/nobody/faults", json={"kind": "kill"})
        assert r.status_code == 404
        r = await api.post(f"/v1/workers/{w['id']}/faults", json={"kind": "melt"})
        assert r.status_code == 422 and r.json()["field"] == "kind"


async def _completed(api: httpx.AsyncClient, job_id: str) -> dict[str, Any] | None:
    body = (await api.get(f"/v2/fault/status/{job_id}")).json()
    return body if body["status"] == "COMPLETED" else None

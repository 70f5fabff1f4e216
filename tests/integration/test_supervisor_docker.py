"""The supervisor with real Docker and the sample images: scaling, workersMin, a killed worker,
a SIGKILLed control plane, a start-up timeout, RunPod's own SDK. Every container, volume and
network a test makes is removed by its instance label / exact network name (docker_fixtures)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.control_plane import ControlPlane
from tests.integration import docker_fixtures
from tests.integration.docker_fixtures import BASE_IMAGE, Instance, docker_settings, eventually, sample

docker_session = docker_fixtures.docker_session  # fixtures, shared without a conftest of our own
instance = docker_fixtures.instance

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[2]


settings = docker_settings


async def serving(api: httpx.AsyncClient, endpoint: str) -> list[dict[str, Any]]:
    r = await api.get(f"/v1/endpoints/{endpoint}/workers")
    r.raise_for_status()
    return [w for w in r.json()["workers"] if not w["standby"]]


async def create(api: httpx.AsyncClient, **body: Any) -> None:
    body.setdefault("name", body["id"])
    r = await api.post("/v1/endpoints", json=body)
    assert r.status_code == 201, r.text


async def test_scales_from_zero_to_max_under_load_and_back_after_idle_timeout(instance: Instance) -> None:
    async with (
        ControlPlane(settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=30) as api,
    ):
        await create(
            api,
            id="flex",
            imageName=sample("echo"),
            workersMin=0,
            workersMax=3,
            extraWorkers=0,
            scalerType="QUEUE_DELAY",
            scalerValue=0.5,
            idleTimeout=2,
        )
        assert await serving(api, "flex") == []
        ids = [
            (await api.post("/v2/flex/run", json={"input": {"sleep": 1.5, "n": i}})).json()["id"]
            for i in range(6)
        ]
        peak = 0

        async def all_done() -> bool:
            nonlocal peak
            peak = max(peak, len(await serving(api, "flex")))
            states = [(await api.get(f"/v2/flex/status/{j}")).json()["status"] for j in ids]
            return all(s == "COMPLETED" for s in states)

        await eventually(all_done, "all 6 jobs completed", timeout_s=90)
        assert peak == 3
        workers_used = {(await api.get(f"/v2/flex/status/{j}")).json()["workerId"] for j in ids}
        assert len(workers_used) >= 2  # (a worker that starts much later may find the queue empty)

        async def scaled_to_zero() -> bool:
            return not await serving(api, "flex") and not instance.containers()

        await eventually(scaled_to_zero, "scale back to 0 workers and 0 containers", timeout_s=30)


async def test_workers_min_kept_past_idle_timeout(instance: Instance) -> None:
    async with (
        ControlPlane(settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=30) as api,
    ):
        await create(
            api,
            id="active",
            imageName=sample("echo"),
            workersMin=2,
            workersMax=3,
            extraWorkers=0,
            idleTimeout=1,
        )

        async def two_idle() -> list[dict[str, Any]] | None:
            workers = await serving(api, "active")
            return workers if [w["status"] for w in workers] == ["IDLE", "IDLE"] else None

        first = await eventually(two_idle, "2 IDLE workers")
        await asyncio.sleep(2.5)  # well past idleTimeout
        again = await two_idle()
        assert again is not None and {w["id"] for w in again} == {w["id"] for w in first}
        r = await api.post("/v2/active/runsync", json={"input": {"hello": "min"}})
        assert r.json()["status"] == "COMPLETED" and r.json()["output"] == {"hello": "min"}


async def test_docker_kill_of_a_running_worker_requeues_its_job(instance: Instance) -> None:
    async with (
        ControlPlane(settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=30) as api,
    ):
        await create(api, id="slow", imageName=sample("slow"), workersMin=2, workersMax=2, extraWorkers=0)
        await eventually(lambda: _states(api, "slow", ["IDLE", "IDLE"]), "2 IDLE workers")
        job_id = (await api.post("/v2/slow/run", json={"input": {"seconds": 3, "steps": 3}})).json()["id"]

        async def running_on() -> str | None:
            body = (await api.get(f"/v2/slow/status/{job_id}")).json()
            return body.get("workerId") if body["status"] == "IN_PROGRESS" else None

        victim = await eventually(running_on, "the job running")
        container_id = next(w["containerId"] for w in await serving(api, "slow") if w["id"] == victim)
        await asyncio.to_thread(lambda: instance.client.containers.get(container_id).kill())
        (dead,) = await eventually(lambda: _unhealthy(api, "slow"), "the victim UNHEALTHY", every_s=0.02)
        assert dead["id"] == victim and "killed (exit 137" in dead["reason"]

        async def completed() -> dict[str, Any] | None:
            body = (await api.get(f"/v2/slow/status/{job_id}")).json()
            return body if body["status"] == "COMPLETED" else None

        done = await eventually(completed, "the job completed on another worker", timeout_s=60)
        assert done["retries"] == 1
        assert done["workerId"] != victim
        assert done["output"] == {"slept": 3.0, "steps": 3}

        async def victim_back() -> bool:
            w = next((w for w in await serving(api, "slow") if w["id"] == victim), None)
            return w is not None and w["status"] == "IDLE" and w["restarts"] == 1

        await eventually(victim_back, "the killed worker restarted in place")


async def _unhealthy(api: httpx.AsyncClient, endpoint: str) -> list[dict[str, Any]]:
    return [
        w
        for w in await serving(api, endpoint)
        if w["status"] == "UNHEALTHY" or "exit 137" in (w["reason"] or "")
    ]


async def _states(api: httpx.AsyncClient, endpoint: str, expected: list[str]) -> bool:
    return sorted(w["status"] for w in await serving(api, endpoint)) == expected


async def test_startup_timeout_reason_shows_the_containers_last_log_lines(instance: Instance) -> None:
    script = (
        "import time\nprint('loading model shard 1/2', flush=True)\n"
        "print('loading model shard 2/2 from a very slow disk', flush=True)\ntime.sleep(600)\n"
    )
    async with (
        ControlPlane(settings(instance, startup_timeout_s=3.0)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=30) as api,
    ):
        await create(
            api,
            id="stuck",
            imageName=BASE_IMAGE,
            workersMin=1,
            workersMax=1,
            extraWorkers=0,
            dockerStartCmd=["python3", "-c", script],
        )

        async def timed_out() -> str | None:
            for w in await serving(api, "stuck"):
                if w["reason"] and "start-up timed out" in w["reason"]:
                    return str(w["reason"])
            return None

        reason = await eventually(timed_out, "a start-up timeout", timeout_s=30)
        assert "loading model shard 2/2 from a very slow disk" in reason
        assert "startup_timeout_s" in reason


async def test_worker_container_spec_memory_volume_env_and_command(instance: Instance) -> None:
    volume = f"se-it-vol-{instance.id}"
    async with (
        ControlPlane(settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=30) as api,
    ):
        await create(
            api,
            id="spec",
            imageName=sample("echo"),
            workersMin=1,
            workersMax=1,
            extraWorkers=0,
            memoryInMb=256,
            networkVolumeId=volume,
            env={"MY_SETTING": "42"},
            dockerStartCmd=["python3", "-u", "handler.py"],
        )
        await eventually(lambda: _states(api, "spec", ["IDLE"]), "1 IDLE worker")
        (worker,) = await serving(api, "spec")
        attrs = (await asyncio.to_thread(instance.client.containers.get, worker["containerId"])).attrs
        env = dict(item.split("=", 1) for item in attrs["Config"]["Env"])
        assert env["MY_SETTING"] == "42" and env["RUNPOD_POD_ID"] == worker["id"]
        assert env["RUNPOD_WEBHOOK_GET_JOB"].startswith(cp.worker_url)
        assert attrs["HostConfig"]["Memory"] == 256 * 1024 * 1024
        assert attrs["Config"]["Cmd"] == ["python3", "-u", "handler.py"]
        assert attrs["Name"] == f"/se-spec-{worker['id']}"
        assert [m["Name"] for m in attrs["Mounts"] if m["Destination"] == "/runpod-volume"] == [volume]
        assert instance.network in attrs["NetworkSettings"]["Networks"]
        labels = attrs["Config"]["Labels"]
        assert labels["serverless-emulator.endpoint"] == "spec"
        assert labels["serverless-emulator.worker"] == worker["id"]
        assert labels["serverless-emulator.version"] == "1"
        assert labels["serverless-emulator.instance"] == instance.id


async def test_runpod_sdk_image_serves_jobs_unmodified(instance: Instance) -> None:
    async with (
        ControlPlane(settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=60) as api,
    ):
        await create(api, id="rp", imageName=sample("runpod-sdk"), workersMin=1, workersMax=1, extraWorkers=0)
        expected = json.loads((ROOT / "sample_workers/runpod-sdk/expected_output.json").read_text())
        test_input = json.loads((ROOT / "sample_workers/runpod-sdk/test_input.json").read_text())
        r = await api.post("/v2/rp/runsync?wait=60000", json=test_input)
        body = r.json()
        if body["status"] != "COMPLETED":  # first start may outlast one runsync wait
            body = await eventually(
                lambda: _completed(api, "rp", body["id"]), "the RunPod-SDK job", timeout_s=90
            )
        assert body["output"] == expected["output"]
        assert body["coldStart"]["coldStart"] is True and "createMs" in body["coldStart"]


async def _completed(api: httpx.AsyncClient, endpoint: str, job_id: str) -> dict[str, Any] | None:
    body = (await api.get(f"/v2/{endpoint}/status/{job_id}")).json()
    return body if body["status"] == "COMPLETED" else None


# --- a control plane killed with SIGKILL, then started again ------------------------------------------
def _serve(inst: Instance, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        EMULATOR_NETWORK=inst.network,
        EMULATOR_RECONCILE_INTERVAL_S="0.1",
        EMULATOR_JOB_TAKE_HOLD_S="2",
        EMULATOR_JOB_STOP_HOLD_S="2",
        EMULATOR_STOP_GRACE_S="3",
        EMULATOR_PING_INTERVAL_MS="1000",
        EMULATOR_LOG_FORMAT="json",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "emulator", "serve", "--port", str(port), "--data-dir", str(inst.data_dir)],
        cwd=str(ROOT),
        env=env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_ping(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    async def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(
                f"the control plane exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}"  # noqa: ASYNC240
            )
        try:
            async with httpx.AsyncClient(timeout=2) as c:
                return (await c.get(f"{url}/ping")).status_code == 200
        except httpx.HTTPError:
            return False

    await eventually(up, "the control plane to answer /ping", timeout_s=60)


async def test_control_plane_sigkill_and_restart_adopts_workers_and_leaks_nothing(
    instance: Instance, tmp_path: Path
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    proc = _serve(instance, port, log_path)
    try:
        await _wait_ping(url, proc, log_path)
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            await create(api, id="keep", imageName=sample("echo"), workersMin=2, workersMax=3, extraWorkers=1)
            await eventually(lambda: _states(api, "keep", ["IDLE", "IDLE"]), "2 IDLE workers")
            before = {w["id"]: w["containerId"] for w in await serving(api, "keep")}
            await eventually(lambda: _count(instance, 3), "2 workers + 1 standby container")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        running = {c.id for c in instance.containers(all_=False)}
        assert set(before.values()) <= running  # the workers outlive the control plane

        proc = _serve(instance, port, log_path)
        await _wait_ping(url, proc, log_path)
        async with httpx.AsyncClient(base_url=url, timeout=30) as api:
            await eventually(lambda: _states(api, "keep", ["IDLE", "IDLE"]), "the adopted workers IDLE")
            after = {w["id"]: w["containerId"] for w in await serving(api, "keep")}
            assert after == before  # adopted, not replaced
            r = await api.post("/v2/keep/runsync", json={"input": {"after": "restart"}})
            assert r.json()["status"] == "COMPLETED", r.text
            assert r.json()["workerId"] in before
            assert len(instance.containers()) == 3  # nothing leaked, nothing duplicated
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert instance.containers() == []  # shutdown removes its containers
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def _count(inst: Instance, n: int) -> bool:
    return len(await asyncio.to_thread(inst.containers)) == n


async def test_crash_loop_and_out_of_memory_are_reported_never_idle(instance: Instance) -> None:
    async with (
        ControlPlane(settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=30) as api,
    ):
        await create(
            api,
            id="loop",
            imageName=sample("crashy"),
            workersMin=1,
            workersMax=1,
            extraWorkers=0,
            env={"CRASH_ON_START": "1", "CRASH_EXIT_CODE": "7"},
            backoff={"initialDelayS": 0.5, "factor": 2, "maxDelayS": 2},
        )
        await create(
            api,
            id="oom",
            imageName=sample("crashy"),
            workersMin=1,
            workersMax=1,
            extraWorkers=0,
            memoryInMb=64,
        )
        await eventually(lambda: _states(api, "oom", ["IDLE"]), "the oom endpoint's worker IDLE")
        job_id = (await api.post("/v2/oom/run", json={"input": {"oom": True}})).json()["id"]
        reasons: set[str] = set()

        async def observed() -> bool:
            for w in await serving(api, "loop"):
                assert w["status"] not in ("IDLE", "RUNNING"), w
                reasons.add(w["reason"] or "")
            for w in await serving(api, "oom"):
                reasons.add(w["reason"] or "")
            crash = any("exited with code 7" in r and "CRASH_ON_START=1" in r for r in reasons)
            oom = any("out of memory" in r for r in reasons)
            return crash and oom

        await eventually(
            observed, "a crash loop and an out-of-memory kill reported", timeout_s=60, every_s=0.05
        )
        (looping,) = await serving(api, "loop")
        assert looping["restarts"] >= 1
        body = (await api.get(f"/v2/oom/status/{job_id}")).json()
        assert body["retries"] >= 1

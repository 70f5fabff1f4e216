"""Worker containers as RunPod gives them, with real Docker and the parity-probe sample: RunPod's
resource variables, CPU, memory and /dev/shm limits, a secret resolved in the worker and shown nowhere,
a host folder shared by two workers, a cached Hugging Face model read-only, endpoint logs of a removed
worker found by job id (API and CLI), and `serverless-emulator test` on the probe (1 GB into /dev/shm).

Every container is removed by its instance label (docker_fixtures); the sample image is built once if
missing (never rebuilt)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.control_plane import ControlPlane
from tests.integration import docker_fixtures
from tests.integration.docker_fixtures import BASE_IMAGE, Instance, docker_settings, eventually, sample

docker_session = docker_fixtures.docker_session
instance = docker_fixtures.instance

pytestmark = [pytest.mark.docker, pytest.mark.timeout(240)]
ROOT = Path(__file__).resolve().parents[2]
PROBE = sample("parity-probe")
MODEL_HASH = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def probe_image(docker_session: docker_fixtures.DockerSession) -> str:
    """The parity-probe sample image (built from sample_workers/parity-probe when missing)."""
    if not docker_session.client.images.list(name=PROBE):
        env = {**os.environ, "EMULATOR_BASE_IMAGE": os.environ.get("EMULATOR_BASE_IMAGE", BASE_IMAGE)}
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "emulator",
                "images",
                "build",
                str(ROOT / "sample_workers" / "parity-probe"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    return PROBE


async def create(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("name", body["id"])
    r = await api.post("/v1/endpoints", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def runsync(api: httpx.AsyncClient, endpoint: str, job_input: dict[str, Any]) -> dict[str, Any]:
    r = await api.post(f"/v2/{endpoint}/runsync?wait=90000", json={"input": job_input})
    body = dict(r.json())
    assert body["status"] == "COMPLETED", json.dumps(body)[:2000]
    return body


def fake_hf_cache(root: Path, repo: str) -> Path:
    """A Hugging Face hub cache holding one model, laid out as huggingface_hub writes it."""
    folder = root / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(MODEL_HASH)
    (folder / "blobs").mkdir()
    (folder / "blobs" / "b1").write_text('{"model_type": "tiny"}')
    snapshot = folder / "snapshots" / MODEL_HASH
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").symlink_to("../../blobs/b1")
    return folder


async def test_limits_variables_shm_secret_and_cached_model(
    instance: Instance, probe_image: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "hf-hub"
    fake_hf_cache(cache, "tiny-org/tiny-model")
    secret_value = f"s3cr3t-{uuid.uuid4().hex}"
    settings = docker_settings(instance, gpu_mode="emulate", emulated_gpus=1, hf_hub_cache=cache)
    async with (
        ControlPlane(settings) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=60) as api,
    ):
        r = await api.post("/v1/secrets", json={"name": "probe_token", "value": secret_value})
        assert r.status_code == 201 and "value" not in r.json(), r.text
        missing_model = await api.post(
            "/v1/endpoints",
            json={"name": "nomodel", "imageName": probe_image, "modelReferences": ["tiny-org/absent-model"]},
        )
        assert missing_model.status_code == 422
        assert "huggingface-cli download tiny-org/absent-model" in missing_model.json()["error"]
        await create(
            api,
            id="probe",
            imageName=probe_image,
            workersMin=1,
            workersMax=1,
            extraWorkers=0,
            vcpuCount=1,
            memoryInMb=1024,
            shmSizeMb=300,
            gpuCount=1,
            modelReferences=["https://huggingface.co/tiny-org/tiny-model"],
            env={
                "API_TOKEN": "{{ RUNPOD_SECRET_probe_token }}",
                "HEADER": "Bearer {{RUNPOD_SECRET_probe_token}}",
            },
        )
        seen = (await runsync(api, "probe", {"action": "report", "secret_env": "HEADER"}))["output"]
        env = seen["env"]
        assert env["RUNPOD_CPU_COUNT"] == "1" and env["RUNPOD_MEM_GB"] == "1"
        assert env["RUNPOD_GPU_COUNT"] == "1" and env["RUNPOD_GPU_NAME"] == "Emulated+GPU"
        assert env["RUNPOD_ENDPOINT_ID"] == "probe" and "RUNPOD_VOLUME_ID" not in env
        assert seen["cpu_limit"] == 1.0  # the cgroup's quota / period
        assert seen["memory_limit_bytes"] == 1024 * 1024 * 1024
        assert seen["shm_mb"] == 300
        assert seen["secret_sha256"] == hashlib.sha256(f"Bearer {secret_value}".encode()).hexdigest()
        model = "/runpod-volume/huggingface-cache/hub/models--tiny-org--tiny-model"
        assert f"{model}/snapshots/{MODEL_HASH}/config.json" in seen["volume_files"]
        assert f"{model}/refs/main" in seen["volume_files"]
        readonly = await runsync(api, "probe", {"action": "write", "path": f"{model}/snapshots/new.txt"})
        assert readonly["output"] == {"ok": False, "errno": 30, "reason": "OSError"}  # EROFS
        assert not (cache / "models--tiny-org--tiny-model" / "snapshots" / "new.txt").exists()

        # the worker's container, as the engine has it
        (container,) = instance.containers()
        host_config = container.attrs["HostConfig"]
        assert host_config["NanoCpus"] == 1_000_000_000 and host_config["ShmSize"] == 300 * 1024 * 1024

        # the secret's value: in the worker only, never in an answer of the API or a log line
        answers = [
            await api.get("/v1/endpoints/probe"),
            await api.get("/v1/endpoints"),
            await api.get("/v1/endpoints/probe/workers"),
            await api.get("/v1/secrets"),
            await api.get("/v1/secrets/probe_token"),
            await api.get("/v1/dashboard"),
            await api.get("/v1/endpoints/probe/jobs"),
            await api.get("/v1/endpoints/probe/logs"),
        ]
        for answer in answers:
            assert answer.status_code == 200, answer.text
            assert secret_value not in answer.text, answer.request.url
        shown = answers[0].json()["env"]  # the references are shown, as on RunPod
        assert shown == {
            "API_TOKEN": "{{ RUNPOD_SECRET_probe_token }}",
            "HEADER": "Bearer {{RUNPOD_SECRET_probe_token}}",
        }
        in_use = await api.delete("/v1/secrets/probe_token")
        assert in_use.status_code == 409 and "probe" in in_use.json()["error"]
    captured = capfd.readouterr()
    assert secret_value not in captured.out + captured.err
    stored = settings.data_dir / "secrets.json"
    assert stored.stat().st_mode & 0o077 == 0  # the owner's only


async def test_host_folder_volume_shared_by_two_workers(
    instance: Instance, probe_image: str, tmp_path: Path
) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "from-host.txt").write_text("put there on the host")
    async with (
        ControlPlane(docker_settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=60) as api,
    ):
        await create(
            api,
            id="shared",
            imageName=probe_image,
            workersMin=2,
            workersMax=2,
            extraWorkers=0,
            networkVolumeId=str(volume),
        )
        write = {"action": "write", "path": "/runpod-volume/by-{pod_id}.txt", "text": "hi", "sleep": 1.5}
        writes = await asyncio.gather(runsync(api, "shared", write), runsync(api, "shared", write))
        workers = {w["workerId"] for w in writes}
        assert len(workers) == 2, writes  # each worker wrote once
        assert sorted(p.name for p in volume.iterdir()) == sorted(
            ["from-host.txt", *(f"by-{w}.txt" for w in workers)]
        )
        report = {"action": "report", "sleep": 1.5}
        reports = await asyncio.gather(runsync(api, "shared", report), runsync(api, "shared", report))
        assert {r["workerId"] for r in reports} == workers
        for r in reports:  # every worker sees the host's file and both workers' files
            assert set(r["output"]["volume_files"]) == {f"/runpod-volume/{p.name}" for p in volume.iterdir()}
            assert r["output"]["env"]["RUNPOD_VOLUME_ID"] == str(volume)
        missing = await api.post(
            "/v1/endpoints",
            json={"name": "nofolder", "imageName": probe_image, "networkVolumeId": str(tmp_path / "nope")},
        )
        assert missing.status_code == 422 and missing.json()["field"] == "networkVolumeId"


async def test_logs_of_a_removed_worker_found_by_job_id(instance: Instance, probe_image: str) -> None:
    marker = uuid.uuid4().hex[:10]
    async with (
        ControlPlane(docker_settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=60) as api,
    ):
        await create(
            api, id="logs", imageName=probe_image, workersMin=0, workersMax=1, extraWorkers=0, idleTimeout=1
        )
        first = await runsync(
            api, "logs", {"action": "print", "lines": [f"alpha-{marker}", f"alpha2-{marker}"]}
        )
        second = await runsync(api, "logs", {"action": "print", "lines": [f"beta-{marker}"]})
        worker_id = first["workerId"]

        async def removed() -> bool:
            workers = (await api.get("/v1/endpoints/logs/workers")).json()["workers"]
            return not workers and not instance.containers()

        await eventually(removed, "the worker scaled away and its container removed", timeout_s=60)

        async def first_jobs_lines() -> list[dict[str, Any]]:  # copied from the container as it wrote them
            found = (await api.get("/v1/endpoints/logs/logs", params={"job": first["id"]})).json()["lines"]
            return list(found) if f"alpha2-{marker}" in [item["line"] for item in found] else []

        lines = await eventually(
            first_jobs_lines, "the first job's lines in the endpoint's logs", timeout_s=10
        )
        texts = [item["line"] for item in lines]
        assert f"alpha-{marker}" in texts and f"alpha2-{marker}" in texts
        assert f"beta-{marker}" not in texts
        assert {item["workerId"] for item in lines} == {worker_id}
        assert {item["requestId"] for item in lines} == {first["id"]}
        by_second = (await api.get("/v1/endpoints/logs/logs", params={"job": second["id"]})).json()["lines"]
        assert f"beta-{marker}" in [item["line"] for item in by_second]
        everything = (await api.get("/v1/endpoints/logs/logs", params={"worker": worker_id})).json()["lines"]
        assert len(everything) >= 3  # the worker_sdk's own start-up lines too

        # the command line, against the same control plane
        done = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "emulator",
                "logs",
                "--endpoint",
                "logs",
                "--job",
                first["id"],
                "--url",
                cp.client_url,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == texts

        # following: a new job's line arrives on the event stream
        job3 = (
            await api.post("/v2/logs/run", json={"input": {"action": "print", "lines": [f"gamma-{marker}"]}})
        ).json()["id"]
        async with api.stream("GET", "/v1/endpoints/logs/logs/stream", params={"job": job3}) as stream:

            async def gamma() -> dict[str, Any]:
                async for raw in stream.aiter_lines():
                    if raw.startswith("data: ") and f"gamma-{marker}" in raw:
                        return dict(json.loads(raw[6:]))
                raise AssertionError("the stream ended")

            item = await asyncio.wait_for(gamma(), 90)
            assert item["requestId"] == job3


def test_probe_through_serverless_emulator_test(probe_image: str) -> None:
    """RunPod's variables present, /dev/shm over Docker's 64 MB, and 1 GB written to it, as a user's CI would run it."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "emulator",
            "test",
            probe_image,
            "--input",
            str(ROOT / "sample_workers" / "parity-probe" / "test_input.json"),
            "--expect",
            str(ROOT / "sample_workers" / "parity-probe" / "expected_output.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"PASSED: 2 \w+\(s\), 2 output\(s\) as expected", done.stdout), done.stdout


UPLOAD_HANDLER = """
import runpod
from runpod.serverless.utils import rp_upload

def handler(job):
    path = "/tmp/picture.png"
    with open(path, "wb") as out:
        out.write(bytes.fromhex(job["input"]["hex"]))
    return {"image_url": rp_upload.upload_image(job["id"], path)}

runpod.serverless.start({"handler": handler})
"""


async def test_rp_upload_to_the_local_s3(instance: Instance) -> None:
    """RunPod's own SDK in a worker uploads with rp_upload.upload_image; the object is read back from the host."""
    pytest.importorskip("moto", reason="the local S3 server needs moto[server] (pip install -e '.[test]')")
    import urllib.request

    payload = b"\x89PNG\r\n\x1a\n" + uuid.uuid4().bytes
    async with (
        ControlPlane(docker_settings(instance, s3=True)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=60) as api,
    ):
        assert cp.core is not None and cp.core.s3 is not None
        await create(
            api,
            id="upload",
            imageName=sample("runpod-sdk"),
            workersMin=1,
            workersMax=1,
            extraWorkers=0,
            localS3=True,
            dockerStartCmd=["python3", "-u", "-c", UPLOAD_HANDLER],
        )
        done = await runsync(api, "upload", {"hex": payload.hex()})
        url = done["output"]["image_url"]
        assert url.startswith(cp.core.s3.endpoint_url + "/"), url  # a presigned URL, not a local file path
        assert f"/{done['id']}/" in url and url.split("?")[0].endswith(".png")
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=30).read())
        assert body == payload
    # without the server, an endpoint that asks for it is refused
    async with (
        ControlPlane(docker_settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=60) as api,
    ):
        r = await api.post(
            "/v1/endpoints", json={"name": "u2", "imageName": sample("runpod-sdk"), "localS3": True}
        )
        assert r.status_code == 422 and "--s3" in r.json()["error"]

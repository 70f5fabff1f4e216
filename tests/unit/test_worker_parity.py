"""What a worker container is given (pure parts): sizes and RunPod's resource variables
(workers/resources.py, workers/env.py), secret references, cached-model references and host mounts,
the CPU budget counting vcpuCount, the secret store and the endpoint log store (real files)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from emulator.config import Settings
from emulator.errors import Conflict, InvalidInput, NotFound
from emulator.models import Endpoint, EndpointPatch, WorkerState
from emulator.runtime.base import HostMount
from emulator.store.endpoint_logs import EndpointLogStore, LogFilter, job_of_line
from emulator.store.secrets import SecretStore
from emulator.supervisor.actions import Start, Throttle
from emulator.supervisor.capacity import Host, admit, snapshot
from emulator.supervisor.containers import container_spec
from emulator.workers import hf_cache, resources
from emulator.workers.env import worker_env
from emulator.workers.mounts import check_inputs
from emulator.workers.records import WorkerRecord
from emulator.workers.resources import HostFacts
from emulator.workers.secret_refs import MissingSecret, check_name, check_value, referenced, resolve

HOST = HostFacts(cpus=8, memory_mb=32 * 1024)


def ep(**fields: Any) -> Endpoint:
    return Endpoint.model_validate({"id": "ep", "name": "ep", "imageName": "img", **fields})


def settings(**fields: Any) -> Settings:
    return Settings(data_dir=Path("/nonexistent"), **fields)


def worker(**fields: Any) -> WorkerRecord:
    return WorkerRecord(id="ep-w1", endpoint_id="ep", token="tok", version=1, **fields)


def test_shm_cpu_and_memory_sizes() -> None:
    s = settings()
    assert resources.shm_mb(ep(), s) == 8192  # EMULATOR_WORKER_SHM_MB's default
    assert resources.shm_mb(ep(), settings(worker_shm_mb=2048)) == 2048
    assert resources.shm_mb(ep(memoryInMb=4096), s) == 2048  # half the worker's memory
    assert resources.shm_mb(ep(memoryInMb=4096, shmSizeMb=100), s) == 100
    assert resources.shm_mb(ep(memoryInMb=64), s) == 64
    assert resources.nano_cpus(ep(), HOST) is None
    assert resources.nano_cpus(ep(vcpuCount=2), HOST) == 2_000_000_000
    assert resources.nano_cpus(ep(vcpuCount=32), HOST) == 8_000_000_000  # no more than the host has
    assert resources.cpu_count(ep(), HOST) == 8 and resources.cpu_count(ep(vcpuCount=3), HOST) == 3
    assert resources.mem_gb(ep(), HOST) == 32 and resources.mem_gb(ep(memoryInMb=1536), HOST) == 1
    assert resources.mem_gb(ep(memoryInMb=100), HOST) == 1
    assert resources.worker_cpus(ep()) == 1.0 and resources.worker_cpus(ep(vcpuCount=4)) == 4.0
    assert resources.gpu_name(settings(gpu_mode="emulate")) == "Emulated+GPU"
    assert resources.gpu_name(settings(gpu_name="NVIDIA A40")) == "NVIDIA+A40"
    facts = resources.host_facts()
    assert facts.cpus >= 1 and facts.memory_mb > 0


def test_runpod_resource_variables() -> None:
    env = worker_env(settings(), "http://gw:1", ep(vcpuCount=2, memoryInMb=4096), worker(), host=HOST)
    assert env["RUNPOD_CPU_COUNT"] == "2" and env["RUNPOD_MEM_GB"] == "4" and env["RUNPOD_GPU_COUNT"] == "0"
    assert "RUNPOD_GPU_NAME" not in env and "RUNPOD_VOLUME_ID" not in env and "RUNPOD_PUBLIC_IP" not in env
    env = worker_env(
        settings(gpu_mode="emulate"),
        "http://gw:1",
        ep(gpuCount=1, networkVolumeId="vol1"),
        worker(gpu_ids=["0"]),
        host=HOST,
    )
    assert env["RUNPOD_GPU_NAME"] == "Emulated+GPU" and env["RUNPOD_GPU_COUNT"] == "1"
    assert (
        env["RUNPOD_VOLUME_ID"] == "vol1" and env["RUNPOD_CPU_COUNT"] == "8" and env["RUNPOD_MEM_GB"] == "32"
    )
    # the endpoint's env cannot override RunPod's variables
    env = worker_env(settings(), "http://gw:1", ep(env={"RUNPOD_CPU_COUNT": "99"}), worker(), host=HOST)
    assert env["RUNPOD_CPU_COUNT"] == "8"


def test_secret_references() -> None:
    env = {
        "A": "{{ RUNPOD_SECRET_one }}",
        "B": "Bearer {{RUNPOD_SECRET_two}} and {{  RUNPOD_SECRET_one  }}",
        "C": "x",
    }
    assert referenced(env) == {"one", "two"}
    assert resolve(env, {"one": "1", "two": "2"}) == {"A": "1", "B": "Bearer 2 and 1", "C": "x"}
    with pytest.raises(MissingSecret, match="two") as caught:
        resolve(env, {"one": "1"})
    assert caught.value.field == "env" and "POST /v1/secrets" in caught.value.message
    e = ep(env={"TOKEN": "{{ RUNPOD_SECRET_one }}"})
    assert worker_env(settings(), "http://gw:1", e, worker(), secrets={"one": "v"}, host=HOST)["TOKEN"] == "v"
    # no secrets given (a worker registered through the API): the reference stays as written
    assert worker_env(settings(), "http://gw:1", e, worker(), host=HOST)["TOKEN"] == "{{ RUNPOD_SECRET_one }}"


def test_model_references_parse() -> None:
    assert hf_cache.parse("org/name") == hf_cache.ModelRef("org/name")
    assert hf_cache.parse("https://huggingface.co/org/name:main") == hf_cache.ModelRef("org/name", "main")
    assert hf_cache.parse("gpt2").folder == "models--gpt2"
    ref = hf_cache.parse("meta-llama/Llama-3.1-8B:abc123")
    assert ref.folder == "models--meta-llama--Llama-3.1-8B"
    assert ref.mount_target == "/runpod-volume/huggingface-cache/hub/models--meta-llama--Llama-3.1-8B"
    assert ref.fetch_command() == "huggingface-cli download meta-llama/Llama-3.1-8B --revision abc123"
    for bad in ("", "a/b/c", "../x", "org/..", "org/name:../../etc", "/abs"):
        with pytest.raises(InvalidInput) as caught:
            hf_cache.parse(bad)
        assert caught.value.field == "modelReferences"


def make_model(cache: Path, repo: str, revision: str = "main", commit: str = "c0ffee") -> Path:
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / revision).write_text(commit)
    (folder / "snapshots" / commit).mkdir(parents=True)
    (folder / "snapshots" / commit / "config.json").write_text("{}")
    return folder


def test_models_located_in_the_host_cache(tmp_path: Path) -> None:
    folder = make_model(tmp_path, "org/tiny")
    assert (
        hf_cache.mounts(["org/tiny", "org/tiny:main", "org/tiny:c0ffee"], tmp_path)
        == [(str(folder), "/runpod-volume/huggingface-cache/hub/models--org--tiny")] * 3
    )
    with pytest.raises(InvalidInput, match=r"huggingface-cli download org/absent`"):
        hf_cache.mounts(["org/absent"], tmp_path)
    with pytest.raises(InvalidInput, match="has no revision 'v2'.*--revision v2"):
        hf_cache.mounts(["org/tiny:v2"], tmp_path)
    (tmp_path / "models--org--empty" / "snapshots").mkdir(parents=True)  # an interrupted download
    with pytest.raises(InvalidInput, match="is not in"):
        hf_cache.mounts(["org/empty"], tmp_path)


def test_container_spec_mounts_limits_and_secrets(tmp_path: Path) -> None:
    cache, volume = tmp_path / "hub", tmp_path / "volume"
    folder = make_model(cache, "org/tiny")
    volume.mkdir()
    s = settings(hf_hub_cache=cache)
    e = ep(
        networkVolumeId=str(volume),
        modelReferences=["org/tiny"],
        vcpuCount=1,
        memoryInMb=2048,
        env={"K": "{{ RUNPOD_SECRET_k }}"},
    )
    check_inputs(s, e, {"k": "v"})
    spec = container_spec(s, "http://gw:1", e, worker(), "inst", {"k": "v"})
    assert spec.volume is None and spec.shm_mb == 1024 and spec.nano_cpus == 1_000_000_000
    assert spec.host_mounts == (
        HostMount(str(volume), "/runpod-volume", read_only=False),
        HostMount(str(folder), "/runpod-volume/huggingface-cache/hub/models--org--tiny", read_only=True),
    )
    assert spec.env["K"] == "v" and spec.env["RUNPOD_VOLUME_ID"] == str(volume)
    named = container_spec(s, "http://gw:1", ep(networkVolumeId="shared-vol"), worker(), "inst")
    assert named.volume == "shared-vol" and named.host_mounts == () and named.shm_mb == 8192
    with pytest.raises(MissingSecret):
        check_inputs(s, e, {})
    for bad in (
        str(tmp_path / "missing"),
        "/",
        "/" + "0" * 4000,
    ):  # (the last: a name too long, ENAMETOOLONG)
        with pytest.raises(InvalidInput) as caught:
            check_inputs(s, ep(networkVolumeId=bad), {})
        assert caught.value.field == "networkVolumeId"


def test_the_volume_path_is_the_runtimes() -> None:
    from emulator.runtime import VOLUME_MOUNT
    from emulator.workers.mounts import RUNPOD_VOLUME

    assert RUNPOD_VOLUME == VOLUME_MOUNT == "/runpod-volume"


def test_endpoint_fields_validate_and_version() -> None:
    for good in (
        {"vcpuCount": 4},
        {"shmSizeMb": 16384},
        {"networkVolumeId": "/data/models"},
        {"modelReferences": ["a/b"]},
    ):
        ep(**good)
    for bad in (
        {"vcpuCount": 0},
        {"shmSizeMb": 0},
        {"networkVolumeId": "relative/path"},
        {"modelReferences": "a/b"},
    ):
        with pytest.raises(ValueError):
            ep(**bad)
    for change in ({"vcpuCount": 2}, {"shmSizeMb": 512}, {"modelReferences": ["a/b"]}):
        updated, bumped = ep().apply_patch(EndpointPatch.model_validate(change))
        assert bumped and updated.version == 2


def test_cpu_budget_counts_vcpu_count() -> None:
    endpoints = {"ep": ep(vcpuCount=2)}
    running = [
        WorkerRecord(id="a", endpoint_id="ep", token="a", version=1, state=WorkerState.IDLE),
        WorkerRecord(id="b", endpoint_id="ep", token="b", version=1, state=WorkerState.IDLE, paused=True),
    ]
    host = snapshot(running, endpoints, (), settings(worker_cpu_budget=3), busy=set())
    assert host.cpu_used == 2.0  # the running worker's vcpuCount; a paused one counts none
    out = [a for _, a in admit([(endpoints["ep"], [Start("ep", "x")])], host, {})]
    assert isinstance(out[0], Throttle) and "CPU budget: needs 2 CPU, 1 of 3 left" in out[0].reason
    out = [a for _, a in admit([(ep(vcpuCount=1), [Start("ep", "y")])], Host(cpu_budget=3, cpu_used=2), {})]
    assert out == [Start("ep", "y")]


def test_secret_store_persists_owner_only(tmp_path: Path) -> None:
    store = SecretStore(tmp_path)
    store.create("hf_token", "v1", now=1.0)
    with pytest.raises(Conflict):
        store.create("hf_token", "v2", now=2.0)
    for name, value in (
        ("bad name", "v"),
        ("", "v"),
        ("x" * 65, "v"),
        ("ok", ""),
        ("ok", "a\x00b"),
        ("ok", 5),
    ):
        with pytest.raises(InvalidInput):
            check_name(name)
            check_value(value)
    store.update("hf_token", "v3", now=3.0)
    path = tmp_path / "secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = SecretStore(tmp_path)
    assert again.values() == {"hf_token": "v3"}
    assert again.require("hf_token").public() == {"name": "hf_token", "createdAt": 1.0, "updatedAt": 3.0}
    again.delete("hf_token")
    with pytest.raises(NotFound):
        again.require("hf_token")
    assert SecretStore(tmp_path).list() == [] and json.loads(path.read_text()) == {}


def test_log_store_filters_and_bounds(tmp_path: Path) -> None:
    store = EndpointLogStore(tmp_path, max_mb=0.0625)  # 64 KiB per endpoint: 32 KiB a file
    store.append("ep", "w1", None, "starting", ts=10.0)
    store.append("ep", "w1", "job-1", "one", ts=11.0)
    store.append("ep", "w2", "job-2", "two", ts=12.0)
    store.append("other", "w9", None, "elsewhere", ts=12.0)
    assert [i.line for i in store.query("ep", LogFilter())] == ["starting", "one", "two"]
    assert [i.line for i in store.query("ep", LogFilter(job="job-1"))] == ["one"]
    assert [i.line for i in store.query("ep", LogFilter(worker="w2"))] == ["two"]
    assert [i.line for i in store.query("ep", LogFilter(since=11.5))] == ["two"]
    assert [i.line for i in store.query("ep", LogFilter(after_seq=2))] == ["two"]
    assert [i.line for i in store.query("ep", LogFilter(limit=1))] == ["two"]
    # a restarted control plane reads them back and numbers on
    again = EndpointLogStore(tmp_path, max_mb=0.0625)
    assert again.append("ep", "w1", None, "after restart", ts=13.0).seq == 4
    for n in range(2000):  # about 180 KB of lines: the oldest are dropped, the newest kept
        again.append("ep", "w1", "job-3", f"line {n:05d} " + "x" * 60, ts=20.0 + n)
    kept = again.query("ep", LogFilter(limit=100_000))
    assert kept[-1].line.startswith("line 01999") and not any(i.line == "starting" for i in kept)
    assert sum(p.stat().st_size for p in (tmp_path / "logs").glob("ep*.jsonl")) <= 64 * 1024
    assert [i.seq for i in kept] == sorted(i.seq for i in kept)
    again.delete("ep")
    assert again.query("ep", LogFilter()) == [] and again.query("other", LogFilter())[0].line == "elsewhere"


def test_job_of_a_line() -> None:
    assert job_of_line('{"requestId": "job-7", "message": "hi", "level": "INFO"}', "job-1") == "job-7"
    assert job_of_line('{"requestId": null, "message": "x"}', "job-1") == "job-1"
    assert job_of_line("plain text", "job-1") == "job-1" and job_of_line("{not json requestId", None) is None


def test_engine_timestamps_split_from_lines() -> None:
    from emulator.supervisor.log_collector import split_stamp

    at, text = split_stamp("2026-11-30T17:40:00.123456789Z hello world")
    assert text == "hello world" and at is not None and abs(at - 1796060400.123456) < 1e-3
    assert split_stamp("2026-11-30T17:40:00Z ") == (1796060400.0, "")
    assert split_stamp("no stamp here") == (None, "no stamp here")
    assert split_stamp("2026-13-45T99:99:99Z x") == (None, "2026-13-45T99:99:99Z x")


def test_the_job_a_worker_was_running_at_a_time(tmp_path: Path) -> None:
    from emulator.models import JobStatus
    from emulator.store.db import connect
    from emulator.store.jobs import JobStore, NewJob

    store = JobStore(connect(tmp_path / "jobs.db"))
    for n in (1, 2):
        job = NewJob(
            id=f"j{n}",
            endpoint_id="e",
            input={},
            webhook=None,
            s3_config=None,
            low_priority=False,
            execution_timeout_ms=60_000,
            ttl_ms=600_000,
            is_sync=False,
        )
        store.enqueue(job, now=0.0)
    (first,) = store.claim("e", "w", 1, now=10.0, lease_s=30)
    store.finish(first.id, JobStatus.COMPLETED, now=12.0, retention_s=60)
    assert store.running_at("w", 9.0) is None  # before it began
    assert (store.running_at("w", 11.0) or first).id == "j1"
    assert store.running_at("w", 12.5) is None  # after it ended...
    assert (store.running_at("w", 12.5, grace_s=1.0) or first).id == "j1"  # ...unless within the grace
    store.claim("e", "w", 1, now=12.2, lease_s=30)
    assert (store.running_at("w", 12.5, grace_s=1.0) or first).id == "j2"  # a job begun since wins
    assert store.running_at("other", 11.0) is None
    store.conn.close()

"""Supervisor scenarios end to end on the real kube-apiserver + kube-scheduler 1.20 with the kubelet stand-in.

The stand-in runs each worker Pod the scheduler binds as a process on this host (``kube_workers``: the
project's ``worker_sdk`` with the Pod's environment), so workers make contact over HTTP, take jobs and
answer. Two nodes of 1 ``nvidia.com/gpu`` each (the session's ``kube_cluster``); each test has its own
namespace and control plane.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.config import Settings
from emulator.control_plane import ControlPlane
from emulator.runtime.base import LABEL_ENDPOINT, LABEL_VERSION
from emulator.runtime.kubernetes import KubernetesRuntime
from tests.runtime.harness import BASE_IMAGE, poll
from tests.runtime.kube_cluster import Running, namespaced_runtime
from tests.supervisor.world import settings_for

pytestmark = pytest.mark.kubernetes
FULL = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fields: dict[str, Any] = dict(
        runtime="kubernetes",
        worker_host="127.0.0.1",
        worker_port=port,
        worker_url=f"http://127.0.0.1:{port}",
        startup_timeout_s=60.0,
        worker_lost_after_s=30.0,
    )
    fields.update(overrides)
    return settings_for(tmp_path / "data", **fields)


@asynccontextmanager
async def _plane(settings: Settings, rt: KubernetesRuntime) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        ControlPlane(settings, runtime=rt) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=30) as api,
    ):
        yield api


def _endpoint(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "id": name, "imageName": BASE_IMAGE, "extraWorkers": 0, **fields}


async def _workers(api: httpx.AsyncClient, endpoint: str) -> list[dict[str, Any]]:
    answer = (await api.get(f"/v1/endpoints/{endpoint}/workers")).json()
    workers: list[dict[str, Any]] = answer["workers"]
    return workers


async def _until(api: httpx.AsyncClient, endpoint: str, check: Callable[[list[dict[str, Any]]], bool]) -> Any:
    seen: list[dict[str, Any]] = []

    async def done() -> bool:
        nonlocal seen
        seen = await _workers(api, endpoint)
        return check(seen)

    await poll(done, 90, lambda: f"workers of {endpoint}: {[(w['status'], w['reason']) for w in seen]}")
    return seen


def _states(*wanted: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda workers: sorted(w["status"] for w in workers) == sorted(wanted)


async def test_throttled_with_the_schedulers_reason_then_placed_when_capacity_frees(
    kube_cluster: Running, test_labels: dict[str, str], tmp_path: Path
) -> None:
    async with namespaced_runtime(kube_cluster, test_labels) as rt, _plane(_settings(tmp_path), rt) as api:
        hog = _endpoint("hog", gpuCount=1, workersMin=2, workersMax=2)
        assert (await api.post("/v1/endpoints", json=hog)).status_code == 201
        await _until(api, "hog", _states("IDLE", "IDLE"))  # both GPUs of the cluster taken
        wait = _endpoint("wait", gpuCount=1, workersMin=1, workersMax=1)
        assert (await api.post("/v1/endpoints", json=wait)).status_code == 201
        [throttled] = await _until(
            api,
            "wait",
            lambda ws: len(ws) == 1 and ws[0]["status"] == "THROTTLED" and ws[0]["reason"] == FULL,
        )
        assert throttled["containerId"]  # the Pod stays queued in the scheduler
        [pod] = await rt.list({LABEL_ENDPOINT: "wait"})
        assert pod.status == "created" and pod.pending == f"Unschedulable: {FULL}"

        patch = {"workersMin": 1, "workersMax": 1}
        assert (await api.patch("/v1/endpoints/hog", json=patch)).status_code == 200  # one GPU frees
        [placed] = await _until(api, "wait", _states("IDLE"))
        assert placed["id"] == throttled["id"] and placed["containerId"] == throttled["containerId"]
        answer = (await api.post("/v2/wait/runsync", json={"input": {"n": 7}})).json()
        assert answer["status"] == "COMPLETED" and answer["output"] == {"echo": {"n": 7}}


async def test_rolling_update_and_crash_back_off(
    kube_cluster: Running, test_labels: dict[str, str], tmp_path: Path
) -> None:
    async with namespaced_runtime(kube_cluster, test_labels) as rt, _plane(_settings(tmp_path), rt) as api:
        body = _endpoint("r", workersMin=2, workersMax=2)
        assert (await api.post("/v1/endpoints", json=body)).status_code == 201
        first = await _until(api, "r", _states("IDLE", "IDLE"))
        assert (await api.patch("/v1/endpoints/r", json={"env": {"V": "2"}})).status_code == 200
        second = await _until(
            api, "r", lambda ws: len(ws) == 2 and all(w["status"] == "IDLE" and w["version"] == 2 for w in ws)
        )
        assert not {w["containerId"] for w in first} & {w["containerId"] for w in second}
        pods = await rt.list({LABEL_ENDPOINT: "r"})
        assert sorted(p.id for p in pods) == sorted(w["containerId"] for w in second)  # old Pods removed
        assert {p.labels[LABEL_VERSION] for p in pods} == {"2"}

        crash = _endpoint(
            "c",
            workersMin=1,
            workersMax=1,
            dockerStartCmd="python3 -c 'import os; os._exit(3)'",  # the stand-in plays "exit 3"
            backoff={"initialDelayS": 0.5, "factor": 2.0},
        )
        assert (await api.post("/v1/endpoints", json=crash)).status_code == 201
        [crashing] = await _until(
            api, "c", lambda ws: len(ws) == 1 and ws[0]["restarts"] >= 2 and ws[0]["status"] == "UNHEALTHY"
        )
        assert "exited with code 3" in crashing["reason"]
        assert len(await rt.list({LABEL_ENDPOINT: "c"})) <= 1  # each restart replaces the Pod


async def test_a_restarted_control_plane_adopts_the_live_pods(
    kube_cluster: Running, test_labels: dict[str, str], tmp_path: Path
) -> None:
    settings = _settings(tmp_path, keep_workers=True)
    async with namespaced_runtime(kube_cluster, test_labels) as rt:
        async with _plane(settings, rt) as api:
            body = _endpoint("a", workersMin=2, workersMax=2)
            assert (await api.post("/v1/endpoints", json=body)).status_code == 201
            before = await _until(api, "a", _states("IDLE", "IDLE"))
        pods = await rt.list({LABEL_ENDPOINT: "a"})
        assert sorted(p.id for p in pods) == sorted(w["containerId"] for w in before)
        assert all(p.status == "running" for p in pods)  # keep_workers: the Pods outlive the control plane
        async with _plane(settings, rt) as api:
            after = await _until(api, "a", _states("IDLE", "IDLE"))
            assert sorted((w["id"], w["containerId"]) for w in after) == sorted(
                (w["id"], w["containerId"]) for w in before
            )
            answer = (await api.post("/v2/a/runsync", json={"input": {"again": True}})).json()
            assert answer["output"] == {"echo": {"again": True}}
        assert sorted(p.id for p in await rt.list({LABEL_ENDPOINT: "a"})) == sorted(p.id for p in pods)

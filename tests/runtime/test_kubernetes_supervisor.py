"""The control plane and its supervisor on the Kubernetes runtime, end to end against the real API server.

Here the workers are told an address nothing listens on, so they never make contact: this checks what the
supervisor does with the cluster alone (scale out to workersMin as Pods; a Pod the scheduler cannot place
makes its worker THROTTLED with the scheduler's message instead of failing; deleting the endpoint removes
its Pods). test_kubernetes_scenarios.py has the scenarios where workers run and answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.control_plane import ControlPlane
from emulator.runtime.base import LABEL_ENDPOINT, ContainerInfo
from emulator.runtime.kubernetes import KubernetesRuntime
from tests.runtime.harness import BASE_IMAGE, poll
from tests.runtime.kube_cluster import Running, namespaced_runtime
from tests.supervisor.world import settings_for

pytestmark = pytest.mark.kubernetes


async def test_scale_out_and_a_gpu_pod_that_does_not_fit(
    kube_cluster: Running, test_labels: dict[str, str], tmp_path: Path
) -> None:
    async with namespaced_runtime(kube_cluster, test_labels) as rt:
        settings = settings_for(
            tmp_path / "data",
            runtime="kubernetes",
            worker_host="127.0.0.1",
            worker_url="http://127.0.0.1:9",  # the stand-in runs no worker process: nothing calls it
            gpu_mode="nvidia",
            gpus="0,1,2,3",  # not used: the cluster counts GPUs (its nodes have 1 each)
            startup_timeout_s=300.0,
        )
        async with (
            ControlPlane(settings, runtime=rt) as cp,
            httpx.AsyncClient(base_url=cp.client_url, timeout=10) as api,
        ):
            body: dict[str, Any] = {
                "name": "k",
                "id": "k",
                "imageName": BASE_IMAGE,
                "workersMin": 2,
                "extraWorkers": 0,
            }
            assert (await api.post("/v1/endpoints", json=body)).status_code == 201, body
            pods: list[ContainerInfo] = []

            async def two_running() -> bool:
                nonlocal pods
                pods = await rt.list({LABEL_ENDPOINT: "k"})
                return len(pods) == 2 and all(p.status == "running" for p in pods)

            await poll(two_running, 60, lambda: f"pods of k: {pods}")
            workers = (await api.get("/v1/endpoints/k/workers")).json()["workers"]
            assert sorted(w["containerId"] for w in workers) == sorted(p.id for p in pods)

            gpu = {
                "name": "g",
                "id": "g",
                "imageName": BASE_IMAGE,
                "workersMin": 1,
                "extraWorkers": 0,
                "gpuCount": 2,
            }
            assert (await api.post("/v1/endpoints", json=gpu)).status_code == 201
            waiting: list[ContainerInfo] = []

            async def unschedulable() -> bool:
                nonlocal waiting
                waiting = await rt.list({LABEL_ENDPOINT: "g"})
                return len(waiting) == 1 and (waiting[0].pending or "").startswith("Unschedulable")

            await poll(unschedulable, 60, lambda: f"pods of g: {waiting}")
            assert "Insufficient nvidia.com/gpu" in (waiting[0].pending or "")
            await poll(_ticks(cp, 20), 30, lambda: "the supervisor did not tick")
            [worker] = (await api.get("/v1/endpoints/g/workers")).json()["workers"]
            assert worker["status"] == "THROTTLED" and worker["containerId"] == waiting[0].id  # not failed
            assert worker["reason"] == (waiting[0].pending or "").removeprefix("Unschedulable: ")

            for endpoint in ("k", "g"):
                assert (await api.delete(f"/v1/endpoints/{endpoint}")).status_code == 204

            async def gone() -> bool:
                return not [p for p in await rt.list({}) if p.labels.get(LABEL_ENDPOINT) in ("k", "g")]

            await poll(gone, 60, lambda: "endpoint pods left behind")
        assert isinstance(rt, KubernetesRuntime)


def _ticks(cp: ControlPlane, count: int) -> Any:
    """True once the supervisor has run ``count`` more ticks than when this was made."""
    assert cp.supervisor is not None
    loop: Any = cp.supervisor.loop
    start: int = loop.ticks

    async def check() -> bool:
        return bool(loop.ticks >= start + count)

    return check

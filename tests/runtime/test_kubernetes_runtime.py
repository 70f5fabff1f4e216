"""The Kubernetes runtime against a real kube-apiserver + kube-scheduler 1.20 (what the contract suite cannot say).

The cluster, the kubelet stand-in and its two nodes (1 nvidia.com/gpu each) come from the ``kube_cluster``
fixture in conftest.py; each test gets its own namespace.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import kubernetes.client
import pytest

from emulator.runtime.base import LABEL_ENDPOINT
from emulator.runtime.kube_docs import label_value
from emulator.runtime.kubernetes import KubernetesRuntime
from tests.runtime.harness import Harness, poll
from tests.runtime.kube_cluster import Running, namespaced_runtime

pytestmark = pytest.mark.kubernetes
LONG_ID = "endpoint-" + "x" * 60  # over the 63 characters of a label value


@pytest.fixture
async def kube(kube_cluster: Running, test_labels: dict[str, str]) -> AsyncIterator[Harness]:
    async with namespaced_runtime(kube_cluster, test_labels) as runtime:
        yield Harness("kubernetes", runtime, test_labels, kubeconfig=str(kube_cluster.cluster.kubeconfig))


def _pod(running: Running, runtime: KubernetesRuntime, name: str) -> dict[str, Any]:
    core: Any = kubernetes.client.CoreV1Api(running.kubelet.client)
    data: dict[str, Any] = json.loads(
        core.read_namespaced_pod(name, runtime.namespace, _preload_content=False).data
    )
    return data


async def test_the_pod_on_the_api_server_is_a_bare_worker_pod(kube: Harness, kube_cluster: Running) -> None:
    rt: KubernetesRuntime = kube.runtime
    labels = {**kube.labels, LABEL_ENDPOINT: LONG_ID}
    spec = kube.spec("sleep", labels=labels, memory_mb=256, nano_cpus=500_000_000, volume="models")
    pod_id = await rt.create(spec)
    await rt.start(pod_id)
    pod = _pod(kube_cluster, rt, pod_id)
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    [container] = pod["spec"]["containers"]
    assert container["resources"]["limits"] == {"memory": "256Mi", "cpu": "500m"}
    assert container["volumeMounts"][0]["mountPath"] == "/runpod-volume"
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "models"
    assert pod["metadata"]["labels"][LABEL_ENDPOINT] == label_value(LONG_ID)[0]
    assert pod["metadata"]["annotations"][LABEL_ENDPOINT] == LONG_ID
    # no PersistentVolume controller runs here: the claim stays unbound and the scheduler says so
    info = await rt.inspect(pod_id)

    async def waits_for_the_claim() -> bool:
        nonlocal info
        info = await rt.inspect(pod_id)
        return "unbound immediate PersistentVolumeClaims" in (info.pending or "")

    await poll(waits_for_the_claim, 30, lambda: f"no claim message: {info}")
    assert info.status == "created"
    core: Any = kubernetes.client.CoreV1Api(kube_cluster.kubelet.client)
    claim = json.loads(
        core.read_namespaced_persistent_volume_claim("models", rt.namespace, _preload_content=False).data
    )
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    # the long label value is restored on the way back, and selects by its hash
    plain = await kube.started("sleep", labels=labels)
    running = await kube.wait_status(plain, "running", timeout_s=30)
    assert running.labels[LABEL_ENDPOINT] == LONG_ID
    assert [i.id for i in await rt.list({LABEL_ENDPOINT: LONG_ID})] == sorted([pod_id, plain])


async def test_a_pod_that_does_not_fit_waits_with_the_schedulers_message(kube: Harness) -> None:
    rt: KubernetesRuntime = kube.runtime
    assert await rt.gpu_runtime_available()
    pod_id = await rt.create(kube.spec("sleep", gpu_device_ids=("0", "1")))  # nodes have 1 GPU each
    await rt.start(pod_id)

    async def unschedulable() -> bool:
        pending = (await rt.inspect(pod_id)).pending or ""
        return pending.startswith("Unschedulable")

    await poll(unschedulable, 30, lambda: f"never Unschedulable: {rt._cache.infos.get(pod_id)}")
    info = await rt.inspect(pod_id)
    assert info.status == "created"
    assert info.pending is not None and "Insufficient nvidia.com/gpu" in info.pending
    fits = await rt.create(kube.spec("sleep", gpu_device_ids=("0",)))
    await rt.start(fits)
    await kube.wait_status(fits, "running", timeout_s=30)


async def test_kill_keeps_the_pod_its_exit_code_and_logs(kube: Harness) -> None:
    rt: KubernetesRuntime = kube.runtime
    pod_id = await kube.started("sleep")
    await kube.wait_status(pod_id, "running")
    await rt.kill(pod_id)
    info = await kube.wait_status(pod_id, "exited")
    assert info.exit_code == 137 and info.error is not None and info.error.startswith("DeadlineExceeded")
    assert "ready" in await rt.logs(pod_id, tail=5)  # still readable: the Pod was not deleted

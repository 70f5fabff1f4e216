"""Fixtures for the runtime contract: one harness per runtime, unique labels per test, cleanup by label.

The cleanup talks to the engine through the Docker SDK directly, not through DockerRuntime, so that a bug
in the code under test cannot leave containers behind. It removes only what carries this test's label.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from emulator.errors import RuntimeUnavailable
from emulator.runtime.fake import FakeRuntime
from tests.runtime.harness import SCENARIOS, TEST_LABEL, Harness


@pytest.fixture
def test_labels() -> dict[str, str]:
    return {TEST_LABEL: uuid.uuid4().hex}


@pytest.fixture
def docker_cleanup(test_labels: dict[str, str]) -> Iterator[None]:
    """After the test (passed or not), force-remove every container, network and volume with its label."""
    yield
    try:
        import docker
    except ImportError:
        return
    try:
        client = docker.from_env()
    except Exception:
        return  # no engine: nothing can have been created
    selector = {"label": [f"{TEST_LABEL}={test_labels[TEST_LABEL]}"]}
    try:
        for container in client.containers.list(all=True, filters=selector):
            container.remove(force=True)
        for network in client.networks.list(filters=selector):
            network.remove()
        for volume in client.volumes.list(filters=selector):
            volume.remove(force=True)
    finally:
        client.close()


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[Any]:
    """A real kube-apiserver + kube-scheduler + etcd on loopback, with the kubelet stand-in and 2 nodes.

    Skipped (with the command to build them) when the binaries are absent, unless CI=true: then it fails.
    """
    from tests.runtime import kube_cluster as kc

    missing = kc.missing_binaries()
    if missing:
        message = f"{', '.join(missing)} not in {kc.CACHE / 'bin'}: {kc.BUILD_HINT}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    cluster = kc.start_cluster()
    kubelet = kc.Kubelet(cluster)
    try:
        kubelet.add_nodes(2, gpus=1)
        kubelet.start()
        yield kc.Running(cluster, kubelet)
    finally:
        kubelet.stop()
        cluster.stop()


@pytest.fixture(
    params=[
        "fake",
        pytest.param("docker", marks=pytest.mark.docker),
        pytest.param("kubernetes", marks=pytest.mark.kubernetes),
    ]
)
async def harness(request: pytest.FixtureRequest, test_labels: dict[str, str]) -> AsyncIterator[Harness]:
    if request.param == "kubernetes":
        reason = KUBERNETES_SKIPS.get(request.function.__name__)
        if reason:
            pytest.skip(f"Kubernetes runtime: {reason}")
        from tests.runtime.kube_cluster import namespaced_runtime

        running = request.getfixturevalue("kube_cluster")
        async with namespaced_runtime(running, test_labels) as kube:
            yield Harness("kubernetes", kube, test_labels, kubeconfig=str(running.cluster.kubeconfig))
        return
    if request.param == "fake":
        images = {f"fake/{name}" for name in SCENARIOS}
        fake = FakeRuntime(images=images)
        for name, (_, behavior) in SCENARIOS.items():
            fake.set_image_behavior(f"fake/{name}", behavior)
        yield Harness("fake", fake, test_labels)
        return
    from emulator.runtime.docker import DockerRuntime

    request.getfixturevalue("docker_cleanup")
    runtime = DockerRuntime()
    try:
        await runtime.ping()
    except RuntimeUnavailable as exc:
        await runtime.close()
        pytest.skip(f"no Docker engine answers: {exc.message}")
    try:
        yield Harness("docker", runtime, test_labels)
    finally:
        await runtime.close()


# Contract cases that are Docker's alone, and why (the Kubernetes side is tested in test_kube_docs.py and
# test_kubernetes_runtime.py instead).
KUBERNETES_SKIPS = {
    "test_image_info_and_a_refused_pull": "nodes pull images themselves when a Pod starts (no pull API)",
    "test_pause_and_unpause": "no Kubernetes API freezes a Pod (FlashBoot degrades to removal)",
    "test_missing_image_names_the_image_and_the_fix": "a missing image is the Pod's ErrImagePull (dead), not a create error",
    "test_env_labels_and_string_command": "reads Docker's inspect document (the Pod manifest is checked elsewhere)",
    "test_named_volume_is_mounted_at_runpod_volume": "Docker volumes (PersistentVolumeClaims are checked elsewhere)",
    "test_memory_limit_and_no_escalation": "Docker's HostConfig (Pod limits are checked elsewhere)",
    "test_network_gateway_and_extra_hosts": "no Docker network: Pods use the cluster's network",
    "test_gpu_request_refused_names_the_fix": "GPUs are counted by the scheduler (Unschedulable, tested elsewhere)",
    "test_stats_of_a_running_container": "container stats need the metrics API, which is not read",
}

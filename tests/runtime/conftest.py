"""Fixtures for the runtime contract: one harness per runtime, unique labels per test, cleanup by label.

The cleanup talks to the engine through the Docker SDK directly, not through DockerRuntime, so that a bug
in the code under test cannot leave containers behind. It removes only what carries this test's label.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

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


@pytest.fixture(params=["fake", pytest.param("docker", marks=pytest.mark.docker)])
async def harness(request: pytest.FixtureRequest, test_labels: dict[str, str]) -> AsyncIterator[Harness]:
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

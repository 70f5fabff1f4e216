"""Image pulls in the supervisor, on the fake runtime (fast logic; the real registry is in
tests/integration/test_registry_docker.py): a worker pulls a missing image while INITIALIZING, workers
share one pull, a failed pull is UNHEALTHY with the registry's reason and retried with back-off until the
image appears, NEVER does not pull, and an unknown credential is named."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from emulator.clock import FakeClock
from emulator.models import WorkerState as S
from emulator.runtime.fake import FakeRuntime
from tests.supervisor.world import World

REMOTE = "127.0.0.1:5999/team/handler:v1"


class CountingPulls(FakeRuntime):
    pulls = 0

    async def pull(self, image: str, auth: dict[str, str] | None) -> AsyncIterator[dict[str, Any]]:
        CountingPulls.pulls += 1
        async for doc in super().pull(image, auth):
            yield doc


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = FakeClock()
    CountingPulls.pulls = 0
    w = await World.create(tmp_path / "d", fake=CountingPulls(clock=clock, images=set()), clock=clock)
    try:
        yield w
    finally:
        await w.sup.stop()
        w.core.close()


async def test_a_missing_image_is_pulled_once_for_all_workers_and_timed(world: World) -> None:
    world.fake.registry[REMOTE] = "sha256:remote-1"
    world.endpoint(imageName=REMOTE, workersMin=3, workersMax=3)
    await world.step()
    await world.sup.settle()
    await world.step()
    assert CountingPulls.pulls == 1  # three workers, one shared pull
    assert world.states() == ["IDLE", "IDLE", "IDLE"]
    for w in world.workers():
        assert "pullS" in w.timings and w.pull is not None and w.pull["status"] == "complete"
        assert (w.pull["layersDone"], w.pull["layersTotal"], w.pull["bytesTotal"]) == (2, 2, 2000)
    assert world.fake.image_ids[REMOTE] == "sha256:remote-1"


async def test_a_failed_pull_is_unhealthy_with_the_reason_then_picks_up_the_pushed_image(
    world: World,
) -> None:
    world.endpoint(imageName=REMOTE, workersMin=1, workersMax=1, backoff={"initialDelayS": 5})
    await world.step()
    await world.sup.settle()
    (w,) = world.workers()
    assert w.state == S.UNHEALTHY
    assert "no such tag" in (w.reason or "") and "v1" in (w.reason or "")
    world.fake.registry[REMOTE] = "sha256:pushed-later"  # pushed after the endpoint was made
    await world.run_until(lambda: world.states() == ["IDLE"], step_s=1.0)
    (w,) = world.workers()
    assert w.restarts >= 1 and CountingPulls.pulls >= 2


async def test_pull_policy_never_does_not_pull(world: World) -> None:
    world.fake.registry[REMOTE] = "sha256:remote-1"
    world.endpoint(
        imageName=REMOTE, workersMin=1, workersMax=1, pullPolicy="NEVER", backoff={"initialDelayS": 60}
    )
    await world.step()
    await world.sup.settle()
    (w,) = world.workers()
    assert w.state == S.UNHEALTHY and "pullPolicy is NEVER" in (w.reason or "")
    assert CountingPulls.pulls == 0


async def test_an_unknown_credential_is_named(world: World) -> None:
    world.fake.registry[REMOTE] = "sha256:remote-1"
    world.endpoint(imageName=REMOTE, workersMin=1, workersMax=1, containerRegistryAuthId="nope")
    await world.step()
    await world.sup.settle()
    (w,) = world.workers()
    assert w.state == S.UNHEALTHY and "containerRegistryAuthId 'nope'" in (w.reason or "")


async def test_a_local_image_is_not_pulled_and_refresh_reports_a_new_digest(world: World) -> None:
    assert world.fake.images is not None
    world.fake.images.add(REMOTE)
    world.fake.image_ids[REMOTE] = "sha256:old"
    endpoint = world.endpoint(imageName=REMOTE, workersMin=1, workersMax=1)
    await world.step()
    await world.sup.settle()
    assert CountingPulls.pulls == 0  # a locally built image (no registry digest) is used as it is
    world.fake.registry[REMOTE] = "sha256:new"
    answer = await world.sup.refresh_image(endpoint)
    assert answer == {"pulled": True, "changed": True, "imageId": "sha256:new"}
    again = await world.sup.refresh_image(endpoint)
    assert again["changed"] is False

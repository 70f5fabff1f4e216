"""The supervisor wired into the ControlPlane (real HTTP, FakeRuntime): the API hooks reach it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from emulator.control_plane import ControlPlane
from emulator.runtime.fake import FakeRuntime
from tests.supervisor.world import settings_for

IMAGE = "serverless-emulator/sample-echo:latest"


async def test_control_plane_with_the_fake_runtime(tmp_path: Path) -> None:
    fake = FakeRuntime(images={IMAGE})
    settings = settings_for(
        tmp_path / "data", worker_host="127.0.0.1"
    )  # the fake gateway is not an address here
    async with ControlPlane(settings, runtime=fake) as cp:
        assert "se-test-net" in fake.networks
        async with httpx.AsyncClient(base_url=cp.client_url, timeout=10) as api:
            # a missing image is accepted (#13 item 8): workers pull it when they start, and the answer says so
            r = await api.post(
                "/v1/endpoints", json={"name": "x", "imageName": "missing:latest", "extraWorkers": 0}
            )
            assert r.status_code == 201, r.text
            assert (
                r.json()["imageStatus"]["local"] is False
                and "will pull it" in r.json()["imageStatus"]["message"]
            )
            assert (await api.delete(f"/v1/endpoints/{r.json()['id']}")).status_code == 204
            body = {"name": "e", "id": "e", "imageName": IMAGE, "workersMin": 2, "extraWorkers": 1}
            assert (await api.post("/v1/endpoints", json=body)).status_code == 201

            async def workers() -> list[dict[str, object]]:
                return list((await api.get("/v1/endpoints/e/workers")).json()["workers"])

            for _ in range(200):
                if len(await workers()) == 3 and all(w["containerId"] for w in await workers()):
                    break
                await asyncio.sleep(0.01)
            listed = await workers()
            assert sorted(bool(w["standby"]) for w in listed) == [False, False, True]
            running = [c for c in fake.containers.values() if c.status == "running"]
            assert len(running) == 2 and len(fake.containers) == 3
            some = next(w for w in listed if not w["standby"])
            fake.append_log(str(some["containerId"]), "hello from a fake worker")
            logs = await api.get(f"/v1/workers/{some['id']}/logs?tail=5")
            assert "hello from a fake worker" in logs.text
            assert (await api.delete("/v1/endpoints/e")).status_code == 204
            assert fake.containers == {}
            assert cp.core is not None and cp.core.workers.all() == []

"""Standby containers (extraWorkers) are not shown as workers starting up (issue #13, item 5).

An endpoint scaled to zero with ``extraWorkers`` 2 keeps two real containers created and not started.
They were listed as INITIALIZING forever while ``/health`` counted none. Now every view says STANDBY
and agrees: the workers list and its summary, ``/health``, ``/metrics``, the CLI's table and the
dashboard page (headless Chromium, when installed).
"""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from rich.console import Console

from emulator.cli.workers import workers_table
from emulator.control_plane import ControlPlane
from emulator.runtime.base import LABEL_INSTANCE
from tests.integration import docker_fixtures
from tests.integration.docker_fixtures import Instance, docker_settings, eventually, sample

docker_session = docker_fixtures.docker_session
instance = docker_fixtures.instance

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]


async def _dashboard_states(url: str) -> list[str] | None:
    """The states the dashboard page shows in its workers table; None without Playwright or Chromium."""
    from tests.dashboard.conftest import chromium_path

    try:
        from playwright.async_api import async_playwright
    except ImportError:
        return None
    executable = chromium_path()
    if executable is None:
        return None
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = await browser.new_page()
            await page.goto(f"{url}/#endpoint=ep")
            rows = page.locator("#workers-card tr[data-worker]")
            await rows.first.wait_for(timeout=20_000)
            return [str(await row.get_attribute("data-state")) for row in await rows.all()]
        finally:
            await browser.close()


async def test_standby_containers_are_shown_as_standby_everywhere(instance: Instance) -> None:
    async with (
        ControlPlane(docker_settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=30) as api,
    ):
        r = await api.post(
            "/v1/endpoints",
            json={
                "id": "ep",
                "name": "ep",
                "imageName": sample("echo"),
                "workersMin": 0,
                "workersMax": 3,
                "extraWorkers": 2,
            },
        )
        assert r.status_code == 201, r.text

        async def two_created() -> dict[str, Any] | None:
            body: dict[str, Any] = (await api.get("/v1/endpoints/ep/workers")).json()
            listed = instance.client.containers.list(  # sparse: no inspect of a container removed meanwhile
                all=True, sparse=True, filters={"label": [f"{LABEL_INSTANCE}={instance.id}"]}
            )
            created = [c for c in listed if c.attrs.get("State") == "created"]
            ready = len(created) == 2 and all(w["containerId"] for w in body["workers"])
            return body if ready and len(body["workers"]) == 2 else None

        body = await eventually(two_created, "2 standby containers created (not started)", timeout_s=60)
        assert [w["status"] for w in body["workers"]] == ["STANDBY", "STANDBY"]
        assert all(w["standby"] for w in body["workers"])
        summary = body["summary"]
        assert (summary["standby"], summary["initializing"], summary["total"]) == (2, 0, 0)

        health = (await api.get("/v2/ep/health")).json()["workers"]
        assert health["initializing"] == 0 and sum(health.values()) == 0

        metrics = (await api.get("/metrics")).text
        assert 'emulator_workers{endpoint="ep",state="STANDBY"} 2.0' in metrics
        assert 'emulator_workers{endpoint="ep",state="INITIALIZING"} 0.0' in metrics

        out = io.StringIO()
        Console(file=out, width=200, color_system=None).print(workers_table([("ep", body)]))
        table = out.getvalue()
        assert table.count("STANDBY") >= 2 and "INITIALIZING" not in table

        dashboard = (await api.get("/v1/dashboard")).json()
        (snap,) = [e for e in dashboard["endpoints"] if e["id"] == "ep"]
        assert [w["status"] for w in snap["workers"]["workers"]] == ["STANDBY", "STANDBY"]
        shown = await _dashboard_states(cp.client_url)
        if shown is not None:
            assert shown == ["STANDBY", "STANDBY"]

        # called up by work, a standby container becomes a worker starting up, then IDLE
        r = await api.post("/v2/ep/runsync", json={"input": {"n": 1}})
        assert r.json()["status"] == "COMPLETED"
        used = r.json()["workerId"]
        assert used in {w["id"] for w in body["workers"]}
        workers = (await api.get("/v1/endpoints/ep/workers")).json()["workers"]
        assert next(w for w in workers if w["id"] == used)["status"] in ("IDLE", "RUNNING")

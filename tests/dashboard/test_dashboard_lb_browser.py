"""The dashboard's per-request card of a load-balancing endpoint in a real browser (headless Chromium).

The worker is a fake runtime's container serving a tiny ASGI app on its own loopback address (the
health poller and the proxy reach it over real HTTP); a request proxied to it must appear in the
"Recent requests" card, live, with its method, path, status, worker and time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.runtime.fake import FakeRuntime
from emulator.testing import BackgroundControlPlane
from tests.dashboard.conftest import API_KEY, AUTH
from tests.supervisor.world import settings_for

pytestmark = pytest.mark.timeout(120)
IMAGE = "fake/lb:latest"
STATE_TIMEOUT_MS = 10_000


def _app(env: Mapping[str, str]) -> Any:
    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b"" if scope["path"] == "/ping" else b'{"generated_text": "hello"}'
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return asgi


@pytest.fixture
def lb_plane(tmp_path: Path) -> Iterator[BackgroundControlPlane]:
    fake = FakeRuntime(images={IMAGE})
    fake.set_image_behavior(IMAGE, http_app=_app)
    settings = settings_for(
        tmp_path / "data", worker_host="127.0.0.1", api_key=API_KEY, lb_health_fast_interval_s=0.02
    )
    cp = BackgroundControlPlane(settings, runtime=fake)
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()  # removes the worker's container: the fake stops its server


def test_the_requests_card_shows_a_proxied_request(
    lb_plane: BackgroundControlPlane, page: Any, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    with httpx.Client(base_url=lb_plane.client_url, headers=AUTH, timeout=60) as api:
        body = {
            "name": "api",
            "id": "api",
            "imageName": IMAGE,
            "type": "LB",
            "workersMax": 1,
            "env": {"PORT": "18081"},
        }
        r = api.post("/v1/endpoints", json=body)
        assert r.status_code == 201, r.text

        page.goto(lb_plane.client_url + "/#endpoint=api")
        page.fill("#key-input", API_KEY)
        page.click("#key-form button[type=submit]")
        expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=STATE_TIMEOUT_MS)
        card = page.locator("#requests-card")
        expect(card.locator(".empty-row")).to_be_visible(timeout=STATE_TIMEOUT_MS)

        r = api.post("/lb/api/generate", json={"prompt": "hi"})  # from zero workers: a cold start
        assert r.status_code == 200, r.text
        worker = r.headers["x-runpod-worker-id"]

        row = card.locator('tbody tr[data-request-status="200"]')
        expect(row).to_have_count(1, timeout=STATE_TIMEOUT_MS)
        expect(row).to_contain_text("POST /generate")
        expect(row).to_contain_text(worker)
        expect(row.locator(".timing")).to_contain_text("ms")
        expect(row.locator(".cold")).to_contain_text("cold")
        expect(card.locator(".count")).to_have_text("1")
        # the request is over: its worker is back to IDLE, nothing in flight
        expect(page.locator(f'tr[data-worker="{worker}"]')).to_have_attribute(
            "data-state", "IDLE", timeout=STATE_TIMEOUT_MS
        )
        expect(card.locator(".queue-line")).to_contain_text("0 in flight")
        # no job tiles for an endpoint without jobs: its requests' answers instead
        expect(page.locator(".kpi", has_text="Answered").locator(".kpi-value")).to_contain_text("1")
        expect(page.locator(".kpi", has_text="Errors").locator(".kpi-value")).to_contain_text("0")
        expect(page.locator(".kpi", has_text="Completed")).to_have_count(0)
        page.screenshot(path=str(artifacts / "dashboard-lb-requests.png"), full_page=True)

"""The dashboard in a real browser (headless Chromium driven by Playwright).

A worker is registered and driven by hand over the worker protocol; the page, opened once and
never reloaded, must follow it through INITIALIZING, IDLE, RUNNING and back to IDLE from the
server-sent events alone. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.testing import BackgroundControlPlane
from tests.dashboard.conftest import API_KEY, AUTH
from tests.helpers import ProtocolWorker

pytestmark = pytest.mark.timeout(120)
STATE_TIMEOUT_MS = 10_000


def _take_until_job(worker: ProtocolWorker, deadline_s: float = 30.0) -> httpx.Response:
    """Long-poll job-take until a job is handed over (the first poll makes the worker IDLE)."""
    deadline = time.monotonic() + deadline_s
    while True:
        r = worker.take()
        if r.status_code == 200 or time.monotonic() > deadline:
            return r


def _rgb(css: str) -> tuple[int, int, int]:
    r, g, b = (int(x) for x in re.findall(r"\d+", css)[:3])
    return r, g, b


def test_page_follows_a_worker_through_its_states(
    keyed_plane: BackgroundControlPlane, keyed_api: httpx.Client, page: Any, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    url = keyed_plane.client_url
    r = keyed_api.post(
        "/v1/endpoints",
        json={
            "name": "echo",
            "id": "echo",
            "imageName": "serverless-emulator/sample-echo:latest",
            "workersMax": 2,
            "gpuCount": 0,
        },
    )
    assert r.status_code == 201, r.text

    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))

    def on_console(msg: Any) -> None:
        if msg.type == "error" and "401" not in msg.text:
            errors.append(msg.text)

    page.on("console", on_console)
    snapshot_fetches: list[str] = []

    def on_request(req: Any) -> None:
        if "/v1/dashboard" in req.url:
            snapshot_fetches.append(req.url)

    page.on("request", on_request)

    # the page asks for the key (EMULATOR_API_KEY is set), then goes live
    page.goto(url + "/")
    expect(page.locator("#key-modal")).to_be_visible()
    page.fill("#key-input", API_KEY)
    page.click("#key-form button[type=submit]")
    expect(page.locator("#key-modal")).to_be_hidden()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=STATE_TIMEOUT_MS)
    expect(page.locator(".ep-title")).to_contain_text("echo")
    expect(page.locator("#workers-card .empty-row")).to_be_visible()

    # registered: INITIALIZING until its first contact
    worker = ProtocolWorker(url, "echo", headers=AUTH)
    row = page.locator(f'tr[data-worker="{worker.id}"]')
    badge = row.locator(".badge")
    try:
        expect(row).to_have_attribute("data-state", "INITIALIZING", timeout=STATE_TIMEOUT_MS)
        expect(badge).to_have_text("INITIALIZING")
        assert _rgb(badge.evaluate("el => getComputedStyle(el).color"))[2] > 150  # blue

        with ThreadPoolExecutor(1) as pool:
            # first job-take: IDLE while the long poll is parked
            taking = pool.submit(_take_until_job, worker)
            expect(row).to_have_attribute("data-state", "IDLE", timeout=STATE_TIMEOUT_MS)
            expect(page.locator(".queue-line")).to_contain_text("1 worker waiting for work")

            # a job arrives: the parked poll takes it and the worker is RUNNING with it
            job_id = keyed_api.post("/v2/echo/run", json={"input": {"prompt": "hello"}}).json()["id"]
            taken = taking.result(timeout=30)
        assert taken.status_code == 200 and taken.json()["id"] == job_id, taken.text
        expect(row).to_have_attribute("data-state", "RUNNING", timeout=STATE_TIMEOUT_MS)
        expect(badge).to_have_text("RUNNING")
        expect(row.locator(".job-cell")).to_have_attribute("data-jobs", job_id)
        job_row = page.locator(f'#jobs-card tr[data-job="{job_id}"]')
        expect(job_row).to_have_attribute("data-status", "IN_PROGRESS", timeout=STATE_TIMEOUT_MS)
        r_, g, b_ = _rgb(badge.evaluate("el => getComputedStyle(el).color"))
        assert g > r_ and g > b_, "the RUNNING badge is green"
        time.sleep(1.1)  # let the uptime tick once, so the screenshot shows a live clock
        page.screenshot(path=str(artifacts / "dashboard-running.png"), full_page=True)

        # done: back to IDLE; the job shows its delay, execution time and cold-start breakdown
        assert worker.done(job_id, {"output": {"echo": "hello"}}).status_code == 200
        expect(row).to_have_attribute("data-state", "IDLE", timeout=STATE_TIMEOUT_MS)
        expect(job_row).to_have_attribute("data-status", "COMPLETED", timeout=STATE_TIMEOUT_MS)
        expect(job_row.locator(".timing")).to_contain_text("delay")
        expect(job_row.locator(".cold")).to_contain_text("queue wait")
        expect(page.locator(".kpi", has_text="Completed").locator(".kpi-value")).to_have_text("1")

        # the timeline has every change, newest first, and a lane for the worker
        events = page.locator("#timeline-card .events li")
        expect(events).to_have_count(4, timeout=STATE_TIMEOUT_MS)
        texts = events.all_inner_texts()
        assert [_to_state(t) for t in texts] == ["IDLE", "RUNNING", "IDLE", "INITIALIZING"], texts
        expect(page.locator("#lanes .lane")).to_have_count(1)

        # the log view opens for the worker
        row.locator("[data-logs]").click()
        expect(page.locator("#log-drawer")).to_be_visible()
        expect(page.locator("#log-worker")).to_have_text(worker.id)
        expect(page.locator("#log-body")).to_contain_text("No output captured")
        # --runtime none captures no output: serve some, to see the view render a container's lines
        lines = "".join(f"2026-01-01T00:00:{n:02d}Z handler: step {n} <ok>\n" for n in range(60))
        page.route(
            "**/v1/workers/*/logs*",
            lambda route: route.fulfill(status=200, body=lines, content_type="text/plain"),
        )
        page.click("#log-refresh")
        expect(page.locator("#log-body")).to_contain_text("handler: step 59 <ok>")
        page.screenshot(path=str(artifacts / "dashboard-logs.png"))
        page.unroute("**/v1/workers/*/logs*")
        page.keyboard.press("Escape")
        expect(page.locator("#log-drawer")).to_be_hidden()
        page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)
    finally:
        worker.close()

    assert not errors, errors
    # one 401 before the key, one after: everything else came over the event stream
    assert len(snapshot_fetches) <= 2, snapshot_fetches


def _to_state(text: str) -> str:
    """The state a timeline entry went to: the last state word in the entry."""
    words = re.findall(r"\b(INITIALIZING|IDLE|RUNNING|THROTTLED|OUTDATED|UNHEALTHY|REMOVED)\b", text)
    return str(words[-1])


def test_page_without_api_key_opens_directly(
    plane: BackgroundControlPlane, api: httpx.Client, page: Any
) -> None:
    """No EMULATOR_API_KEY: no prompt; an empty emulator says how to create an endpoint."""
    from playwright.sync_api import expect

    page.goto(plane.client_url + "/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=STATE_TIMEOUT_MS)
    expect(page.locator("#key-modal")).to_be_hidden()
    expect(page.locator("#main")).to_contain_text("No endpoints yet")
    expect(page.locator("#forget-key")).to_be_hidden()

    # endpoints appear live, and the sidebar switches between them
    for name in ("alpha", "beta"):
        assert (
            api.post("/v1/endpoints", json={"name": name, "id": name, "imageName": "img:latest"}).status_code
            == 201
        )
    expect(page.locator("#endpoint-list li")).to_have_count(2, timeout=STATE_TIMEOUT_MS)
    page.click('#endpoint-list a[data-endpoint="beta"]')
    expect(page.locator(".ep-title")).to_contain_text("beta")
    expect(page).to_have_url(re.compile(r"#endpoint=beta$"))

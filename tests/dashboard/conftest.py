"""Fixtures for the dashboard tests: a keyed control plane, an SSE reader, and a headless Chromium.

The browser tests need Debian's ``chromium`` and the ``playwright`` Python package (no browser
download: Playwright drives the system Chromium). Without them those tests skip and say why.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.config import default_settings_for_tests
from emulator.testing import BackgroundControlPlane

API_KEY = "dashboard-test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def keyed_plane(tmp_path: Path) -> Iterator[BackgroundControlPlane]:
    """A control plane with an API key and no container runtime (the test drives the workers)."""
    settings = default_settings_for_tests(
        tmp_path / "data", api_key=API_KEY, job_take_hold_s=10.0, job_stop_hold_s=2.0
    )
    cp = BackgroundControlPlane(settings)
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def keyed_api(keyed_plane: BackgroundControlPlane) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keyed_plane.client_url, headers=AUTH, timeout=30) as client:
        yield client


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go (git-ignored)."""
    path = Path(os.environ.get("EMULATOR_TEST_ARTIFACTS", REPO / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def chromium_path() -> str | None:
    configured = os.environ.get("EMULATOR_TEST_CHROMIUM")
    if configured:
        return configured if Path(configured).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: `pip install playwright` (it drives the system Chromium)")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium found: `apt-get install -y chromium` (or set EMULATOR_TEST_CHROMIUM)")
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, device_scale_factor=1, color_scheme="light"
    )
    try:
        yield context.new_page()
    finally:
        context.close()


class SSE:
    """Reads a text/event-stream response event by event (each read bounded by the client's timeout)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()

    def next(self) -> dict[str, Any]:
        """The next event as {"event", "id", "data"} (data parsed as JSON); comments are skipped."""
        event: dict[str, Any] = {}
        data: list[str] = []
        for line in self.lines:
            if line == "":
                if data or "event" in event:
                    event["data"] = json.loads("\n".join(data)) if data else None
                    return event
                continue
            if line.startswith(":"):
                event.setdefault("comments", []).append(line)
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "data":
                data.append(value)
            elif field in ("event", "id", "retry"):
                event[field] = value
        raise EOFError("the event stream ended")

    def until(self, predicate: Any, limit: int = 50) -> dict[str, Any]:
        for _ in range(limit):
            ev = self.next()
            if predicate(ev):
                return ev
        raise AssertionError(f"no matching event in {limit} events")

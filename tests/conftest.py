from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from emulator.config import default_settings_for_tests
from emulator.testing import BackgroundControlPlane


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[BackgroundControlPlane]:
    """A control plane with no container runtime (workers are driven by the test)."""
    cp = BackgroundControlPlane(
        default_settings_for_tests(tmp_path / "data", job_take_hold_s=2.0, job_stop_hold_s=2.0)
    )
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def api(plane: BackgroundControlPlane) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=plane.client_url, timeout=60) as client:
        yield client


@pytest.fixture
def endpoint(api: httpx.Client) -> str:
    r = api.post(
        "/v1/endpoints",
        json={"name": "echo", "id": "echo", "imageName": "serverless-emulator/sample-echo:latest"},
    )
    assert r.status_code == 201, r.text
    return "echo"

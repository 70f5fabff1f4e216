"""A pytest plugin for users' own suites: ``serverless_endpoint(image=...)`` gives a ready client.

    def test_my_handler(serverless_endpoint):
        ep = serverless_endpoint(image="my-handler:latest")
        assert ep.run_sync({"prompt": "hi"})["output"] == ...

A load-balancing image (RunPod's endpoint type ``LB``: the worker's own HTTP server, no handler):

    def test_my_api(serverless_endpoint):
        ep = serverless_endpoint(image="my-api:latest", type="LB", env={"PORT": "5000"})
        assert ep.post("/generate", json={"prompt": "hi"}).status_code == 200

gives an ``LBEndpointClient`` (``emulator.testing.lb``): ``ep.http`` (an httpx client on the
endpoint's URL), ``ep.base_url``, ``ep.host_url``, ``ep.wait_ready()``, ``ep.requests()``.

One emulator (with real Docker workers) is started per test session, lazily, on a private data
dir and Docker network; every endpoint and container it made is removed at the end.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.config import Settings
from emulator.testing import BackgroundControlPlane
from emulator.testing.lb import LBEndpointClient, is_load_balancing

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}


class EndpointClient:
    """A small synchronous client for one emulated endpoint (RunPod's /v2 routes)."""

    def __init__(self, base_url: str, endpoint_id: str, api_key: str | None = None) -> None:
        self.base_url = base_url
        self.endpoint_id = endpoint_id
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=f"{base_url}/v2/{endpoint_id}", headers=headers, timeout=330)

    def run(self, input: Any, **extra: Any) -> str:
        r = self.http.post("/run", json={"input": input, **extra})
        r.raise_for_status()
        return str(r.json()["id"])

    def run_sync(self, input: Any, timeout_s: float = 300, **extra: Any) -> dict[str, Any]:
        """Submit and wait for the terminal status body (polls status-sync past runsync's wait)."""
        r = self.http.post(
            "/runsync", params={"wait": int(min(timeout_s, 300) * 1000)}, json={"input": input, **extra}
        )
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        deadline = time.monotonic() + timeout_s
        while body.get("status") not in TERMINAL and time.monotonic() < deadline:
            body = self.http.get(f"/status-sync/{body['id']}", params={"wait": 10_000}).json()
        return body

    def status(self, job_id: str) -> dict[str, Any]:
        r = self.http.get(f"/status/{job_id}")
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def wait(self, job_id: str, timeout_s: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        body = self.status(job_id)
        while body["status"] not in TERMINAL and time.monotonic() < deadline:
            body = self.http.get(f"/status-sync/{job_id}", params={"wait": 10_000}).json()
        return body

    def stream(self, job_id: str, timeout_s: float = 300) -> Iterator[Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            body = self.http.get(f"/stream/{job_id}", params={"wait": 5_000}).json()
            for chunk in body.get("stream", []):
                yield chunk.get("output")
            if body["status"] in TERMINAL:
                return

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.http.post(f"/cancel/{job_id}").json()  # type: ignore[no-any-return]

    def health(self) -> dict[str, Any]:
        return self.http.get("/health").json()  # type: ignore[no-any-return]

    def workers(self) -> dict[str, Any]:
        r = self.http.get(f"{self.base_url}/v1/endpoints/{self.endpoint_id}/workers")
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def close(self) -> None:
        self.http.close()


class EmulatorSession:
    """The session's emulator, started on first use."""

    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.plane: BackgroundControlPlane | None = None
        self.network = f"se-test-{uuid.uuid4().hex[:8]}"

    def ensure(self) -> BackgroundControlPlane:
        if self.plane is None:
            settings = Settings(data_dir=self.data_dir, port=0, network=self.network, **self.settings)
            self.plane = BackgroundControlPlane(settings).start()
        return self.plane

    def create_endpoint(self, image: str, **fields: Any) -> EndpointClient | LBEndpointClient:
        """A new endpoint of ``image`` (RunPod's endpoint fields: ``workersMin``, ``env``, ``type``...):
        an ``EndpointClient`` for a queue-based one, an ``LBEndpointClient`` for ``type="LB"``."""
        plane = self.ensure()
        body = {"name": fields.pop("name", f"ep-{uuid.uuid4().hex[:8]}"), "imageName": image, **fields}
        r = httpx.post(f"{plane.client_url}/v1/endpoints", json=body, timeout=60)
        if r.status_code != 201:
            raise AssertionError(f"creating the endpoint failed ({r.status_code}): {r.text}")
        if is_load_balancing(fields):
            return LBEndpointClient(plane.client_url, r.json()["id"])
        return EndpointClient(plane.client_url, r.json()["id"])

    def delete_endpoint(self, endpoint_id: str) -> None:
        if self.plane is not None:
            httpx.delete(f"{self.plane.client_url}/v1/endpoints/{endpoint_id}", timeout=120)

    def close(self) -> None:
        if self.plane is None:
            return
        self.plane.stop()  # drains and removes the session's worker containers
        self.plane = None
        from emulator.runtime.docker import DockerRuntime

        async def remove_network() -> None:
            runtime = DockerRuntime()
            try:
                await runtime.remove_network(self.network)
            finally:
                await runtime.close()

        asyncio.run(remove_network())


@pytest.fixture(scope="session")
def serverless_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorSession]:
    """The session's emulator (real Docker workers). Started lazily by ``serverless_endpoint``."""
    session = EmulatorSession(tmp_path_factory.mktemp("serverless-emulator"))
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def serverless_endpoint(serverless_emulator: EmulatorSession) -> Iterator[Callable[..., Any]]:
    """A factory: ``serverless_endpoint(image="...", workersMin=1, ...)`` -> an EndpointClient, or an
    LBEndpointClient with ``type="LB"`` (a load-balancing endpoint)."""
    made: list[EndpointClient | LBEndpointClient] = []

    def factory(image: str, **fields: Any) -> EndpointClient | LBEndpointClient:
        client = serverless_emulator.create_endpoint(image, **fields)
        made.append(client)
        return client

    try:
        yield factory
    finally:
        for client in made:
            serverless_emulator.delete_endpoint(client.endpoint_id)
            client.close()

"""The pytest plugin's client for a load-balancing endpoint (type ``LB``): plain HTTP to the worker's
own server through the emulator's proxy, as a RunPod user calls ``https://ENDPOINT_ID.api.runpod.ai/...``.

    def test_my_api(serverless_endpoint):
        ep = serverless_endpoint(image="my-api:latest", type="LB", env={"PORT": "5000"})
        r = ep.post("/generate", json={"prompt": "hi"})   # waits for a worker (cold start) like RunPod
        assert r.status_code == 200
        worker = r.headers["X-Runpod-Worker-Id"]

``ep.http`` is an ``httpx.Client`` whose base URL is the endpoint's (``{emulator}/lb/{id}``);
``ep.base_url`` and ``ep.host_url`` (RunPod's host form, ``http://{id}.localhost:PORT``) are for
other clients (requests, the OpenAI SDK, curl, a browser). curl and browsers resolve ``*.localhost``
to loopback themselves; Python's resolver often does not: send ``Host: {id}.localhost:PORT`` to
``ep.emulator_url`` instead.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import httpx

LB_TYPES = frozenset({"LB", "LOAD_BALANCER"})
READY = frozenset({"IDLE", "RUNNING"})


def is_load_balancing(fields: dict[str, Any]) -> bool:
    """Whether endpoint ``fields`` (the create body) ask for a load-balancing endpoint (``LB`` or
    ``LOAD_BALANCER``, any case, as RunPod spells them)."""
    return str(fields.get("type") or "").strip().upper() in LB_TYPES


class LBEndpointClient:
    """A synchronous client for one emulated load-balancing endpoint.

    Requests go through the emulator's proxy (``/lb/{id}/...``): each waits up to 2 minutes for a
    ready worker (starting one when none runs) and its answer carries ``X-Runpod-Worker-Id``.
    ``timeout_s`` bounds each request (RunPod's own bound is 5.5 minutes)."""

    def __init__(
        self, emulator_url: str, endpoint_id: str, api_key: str | None = None, timeout_s: float = 330.0
    ) -> None:
        self.emulator_url = emulator_url
        self.endpoint_id = endpoint_id
        self.base_url = f"{emulator_url}/lb/{endpoint_id}"
        port = urlsplit(emulator_url).port
        self.host_url = f"http://{endpoint_id}.localhost" + (f":{port}" if port else "")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)
        self._api = httpx.Client(base_url=emulator_url, headers=headers, timeout=60)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """``method`` on the worker's ``path`` (``httpx.Client.request``'s arguments)."""
        return self.http.request(method, path, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.post(path, **kw)

    def workers(self) -> list[dict[str, Any]]:
        """The endpoint's workers (``GET /v1/endpoints/{id}/workers``), standby ones left out."""
        r = self._api.get(f"/v1/endpoints/{self.endpoint_id}/workers")
        r.raise_for_status()
        return [w for w in r.json()["workers"] if not w.get("standby")]

    def requests(self, limit: int = 100) -> list[dict[str, Any]]:
        """The last requests served, newest first: method, path, status, workerId, ms, coldStart."""
        r = self._api.get(f"/v1/endpoints/{self.endpoint_id}/requests", params={"limit": limit})
        r.raise_for_status()
        return list(r.json()["requests"])

    def wait_ready(self, workers: int = 1, timeout_s: float = 300.0) -> list[dict[str, Any]]:
        """Wait until ``workers`` workers answer their health check with 200 (IDLE or RUNNING).

        Returns the ready workers; raises AssertionError naming each worker's state and last health
        answer (or its UNHEALTHY reason) when they are not ready within ``timeout_s``. Start them first
        with ``workersMin`` (a request also starts one)."""
        deadline = time.monotonic() + timeout_s
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            found = self.workers()
            ready = [w for w in found if w["status"] in READY]
            if len(ready) >= workers:
                return ready
            time.sleep(0.1)
        states = "; ".join(
            f"{w['id']} {w['status']} ({w.get('reason') or w.get('health') or 'no answer yet'})"
            for w in found
        )
        raise AssertionError(
            f"endpoint {self.endpoint_id}: {workers} ready worker(s) wanted within {timeout_s:g} s; "
            f"workers: {states or 'none (set workersMin, or send a request)'}"
        )

    def close(self) -> None:
        self.http.close()
        self._api.close()

    def __enter__(self) -> LBEndpointClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Test helpers: a worker that speaks RunPod's worker protocol by hand, and polling with deadlines."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import httpx

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None | Literal[False]],
    timeout_s: float = 20.0,
    interval_s: float = 0.05,
    what: str = "condition",
) -> T:
    """Call ``predicate`` every ``interval_s`` until it returns something truthy, and return that.

    ``False`` and ``None`` mean "not yet", so the answer's type leaves them out. Raises AssertionError
    after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        value = predicate()
        last = value
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last value: {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ProtocolWorker:
    """A worker registered with POST /v1/endpoints/{id}/workers and driven step by step."""

    def __init__(self, client_url: str, endpoint_id: str, headers: dict[str, str] | None = None) -> None:
        r = httpx.post(f"{client_url}/v1/endpoints/{endpoint_id}/workers", headers=headers or {})
        r.raise_for_status()
        data = r.json()
        self.id: str = data["id"]
        self.token: str = data["token"]
        self.env: dict[str, str] = data["env"]
        self.endpoint_id = endpoint_id
        self.http = httpx.Client(headers={"Authorization": self.token}, timeout=60)

    def url(self, var: str, job_id: str = "") -> str:
        return self.env[var].replace("$RUNPOD_POD_ID", self.id).replace("$ID", job_id or self.id)

    def take(self, in_progress: int = 0) -> httpx.Response:
        return self.http.get(self.url("RUNPOD_WEBHOOK_GET_JOB") + f"&job_in_progress={in_progress}")

    def take_batch(self, n: int) -> httpx.Response:
        url = self.url("RUNPOD_WEBHOOK_GET_JOB").replace("/job-take/", "/job-take-batch/")
        return self.http.get(url + f"&job_in_progress=0&batch_size={n}")

    def take_job(self) -> dict[str, Any]:
        r = self.take()
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()  # type: ignore[no-any-return]

    def done(self, job_id: str, body: Any, is_stream: bool = False) -> httpx.Response:
        # RunPod's SDK posts raw JSON with a form content type
        return self.http.post(
            self.url("RUNPOD_WEBHOOK_POST_OUTPUT", job_id) + f"&isStream={'true' if is_stream else 'false'}",
            content=json.dumps(body),
            headers={"Content-Type": "application/x-www-form-urlencoded", "charset": "utf-8"},
        )

    def stream(self, job_id: str, chunk: Any) -> httpx.Response:
        return self.http.post(
            self.url("RUNPOD_WEBHOOK_POST_STREAM", job_id) + "&isStream=false",
            content=json.dumps({"output": chunk}),
        )

    def stops(self) -> httpx.Response:
        url = self.url("RUNPOD_WEBHOOK_GET_JOB").replace("/job-take/", "/job-stop/")
        return self.http.get(url + "&job_in_progress=1")

    def ping(self, job_ids: list[str] | None = None, **params: str) -> httpx.Response:
        query = {"runpod_version": "test"}
        if job_ids:
            query["job_id"] = ",".join(job_ids)
        query.update(params)
        return self.http.get(self.url("RUNPOD_WEBHOOK_PING"), params=query)

    def close(self) -> None:
        self.http.close()

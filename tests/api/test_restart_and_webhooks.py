"""Durability (SIGKILL and restart on the same data dir), webhooks and auth."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest

from emulator.config import default_settings_for_tests
from emulator.testing import BackgroundControlPlane
from tests.helpers import ProtocolWorker, free_port, wait_for


def start_server(
    data_dir: Path, port: int, worker_port: int, log: Path, lost_after_s: float = 3
) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        EMULATOR_WORKER_PORT=str(worker_port),
        EMULATOR_JOB_TAKE_HOLD_S="2",
        EMULATOR_WORKER_LOST_AFTER_S=str(lost_after_s),
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "serve",
            "--runtime",
            "none",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    wait_for(lambda: _up(port), timeout_s=30, what="the control plane to answer /ping")
    return proc


def _up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def test_sigkill_and_restart_loses_nothing(tmp_path: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    port, worker_port = free_port(), free_port()
    log = tmp_path / "server.log"
    # leases outlive the restart however slow it is on a loaded machine: the job taken before the
    # kill is still the worker's when it reports (the requeue of a lost job is the next test's)
    procs.append(start_server(tmp_path / "data", port, worker_port, log, lost_after_s=20))
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    api.post("/v1/endpoints", json={"name": "e", "id": "e", "imageName": "x"}).raise_for_status()
    worker = ProtocolWorker(f"http://127.0.0.1:{port}", "e")
    ids = [api.post("/v2/e/run", json={"input": i}).json()["id"] for i in range(6)]
    done_job = worker.take_job()
    worker.done(done_job["id"], {"output": "before the crash"})
    in_progress = worker.take_job()  # taken, not reported when the control plane dies

    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait(10)
    procs.append(start_server(tmp_path / "data", port, worker_port, log, lost_after_s=20))

    # reported results survive; the queue survives; the same worker (same token) carries on
    assert api.get(f"/v2/e/status/{done_job['id']}").json()["output"] == "before the crash"
    assert api.get("/v2/e/health").json()["jobs"]["inQueue"] == 4
    assert worker.done(in_progress["id"], {"output": in_progress["input"]}).status_code == 200
    while True:
        r = worker.take()
        if r.status_code != 200:
            break
        worker.done(r.json()["id"], {"output": r.json()["input"]})
    for i, job_id in enumerate(ids):
        body = api.get(f"/v2/e/status/{job_id}").json()
        assert body["status"] == "COMPLETED", body
        assert body["output"] == ("before the crash" if job_id == done_job["id"] else i)


def test_job_of_a_dead_worker_is_requeued_after_restart(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    port, worker_port = free_port(), free_port()
    log = tmp_path / "server.log"
    procs.append(start_server(tmp_path / "data", port, worker_port, log))
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    api.post("/v1/endpoints", json={"name": "e", "id": "e", "imageName": "x"}).raise_for_status()
    dead = ProtocolWorker(f"http://127.0.0.1:{port}", "e")
    job_id = api.post("/v2/e/run", json={"input": "x"}).json()["id"]
    dead.take_job()
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait(10)
    procs.append(start_server(tmp_path / "data", port, worker_port, log))
    # the worker never comes back: its lease expires and the job is retried elsewhere
    alive = ProtocolWorker(f"http://127.0.0.1:{port}", "e")
    job = wait_for(
        lambda: (r := alive.take()).status_code == 200 and r.json(), timeout_s=20, what="the requeued job"
    )
    assert job["id"] == job_id
    alive.done(job_id, {"output": "second worker"})
    body = api.get(f"/v2/e/status/{job_id}").json()
    assert body["status"] == "COMPLETED" and body["retries"] == 1 and body["workerId"] == alive.id


class Receiver(BaseHTTPRequestHandler):
    calls: list[dict[str, object]] = []
    fail_first = 0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Receiver.calls.append(body)
        code = 500 if len(Receiver.calls) <= Receiver.fail_first else 200
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


@pytest.mark.parametrize("fail_first", [0, 2, 3])
def test_webhook_attempts(tmp_path: Path, fail_first: int) -> None:
    Receiver.calls = []
    Receiver.fail_first = fail_first
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        with BackgroundControlPlane(default_settings_for_tests(tmp_path, webhook_interval_s=0.2)) as cp:
            api = httpx.Client(base_url=cp.client_url)
            api.post("/v1/endpoints", json={"name": "e", "id": "e", "imageName": "x"})
            job_id = api.post("/v2/e/run", json={"input": {"q": 1}, "webhook": url}).json()["id"]
            worker = ProtocolWorker(cp.client_url, "e")
            worker.take_job()
            worker.done(job_id, {"output": {"a": 2}})
            expected = min(fail_first + 1, 3)
            detail = wait_for(
                lambda: (
                    (d := api.get(f"/v1/endpoints/e/jobs/{job_id}").json())["webhookState"]
                    in ("delivered", "failed")
                    and d
                ),
                what="webhook delivery",
            )
            assert len(detail["webhookAttempts"]) == expected == len(Receiver.calls)
            assert detail["webhookState"] == ("failed" if fail_first >= 3 else "delivered")
            body = Receiver.calls[0]
            assert body["id"] == job_id and body["status"] == "COMPLETED" and body["output"] == {"a": 2}
            assert body["input"] == {"q": 1} and body["webhook"] == url
            assert "delayTime" in body and "executionTime" in body
    finally:
        server.shutdown()


def test_api_key_guards_every_client_and_management_route(tmp_path: Path) -> None:
    settings = default_settings_for_tests(tmp_path, api_key="s3cret")
    with BackgroundControlPlane(settings) as cp:
        routes = [
            ("POST", "/v2/e/run"),
            ("POST", "/v2/e/runsync"),
            ("GET", "/v2/e/status/x"),
            ("POST", "/v2/e/status/x"),
            ("GET", "/v2/e/status-sync/x"),
            ("GET", "/v2/e/stream/x"),
            ("POST", "/v2/e/cancel/x"),
            ("POST", "/v2/e/retry/x"),
            ("POST", "/v2/e/purge-queue"),
            ("GET", "/v2/e/health"),
            ("GET", "/v1/endpoints"),
            ("POST", "/v1/endpoints"),
            ("GET", "/v1/endpoints/e"),
            ("PATCH", "/v1/endpoints/e"),
            ("DELETE", "/v1/endpoints/e"),
            ("GET", "/v1/endpoints/e/workers"),
            ("POST", "/v1/endpoints/e/workers"),
            ("GET", "/v1/workers/w/logs"),
            ("GET", "/v1/endpoints/e/jobs"),
        ]
        for method, path in routes:
            r = httpx.request(method, cp.client_url + path, json={"input": 1})
            assert r.status_code == 401, (method, path, r.status_code)
            r = httpx.request(
                method, cp.client_url + path, json={"input": 1}, headers={"Authorization": "Bearer wrong"}
            )
            assert r.status_code == 401, (method, path)
        assert httpx.get(cp.client_url + "/ping").status_code == 200
        ok = httpx.post(
            cp.client_url + "/v1/endpoints",
            json={"name": "e", "id": "e", "imageName": "x"},
            headers={"Authorization": "Bearer s3cret"},
        )
        assert ok.status_code == 201
        assert (
            httpx.get(cp.client_url + "/v2/e/health", headers={"Authorization": "s3cret"}).status_code == 200
        )

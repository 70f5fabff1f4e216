"""`serverless-emulator serve --log-format json` writes one JSON object per line, and every worker
state change and job event names its endpoint, worker and job. Run as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import ProtocolWorker, wait_for

pytestmark = pytest.mark.timeout(90)


class Serve:
    """``python -m emulator serve --runtime none`` with stderr in a file; always stopped."""

    def __init__(self, tmp: Path, log_format: str) -> None:
        self.log_path = tmp / f"serve-{log_format}.log"
        self.out_path = tmp / f"serve-{log_format}.out"
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMULATOR_")}
        env.update(EMULATOR_JOB_TAKE_HOLD_S="5", EMULATOR_JOB_STOP_HOLD_S="2")
        cmd = [
            sys.executable,
            "-m",
            "emulator",
            "serve",
            "--runtime",
            "none",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(tmp / "data"),
            "--log-format",
            log_format,
        ]
        with open(self.log_path, "wb") as err, open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        self.client_url = ""

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError("serve did not stop on SIGTERM") from None
        return self.proc.returncode


@pytest.fixture
def serve_json(tmp_path: Path) -> Iterator[Serve]:
    server = Serve(tmp_path, "json")
    try:

        def ready() -> str | None:
            assert server.proc.poll() is None, f"serve exited early:\n{server.text()}"
            for line in server.text().splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("event") == "control plane ready":
                    return str(record["client_url"])
            return None

        server.client_url = wait_for(ready, timeout_s=30, what="the 'control plane ready' log line")
        yield server
    finally:
        server.stop()


def _drive_one_job(client_url: str) -> tuple[str, str]:
    """Endpoint, worker, first contact, a job taken and finished; returns (worker id, job id)."""
    with httpx.Client(base_url=client_url, timeout=30) as api:
        assert (
            api.post(
                "/v1/endpoints", json={"name": "echo", "id": "echo", "imageName": "img:latest"}
            ).status_code
            == 201
        )
        worker = ProtocolWorker(client_url, "echo")
        try:
            with ThreadPoolExecutor(1) as pool:
                taking = pool.submit(worker.take)
                wait_for(
                    lambda: api.get("/v1/endpoints/echo/workers").json()["summary"]["idle"] == 1, what="IDLE"
                )
                job_id = api.post("/v2/echo/run", json={"input": {"x": 1}}).json()["id"]
                assert taking.result(timeout=10).status_code == 200
            assert worker.done(job_id, {"output": "ok"}).status_code == 200
            return worker.id, str(job_id)
        finally:
            worker.close()


def _records(text: str) -> list[dict[str, Any]]:
    records = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as exc:
            raise AssertionError(f"line {n} is not JSON: {line!r}") from exc
    return records


def test_json_logs_carry_endpoint_worker_and_job(serve_json: Serve) -> None:
    worker_id, job_id = _drive_one_job(serve_json.client_url)
    time.sleep(0.2)
    assert serve_json.stop() == 0
    records = _records(serve_json.text())
    assert serve_json.out_path.read_text() == ""  # logs go to stderr only

    for record in records:
        assert {"timestamp", "level", "event"} <= record.keys(), record
        assert record["timestamp"].endswith("Z")
    events = [r["event"] for r in records]
    assert events[0] == "control plane ready" and events[-1] == "control plane stopped"

    transitions = [r for r in records if r["event"] in ("worker created", "worker state", "worker removed")]
    assert [(r.get("from_state"), r["to_state"]) for r in transitions if r["worker"] == worker_id][:4] == [
        (None, "INITIALIZING"),
        ("INITIALIZING", "IDLE"),
        ("IDLE", "RUNNING"),
        ("RUNNING", "IDLE"),
    ]
    for r in transitions:
        assert {"endpoint", "worker", "job", "from_state", "to_state", "reason"} <= r.keys(), r
        assert r["endpoint"] == "echo"
    running, drained = transitions[2], transitions[3]
    assert running["job"] == job_id and drained["job"] == job_id
    assert running["trigger"] == "JOB_ASSIGNED" and running["level"] == "info"

    job_events = {r["event"]: r for r in records if r.get("job") == job_id and r["event"].startswith("job ")}
    assert set(job_events) >= {"job queued", "job taken", "job finished"}, sorted(job_events)
    for r in job_events.values():
        assert {"endpoint", "worker", "job"} <= r.keys() and r["endpoint"] == "echo", r
    assert job_events["job queued"]["worker"] is None
    assert job_events["job taken"]["worker"] == worker_id and job_events["job taken"]["coldStart"] is True
    finished = job_events["job finished"]
    assert finished["worker"] == worker_id and finished["status"] == "COMPLETED"
    assert finished["delay_ms"] >= 0 and finished["execution_ms"] >= 0


def test_console_logs_are_key_value_without_colours_off_a_terminal(tmp_path: Path) -> None:
    server = Serve(tmp_path, "console")
    try:
        wait_for(lambda: "control plane ready" in server.text(), timeout_s=30, what="start-up")
        url = server.text().split("client_url=", 1)[1].split()[0]
        worker_id, job_id = _drive_one_job(url)
    finally:
        assert server.stop() == 0
    text = server.text()
    assert "\x1b[" not in text  # stderr is a file here, not a terminal
    state_lines = [line for line in text.splitlines() if "worker state" in line]
    assert any(
        "from_state=IDLE" in line
        and "to_state=RUNNING" in line
        and f"job={job_id}" in line
        and f"worker={worker_id}" in line
        and "endpoint=echo" in line
        for line in state_lines
    ), state_lines


def test_standard_library_records_are_json_too(tmp_path: Path) -> None:
    """uvicorn and libraries log through ``logging``: in JSON mode their lines are JSON, tracebacks included."""
    code = (
        "import logging\n"
        "from emulator import logs\n"
        "logs.configure('json', 'info')\n"
        "try:\n"
        "    1 / 0\n"
        "except ZeroDivisionError:\n"
        "    logging.getLogger('uvicorn.error').exception('Exception in ASGI application')\n"
        "logging.getLogger('some.lib').info('below the level of the root logger')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (record,) = _records(done.stderr)
    assert record["event"] == "Exception in ASGI application" and record["level"] == "error"
    assert record["logger"] == "uvicorn.error" and "ZeroDivisionError" in record["exception"]

"""`serverless-emulator run` against a live control plane with a hand-driven worker."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from emulator.cli.run import job_body
from emulator.testing import BackgroundControlPlane
from tests.cli.conftest import Cli, echo
from tests.helpers import ProtocolWorker, wait_for

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d[ T]")  # the in-process control plane's own log lines


def stdout_json(stdout: str) -> Any:
    return json.loads("\n".join(line for line in stdout.splitlines() if not LOG_LINE.match(line)))


def test_run_waits_and_prints_output_and_breakdown(cli: Cli, endpoint: str, start_worker: Any) -> None:
    start_worker(echo)
    r = cli("run", "echo", "--input", '{"message": "hi"}')
    assert r.exit_code == 0, r.output
    assert stdout_json(r.stdout) == {"message": "hi"}
    assert re.search(r"job \S+ queued on echo", r.stderr)
    assert "COMPLETED" in r.stderr and "delay " in r.stderr and "execution " in r.stderr
    assert "cold start" in r.stderr and "queue wait" in r.stderr  # the worker's first job

    r = cli("run", "echo", "--input", '{"message": "again"}', "--json")
    assert r.exit_code == 0, r.output
    body = stdout_json(r.stdout)
    assert body["status"] == "COMPLETED" and body["output"] == {"message": "again"}
    assert body["coldStart"]["coldStart"] is False and "warm worker" in r.stderr


def test_run_sync_and_input_file(cli: Cli, endpoint: str, start_worker: Any, tmp_path: Path) -> None:
    start_worker(echo)
    job = tmp_path / "test_input.json"
    job.write_text(json.dumps({"input": {"n": 1}, "policy": {"executionTimeout": 60000}}))
    r = cli("run", "echo", "--input", f"@{job}", "--sync", "--wait-ms", "5000")
    assert r.exit_code == 0, r.output
    assert stdout_json(r.stdout) == {"n": 1}
    assert "COMPLETED sync-" in r.stderr


def test_run_sync_polls_past_the_runsync_wait(cli: Cli, endpoint: str, start_worker: Any) -> None:
    def slow(worker: ProtocolWorker, job: dict[str, Any]) -> None:
        time.sleep(2.5)
        echo(worker, job)

    start_worker(slow)
    r = cli("run", "echo", "--input", "[1, 2]", "--sync", "--wait-ms", "1000")
    assert r.exit_code == 0, r.output
    assert stdout_json(r.stdout) == [1, 2]


def test_run_stream_prints_chunks(cli: Cli, endpoint: str, start_worker: Any) -> None:
    def streamer(worker: ProtocolWorker, job: dict[str, Any]) -> None:
        worker.stream(job["id"], {"token": "a"})
        time.sleep(0.3)
        worker.stream(job["id"], "plain text")
        worker.done(job["id"], {"output": [{"token": "a"}, "plain text"]}, is_stream=True)

    start_worker(streamer)
    r = cli("run", "echo", "--input", "{}", "--stream", "--wait-ms", "2000")
    assert r.exit_code == 0, r.output
    lines = [line for line in r.stdout.splitlines() if not LOG_LINE.match(line)]
    assert lines == ['{"token": "a"}', "plain text"]
    assert "COMPLETED" in r.stderr


def test_run_stream_of_a_handler_that_does_not_stream(cli: Cli, endpoint: str, start_worker: Any) -> None:
    start_worker(echo)
    r = cli("run", "echo", "--input", '{"x": 1}', "--stream", "--wait-ms", "2000")
    assert r.exit_code == 0, r.output
    assert stdout_json(r.stdout) == {"x": 1}


def test_failed_job_exits_non_zero(cli: Cli, endpoint: str, start_worker: Any) -> None:
    def failing(worker: ProtocolWorker, job: dict[str, Any]) -> None:
        error = {
            "error_type": "<class 'ValueError'>",
            "error_message": "bad prompt",
            "error_traceback": "Traceback (most recent call last):\nValueError: bad prompt",
        }
        worker.done(job["id"], {"error": json.dumps(error)})

    start_worker(failing)
    r = cli("run", "echo", "--input", "{}")
    assert r.exit_code == 1, r.output
    assert "FAILED" in r.stderr and "error: ValueError: bad prompt" in r.stderr


def test_timeout_gives_up(cli: Cli, endpoint: str) -> None:
    # no worker: the job stays queued; --timeout gives up
    r = cli("run", "echo", "--input", "{}", "--timeout", "1", "--wait-ms", "1000")
    assert r.exit_code == 1
    assert "gave up waiting after 1 s; the job is still IN_QUEUE" in r.stderr and "hint:" in r.stderr


def test_cancelled_job_exits_non_zero(cli: Cli, endpoint: str, plane: BackgroundControlPlane) -> None:
    def cancel_when_queued() -> None:
        with httpx.Client(base_url=plane.client_url) as api:
            jobs = wait_for(lambda: api.get("/v1/endpoints/echo/jobs").json()["jobs"], what="the queued job")
            api.post(f"/v2/echo/cancel/{jobs[0]['id']}")

    canceller = threading.Thread(target=cancel_when_queued)
    canceller.start()
    try:
        r = cli("run", "echo", "--input", "{}", "--wait-ms", "1000", "--timeout", "20")
    finally:
        canceller.join()
    assert r.exit_code == 1, r.output
    assert "CANCELLED" in r.stderr


def test_run_errors(cli: Cli, endpoint: str) -> None:
    r = cli("run", "nope", "--input", "{}")
    assert r.exit_code == 1 and "endpoint 'nope' does not exist (HTTP 404)" in r.stderr
    r = cli("run", "echo", "--input", "{oops")
    assert r.exit_code == 1 and "--input is not valid JSON" in r.stderr and "hint:" in r.stderr
    r = cli("run", "echo", "--input", "@/no/such/file.json")
    assert r.exit_code == 1 and "no such file" in r.stderr
    r = cli("run", "echo", "--input", "{}", "--sync", "--stream")
    assert r.exit_code == 1 and "choose one" in r.stderr


def test_job_body() -> None:
    assert job_body({"a": 1}) == {"input": {"a": 1}}
    assert job_body({"input": {"a": 1}}) == {"input": {"a": 1}}
    assert job_body({"input": 1, "webhook": "http://x"}) == {"input": 1, "webhook": "http://x"}
    assert job_body({"input": 1, "other": 2}) == {"input": {"input": 1, "other": 2}}
    assert job_body("text") == {"input": "text"}

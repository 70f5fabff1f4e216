"""`serverless-emulator workers` and `logs` against a live control plane, and the log follower."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

import httpx
from rich.console import Console

from emulator.cli.workers import LogFollower, follow, new_lines, workers_table
from emulator.testing import BackgroundControlPlane
from tests.cli.conftest import Cli, WorkerThread
from tests.helpers import ProtocolWorker, wait_for


def test_workers_table_shows_states(
    cli: Cli, endpoint: str, plane: BackgroundControlPlane, start_worker: Any
) -> None:
    r = cli("workers", "echo")
    assert r.exit_code == 0, r.output
    assert "no workers" in r.output

    release = threading.Event()

    def slow(worker: ProtocolWorker, job: dict[str, Any]) -> None:
        release.wait(20)
        worker.done(job["id"], {"output": "ok"})

    w: WorkerThread = start_worker(slow)
    job_id = httpx.post(f"{plane.client_url}/v2/echo/run", json={"input": {}}).json()["id"]
    try:
        wait_for(lambda: job_id in cli("workers", "echo").output, what="the job in the table")
        r = cli("workers", "echo")
        assert w.worker.id in r.output and "RUNNING" in r.output and "1 running" in r.output
        r = cli("workers")  # all endpoints
        assert r.exit_code == 0 and w.worker.id in r.output
    finally:
        release.set()
    wait_for(lambda: "IDLE" in cli("workers", "echo").output, what="the worker back to IDLE")


def test_workers_watch_refreshes(cli: Cli, endpoint: str, start_worker: Any) -> None:
    w = start_worker(lambda worker, job: None)
    started = time.monotonic()
    r = cli("workers", "echo", "--watch", "--count", "3", "--interval", "0.2")
    assert r.exit_code == 0, r.output
    assert time.monotonic() - started >= 0.4
    assert r.output.count(f"│ {w.worker.id}") == 3  # one table per refresh (not a terminal)
    assert "Ctrl-C to stop" in r.output


def test_workers_errors(cli: Cli) -> None:
    r = cli("workers", "nope")
    assert r.exit_code == 1 and "endpoint 'nope' does not exist (HTTP 404)" in r.stderr
    r = cli("workers", "nope", "--watch", "--count", "1")
    assert r.exit_code == 1 and "(HTTP 404)" in r.stderr


def test_state_colours() -> None:
    data = [
        (
            "ep",
            {
                "endpointVersion": 2,
                "workers": [
                    {
                        "id": f"w{i}",
                        "status": s,
                        "version": 1 if s == "OUTDATED" else 2,
                        "isStale": s == "OUTDATED",
                        "jobIds": [],
                        "restarts": 3 if s == "UNHEALTHY" else 0,
                        "reason": "exit 1" if s == "UNHEALTHY" else None,
                        "nextRetryAt": time.time() + 30 if s == "UNHEALTHY" else None,
                        "uptimeSeconds": 75,
                    }
                    for i, s in enumerate(
                        ["INITIALIZING", "IDLE", "RUNNING", "THROTTLED", "OUTDATED", "UNHEALTHY"]
                    )
                ],
            },
        )
    ]
    out = io.StringIO()
    Console(file=out, width=160, color_system="standard", force_terminal=True).print(workers_table(data))
    text = out.getvalue()
    assert "in 29s" in text or "in 30s" in text
    assert "1m15s" in text and "(< 2)" in text
    for ansi, state in (
        ("34", "INITIALIZING"),
        ("32", "IDLE"),
        ("1;32", "RUNNING"),
        ("33", "THROTTLED"),
        ("35", "OUTDATED"),
        ("31", "UNHEALTHY"),
    ):  # blue green bold-green yellow magenta red
        assert f"\x1b[{ansi}m{state}" in text, state


def test_logs(cli: Cli, endpoint: str, plane: BackgroundControlPlane) -> None:
    w = ProtocolWorker(plane.client_url, "echo")
    try:
        r = cli("logs", w.id, "--tail", "10")  # no container: no output
        assert r.exit_code == 0 and r.stdout == ""
        r = cli("logs", "nope")
        assert r.exit_code == 1 and "worker 'nope' does not exist (HTTP 404)" in r.stderr
        r = cli("logs", w.id, "--tail", "0")
        assert r.exit_code == 1

        def forget() -> None:
            time.sleep(0.8)
            httpx.delete(f"{plane.client_url}/v1/workers/{w.id}")

        remover = threading.Thread(target=forget)
        remover.start()
        r = cli("logs", w.id, "-f", "--interval", "0.2")
        remover.join()
        assert r.exit_code == 0 and f"worker {w.id} is gone" in r.output
    finally:
        w.close()


def test_new_lines_alignment() -> None:
    assert new_lines([], ["a", "b"]) == ["a", "b"]
    assert new_lines(["a", "b"], ["a", "b"]) == []
    assert new_lines(["a", "b", "c"], ["b", "c", "d", "e"]) == ["d", "e"]  # the window slid
    assert new_lines(["a", "b"], ["x", "y"]) == ["x", "y"]  # no overlap: all new
    assert new_lines(["x", "a"], ["a", "a"]) == ["a"]


def test_follower_counts_repeated_lines_while_the_log_fits() -> None:
    f = LogFollower(window=100)
    assert f.update(["tick"]) == ["tick"]
    assert f.update(["tick", "tick"]) == ["tick"]
    assert f.update(["tick", "tick"]) == []
    assert f.update(["tick", "tick", "tock"]) == ["tock"]
    assert f.update(["new container"]) == ["new container"]  # shorter: a restarted container's log


def test_follow_prints_tail_then_new_lines() -> None:
    log = [f"line {i}" for i in range(10)]
    fetches = [log[:], log + ["line 10"], log + ["line 10", "line 11", "line 12"], None]
    out: list[str] = []
    follow(lambda n: fetches.pop(0), 3, out.append, interval_s=0, sleep=lambda s: None)
    assert out == ["line 7", "line 8", "line 9", "line 10", "line 11", "line 12"]

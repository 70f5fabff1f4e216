"""Load: 200 concurrent clients mix run, runsync, status, stream and cancel against 4 real echo
workers. Nothing may answer 5xx, no job may be lost, duplicated or left unfinished, and each
COMPLETED job carries its own input (CI: 25 s; RELIABILITY_SOAK=1: 90 s)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability import load
from tests.reliability.common import (
    ECHO,
    SOAK,
    DockerInstance,
    ServeProcess,
    docker_instance,
    rss_mb,
    serve_env,
    wait_idle_workers,
)

__all__ = ["docker_instance"]
pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

CLIENTS = 200
DURATION_S = 90.0 if SOAK else 25.0


def test_200_clients_against_4_workers_lose_nothing(
    docker_instance: DockerInstance, tmp_path: Path, figures: dict[str, Any]
) -> None:
    server = ServeProcess(docker_instance.data_dir, tmp_path / "serve.log", env=serve_env(docker_instance))
    try:
        server.start()
        r = httpx.post(
            f"{server.url}/v1/endpoints",
            json={
                "name": "load",
                "id": "load",
                "imageName": ECHO,
                "workersMin": 4,
                "workersMax": 4,
                "extraWorkers": 0,
            },
            timeout=30,
        )
        assert r.status_code == 201, r.text
        workers = wait_idle_workers(server.url, "load", 4)

        ledger = load.Ledger()
        client = load.LoadClient(server.url, "load", ledger, patience_s=30.0, sleep_s=0.2, seed=1)
        assert server.proc is not None
        rss_before = rss_mb(server.proc.pid)
        started = time.monotonic()
        load.run_load(client, CLIENTS, DURATION_S)
        elapsed = time.monotonic() - started
        rss_after = rss_mb(server.proc.pid)
        final = load.wait_drained(server.url, "load")
        load.final_check(client)

        summary = ledger.summary()
        completed = [j for j in ledger.jobs.values() if j.last_status == "COMPLETED"]
        executions = load.executions_by_job(docker_instance.containers())
        figures.update(
            summary,
            clients=CLIENTS,
            workers=len(workers),
            duration_s=round(elapsed, 1),
            jobs_per_s=round(len(ledger.jobs) / elapsed, 1),
            requests_per_s=round(ledger.requests / elapsed, 1),
            lost=len(ledger.violations),
            health=final["jobs"],
            control_plane_rss_mb={"before": rss_before, "after": rss_after},
        )

        assert not ledger.server_errors, ledger.server_errors[:10]
        assert not ledger.violations, ledger.violations[:10]
        assert not ledger.duplicate_ids
        assert sum(ledger.transport_errors.values()) == 0, ledger.transport_errors
        assert len(ledger.jobs) > CLIENTS  # every client finished at least one job
        assert set(ledger.ops) == set(load.OPS)
        # the store's counters agree: each job finished once, none failed
        assert final["jobs"]["completed"] == len(completed), (final, len(completed))
        assert final["jobs"]["failed"] == 0 and final["jobs"]["retried"] == 0
        # each completed job ran exactly once (worker logs), each cancelled one at most once
        for job in completed:
            assert executions[job.id] == 1, (job.id, executions[job.id])
        assert all(executions[j.id] <= 1 for j in ledger.jobs.values())
        assert sum(executions.values()) <= len(ledger.jobs)
        # the four workers are the same four, still serving
        after = wait_idle_workers(server.url, "load", 4)
        assert {w["id"] for w in after} == {w["id"] for w in workers}
        assert server.stop() == 0
        assert docker_instance.containers() == []
    finally:
        server.close()

"""Faults under load, with real echo worker containers:

* the control plane SIGKILLed (5 times in CI, 10 in the soak) while 200 clients run jobs: every job
  ends, each ran at least once and at most ``retries + 1`` times (worker logs), and a result once
  reported COMPLETED never changes or disappears;
* worker containers ``docker kill``ed at random (by the container ids of the workers list): their
  jobs are requeued (``retries`` counted) and completed, the workers replaced;
* the Docker engine unreachable for a while (the control plane talks to it through a proxy the test
  cuts): jobs keep flowing on the running workers, the API says Docker is unreachable (503 with a
  message) and so do the logs, and once the engine is back the supervisor catches up (a worker killed
  meanwhile is replaced, new endpoints start).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import wait_for
from tests.reliability import load
from tests.reliability.common import (
    ECHO,
    SOAK,
    DockerInstance,
    ServeProcess,
    docker_instance,
    serve_env,
    wait_idle_workers,
    workers_of,
)
from tests.reliability.proxy import DockerSocketProxy, engine_socket

__all__ = ["docker_instance"]
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

CLIENTS = 200


def create_endpoint(url: str, endpoint: str, workers: int) -> None:
    r = httpx.post(
        f"{url}/v1/endpoints",
        json={
            "name": endpoint,
            "id": endpoint,
            "imageName": ECHO,
            "workersMin": workers,
            "workersMax": workers,
            "extraWorkers": 0,
        },
        timeout=30,
    )
    assert r.status_code == 201, r.text


class Chaos(threading.Thread):
    """Calls ``act`` every few seconds (random, seeded) while the load runs; errors are kept."""

    def __init__(self, act: Any, times: int, every_s: tuple[float, float], seed: int = 7) -> None:
        super().__init__(name="chaos", daemon=True)
        self.act = act
        self.times = times
        self.every_s = every_s
        self.rng = random.Random(seed)
        self.done = 0
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while self.done < self.times and not self.stop.wait(self.rng.uniform(*self.every_s)):
            try:
                self.act(self.rng)
                self.done += 1
            except Exception as exc:  # reported by the test
                self.errors.append(f"{type(exc).__name__}: {exc}")
                return


def spacing(duration_s: float, kills: int) -> tuple[float, float]:
    """Random gaps between kills such that all of them happen within the first 80% of the load."""
    base = duration_s / kills
    return base * 0.3, base * 0.8


def check_ledger(ledger: load.Ledger, executions: Any, figures: dict[str, Any]) -> None:
    completed = [j for j in ledger.jobs.values() if j.last_status == "COMPLETED"]
    over = [
        (j.id, executions[j.id], j.retries) for j in ledger.jobs.values() if executions[j.id] > j.retries + 1
    ]
    never = [j.id for j in completed if executions[j.id] == 0]
    figures.update(
        executions=sum(executions.values()),
        ran_more_than_retries_allow=len(over),
        completed_not_in_surviving_logs=len(never),
    )
    assert not ledger.server_errors, ledger.server_errors[:10]
    assert not ledger.violations, ledger.violations[:10]
    assert not ledger.duplicate_ids
    assert not over, over[:10]  # every extra execution was a counted retry


def test_control_plane_sigkilled_under_load(
    docker_instance: DockerInstance, tmp_path: Path, figures: dict[str, Any]
) -> None:
    kills = 10 if SOAK else 5
    duration_s = 75.0 if SOAK else 30.0
    # leases shorter than a restart: jobs in flight at a kill may be requeued while their worker still
    # runs them (at least once, never lost, each extra run a counted retry)
    env = serve_env(docker_instance, EMULATOR_MAX_JOB_RETRIES="50", EMULATOR_WORKER_LOST_AFTER_S="2")
    server = ServeProcess(docker_instance.data_dir, tmp_path / "serve.log", env=env)
    try:
        server.start()
        create_endpoint(server.url, "chaos", 4)
        workers = wait_idle_workers(server.url, "chaos", 4)
        downtimes: list[float] = []

        def kill_and_restart(rng: random.Random) -> None:
            server.sigkill()
            began = time.monotonic()
            server.start()
            downtimes.append(time.monotonic() - began)

        chaos = Chaos(kill_and_restart, kills, spacing(duration_s, kills))
        ledger = load.Ledger()
        client = load.LoadClient(server.url, "chaos", ledger, patience_s=60.0, seed=2, work_s=0.05)
        started = time.monotonic()
        chaos.start()
        load.run_load(client, CLIENTS, duration_s)
        chaos.stop.set()
        chaos.join(120)
        assert not chaos.errors, chaos.errors
        while chaos.done < kills:  # the load ended first: finish the kills
            kill_and_restart(chaos.rng)
            chaos.done += 1
        final = load.wait_drained(server.url, "chaos", timeout_s=180)
        load.final_check(client)
        elapsed = time.monotonic() - started

        executions = load.executions_by_job(docker_instance.containers())
        figures.update(
            ledger.summary(),
            clients=CLIENTS,
            duration_s=round(elapsed, 1),
            kills=server.kills,
            downtime_s=[round(d, 2) for d in downtimes],
            lost=len(ledger.violations),
            health=final["jobs"],
        )
        check_ledger(ledger, executions, figures)
        assert server.kills == kills
        completed = [j for j in ledger.jobs.values() if j.last_status == "COMPLETED"]
        assert all(executions[j.id] >= 1 for j in completed)
        assert final["jobs"]["completed"] >= len(completed)  # plus the jobs whose /run answer was lost
        assert final["jobs"]["failed"] == 0
        assert (
            sum(j.retries for j in ledger.jobs.values()) <= final["jobs"]["retried"]
        )  # each requeue counted
        # four workers serve again (normally the same four containers, adopted after each restart)
        after = wait_idle_workers(server.url, "chaos", 4)
        figures["containers_replaced"] = len(
            {w["containerId"] for w in workers} - {w["containerId"] for w in after}
        )
        assert server.stop() == 0
        assert docker_instance.containers() == []
    finally:
        server.close()


def test_worker_containers_killed_under_load(
    docker_instance: DockerInstance, tmp_path: Path, figures: dict[str, Any]
) -> None:
    kills = 12 if SOAK else 5
    duration_s = 75.0 if SOAK else 30.0
    env = serve_env(docker_instance, EMULATOR_MAX_JOB_RETRIES="50")
    server = ServeProcess(docker_instance.data_dir, tmp_path / "serve.log", env=env)
    try:
        server.start()
        create_endpoint(server.url, "victims", 4)
        wait_idle_workers(server.url, "victims", 4)
        killed: list[tuple[str, str, list[str]]] = []

        def kill_a_worker(rng: random.Random) -> None:
            def running() -> list[dict[str, Any]]:
                return [
                    w
                    for w in workers_of(server.url, "victims")
                    if w["status"] == "RUNNING" and w["containerId"]
                ]

            # a worker holding a job, so that something must be requeued
            worker = rng.choice(wait_for(running, timeout_s=30, interval_s=0.1, what="a RUNNING worker"))
            docker_instance.client.containers.get(worker["containerId"]).kill()
            killed.append((worker["id"], worker["containerId"], worker["jobIds"]))

        chaos = Chaos(kill_a_worker, kills, spacing(duration_s, kills))
        ledger = load.Ledger()
        client = load.LoadClient(server.url, "victims", ledger, patience_s=60.0, seed=3, work_s=0.1)
        started = time.monotonic()
        chaos.start()
        load.run_load(client, CLIENTS, duration_s)
        chaos.stop.set()
        chaos.join(120)
        assert not chaos.errors, chaos.errors
        final = load.wait_drained(server.url, "victims", timeout_s=180)
        load.final_check(client)
        elapsed = time.monotonic() - started

        held = {job for _, _, jobs in killed for job in jobs}
        requeued = [j for j in ledger.jobs.values() if j.retries > 0]
        executions = load.executions_by_job(docker_instance.containers())
        figures.update(
            ledger.summary(),
            clients=CLIENTS,
            duration_s=round(elapsed, 1),
            kills=len(killed),
            jobs_held_by_killed=len(held),
            requeued_jobs=len(requeued),
            lost=len(ledger.violations),
            health=final["jobs"],
        )
        check_ledger(ledger, executions, figures)
        assert len(killed) == kills
        assert requeued, "no job was requeued although workers were killed mid-job"
        assert final["jobs"]["retried"] >= len(requeued)
        for job_id in held & set(ledger.jobs):
            entry = ledger.jobs[job_id]  # what a killed worker held ended COMPLETED (or was cancelled)
            assert entry.last_status in ("COMPLETED", "CANCELLED"), (job_id, entry.last_status)
        # the endpoint is whole again: four workers, none of them a killed container
        after = wait_idle_workers(server.url, "victims", 4, timeout_s=120)
        assert not {c for _, c, _ in killed} & {w["containerId"] for w in after}
        assert sum(w["restarts"] for w in after) >= 1
        assert server.stop() == 0
        assert docker_instance.containers() == []
    finally:
        server.close()


def test_docker_engine_unreachable_for_a_while(
    docker_instance: DockerInstance, tmp_path: Path, figures: dict[str, Any]
) -> None:
    target = engine_socket()
    if target is None:
        pytest.skip("the Docker engine is not on a local unix socket: nothing to put a proxy in front of")
    outage_s = 30.0 if SOAK else 10.0
    proxy = DockerSocketProxy(tmp_path / "docker-proxy.sock", target).start()
    env = serve_env(
        docker_instance,
        DOCKER_HOST=proxy.url,
        EMULATOR_MAX_JOB_RETRIES="50",
        EMULATOR_WORKER_LOST_AFTER_S="4",
    )
    server = ServeProcess(docker_instance.data_dir, tmp_path / "serve.log", env=env)
    stop_load = threading.Event()
    try:
        server.start()
        create_endpoint(server.url, "cut", 2)
        before = wait_idle_workers(server.url, "cut", 2)
        ledger = load.Ledger()
        client = load.LoadClient(server.url, "cut", ledger, patience_s=60.0, seed=4)

        async def background_load() -> None:
            async with client.session(80) as http:
                client.http = http
                until = time.monotonic() + 3600
                tasks = [asyncio.create_task(client.client(i, until)) for i in range(20)]
                while not stop_load.is_set():  # noqa: ASYNC110 - a threading.Event, set by the test's thread
                    await asyncio.sleep(0.1)
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        loader = threading.Thread(target=lambda: asyncio.run(background_load()), daemon=True)
        loader.start()
        wait_for(lambda: len(ledger.completed) >= 20, timeout_s=30, what="jobs completing before the cut")

        log_mark = len(server.log_text())
        proxy.cut()
        cut_at = time.monotonic()
        # a worker dies while nobody can see it: its container is killed on the real engine
        victim = before[0]
        docker_instance.client.containers.get(victim["containerId"]).kill()
        completed_at_cut = len(ledger.completed)

        # an endpoint is accepted whatever the engine's state (RunPod accepts any endpoint; the emulator no
        # longer asks the engine for the image at creation): its worker starts once the engine is back
        r = httpx.post(
            f"{server.url}/v1/endpoints",
            json={"name": "late", "id": "late", "imageName": ECHO, "workersMin": 1, "extraWorkers": 0},
            timeout=60,
        )
        assert r.status_code == 201, r.text
        assert r.json()["imageStatus"]["local"] is None, r.json()  # the engine could not be asked
        r = httpx.get(f"{server.url}/v1/workers/{before[1]['id']}/logs", timeout=60)
        assert r.status_code == 503 and "Docker" in r.json()["error"], r.text
        said = wait_for(
            lambda: "cannot reach the Docker engine" in server.log_text()[log_mark:],
            timeout_s=outage_s,
            what="the control plane to log that Docker is unreachable",
        )
        while time.monotonic() - cut_at < outage_s:
            time.sleep(0.2)
        completed_during_cut = len(ledger.completed) - completed_at_cut
        assert completed_during_cut > 0, "no job completed while the engine was unreachable"
        workers_during = workers_of(server.url, "cut")

        proxy.restore()
        restored_at = time.monotonic()

        # the supervisor catches up: the dead worker is replaced, new endpoints start again
        def replaced() -> bool:
            ws = workers_of(server.url, "cut")
            ids = {w["containerId"] for w in ws if w["status"] in ("IDLE", "RUNNING")}
            return len(ids) >= 2 and victim["containerId"] not in ids

        wait_for(
            replaced, timeout_s=90, interval_s=0.2, what="the killed worker to be replaced after the outage"
        )
        recovered_s = time.monotonic() - restored_at
        wait_idle_workers(server.url, "late", 1)
        r = httpx.post(f"{server.url}/v2/late/runsync", json={"input": {"after": "outage"}}, timeout=60)
        assert r.json().get("output") == {"after": "outage"}, r.text

        stop_load.set()
        loader.join(120)
        final = load.wait_drained(server.url, "cut", timeout_s=120)
        load.final_check(client)
        log = server.log_text()[log_mark:]
        figures.update(
            ledger.summary(),
            outage_s=outage_s,
            completed_during_outage=completed_during_cut,
            recovered_in_s=round(recovered_s, 1),
            lost=len(ledger.violations),
            health=final["jobs"],
            logged_unreachable=log.count("cannot reach the Docker engine"),
            workers_shown_during_outage=[(w["status"], w["reason"]) for w in workers_during],
        )
        assert said
        assert not ledger.server_errors, ledger.server_errors[:10]
        assert not ledger.violations, ledger.violations[:10]
        assert server.stop() == 0
        assert docker_instance.containers() == []
    finally:
        stop_load.set()
        server.close()
        proxy.close()

"""Shared pieces of the reliability suite: the soak switch, figures, a control plane run as a
subprocess (so that it can be SIGKILLed), a Docker instance that cleans up after itself, and a
worker that completes every job of every endpoint through the public worker protocol."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
SOAK = os.environ.get("RELIABILITY_SOAK", "") not in ("", "0", "false", "no")
FIGURES: dict[str, dict[str, Any]] = {}
ECHO = "serverless-emulator/sample-echo:latest"


def figures_path() -> Path:
    return Path(os.environ.get("RELIABILITY_FIGURES", ROOT / "build" / "reliability" / "figures.json"))


def save_figures(name: str, found: dict[str, Any]) -> None:
    FIGURES[name] = found
    path = figures_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existing = json.loads(path.read_text()) if path.exists() else {}
        existing[name] = {**found, "soak": SOAK, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        path.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n")
    except (OSError, ValueError):
        pass  # figures are a report, never a reason to fail


# --- a control plane as a subprocess ---------------------------------------------------------------
def _clean_env() -> dict[str, str]:
    """The environment without the caller's EMULATOR_* settings (a test states all it relies on)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("EMULATOR_")}


@dataclass
class ServeProcess:
    """``python -m emulator serve`` on a fixed client port, worker port and data dir, restartable.

    Every process it starts is killed by ``close`` (by its own PID, never by name)."""

    data_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    runtime: str = "docker"
    port: int = field(default_factory=free_port)
    worker_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    kills: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> ServeProcess:
        env = _clean_env()
        env.update(
            EMULATOR_WORKER_PORT=str(self.worker_port),
            EMULATOR_LOG_FORMAT="json",
            EMULATOR_RUNTIME=self.runtime,
        )
        env.update(self.env)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "emulator",
                    "serve",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                ],
                cwd=str(ROOT),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.started.append(self.proc)
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        proc = self.proc
        assert proc is not None

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the control plane exited ({proc.returncode}):\n{self.log_tail()}")
            try:
                return httpx.get(f"{self.url}/ping", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout_s=timeout_s, interval_s=0.05, what="the control plane to answer /ping")

    def sigkill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.kills += 1

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait: a clean shutdown (workers drained and removed)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_text().splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                events.append(item)
        return events


# --- Docker: one instance id, one network, removed whatever happens ------------------------------
@dataclass
class DockerInstance:
    client: Any
    id: str
    network: str
    data_dir: Path

    def containers(self, all_: bool = True) -> list[Any]:
        from emulator.runtime.base import LABEL_INSTANCE

        return list(self.client.containers.list(all=all_, filters={"label": [f"{LABEL_INSTANCE}={self.id}"]}))

    def cleanup(self) -> None:
        from emulator.runtime.base import LABEL_INSTANCE

        selector = {"label": [f"{LABEL_INSTANCE}={self.id}"]}
        for container in self.client.containers.list(all=True, filters=selector):
            with contextlib.suppress(Exception):
                container.remove(force=True)
        for volume in self.client.volumes.list(filters=selector):
            with contextlib.suppress(Exception):
                volume.remove(force=True)
        for network in self.client.networks.list(names=[self.network]):
            if network.name == self.network:  # `names` matches substrings: only the exact name
                with contextlib.suppress(Exception):
                    network.remove()


@pytest.fixture
def docker_instance(tmp_path: Path) -> Iterator[DockerInstance]:
    """A data dir seeded with a unique instance id (every container the control plane makes carries it)
    and a unique network name; containers, volumes and the network are removed at the end."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:
        pytest.skip(f"no Docker engine answers: {exc}")
    if not client.images.list(name=ECHO):
        client.close()
        pytest.skip(f"{ECHO} is missing: run `bash scripts/setup.sh`")
    from emulator.store.db import connect, set_meta

    tag = uuid.uuid4().hex[:10]
    inst = DockerInstance(client, f"rel{tag}", f"se-rel-{tag}", tmp_path / "data")
    conn = connect(inst.data_dir / "emulator.db")
    set_meta(conn, "instance_id", inst.id)
    conn.close()
    try:
        yield inst
    finally:
        inst.cleanup()
        client.close()


def serve_env(inst: DockerInstance, **extra: str) -> dict[str, str]:
    """Settings for a control plane under test: its own network, quick reactions, long retention."""
    env = {
        "EMULATOR_NETWORK": inst.network,
        "EMULATOR_RECONCILE_INTERVAL_S": "0.2",
        "EMULATOR_JOB_TAKE_HOLD_S": "5",
        "EMULATOR_JOB_STOP_HOLD_S": "5",
        "EMULATOR_STOP_GRACE_S": "3",
        "EMULATOR_PING_INTERVAL_MS": "1000",
        "EMULATOR_WORKER_LOST_AFTER_S": "6",
        "EMULATOR_SYNC_RETENTION_S": "3600",
        "EMULATOR_RUN_RETENTION_S": "3600",
        "EMULATOR_STARTUP_TIMEOUT_S": "60",
    }
    env.update(extra)
    return env


def workers_of(url: str, endpoint: str, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/v1/endpoints/{endpoint}/workers", headers=headers or {}, timeout=10)
    r.raise_for_status()
    return [w for w in r.json()["workers"] if not w.get("standby")]


def wait_idle_workers(url: str, endpoint: str, n: int, timeout_s: float = 90.0) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]]:
        try:
            workers = workers_of(url, endpoint)
        except httpx.HTTPError:
            return []
        idle = [w for w in workers if w["status"] in ("IDLE", "RUNNING")]
        return workers if len(idle) >= n else []

    return wait_for(ready, timeout_s=timeout_s, interval_s=0.2, what=f"{n} workers of {endpoint} IDLE")


# --- a worker for control planes without containers ---------------------------------------------
class AutoWorker:
    """Completes every queued job of every endpoint (output = input) through the worker protocol,
    so that the client routes see jobs in every state. Runs in a thread until ``stop``."""

    def __init__(self, client_url: str, headers: dict[str, str] | None = None) -> None:
        self.client_url = client_url
        self.headers = headers or {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="auto-worker", daemon=True)
        self._workers: dict[str, tuple[str, str, str]] = {}  # endpoint -> (worker id, token, take url)
        self.completed = 0

    def __enter__(self) -> AutoWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                with contextlib.suppress(httpx.HTTPError, KeyError, ValueError, TypeError):
                    self._pass(http)
                self._stop.wait(0.05)

    def _pass(self, http: httpx.Client) -> None:
        snapshot = http.get(f"{self.client_url}/v1/dashboard", headers=self.headers).json()
        for ep in snapshot.get("endpoints", []):
            if not ep.get("queue", {}).get("inQueue"):
                continue
            worker = self._workers.get(ep["id"])
            if worker is None:
                r = http.post(f"{self.client_url}/v1/endpoints/{ep['id']}/workers", headers=self.headers)
                if r.status_code != 201:
                    continue
                data = r.json()
                take = data["env"]["RUNPOD_WEBHOOK_GET_JOB"].replace("$ID", data["id"])
                worker = self._workers[ep["id"]] = (data["id"], data["token"], take)
            worker_id, token, take = worker
            batch = take.replace("/job-take/", "/job-take-batch/") + "&job_in_progress=0&batch_size=16"
            r = http.get(batch, headers={"Authorization": token})
            if r.status_code != 200:
                if r.status_code in (401, 403):
                    self._workers.pop(ep["id"], None)  # the endpoint was deleted and made again
                continue
            base = take.split("/job-take/")[0]
            for job in r.json():
                http.post(
                    f"{base}/job-done/{worker_id}/{job['id']}?gpu=local&isStream=false",
                    content=json.dumps({"output": job["input"]}),
                    headers={"Authorization": token},
                )
                self.completed += 1


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (0 when unknown)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return 0.0

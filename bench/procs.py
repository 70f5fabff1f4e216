"""The measured processes: the control plane (``python -m emulator serve``) and RunPod's test server.

Both run as subprocesses in their own session, so their CPU time and memory can be read from
``/proc/<pid>`` and so they can be stopped by their process id (never by name). A control plane gets
a fresh data dir, a unique Docker network and a pre-seeded instance id: every container it makes
carries ``serverless-emulator.instance=<id>``, which is how ``stop`` finds what to remove even when
the process died.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import dockerx
from bench.cpu import cpu_s, mem_kb

REPO = Path(__file__).resolve().parents[1]
HANDLER = REPO / "bench" / "handler.py"
# Where the control plane's code comes from: the working tree (default), or an export of a commit
# (``python -m bench --emulator HEAD``) when the tree is being edited while the benchmark runs.
EMULATOR_DIR = REPO


def export_commit(commit: str, dest: Path) -> Path:
    """``git archive COMMIT emulator`` into dest (the control plane then runs from there)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", commit, "emulator"], cwd=REPO, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(method: str, url: str, body: Any = None, timeout_s: float = 120.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


def wait_until(check: Any, timeout_s: float, what: str, interval_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()
        except (OSError, urllib.error.URLError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


class _Proc:
    """A subprocess in its own session; stopped by its pid (SIGTERM, then SIGKILL)."""

    proc: subprocess.Popen[bytes] | None = None
    log_path: Path

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _spawn(self, argv: list[str], env: dict[str, str], log_path: Path, cwd: Path = REPO) -> None:
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_s(self) -> float:
        return cpu_s(self.pid)

    def mem_kb(self) -> dict[str, int]:
        return mem_kb(self.pid)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def terminate(self, timeout_s: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _env(extra: dict[str, str], root: Path = REPO) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


@dataclass
class ControlPlane(_Proc):
    """``python -m emulator serve`` on a free port with its own data dir, network and instance id."""

    run_id: str
    name: str
    out_dir: Path
    env_extra: dict[str, str]

    def __post_init__(self) -> None:
        self.instance = f"bench{self.run_id}{self.name}"
        self.network = f"se-bench-{self.run_id}-{self.name}"
        self.data_dir = self.out_dir / self.name / "data"
        self.port = 0
        self.url = ""

    def start(self, timeout_s: float = 60.0) -> ControlPlane:
        # the instance id labels every container it makes (seeded by the same code that will serve)
        seed = (
            "import sys, pathlib; from emulator.store.db import connect, set_meta; c = connect(pathlib.Path(sys.argv[1])); "
            "set_meta(c, 'instance_id', sys.argv[2]); c.close()"
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-c", seed, str(self.data_dir / "emulator.db"), self.instance],
            env=_env({}, EMULATOR_DIR),
            cwd=EMULATOR_DIR,
            check=True,
            capture_output=True,
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = _env(
            {"EMULATOR_NETWORK": self.network, **self.env_extra}, EMULATOR_DIR
        )  # default log format, as users run it
        argv = [
            sys.executable,
            "-m",
            "emulator",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        dockerx.track_instance(self.instance, self.network)
        self._spawn(argv, env, self.out_dir / self.name / "control-plane.log", cwd=EMULATOR_DIR)
        try:
            wait_until(lambda: self._answers(), timeout_s, "the control plane to answer")
        except TimeoutError as exc:
            self.stop()
            raise RuntimeError(f"{exc}; its log:\n{self.log_tail()}") from exc
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"the control plane exited; its log:\n{self.log_tail()}")
        return http_json("GET", f"{self.url}/v1/endpoints", timeout_s=2)[0] == 200

    # --- management helpers ---------------------------------------------------------------------
    def create_endpoint(self, spec: dict[str, Any]) -> dict[str, Any]:
        code, body = http_json("POST", f"{self.url}/v1/endpoints", spec)
        if code != 201:
            raise RuntimeError(f"creating endpoint {spec.get('id')!r} failed: {code} {body}")
        assert isinstance(body, dict), body
        return body

    def delete_endpoint(self, endpoint_id: str) -> None:
        http_json("DELETE", f"{self.url}/v1/endpoints/{endpoint_id}")

    def workers(self, endpoint_id: str) -> list[dict[str, Any]]:
        code, body = http_json("GET", f"{self.url}/v1/endpoints/{endpoint_id}/workers", timeout_s=10)
        return body["workers"] if code == 200 else []

    def wait_ready(self, endpoint_id: str, n: int, timeout_s: float = 120.0) -> None:
        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"the control plane exited; its log:\n{self.log_tail()}")
            idle = [w for w in self.workers(endpoint_id) if w["status"] == "IDLE" and not w["standby"]]
            return len(idle) >= n

        wait_until(ready, timeout_s, f"{n} idle worker(s) on {endpoint_id}", interval_s=0.1)

    def stop(self) -> None:
        """SIGTERM (the control plane drains and removes its workers), then remove what is left by label."""
        try:
            self.terminate(timeout_s=60)
        finally:
            dockerx.remove_instance(self.instance, self.network)
            if not self.alive():  # the job store (tens of MB after the scale run); the log stays
                shutil.rmtree(self.data_dir, ignore_errors=True)


@dataclass
class Peer(_Proc):
    """RunPod's local test server (runpod's ``--rp_serve_api``) running bench/handler.py on the host."""

    out_dir: Path

    def start(self, timeout_s: float = 60.0) -> Peer:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            sys.executable,
            str(HANDLER),
            "--rp_serve_api",
            "--rp_api_port",
            str(self.port),
            "--rp_api_host",
            "127.0.0.1",
        ]
        env = _env(
            {"BENCH_SDK": "runpod", "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true", "UVICORN_LOG_LEVEL": "warning"}
        )
        for key in ("RUNPOD_WEBHOOK_PING", "RUNPOD_POD_ID", "RUNPOD_AI_API_KEY", "RUNPOD_ENDPOINT_ID"):
            env.pop(key, None)  # a plain local server: no heartbeat, no realtime route
        self._spawn(argv, env, self.out_dir / "peer" / "peer.log")

        def answers() -> bool:
            if not self.alive():
                raise RuntimeError(f"RunPod's test server exited; its log:\n{self.log_tail()}")
            return http_json("POST", f"{self.url}/runsync", {"input": {"n": 1}}, timeout_s=2)[0] == 200

        try:
            wait_until(answers, timeout_s, "RunPod's test server to answer", interval_s=0.1)
        except TimeoutError as exc:
            self.stop()
            raise RuntimeError(f"{exc}; its log:\n{self.log_tail()}") from exc
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.terminate(timeout_s=15)


@dataclass
class HostWorker(_Proc):
    """bench/handler.py on worker_sdk as a host process, registered as an external worker (no container)."""

    out_dir: Path

    def start(self, cp: ControlPlane, endpoint_id: str) -> HostWorker:
        code, body = http_json("POST", f"{cp.url}/v1/endpoints/{endpoint_id}/workers", {})
        if code != 201:
            raise RuntimeError(f"registering a host worker failed: {code} {body}")
        self.id = body["id"]
        env = _env({**body["env"], "BENCH_SDK": "worker_sdk"})
        self._spawn(
            [sys.executable, "-u", str(HANDLER)], env, self.out_dir / f"host-worker-{endpoint_id}.log"
        )
        return self

    def stop(self) -> None:
        self.terminate(timeout_s=15)

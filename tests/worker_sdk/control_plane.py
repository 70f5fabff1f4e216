"""Run the real control plane (``python -m emulator serve --runtime none``) as a subprocess for tests."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import httpx

from tests.worker_sdk.procs import REPO, clean_env, kill_group

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")


def _object(r: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object (AssertionError if it is not one)."""
    body = r.json()
    assert isinstance(body, dict), r.text
    return body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ControlPlane:
    def __init__(self, data_dir: Path, log_dir: Path, port: int | None = None) -> None:
        self.data_dir, self.log_dir = data_dir, log_dir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.client = httpx.Client(base_url=self.base, timeout=30)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ControlPlane:
        self.starts += 1
        log = open(self.log_dir / f"control-plane-{self.starts}.log", "wb")  # noqa: SIM115 - the child's log, open for its life
        cmd = [
            sys.executable,
            "-m",
            "emulator",
            "serve",
            "--runtime",
            "none",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        env = clean_env({})
        self.proc = subprocess.Popen(
            cmd, cwd=str(REPO), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"control plane exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.client.get("/ping", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"control plane not ready after {timeout}s:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob("control-plane-*.log"))
        )

    def kill(self) -> None:
        """SIGKILL (a crash): no drain, no clean-up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(15)
        if self.proc is not None:
            kill_group(self.proc)  # whatever is left of it and anything it started
        self.client.close()

    # ---- API helpers ------------------------------------------------------------------------------
    def create_endpoint(self, endpoint_id: str, **fields: Any) -> dict[str, Any]:
        r = self.client.post(
            "/v1/endpoints",
            json=dict({"name": endpoint_id, "id": endpoint_id, "imageName": "none"}, **fields),
        )
        assert r.status_code == 201, r.text
        return _object(r)

    def register_worker(self, endpoint_id: str) -> dict[str, Any]:
        r = self.client.post(f"/v1/endpoints/{endpoint_id}/workers")
        assert r.status_code == 201, r.text
        return _object(r)

    def run(self, endpoint_id: str, input: Any, **extra: Any) -> str:
        r = self.client.post(f"/v2/{endpoint_id}/run", json=dict(extra, input=input))
        assert r.status_code == 200, r.text
        return str(_object(r)["id"])

    def status(self, endpoint_id: str, job_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v2/{endpoint_id}/status/{job_id}")
        assert r.status_code == 200, r.text
        return _object(r)

    def stream(self, endpoint_id: str, job_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v2/{endpoint_id}/stream/{job_id}")
        assert r.status_code == 200, r.text
        return _object(r)

    def cancel(self, endpoint_id: str, job_id: str) -> dict[str, Any]:
        r = self.client.post(f"/v2/{endpoint_id}/cancel/{job_id}")
        assert r.status_code == 200, r.text
        return _object(r)

    def wait_status(
        self, endpoint_id: str, job_id: str, statuses: Collection[str] = TERMINAL, timeout: float = 30.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = self.status(endpoint_id, job_id)
            if body["status"] in statuses:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {body} after {timeout}s (wanted {statuses})")
            time.sleep(0.1)

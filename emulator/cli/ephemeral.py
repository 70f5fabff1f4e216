"""A throw-away emulator for ``serverless-emulator test``: a control plane in a background thread with
real Docker workers, a temporary data dir, a free port and its own Docker network, and a cleanup that
removes its endpoint, containers and network whatever happened."""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import structlog

from emulator.cli.common import BUILD_HINT, busy, err_console, fail
from emulator.errors import EmulatorError, RuntimeUnavailable

DOCKER_HINT = "start Docker (`sudo systemctl start docker`); `serverless-emulator test` runs real containers"
ENDPOINT_LABEL = "serverless-emulator.endpoint"


def docker_cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


class EphemeralEmulator:
    """``with EphemeralEmulator(port) as emu: emu.create_endpoint(image)``; cleanup on exit."""

    def __init__(self, port: int = 0, verbose: bool = False, settings: dict[str, Any] | None = None) -> None:
        self.port = port
        self.verbose = verbose
        self.overrides = dict(settings or {})  # more Settings fields, such as gpu_mode (emulated GPUs)
        run_id = uuid.uuid4().hex[:10]
        self.network = f"se-test-{run_id}"
        self.endpoint_id = f"test-{run_id}"
        self._tmp = tempfile.TemporaryDirectory(prefix="serverless-emulator-test-")
        self.plane: Any = None
        self.http: httpx.Client | None = None
        self.endpoint_created = False
        self._saved_logging: tuple[Any, Any, int] | None = None

    # --- start ---------------------------------------------------------------------------------------
    def __enter__(self) -> EphemeralEmulator:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def start(self) -> None:
        from emulator import logs
        from emulator.config import Settings

        # the control plane's own log on the real stderr, quiet unless --verbose; restored by cleanup()
        # (the command may run inside another program, such as a test suite)
        root = logging.getLogger()
        self._saved_logging = (structlog.get_config(), list(root.handlers), root.level)
        logs.configure("console", "info" if self.verbose else "error", stream=sys.__stderr__)
        structlog.configure(cache_logger_on_first_use=False)
        settings = Settings(
            host="127.0.0.1",
            port=self.port,
            data_dir=Path(self._tmp.name) / "data",
            runtime="docker",
            network=self.network,
            config=None,
            api_key=None,
            keep_workers=False,
            **self.overrides,
        )
        try:
            from emulator.testing import BackgroundControlPlane

            self.plane = BackgroundControlPlane(settings)
            self.plane.start(timeout_s=120)
        except ImportError as exc:
            fail(
                f"this build of the emulator cannot run Docker workers ({exc})",
                "update the emulator; `serverless-emulator serve --runtime none` works without them",
            )
        except RuntimeUnavailable as exc:
            fail(exc.message, DOCKER_HINT)
        except EmulatorError as exc:
            hint = None
            if "in use" in exc.message:
                hint = "leave out --port (any free port is used), or stop what listens there"
            fail(exc.message, hint)
        except TimeoutError:
            fail("the emulator did not start within 120 s", "check that Docker answers: `docker info`")
        self.http = httpx.Client(base_url=self.plane.client_url, timeout=60)

    @property
    def url(self) -> str:
        return str(self.plane.client_url)

    def create_endpoint(
        self, image: str, env: dict[str, str], gpu_count: int, timeout_s: float, endpoint_type: str = "QB"
    ) -> str:
        """Create the run's endpoint (one worker, kept while the tests run); ``endpoint_type`` "LB" for a
        load-balancing image. Exits with a hint when the emulator refuses it."""
        assert self.http is not None
        body = {
            "type": endpoint_type,
            "id": self.endpoint_id,
            "name": self.endpoint_id,
            "imageName": image,
            "workersMin": 1,
            "workersMax": 1,
            "extraWorkers": 0,
            "idleTimeout": 3600,
            "env": env,
            "gpuCount": gpu_count,
            "executionTimeoutMs": max(5_000, int(timeout_s * 1000)),
        }
        r = self.http.post("/v1/endpoints", json=body)
        if r.status_code != 201:
            message = _error_of(r)
            hint = BUILD_HINT if "image" in message.lower() else None
            if r.status_code == 503:
                hint = DOCKER_HINT
            fail(f"creating the endpoint failed: {message} (HTTP {r.status_code})", hint)
        self.endpoint_created = True
        return self.endpoint_id

    # --- talking to it --------------------------------------------------------------------------------
    def get(self, path: str, **kw: Any) -> Any:
        assert self.http is not None
        r = self.http.get(path, **kw)
        r.raise_for_status()
        return r.json() if "json" in r.headers.get("content-type", "") else r.text

    def post(self, path: str, **kw: Any) -> Any:
        assert self.http is not None
        r = self.http.post(path, **kw)
        if r.status_code >= 400:
            fail(f"POST {path} failed: {_error_of(r)} (HTTP {r.status_code})")
        return r.json()

    def worker(self) -> dict[str, Any] | None:
        """The endpoint's newest worker (the test runs one), or None."""
        try:
            workers = self.get(f"/v1/endpoints/{self.endpoint_id}/workers")["workers"]
        except (httpx.HTTPError, KeyError, ValueError):
            return None
        return workers[-1] if workers else None

    def worker_logs(self, worker_id: str | None, tail: int = 30) -> str:
        if not worker_id:
            return ""
        try:
            return str(self.get(f"/v1/workers/{worker_id}/logs", params={"tail": tail}))
        except (httpx.HTTPError, ValueError):
            return ""

    # --- cleanup ------------------------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Delete the endpoint (drains and removes its worker), stop the control plane (removes what is
        left of its workers), then remove stray containers, the network and the data dir."""
        started = time.monotonic()
        with busy("cleaning up (removing the worker and the network)…"):
            if self.http is not None:
                if self.endpoint_created:
                    try:
                        self.http.delete(f"/v1/endpoints/{self.endpoint_id}", timeout=90)
                    except httpx.HTTPError as exc:
                        self._say(f"deleting the endpoint failed: {exc}")
                self.http.close()
                self.http = None
            if self.plane is not None:
                try:
                    self.plane.stop(timeout_s=90)
                except Exception as exc:  # keep cleaning up
                    self._say(f"stopping the control plane failed: {exc}")
                self.plane = None
            listed = docker_cli("ps", "-aq", "--filter", f"label={ENDPOINT_LABEL}={self.endpoint_id}")
            stray = listed.stdout.split() if listed is not None and listed.returncode == 0 else []
            if stray:
                docker_cli("rm", "-f", *stray)
                self._say(f"removed {len(stray)} leftover container(s)")
            removed = docker_cli("network", "rm", self.network)
            if removed is not None and removed.returncode != 0 and "not found" not in removed.stderr:
                self._say(f"could not remove network {self.network}: {removed.stderr.strip()}")
            self._tmp.cleanup()
        self._restore_logging()
        if self.verbose:
            self._say(f"cleaned up in {time.monotonic() - started:.1f}s")

    def _restore_logging(self) -> None:
        if self._saved_logging is None:
            return
        config, handlers, level = self._saved_logging
        self._saved_logging = None
        structlog.configure(**config)
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)

    def _say(self, message: str) -> None:
        err_console.print(message, style="dim")


def _error_of(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error") or response.text)
    except (ValueError, AttributeError):
        return response.text.strip()[:300]


def require_image(image: str) -> None:
    """Exit with a hint unless ``image`` is present locally."""
    from emulator.images import build as images

    try:
        present = images.image_id(image)
    except RuntimeUnavailable as exc:
        fail(exc.message, DOCKER_HINT)
    if present is None:
        fail(f"the image {image} is not present locally", BUILD_HINT + " (or `docker pull` it)")


__all__ = ["EphemeralEmulator", "require_image"]

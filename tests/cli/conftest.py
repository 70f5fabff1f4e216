"""Fixtures for the CLI tests: typer's CliRunner against a control plane with no container runtime
(``plane`` from tests/conftest.py), and hand-driven workers in background threads."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from emulator.cli.main import app
from emulator.testing import BackgroundControlPlane
from tests.helpers import ProtocolWorker

Handler = Callable[[ProtocolWorker, dict[str, Any]], None]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands read EMULATOR_URL / EMULATOR_API_KEY; the tests pass --url themselves."""
    for name in ("EMULATOR_URL", "EMULATOR_API_KEY"):
        monkeypatch.delenv(name, raising=False)


class Cli:
    def __init__(self, url: str) -> None:
        self.url = url
        self.runner = CliRunner()

    def __call__(
        self, *args: str, url: bool = True, env: dict[str, str] | None = None, input: str | None = None
    ) -> Result:
        argv = [*args, "--url", self.url] if url else list(args)
        return self.runner.invoke(app, argv, env=env, input=input, catch_exceptions=False)


@pytest.fixture
def cli(plane: BackgroundControlPlane) -> Cli:
    return Cli(plane.client_url)


class WorkerThread:
    """A registered worker that takes jobs in a thread and answers each with ``handler``."""

    def __init__(self, client_url: str, endpoint_id: str, handler: Handler) -> None:
        self.worker = ProtocolWorker(client_url, endpoint_id)
        self.handler = handler
        self.stopping = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name=f"worker-{self.worker.id}", daemon=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                r = self.worker.take()
                if r.status_code == 200 and not self.stopping.is_set():
                    self.handler(self.worker, r.json())
            except Exception as exc:  # reported by stop()
                if not self.stopping.is_set():
                    self.errors.append(exc)
                return

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(15)
        self.worker.close()
        assert not self.thread.is_alive(), "the worker thread did not stop"
        assert not self.errors, self.errors


@pytest.fixture
def start_worker(plane: BackgroundControlPlane) -> Iterator[Callable[..., WorkerThread]]:
    """``start_worker(handler, endpoint="echo")``: a worker thread, stopped after the test."""
    started: list[WorkerThread] = []

    def start(handler: Handler, endpoint: str = "echo") -> WorkerThread:
        w = WorkerThread(plane.client_url, endpoint, handler)
        started.append(w)
        w.thread.start()
        return w

    try:
        yield start
    finally:
        for w in started:
            w.stop()


def echo(worker: ProtocolWorker, job: dict[str, Any]) -> None:
    worker.done(job["id"], {"output": job["input"]})


# --- `serverless-emulator test` with Docker --------------------------------------------------------------


def docker_ok() -> bool:
    try:
        return subprocess.run(["docker", "version"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def leftovers_of_run(output: str) -> list[str]:
    """Containers and the network of the `serverless-emulator test` run whose network name it printed;
    removes them (the safety net: never leave anything behind, even when the assert fails)."""
    match = re.search(r"network (se-test-[0-9a-f]+)", output)
    assert match, output
    network = match.group(1)
    endpoint = network.removeprefix("se-")
    found = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=serverless-emulator.endpoint={endpoint}"],
        capture_output=True,
        text=True,
    ).stdout.split()
    nets = subprocess.run(
        ["docker", "network", "ls", "-q", "--filter", f"name=^{network}$"], capture_output=True, text=True
    ).stdout.split()
    for container in found:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)
    for net in nets:
        subprocess.run(["docker", "network", "rm", net], capture_output=True)
    return found + nets


@pytest.fixture
def docker_run() -> Callable[..., Result]:
    """``docker_run(*args, env=None)``: ``serverless-emulator test ARGS`` in-process; asserts that it left
    no container or network behind."""
    if not docker_ok():
        pytest.skip("needs a running Docker engine")

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        r = CliRunner().invoke(app, ["test", *args], env=env, catch_exceptions=False)
        assert leftovers_of_run(r.output) == [], "the test command left containers or its network behind"
        return r

    return run

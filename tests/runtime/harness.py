"""The contract harness: what a contract test needs to say the same thing to both runtimes."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest

from emulator.runtime.base import ContainerInfo, ContainerSpec
from emulator.runtime.fake import FakeRuntime, ImageBehavior

TEST_LABEL = "serverless-emulator.test"
BASE_IMAGE = "serverless-emulator/python-base:bookworm"
MISSING_IMAGE = "serverless-emulator/does-not-exist:never"
DEAD_SOCKET = "unix:///nonexistent/serverless-emulator-test/docker.sock"
T = TypeVar("T")

# What each scenario runs on Docker, and what the fake is told to do instead.
_SLEEPER = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "print('ready', flush=True)\n"
    "time.sleep(300)\n"
)
SCENARIOS: dict[str, tuple[list[str], ImageBehavior]] = {
    "sleep": (["python3", "-c", _SLEEPER], ImageBehavior(logs=("ready",))),
    "exit3": (["python3", "-c", "import os; os._exit(3)"], ImageBehavior(exit_code=3)),
    "count": (
        [
            "python3",
            "-c",
            "import time\nfor i in range(3):\n    print('line', i, flush=True); time.sleep(0.1)",
        ],
        ImageBehavior(logs=("line 0", "line 1", "line 2"), exit_code=0),
    ),
}


class Harness:
    """A runtime under test plus what the contract needs to say the same thing to both runtimes."""

    def __init__(self, kind: str, runtime: Any, labels: dict[str, str], kubeconfig: str = "") -> None:
        self.kind = kind
        self.kubeconfig = kubeconfig
        self.unavailable_hint = "kubectl get --raw /version" if kind == "kubernetes" else "docker info"
        self.runtime = runtime
        self.labels = labels
        self.run_id = labels[TEST_LABEL][:12]
        self._names = 0

    def name(self, prefix: str = "c") -> str:
        self._names += 1
        return f"se-test-{self.run_id}-{prefix}{self._names}"

    def spec(self, scenario: str = "sleep", **overrides: Any) -> ContainerSpec:
        command, _ = SCENARIOS[scenario]
        image = f"fake/{scenario}" if self.kind == "fake" else BASE_IMAGE
        fields: dict[str, Any] = {
            "name": self.name(scenario),
            "image": image,
            "env": {"SE_TEST": "1"},
            "labels": dict(self.labels),
            "command": command,
        }
        fields.update(overrides)
        return ContainerSpec(**fields)

    async def started(self, scenario: str = "sleep", **overrides: Any) -> str:
        container_id: str = await self.runtime.create(self.spec(scenario, **overrides))
        await self.runtime.start(container_id)
        return container_id

    async def wait_status(self, container_id: str, *statuses: str, timeout_s: float = 20.0) -> ContainerInfo:
        info: ContainerInfo | None = None

        async def reached() -> bool:
            nonlocal info
            info = await self.runtime.inspect(container_id)
            return info.status in statuses

        await poll(reached, timeout_s, lambda: f"{container_id[:12]} never became {statuses}; last: {info}")
        assert info is not None
        return info

    async def refuse_gpus(self) -> None:
        if self.kind == "fake":
            self.runtime.refuse_gpus = True
        elif await self.runtime.gpu_runtime_available():
            pytest.skip("this host has an NVIDIA runtime: GPU requests are not refused here")

    def unavailable_runtime(self) -> Any:
        if self.kind == "fake":
            runtime = FakeRuntime()
            runtime.set_unavailable(True)
            return runtime
        if self.kind == "kubernetes":
            from tests.runtime.kube_cluster import unreachable_runtime

            return unreachable_runtime(self.kubeconfig)
        from emulator.runtime.docker import DockerRuntime

        return DockerRuntime(base_url=DEAD_SOCKET)


async def poll(check: Callable[[], Awaitable[bool]], timeout_s: float, describe: Callable[[], str]) -> None:
    """Call ``check`` every 50 ms until it is true; fail with ``describe()`` after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout_s}s: {describe()}")
        await asyncio.sleep(0.05)


async def collect_until(
    iterator: AsyncIterator[T], done: Callable[[T], bool], timeout_s: float = 20.0
) -> list[T]:
    """Items from ``iterator`` up to and including the first for which ``done`` is true."""
    items: list[T] = []

    async def run() -> None:
        async for item in iterator:
            items.append(item)
            if done(item):
                return

    try:
        await asyncio.wait_for(run(), timeout_s)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout_s}s; got {items}")
    return items


def split_command(command: list[str] | str) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)

"""Fixtures for tests with real Docker: a unique network per session, a unique control-plane instance id
per test, and finalizers that remove exactly what carries those (never by name pattern, never all).

The instance id is written into the test's data dir before the control plane starts, so every
container it creates carries ``serverless-emulator.instance=<that id>`` and the finalizer finds them
even when the control plane under test crashed or was SIGKILLed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest

from emulator.config import Settings
from emulator.runtime.base import LABEL_INSTANCE
from emulator.store.db import connect, set_meta

SAMPLES = ("echo", "slow", "crashy", "runpod-sdk")
BASE_IMAGE = "serverless-emulator/python-base:bookworm"


def sample(name: str) -> str:
    return f"serverless-emulator/sample-{name}:latest"


@dataclass
class DockerSession:
    client: Any
    run_id: str
    network: str


@dataclass
class Instance:
    """One control plane's identity: its data dir (pre-seeded with the instance id) and the label value."""

    id: str
    data_dir: Path
    network: str
    client: Any

    def containers(self, all_: bool = True) -> list[Any]:
        return list(self.client.containers.list(all=all_, filters={"label": [f"{LABEL_INSTANCE}={self.id}"]}))


def _remove_instance(client: Any, instance: str) -> None:
    selector = {"label": [f"{LABEL_INSTANCE}={instance}"]}
    for container in client.containers.list(all=True, filters=selector):
        with contextlib.suppress(Exception):
            container.remove(force=True)
    for volume in client.volumes.list(filters=selector):
        with contextlib.suppress(Exception):
            volume.remove(force=True)


@pytest.fixture(scope="session")
def docker_session() -> Iterator[DockerSession]:
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as exc:
        pytest.skip(f"no Docker engine answers: {exc}")
    missing = [sample(n) for n in SAMPLES if not client.images.list(name=sample(n))]
    if missing:
        client.close()
        pytest.skip(f"sample images missing ({', '.join(missing)}): run `bash scripts/setup.sh`")
    run_id = uuid.uuid4().hex[:8]
    session = DockerSession(client, run_id, f"se-it-{run_id}")
    try:
        yield session
    finally:
        for network in client.networks.list(names=[session.network]):
            if network.name == session.network:  # `names` matches substrings: check the exact name
                with contextlib.suppress(Exception):
                    network.remove()
        client.close()


@pytest.fixture
def instance(docker_session: DockerSession, tmp_path: Path) -> Iterator[Instance]:
    inst = Instance(
        f"it{docker_session.run_id}{uuid.uuid4().hex[:8]}",
        tmp_path / "data",
        docker_session.network,
        docker_session.client,
    )
    conn = connect(inst.data_dir / "emulator.db")
    set_meta(conn, "instance_id", inst.id)
    conn.close()
    try:
        yield inst
    finally:
        _remove_instance(docker_session.client, inst.id)


T = TypeVar("T")


def docker_settings(inst: Instance, **overrides: Any) -> Settings:
    """Settings for a control plane with real Docker workers in tests: short holds and intervals."""
    base: dict[str, Any] = dict(
        data_dir=inst.data_dir,
        port=0,
        runtime="docker",
        network=inst.network,
        reconcile_interval_s=0.1,
        worker_lost_after_s=8.0,
        startup_timeout_s=60.0,
        job_take_hold_s=2.0,
        job_stop_hold_s=2.0,
        stop_grace_s=3.0,
        ping_interval_ms=1000,
    )
    base.update(overrides)
    return Settings(**base)


async def eventually(
    probe: Callable[[], Awaitable[T | None | Literal[False]]],
    what: str,
    timeout_s: float = 60.0,
    every_s: float = 0.1,
) -> T:
    """Poll ``probe`` until it returns something truthy, with a deadline; returns that (never None/False)."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        value = await probe()
        last = value
        if value:
            return value
        await asyncio.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {last!r}")

"""Helpers for tests (the project's and users'): a control plane running in a background thread.

``BackgroundControlPlane`` owns its own event loop in a thread, so synchronous clients (requests,
RunPod's SDK, subprocesses) can talk to it from the test's thread over real HTTP.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from emulator.config import Settings
from emulator.control_plane import ControlPlane

T = TypeVar("T")


class BackgroundControlPlane:
    def __init__(self, settings: Settings, runtime: Any = None) -> None:
        self.settings = settings
        self.runtime = runtime
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="control-plane", daemon=True)
        self.plane: ControlPlane | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            self.plane = ControlPlane(self.settings, runtime=self.runtime)
            await self.plane.start()
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._started.set()
            return
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await self.plane.stop()

    def start(self, timeout_s: float = 60.0) -> BackgroundControlPlane:
        self.thread.start()
        if not self._started.wait(timeout_s):
            raise TimeoutError("the control plane did not start in time")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        if self._stop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(timeout_s)

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        """Run a coroutine on the control plane's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    @property
    def client_url(self) -> str:
        assert self.plane is not None
        return self.plane.client_url

    @property
    def worker_url(self) -> str:
        assert self.plane is not None
        return self.plane.worker_url

    def __enter__(self) -> BackgroundControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

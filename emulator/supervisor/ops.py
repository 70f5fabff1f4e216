"""The supervisor's in-flight container operations: a named task set.

An operation is keyed by what it works on (a worker id, or ``container:<id>``); a key with an
operation in flight is ``busy`` and the planner leaves it alone. An operation that fails is logged
(the next tick retries) and never kills the loop; every end of an operation wakes the loop
(``on_done``), so the next decision does not wait for the interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from emulator.errors import EmulatorError

log = structlog.get_logger("emulator.supervisor")


class Operations:
    """``spawn(key, coro)``, ``busy()``, ``wait(keys, timeout_s)``, ``cancel_all()``."""

    def __init__(self) -> None:
        self.on_done: Callable[[], None] = lambda: None  # the loop's wake-up, set by the loop
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def busy(self) -> set[str]:
        """The keys with an operation in flight."""
        return {key for key, task in self._tasks.items() if not task.done()}

    def spawn(self, key: str, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as the operation of ``key``; dropped (closed unrun) while ``key`` is busy."""
        if key in self._tasks and not self._tasks[key].done():
            coro.close()
            return
        self._tasks[key] = asyncio.create_task(self._guard(key, coro), name=f"supervisor-op:{key}")

    async def _guard(self, key: str, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except EmulatorError as exc:
            log.warning("supervisor operation failed; the next tick retries", op=key, error=exc.message)
        except Exception:
            log.exception("supervisor operation failed", op=key)
        finally:
            if self._tasks.get(key) is asyncio.current_task():
                del self._tasks[key]
            self.on_done()

    async def wait(self, keys: set[str] | None = None, timeout_s: float | None = None) -> None:
        """Wait for in-flight operations (all, or those of ``keys``) to end, at most ``timeout_s``."""
        tasks = [t for k, t in list(self._tasks.items()) if (keys is None or k in keys) and not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)

    async def cancel_all(self) -> None:
        tasks = [t for t in self._tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

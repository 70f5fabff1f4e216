"""One daemon thread per job that runs a sync handler's calls in order, answering on the event loop."""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable
    from typing import Any

    # One queued call: (fn, args, the future to settle or None); None closes the thread.
    _Call = tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any] | None]


class JobThread:
    """Runs ``fn(*args)`` calls one after another in a dedicated daemon thread.

    ``call`` returns an asyncio future resolved on ``loop``. Daemon threads never hold the
    process at exit, so a stopped job whose handler keeps running cannot block shutdown.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self._loop = loop
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        future = self._loop.create_future()
        self._calls.put((fn, args, future))
        return future

    def close(self, last_call: Callable[[], object] | None = None) -> None:
        """Finish after the queued calls; ``last_call`` (e.g. a generator's close) runs first."""
        if last_call is not None:
            self._calls.put((last_call, (), None))
        self._calls.put(None)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                return
            fn, args, future = item
            try:
                outcome, value = True, fn(*args)
            except BaseException as exc:  # noqa: B036 - delivered to the loop, never swallowed
                if not isinstance(exc, Exception):  # SystemExit/KeyboardInterrupt inside a handler
                    wrapped = RuntimeError(f"handler raised {type(exc).__name__}")
                    wrapped.__cause__ = exc
                    exc = wrapped
                outcome, value = False, exc
            if future is not None:
                try:
                    self._loop.call_soon_threadsafe(_settle, future, outcome, value)
                except RuntimeError:  # the loop is closed: the worker has exited
                    return


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the job was stopped; its result is discarded
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)

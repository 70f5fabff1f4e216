"""A blocking iterator read in a thread of its own and handed to asyncio, with backpressure.

The Docker SDK's streams (events, logs, pull progress) are blocking iterators over a socket. A
``ThreadStream`` reads one in a daemon thread and passes what it reads through a bounded
``asyncio.Queue`` (the thread blocks while the consumer is behind); closing it, or the consumer
stopping, sets the stop flag and closes the underlying stream, which wakes the thread blocked on the
socket. An error raised by the stream (or by ``open_stream``) is raised to the consumer as it is: the
adapter translates it. Two hooks serve streams that are not the Docker SDK's: ``ready`` (called in the
thread before ``open_stream``: wait until the stream can be opened, e.g. until a Pod's container has
started) and ``interrupt`` (how another thread wakes the reader, e.g. by shutting the socket down where
closing would block).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

QUEUE_ITEMS = 1000


def close_quietly(stream: Any) -> None:
    """Close an SDK stream (``close()`` where it has one), ignoring any error."""
    close = getattr(stream, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()


class ThreadStream(Generic[T]):
    """``async for item in ThreadStream(open_stream, convert, flush, name)``; ``close()`` to stop early.

    ``open_stream()`` is called in the thread and returns the blocking iterator; each chunk it yields
    becomes zero or more items through ``convert``; ``flush()`` gives the last items once it ends.
    ``ready(stop)``, when given, is called in the thread first and may block until the stream can be
    opened; it answers False when ``stop`` was set meanwhile (nothing is opened then). ``interrupt(stream)``
    wakes the thread blocked reading ``stream`` from another thread (default: close it); the thread
    itself always closes the stream when it ends.
    """

    def __init__(
        self,
        open_stream: Callable[[], Iterable[Any]],
        convert: Callable[[Any], Iterable[T]],
        flush: Callable[[], Iterable[T]],
        name: str,
        *,
        ready: Callable[[threading.Event], bool] | None = None,
        interrupt: Callable[[Any], None] = close_quietly,
    ) -> None:
        self._open_stream = open_stream
        self._convert = convert
        self._flush = flush
        self._name = name
        self._ready = ready
        self._interrupt = interrupt
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._stream: Any = None

    def _put(
        self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[tuple[str, Any]], item: tuple[str, Any]
    ) -> bool:
        """Hand ``item`` to the loop, blocking while the queue is full; False once stopped."""
        try:
            future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        except RuntimeError:  # the loop is closed
            return False
        while not self._stop.is_set():
            try:
                future.result(timeout=0.25)
                return True
            except concurrent.futures.TimeoutError:
                continue
            except Exception:
                return False
        future.cancel()
        return False

    def _pump(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[tuple[str, Any]]) -> None:
        stream = None
        try:
            if self._ready is not None and not self._ready(self._stop):
                return
            stream = self._open_stream()
            with self._lock:
                self._stream = stream
            if self._stop.is_set():
                return
            for chunk in stream:
                for item in self._convert(chunk):
                    if not self._put(loop, queue, ("item", item)):
                        return
                if self._stop.is_set():
                    return
            for item in self._flush():
                self._put(loop, queue, ("item", item))
            self._put(loop, queue, ("end", None))
        except BaseException as exc:  # noqa: B036 - handed to the consumer
            if not self._stop.is_set():
                self._put(loop, queue, ("error", exc))
        finally:
            if stream is not None:
                close_quietly(stream)

    def close(self) -> None:
        """Stop reading: the thread ends at its next chunk, or at once when blocked on the socket."""
        self._stop.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            self._interrupt(stream)  # wakes the thread blocked on the socket

    async def __aiter__(self) -> AsyncIterator[T]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=QUEUE_ITEMS)
        thread = threading.Thread(target=self._pump, args=(loop, queue), name=self._name, daemon=True)
        thread.start()
        try:
            while True:
                what, value = await queue.get()
                if what == "item":
                    yield value
                elif what == "end":
                    return
                else:
                    raise value
        finally:
            self.close()

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
import collections
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


class _Handoff(Generic[T]):
    """A bounded thread-to-loop queue: ``put`` from one thread, ``await get()`` on the loop.

    Cheaper than ``asyncio.run_coroutine_threadsafe(queue.put(...))`` per item (a task, a future
    and a thread wake-up each): the producer appends under a lock and wakes the loop
    (``call_soon_threadsafe``) only when the consumer is waiting; a semaphore bounds what is
    unread, so a slow consumer blocks the producer (backpressure).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int) -> None:
        self._loop = loop
        self._items: collections.deque[T] = collections.deque()
        self._space = threading.Semaphore(capacity)
        self._lock = threading.Lock()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: T, stop: threading.Event) -> bool:
        """Append ``item`` (blocking while full); False when ``stop`` is set or the loop is closed."""
        while not self._space.acquire(timeout=0.25):
            if stop.is_set():
                return False
        if stop.is_set():
            return False
        with self._lock:
            self._items.append(item)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            try:
                self._loop.call_soon_threadsafe(_wake, waiter)
            except RuntimeError:  # the loop is closed
                return False
        return True

    async def get(self) -> T:
        """The next item, waiting for one."""
        while True:
            with self._lock:
                if self._items:
                    item = self._items.popleft()
                    self._space.release()
                    return item
                waiter = self._waiter = self._loop.create_future()
            await waiter


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


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

    def _put(self, handoff: _Handoff[tuple[str, Any]], item: tuple[str, Any]) -> bool:
        """Hand ``item`` to the loop, blocking while the consumer is ``QUEUE_ITEMS`` behind; False once
        stopped or once the loop is closed."""
        return handoff.put(item, self._stop)

    def _pump(self, queue: _Handoff[tuple[str, Any]]) -> None:
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
                    if not self._put(queue, ("item", item)):
                        return
                if self._stop.is_set():
                    return
            for item in self._flush():
                self._put(queue, ("item", item))
            self._put(queue, ("end", None))
        except BaseException as exc:  # noqa: B036 - handed to the consumer
            if not self._stop.is_set():
                self._put(queue, ("error", exc))
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
        queue: _Handoff[tuple[str, Any]] = _Handoff(asyncio.get_running_loop(), QUEUE_ITEMS)
        thread = threading.Thread(target=self._pump, args=(queue,), name=self._name, daemon=True)
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

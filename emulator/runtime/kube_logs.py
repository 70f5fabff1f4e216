"""The Kubernetes runtime's log follower: ``pods/log?follow=true`` read in a thread (``_stream.ThreadStream``).

No client import: ``runtime/kubernetes.py`` hands in ``open_log()`` (the HTTP response of the follow
request) and ``started()`` (whether the Pod's container has started: the API server refuses to follow one
that has not, so the thread waits for it first). Stopping early shuts the response's socket down, which
wakes the blocked reader (closing it from another thread would wait for the reader's lock).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

from emulator.runtime._stream import ThreadStream
from emulator.runtime.kube_watch import close_response, interrupt, iter_lines

STARTED_POLL_S = 0.05  # the first look again; then doubling up to STARTED_POLL_MAX_S
STARTED_POLL_MAX_S = 1.0


class _LogBody:
    """The follow response as an iterable of lines, closed by the reading thread."""

    def __init__(self, response: Any) -> None:
        self.response = response

    def __iter__(self) -> Iterator[str]:
        return iter_lines(self.response)

    def close(self) -> None:
        close_response(self.response)

    def interrupt(self) -> None:
        interrupt(self.response)


async def wait_started(started: Callable[[], bool]) -> None:
    """Until ``started()`` (looked at after 0.05 s, then doubling up to 1 s): a Pod the scheduler queues
    may wait for minutes, and 600 queued Pods must not cost 600 polling threads."""
    delay_s = STARTED_POLL_S
    while not started():
        await asyncio.sleep(delay_s)
        delay_s = min(delay_s * 2, STARTED_POLL_MAX_S)


def follow_pod_log(
    open_log: Callable[[], Any], started: Callable[[], bool], name: str = "kube-log-stream"
) -> ThreadStream[str]:
    """The Pod's log lines as they come (``async for line in …``), once ``started()`` is true.

    Errors of ``open_log`` or of the read reach the consumer as they are (the adapter translates them).
    """

    def ready(stop: threading.Event) -> bool:
        delay_s = STARTED_POLL_S
        while not started():
            if stop.wait(delay_s):
                return False
            delay_s = min(delay_s * 2, STARTED_POLL_MAX_S)
        return True

    def lines(chunk: str) -> tuple[str, ...]:
        return (chunk,)

    return ThreadStream(
        lambda: _LogBody(open_log()),
        lines,
        tuple,
        name,
        ready=ready,
        interrupt=lambda body: body.interrupt(),
    )

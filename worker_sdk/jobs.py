"""Handler kinds, result shaping and error payloads (protocol.md sections 3.7 and 3.8), and running a handler."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import traceback
from typing import TYPE_CHECKING

from . import __version__, log
from .threads import JobThread

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
    from typing import Any

    Handler = Callable[..., Any]
    Emit = Callable[[Any], Awaitable[None]]
    AnyGenerator = Generator[Any, Any, Any] | AsyncGenerator[Any, Any]

SYNC, ASYNC, GENERATOR, ASYNC_GENERATOR = "sync", "async", "generator", "async_generator"
_END = object()


def handler_kind(handler: object) -> str:
    """Classify a handler (a function, a partial, or an object with ``__call__``)."""
    for candidate in (handler, getattr(handler, "__call__", None)):  # noqa: B004 - the method itself
        if candidate is None:
            continue
        if inspect.isasyncgenfunction(candidate):
            return ASYNC_GENERATOR
        if inspect.isgeneratorfunction(candidate):
            return GENERATOR
        if inspect.iscoroutinefunction(candidate):
            return ASYNC
    return SYNC


def shape_return(value: Any) -> dict[str, Any]:
    """A non-generator handler's return value -> the body posted to job-done."""
    result: dict[str, Any] = {}
    if isinstance(value, dict):
        value = dict(value)
        error = value.pop("error", None)
        refresh = value.pop("refresh_worker", None)
        if value:
            result["output"] = value
        if error:
            result["error"] = error
        if refresh:
            result["stopPod"] = True
    else:
        result["output"] = value
    return result


_SDK_DIR = os.path.dirname(os.path.abspath(__file__))


def format_traceback(exc: BaseException) -> str:
    """The exception's traceback without the SDK's own leading frames (they only show plumbing)."""
    tb = exc.__traceback__
    while tb is not None and os.path.dirname(os.path.abspath(tb.tb_frame.f_code.co_filename)) == _SDK_DIR:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


def error_payload(
    exc: BaseException, worker_id: str | None = None, hostname: str | None = None
) -> dict[str, Any]:
    """``{"error": json.dumps({...})}`` for an uncaught handler exception."""
    info = {
        "error_type": str(type(exc)),
        "error_message": str(exc),
        "error_traceback": format_traceback(exc),
        "hostname": hostname or os.environ.get("RUNPOD_POD_HOSTNAME") or "unknown",
        "worker_id": worker_id or os.environ.get("RUNPOD_POD_ID") or "unknown",
        "runpod_version": __version__,
    }
    return {"error": json.dumps(info)}


def is_error_item(item: object) -> bool:
    return isinstance(item, dict) and bool(item.get("error"))


class Execution:
    """Runs one job's handler: sync code in a JobThread, async code on the loop.

    ``emit(item)`` is awaited for every streamed item, in order, before the next item is pulled.
    ``run()`` returns ``(result_body, is_stream)``; a handler exception becomes an error body.
    """

    def __init__(
        self,
        handler: Handler,
        kind: str,
        job: dict[str, Any],
        emit: Emit,
        aggregate: bool,
        worker_id: str | None = None,
        hostname: str | None = None,
    ) -> None:
        self.handler, self.kind, self.job = handler, kind, job
        self.emit, self.aggregate = emit, aggregate
        self.worker_id, self.hostname = worker_id, hostname
        self.thread: JobThread | None = None

    def _thread(self) -> JobThread:
        if self.thread is None:
            name = "job-{}".format(self.job.get("id"))
            self.thread = JobThread(asyncio.get_running_loop(), name)
        return self.thread

    def _error(self, exc: BaseException) -> dict[str, Any]:
        log.error(f"handler raised {type(exc).__name__}: {exc}", self.job.get("id"))
        return error_payload(exc, self.worker_id, self.hostname)

    async def run(self) -> tuple[dict[str, Any], bool]:
        streaming = False
        value: Any  # whatever the handler returned or its generator
        try:
            if self.kind == ASYNC_GENERATOR:
                value = self.handler(self.job)
            elif self.kind in (SYNC, GENERATOR):
                value = await self._thread().call(self.handler, self.job)
            else:
                value = await self.handler(self.job)
            while inspect.isawaitable(value):  # e.g. a sync callable that returned a coroutine
                value = await value
            streaming = inspect.isgenerator(value) or inspect.isasyncgen(value)
        except Exception as exc:
            return self._error(exc), False
        finally:
            if not streaming and self.thread is not None:
                self.thread.close()  # the thread ends once the handler returns, even if the job was stopped
        if inspect.isasyncgen(value):
            return await self._stream(value, True), True
        if streaming:
            return await self._stream(value, False), True
        return shape_return(value), False

    async def _stream(self, gen: AnyGenerator, is_async: bool) -> dict[str, Any]:
        collected: list[Any] = []
        item: Any
        try:
            while True:
                try:
                    if is_async:
                        assert inspect.isasyncgen(gen)
                        item = await gen.__anext__()
                    else:
                        item = await self._thread().call(next, gen, _END)
                except StopAsyncIteration:
                    item = _END
                except Exception as exc:
                    return self._error(exc)
                if item is _END:
                    return {"output": collected if self.aggregate else []}
                if is_error_item(item):
                    log.warn("generator yielded an error; the job fails", self.job.get("id"))
                    return {"error": str(item["error"])}
                try:
                    await self.emit(item)
                except JobGone:
                    raise
                except Exception as exc:  # e.g. an item that is not JSON serializable
                    return self._error(exc)
                if self.aggregate:
                    collected.append(item)
        finally:
            await self._close(gen, is_async)

    async def _close(self, gen: AnyGenerator, is_async: bool) -> None:
        if is_async:
            assert inspect.isasyncgen(gen)
            with contextlib.suppress(Exception, asyncio.CancelledError):  # the job is over either way
                await gen.aclose()
        elif self.thread is not None and inspect.isgenerator(gen):
            self.thread.close(last_call=gen.close)


class JobGone(Exception):
    """The control plane answered 404/409/410 to a stream chunk: the job is over for it."""

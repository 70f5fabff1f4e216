"""The OpenAI-compatible passthrough's use cases: a request becomes a job, then an answer or a stream.

RunPod's behaviour (docs: serverless/vllm/openai-compatibility, serverless/endpoints/send-requests;
worker-vllm ``src/handler.py``) and the shapes are described in ``openai_frames``. This module does
the waiting, on the job service's own machinery: ``JobService.submit`` (a sync job, with the
endpoint's queue bound), ``JobService.wait_terminal`` and ``JobService.stream`` (parked on the hub:
a worker's chunk wakes the waiting request at once, no polling interval).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import structlog

from emulator.errors import EmulatorError, NotFound
from emulator.models import Endpoint, JobRequest, JobStatus
from emulator.service import metrics
from emulator.service.core import Core
from emulator.service.jobs import JobService
from emulator.service.openai_frames import (
    DONE_FRAME,
    OpenAIError,
    StreamStats,
    error_in_output,
    has_done,
    job_error,
    job_input,
    response_body,
    sse_frames,
    wants_stream,
)
from emulator.store.records import JobRecord

log = structlog.get_logger("emulator.openai")


class StreamStart:
    """What a streamed call knows before its status line: the job's status, its first chunks, error."""

    def __init__(self, status: JobStatus, chunks: list[Any], error: str | None) -> None:
        self.status = status
        self.chunks = chunks
        self.error = error


class OpenAIPassthrough:
    """Runs ``/v2/{endpoint_id}/openai/{path}`` calls as jobs on the endpoint's queue.

    Stateless apart from the ``Core`` and ``JobService`` it is given; one per request is fine."""

    def __init__(self, core: Core, jobs: JobService) -> None:
        self.core = core
        self.jobs = jobs

    @property
    def wait_s(self) -> float:
        """How long a call waits for the job's end (or, streamed, for each next chunk): seconds."""
        return self.core.settings.openai_wait_s

    # --- submit ----------------------------------------------------------------------------------
    def submit(self, endpoint: Endpoint, path: str, body: Any, has_body: bool) -> JobRecord:
        """Queue the job for one call. ``path`` is the URL after ``/openai/``; ``body`` the parsed JSON
        body (``has_body`` false: none). Raises ``QueueFull`` like ``/runsync``."""
        stream = wants_stream(body)
        job = self.jobs.submit(endpoint, JobRequest(input=job_input(path, body, has_body)), sync=True)
        route = job.input["openai_route"]
        self.core.jobs.set_openai(job.id, {"route": route, "stream": stream})
        log.info(
            "openai call queued", endpoint=endpoint.id, job=job.id, worker=None, route=route, stream=stream
        )
        return job

    # --- an answer -------------------------------------------------------------------------------
    async def answer(self, endpoint_id: str, job_id: str) -> Any | OpenAIError:
        """Wait for the job's end; its output as the HTTP body, or the ``OpenAIError`` to answer.

        A job not finished within ``wait_s`` is cancelled (nobody will read its result) and answers
        504; a job purged or deleted meanwhile raises ``NotFound``."""
        job = await self.jobs.wait_terminal(endpoint_id, job_id, self.wait_s)
        if not job.status.terminal:
            return self.give_up(endpoint_id, job_id, f"no answer within {self.wait_s:g} s")
        if job.status != JobStatus.COMPLETED:
            return job_error(job.status.value, job.error)
        chunks = self.core.streams.all_chunks(job.id) if job.output is None else []
        body = response_body(job.output, chunks)
        return error_in_output(body) or body

    def give_up(self, endpoint_id: str, job_id: str, why: str) -> OpenAIError:
        """The error for a call that waited ``wait_s`` in vain (its job is cancelled), or 503 when the
        emulator is shutting down."""
        if self.core.hub.closing:
            return OpenAIError(503, "the emulator is shutting down", "server_error", "shutting_down")
        self.cancel(endpoint_id, job_id, why)
        return OpenAIError(504, f"{why}; the job was cancelled", "timeout_error", "no_answer")

    def cancel(self, endpoint_id: str, job_id: str, why: str) -> None:
        """Cancel the job when it has not ended (the client went away, or waited too long)."""
        try:
            job = self.jobs.require(endpoint_id, job_id)
            if not job.status.terminal:
                self.jobs.cancel(endpoint_id, job_id)
                log.info(
                    "openai call cancelled",
                    endpoint=endpoint_id,
                    job=job_id,
                    worker=job.worker_id,
                    reason=why,
                )
        except EmulatorError:  # gone already
            pass

    # --- a stream --------------------------------------------------------------------------------
    async def next_chunks(self, endpoint_id: str, job_id: str) -> StreamStart:
        """Wait (up to ``wait_s``) for chunks not yet written, or the job's end. Raises ``NotFound``."""
        job, chunks = await self.jobs.stream(endpoint_id, job_id, self.wait_s)
        return StreamStart(job.status, chunks, job.error)

    async def open_stream(
        self, endpoint_id: str, job_id: str, stats: StreamStats
    ) -> StreamStart | OpenAIError:
        """What a streamed call answers before its status line: its first chunks (the stream goes on
        with ``events``), or the HTTP error when the job ended without a chunk (FAILED, TIMED_OUT,
        CANCELLED) or none came within ``wait_s`` (the job is cancelled). Waiting for the first chunk
        means a job failing early is an error the client raises, not a 200 with an error event.
        Raises ``NotFound`` when the job is purged meanwhile."""
        start = await self.next_chunks(endpoint_id, job_id)
        if start.chunks or start.status == JobStatus.COMPLETED:
            return start
        self.record(endpoint_id, job_id, stats)
        if start.status.terminal:
            return job_error(start.status.value, start.error)
        return self.give_up(endpoint_id, job_id, f"no stream chunk within {self.wait_s:g} s")

    async def events(
        self, endpoint_id: str, job_id: str, start: StreamStart, stats: StreamStats
    ) -> AsyncIterator[bytes]:
        """The SSE body of a streamed call, from ``start`` on: each chunk the worker yields is written
        as it is stored (``openai_frames.sse_frames``); a completed job's stream ends with ``data:
        [DONE]`` (the worker's own, or one added when it sent none); a failure after the first chunk
        is an error event. When the client goes away before the end, the job is cancelled."""
        ended = False
        done_sent = False
        current = start
        try:
            while True:
                for chunk in current.chunks:
                    data = b"".join(sse_frames(chunk))
                    done_sent = done_sent or has_done(data)
                    stats.chunk(self.core.clock.monotonic())
                    yield data
                if current.status.terminal:
                    ended = True
                    async for tail in self._ending(endpoint_id, job_id, current, stats, done_sent):
                        yield tail
                    return
                if not current.chunks:  # waited wait_s for nothing, or the emulator is closing
                    error = self.give_up(endpoint_id, job_id, f"no stream chunk within {self.wait_s:g} s")
                    ended = True
                    yield error.frame()
                    return
                current = await self.next_chunks(endpoint_id, job_id)
        except NotFound as exc:
            ended = True
            yield OpenAIError(404, exc.message, "not_found_error", "job_not_found").frame()
        finally:
            if not ended:
                self.cancel(endpoint_id, job_id, "the client closed the stream")
            self.record(endpoint_id, job_id, stats)

    async def _ending(
        self, endpoint_id: str, job_id: str, last: StreamStart, stats: StreamStats, done_sent: bool
    ) -> AsyncIterator[bytes]:
        if last.status != JobStatus.COMPLETED:
            yield job_error(last.status.value, last.error).frame()
            return
        if stats.chunks == 0:  # the worker answered in one piece: send that as the stream
            job = self.jobs.require(endpoint_id, job_id)
            body = response_body(job.output, [])
            if body is not None:
                data = b"".join(sse_frames(body))
                done_sent = has_done(data)
                stats.chunk(self.core.clock.monotonic())
                yield data
        if not done_sent:
            yield DONE_FRAME

    def record(self, endpoint_id: str, job_id: str, stats: StreamStats) -> None:
        """Keep the call's stream figures with the job (``openai`` in its status body) and in metrics."""
        summary = stats.summary()
        try:
            self.core.jobs.set_openai(job_id, summary)
        except Exception:  # the job may be gone (purged, endpoint deleted): figures are best effort
            log.debug("openai stream figures not kept", endpoint=endpoint_id, job=job_id)
        metrics.openai_stream(self.core, endpoint_id, stats.ttft_ms, stats.chunks_per_s)
        log.info(
            "openai stream ended",
            endpoint=endpoint_id,
            job=job_id,
            chunks=stats.chunks,
            ttft_ms=stats.ttft_ms,
            chunks_per_s=stats.chunks_per_s,
        )

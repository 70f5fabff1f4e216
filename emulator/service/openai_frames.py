"""Pure decisions of the OpenAI-compatible passthrough (``/v2/{endpoint_id}/openai/*``): no I/O here.

What RunPod does (docs: serverless/vllm/openai-compatibility; worker-vllm ``src/handler.py`` and
``src/engine.py``, which read ``openai_route`` and ``openai_input`` from the job input):

* the request becomes a job whose input is ``{"openai_route": "/v1/...", "openai_input": <body>}``,
  without ``openai_input`` when the request has no body (``GET /openai/v1/models``);
* a call without ``"stream": true`` answers the job's output as the HTTP body; worker-vllm runs with
  ``return_aggregate_stream`` and yields its answer once, so the output is a one-element list, which
  is unwrapped;
* a streamed call answers ``text/event-stream``: text chunks that are already SSE (``data: ...``) are
  written verbatim, other chunks as ``data: <json>``;
* errors are bodies an OpenAI client reads: ``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

DONE_FRAME = b"data: [DONE]\n\n"
_SSE_FIELD = re.compile(r"^(data|event|id|retry)?:")  # an SSE line: "data: ...", "event: ...", ": comment"
_DONE_LINE = re.compile(r"^data:\s?\[DONE\]\s*$", re.MULTILINE)


def job_input(path: str, body: Any = None, has_body: bool = False) -> dict[str, Any]:
    """The job input for a request to ``/openai/{path}``.

    ``path`` is the rest of the URL after ``/openai/`` (``"v1/chat/completions"``); the route in the
    job has one leading slash (``"/v1/chat/completions"``), as worker-vllm compares it. ``body`` is
    the parsed JSON body, left out when ``has_body`` is false."""
    value: dict[str, Any] = {"openai_route": "/" + path.lstrip("/")}
    if has_body:
        value["openai_input"] = body
    return value


def wants_stream(body: Any) -> bool:
    """True when the OpenAI request asks for server-sent events (``"stream": true`` in a JSON object)."""
    return isinstance(body, dict) and body.get("stream") is True


def _frame_text(text: str) -> bytes:
    """A text chunk: verbatim when it is already SSE (worker-vllm's raw output), else one data event."""
    if _SSE_FIELD.match(text.lstrip("\r\n")):
        if not text.endswith("\n\n"):
            text += "\n" if text.endswith("\n") else "\n\n"
        return text.encode()
    lines = text.replace("\r\n", "\n").split("\n")
    return ("".join(f"data: {line}\n" for line in lines) + "\n").encode()


def sse_frames(chunk: Any) -> list[bytes]:
    """The SSE bytes for one stream chunk a worker yielded.

    A string is written as it is when it is SSE already (``"data: {...}\\n\\n"``, possibly several
    events batched, as worker-vllm's ``RAW_OPENAI_OUTPUT`` sends), else as ``data: <text>``; a list
    (worker-vllm's batched chunk objects when raw output is off) gives one event per item; anything
    else is one ``data: <json>`` event. The answer is a list of byte strings, each one or more
    complete events ending with a blank line."""
    if isinstance(chunk, str):
        return [_frame_text(chunk)]
    if isinstance(chunk, list):
        return [frame for item in chunk for frame in sse_frames(item)]
    return [b"data: " + json.dumps(chunk, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"]


def has_done(frame: bytes) -> bool:
    """True when ``frame`` holds the ``data: [DONE]`` event that ends an OpenAI stream."""
    return _DONE_LINE.search(frame.decode(errors="replace")) is not None


def response_body(output: Any, chunks: list[Any]) -> Any:
    """The HTTP body of a call without streaming, from the job's ``output`` and its stream ``chunks``.

    A one-element list is unwrapped (``return_aggregate_stream`` output); a job that only streamed
    (its output is null) answers its chunk, or its list of chunks."""
    if output is None and chunks:
        output = chunks
    if isinstance(output, list) and len(output) == 1:
        return output[0]
    return output


@dataclass(frozen=True)
class OpenAIError:
    """An error as OpenAI clients read it: HTTP ``status_code`` and ``{"error": {...}}`` as the body."""

    status_code: int
    message: str
    type: str
    code: str | int | None = None

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code}}

    def frame(self) -> bytes:
        """The error as one SSE event, for a stream whose status line has gone out already (the
        ``openai`` package raises an ``APIError`` for a data event with an ``error`` field)."""
        return b"data: " + json.dumps(self.body(), ensure_ascii=False).encode() + b"\n\n"


def _status_from(code: Any, default: int) -> int:
    return code if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599 else default


def error_in_output(value: Any) -> OpenAIError | None:
    """An error object a worker answered as its output, else None.

    vLLM's ``ErrorResponse`` (``{"object": "error", "message", "type", "code": 400}``, which
    worker-vllm yields for a bad request) and OpenAI's own shape (``{"error": {"message", "type",
    "code"}}``) both count; their integer ``code`` becomes the HTTP status (else 400)."""
    if not isinstance(value, dict):
        return None
    if value.get("object") == "error" and isinstance(value.get("message"), str):
        code = value.get("code")
        return OpenAIError(
            _status_from(code, 400), value["message"], str(value.get("type") or "invalid_request_error"), code
        )
    inner = value.get("error")
    if len(value) == 1 and isinstance(inner, dict) and isinstance(inner.get("message"), str):
        code = inner.get("code")
        return OpenAIError(
            _status_from(code, 400), inner["message"], str(inner.get("type") or "invalid_request_error"), code
        )
    return None


def handler_error(error: str | None) -> OpenAIError:
    """The HTTP error for a FAILED job, from its ``error`` text.

    RunPod's SDK (and worker_sdk) report an uncaught exception as JSON with ``error_message``: that
    message is used. An error object in OpenAI's or vLLM's shape keeps its message, type and status.
    Anything else is the message as it is. Status 500, type ``server_error``, code ``handler_error``."""
    text = error or "the handler failed without a message"
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        found = error_in_output(parsed) or error_in_output({"error": parsed})
        if found is not None:
            return found
        message = parsed.get("error_message")
        if isinstance(message, str) and message:
            text = message
    return OpenAIError(500, text, "server_error", "handler_error")


def job_error(status: str, error: str | None) -> OpenAIError:
    """The HTTP error for a job that ended without an answer: FAILED, TIMED_OUT or CANCELLED."""
    if status == "FAILED":
        return handler_error(error)
    if status == "TIMED_OUT":
        return OpenAIError(
            504, error or "the job exceeded its execution timeout", "timeout_error", "job_timed_out"
        )
    return OpenAIError(
        409, error or f"the job was {status.lower()}", "invalid_request_error", "job_cancelled"
    )


@dataclass
class StreamStats:
    """Time to first chunk and chunk rate of one streamed call.

    Times are monotonic seconds: ``started_s`` when the request came in, then ``chunk(now_s)`` for each
    chunk written to the client. ``summary()`` answers ``{"chunks", "ttftMs", "chunksPerS",
    "streamMs"}`` (``ttftMs`` from the request to the first chunk; ``chunksPerS`` over the chunks after
    the first, from the first to the last, None with fewer than two)."""

    started_s: float
    chunks: int = 0
    first_s: float | None = None
    last_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def chunk(self, now_s: float) -> None:
        self.chunks += 1
        if self.first_s is None:
            self.first_s = now_s
        self.last_s = now_s

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_s is None else round((self.first_s - self.started_s) * 1000, 1)

    @property
    def chunks_per_s(self) -> float | None:
        if self.first_s is None or self.last_s is None or self.chunks < 2 or self.last_s <= self.first_s:
            return None
        return round((self.chunks - 1) / (self.last_s - self.first_s), 2)

    def summary(self) -> dict[str, Any]:
        stream_ms = None if self.last_s is None else round((self.last_s - self.started_s) * 1000, 1)
        return {
            "chunks": self.chunks,
            "ttftMs": self.ttft_ms,
            "chunksPerS": self.chunks_per_s,
            "streamMs": stream_ms,
            **self.extra,
        }

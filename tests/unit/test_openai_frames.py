"""The OpenAI passthrough's pure decisions: job input, SSE framing, answers and error mapping, figures."""

from __future__ import annotations

import json

import pytest

from emulator.service.openai_frames import (
    DONE_FRAME,
    OpenAIError,
    StreamStats,
    error_in_output,
    handler_error,
    has_done,
    job_error,
    job_input,
    response_body,
    sse_frames,
    wants_stream,
)


def test_job_input_has_the_route_and_the_body_only_when_there_is_one() -> None:
    assert job_input("v1/models") == {"openai_route": "/v1/models"}
    assert job_input("v1/chat/completions", {"a": 1}, True) == {
        "openai_route": "/v1/chat/completions",
        "openai_input": {"a": 1},
    }
    assert job_input("/v1/x", None, True) == {
        "openai_route": "/v1/x",
        "openai_input": None,
    }  # a JSON null body


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"stream": True}, True),
        ({"stream": False}, False),
        ({"stream": "true"}, False),
        ({}, False),
        ([{"stream": True}], False),
        (None, False),
    ],
)
def test_only_a_json_true_stream_streams(body: object, expected: bool) -> None:
    assert wants_stream(body) is expected


def test_sse_text_goes_out_verbatim_and_is_completed_to_an_event_end() -> None:
    batch = 'data: {"a":1}\n\ndata: {"a":2}\n\n'
    assert sse_frames(batch) == [batch.encode()]
    assert sse_frames('data: {"a":1}') == [b'data: {"a":1}\n\n']
    assert sse_frames('data: {"a":1}\n') == [b'data: {"a":1}\n\n']
    assert sse_frames("event: ping\ndata: x\n\n") == [b"event: ping\ndata: x\n\n"]
    assert sse_frames(": keep-alive\n\n") == [b": keep-alive\n\n"]


def test_plain_text_objects_and_lists_become_data_events() -> None:
    assert sse_frames("hello") == [b"data: hello\n\n"]
    assert sse_frames("two\nlines") == [b"data: two\ndata: lines\n\n"]
    assert sse_frames({"é": 1}) == ['data: {"é":1}\n\n'.encode()]
    assert sse_frames([{"a": 1}, "data: [DONE]\n\n"]) == [b'data: {"a":1}\n\n', DONE_FRAME]
    assert sse_frames(3) == [b"data: 3\n\n"]


def test_done_is_found_only_as_its_own_data_line() -> None:
    assert (
        has_done(DONE_FRAME)
        and has_done(b'data: {"a":1}\n\ndata: [DONE]\n\n')
        and has_done(b"data:[DONE]\n\n")
    )
    assert not has_done(b'data: {"text":"[DONE]"}\n\n')


def test_response_body_unwraps_an_aggregated_answer() -> None:
    assert response_body([{"id": "x"}], []) == {"id": "x"}
    assert response_body({"id": "x"}, []) == {"id": "x"}
    assert response_body([1, 2], []) == [1, 2]
    assert response_body(None, [{"id": "y"}]) == {"id": "y"}  # streamed only, no aggregate
    assert response_body(None, []) is None


def test_error_objects_in_an_output() -> None:
    vllm = {"object": "error", "message": "bad model", "type": "NotFoundError", "param": None, "code": 404}
    assert error_in_output(vllm) == OpenAIError(404, "bad model", "NotFoundError", 404)
    openai_shape = {
        "error": {"message": "too long", "type": "invalid_request_error", "code": "context_length"}
    }
    assert error_in_output(openai_shape) == OpenAIError(
        400, "too long", "invalid_request_error", "context_length"
    )
    assert error_in_output({"object": "error", "message": "m", "code": 200}) == OpenAIError(
        400, "m", "invalid_request_error", 200
    )
    assert (
        error_in_output({"id": "x", "error": {"message": "m"}}) is None
    )  # an answer that has an error field
    assert error_in_output({"object": "chat.completion"}) is None and error_in_output("error") is None


def test_handler_errors_keep_the_handlers_message() -> None:
    sdk = json.dumps(
        {"error_type": "<class 'ValueError'>", "error_message": "boom", "error_traceback": "..."}
    )
    assert handler_error(sdk) == OpenAIError(500, "boom", "server_error", "handler_error")
    assert handler_error("plain words") == OpenAIError(500, "plain words", "server_error", "handler_error")
    assert (
        handler_error(json.dumps({"message": "nope", "type": "BadRequestError", "code": 400})).status_code
        == 400
    )
    assert handler_error(None).message == "the handler failed without a message"
    assert handler_error("[1, 2]").message == "[1, 2]"


def test_job_endings_map_to_statuses() -> None:
    assert job_error("FAILED", "x").status_code == 500
    assert (
        job_error("TIMED_OUT", None).status_code == 504
        and job_error("TIMED_OUT", None).code == "job_timed_out"
    )
    assert job_error("CANCELLED", None) == OpenAIError(
        409, "the job was cancelled", "invalid_request_error", "job_cancelled"
    )
    body = job_error("FAILED", "x").body()
    assert body == {"error": {"message": "x", "type": "server_error", "code": "handler_error"}}
    assert job_error("FAILED", "x").frame() == b"data: " + json.dumps(body).encode() + b"\n\n"


def test_stream_figures() -> None:
    stats = StreamStats(started_s=100.0, extra={"route": "/v1/completions"})
    assert stats.summary() == {
        "chunks": 0,
        "ttftMs": None,
        "chunksPerS": None,
        "streamMs": None,
        "route": "/v1/completions",
    }
    stats.chunk(100.25)
    assert stats.ttft_ms == 250.0 and stats.chunks_per_s is None  # one chunk: no rate
    for t in (100.5, 100.75, 101.25):
        stats.chunk(t)
    assert stats.summary() == {
        "chunks": 4,
        "ttftMs": 250.0,
        "chunksPerS": 3.0,
        "streamMs": 1250.0,
        "route": "/v1/completions",
    }

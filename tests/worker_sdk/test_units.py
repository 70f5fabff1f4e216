"""Pure pieces: URL building from RunPod's env vars, result shaping, error payloads, the HTTP client."""

import asyncio
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from worker_sdk import jobs, transport
from worker_sdk.config import Settings, add_query
from worker_sdk.transport import TransportError, request

BASE = "http://cp:8000/v2/ep"
ENV = {
    "RUNPOD_WEBHOOK_GET_JOB": BASE + "/job-take/$ID?gpu=local",
    "RUNPOD_WEBHOOK_POST_OUTPUT": BASE + "/job-done/$RUNPOD_POD_ID/$ID?gpu=local",
    "RUNPOD_WEBHOOK_POST_STREAM": BASE + "/job-stream/$RUNPOD_POD_ID/$ID?gpu=local",
    "RUNPOD_WEBHOOK_PING": BASE + "/ping/$RUNPOD_POD_ID?gpu=local",
    "RUNPOD_POD_ID": "w-1",
    "RUNPOD_AI_API_KEY": "secret",
    "RUNPOD_PING_INTERVAL": "2500",
    "RUNPOD_POD_HOSTNAME": "host-1",
}


def test_add_query_handles_question_mark_or_not() -> None:
    assert add_query("http://x/a?gpu=1", "b=2") == "http://x/a?gpu=1&b=2"
    assert add_query("http://x/a", "b=2") == "http://x/a?b=2"
    assert add_query("http://x/a?", "b=2") == "http://x/a?b=2"
    assert add_query("http://x/a?c=1&", "b=2") == "http://x/a?c=1&b=2"


def test_urls_from_runpod_env() -> None:
    s = Settings(ENV)
    assert s.take_url(1, False) == BASE + "/job-take/w-1?gpu=local&job_in_progress=0"
    assert s.take_url(3, True) == BASE + "/job-take-batch/w-1?gpu=local&batch_size=3&job_in_progress=1"
    assert s.stop_url(True) == BASE + "/job-stop/w-1?gpu=local&job_in_progress=1"
    assert s.done_url("j1", False) == BASE + "/job-done/w-1/j1?gpu=local&isStream=false"
    assert s.done_url("j1", True) == BASE + "/job-done/w-1/j1?gpu=local&isStream=true"
    assert s.stream_url("j1") == BASE + "/job-stream/w-1/j1?gpu=local&isStream=false"
    assert s.ping_url_for(()) == BASE + "/ping/w-1?gpu=local&runpod_version=0.1.0"
    assert s.ping_url_for(("a", "b")) == BASE + "/ping/w-1?gpu=local&job_id=a,b&runpod_version=0.1.0"
    assert s.headers()["Authorization"] == "secret"
    assert s.ping_interval_s == 2.5 and s.hostname == "host-1"


def test_templates_without_question_mark() -> None:
    env = {k: v.replace("?gpu=local", "") for k, v in ENV.items()}
    s = Settings(env)
    assert s.take_url(1, False) == BASE + "/job-take/w-1?job_in_progress=0"
    assert s.take_url(2, False) == BASE + "/job-take-batch/w-1?batch_size=2&job_in_progress=0"
    assert s.done_url("j", True) == BASE + "/job-done/w-1/j?isStream=true"


def test_defaults_and_derivations() -> None:
    s = Settings({"RUNPOD_WEBHOOK_GET_JOB": BASE + "/job-take/$ID?gpu=x", "RUNPOD_PING_INTERVAL": "200"})
    assert s.worker_id  # random uuid when RUNPOD_POD_ID is unset
    assert s.ping_interval_s == 1.0  # floor of one second
    assert s.ping_url is None
    assert s.done_url("j", False) == BASE + f"/job-done/{s.worker_id}/j?gpu=x&isStream=false"
    assert "Authorization" not in s.headers()
    assert s.grace_s == 25.0
    assert Settings({"WORKER_SDK_GRACE_S": "3"}).grace_s == 3.0
    odd = Settings({"RUNPOD_WEBHOOK_GET_JOB": "http://cp/next-job/$ID"})
    assert (
        odd.job_stop_url is None
        and not odd.can_batch
        and odd.take_url(4, False).startswith("http://cp/next-job/")
    )


@pytest.mark.parametrize(
    "value, expected",
    [
        ({"a": 1}, {"output": {"a": 1}}),
        ({"output": 1}, {"output": {"output": 1}}),  # RunPod's double-wrap, kept for compatibility
        ({"error": "x"}, {"error": "x"}),
        ({"error": "x", "partial": 2}, {"output": {"partial": 2}, "error": "x"}),
        ({"refresh_worker": True, "a": 1}, {"output": {"a": 1}, "stopPod": True}),
        ({}, {}),
        ([1, 2], {"output": [1, 2]}),
        ("s", {"output": "s"}),
        (False, {"output": False}),
        (None, {"output": None}),
    ],
)
def test_shape_return(value: Any, expected: dict[str, Any]) -> None:
    assert jobs.shape_return(value) == expected


def test_shape_return_does_not_mutate_handler_dict() -> None:
    value = {"error": "x", "a": 1}
    jobs.shape_return(value)
    assert value == {"error": "x", "a": 1}


def test_error_payload_fields() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        body = jobs.error_payload(exc, worker_id="w-9", hostname="h-9")
    info = json.loads(body["error"])
    assert info["error_type"] == "<class 'KeyError'>"
    assert info["error_message"] == "'missing'"
    assert "KeyError" in info["error_traceback"] and "test_units.py" in info["error_traceback"]
    assert info["hostname"] == "h-9" and info["worker_id"] == "w-9"


def test_handler_kind_detection() -> None:
    def s(job: dict[str, Any]) -> Any:
        return 1

    async def a(job: dict[str, Any]) -> Any:
        return 1

    def g(job: dict[str, Any]) -> Iterator[Any]:
        yield 1

    async def ag(job: dict[str, Any]) -> AsyncIterator[Any]:
        yield 1

    class Callable:
        async def __call__(self, job: dict[str, Any]) -> Any:
            return 1

    import functools

    assert [jobs.handler_kind(f) for f in (s, a, g, ag)] == ["sync", "async", "generator", "async_generator"]
    assert jobs.handler_kind(Callable()) == "async"
    assert jobs.handler_kind(functools.partial(g)) == "generator"


# ---- the HTTP client --------------------------------------------------------------------------------
@pytest.fixture
async def pool_closed() -> AsyncIterator[None]:
    """Close the connections the test's event loop kept alive (the one-shot servers close their side)."""
    yield
    transport.close_idle()


def _one_shot_server(answer: bytes) -> tuple[int, dict[str, Any]]:
    """Accept one connection, read the request head, write ``answer`` raw, close. Returns (port, seen)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    seen: dict[str, Any] = {}  # head (str), body (bytes)

    def serve() -> None:
        conn, _ = srv.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = [
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ]
        while length and len(rest) < length[0]:
            rest += conn.recv(65536)
        seen["head"], seen["body"] = head.decode(), rest
        if answer:
            conn.sendall(answer)
        conn.close()
        srv.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(srv.getsockname()[1]), seen


@pytest.mark.usefixtures("pool_closed")
async def test_transport_content_length_and_request_shape() -> None:
    port, seen = _one_shot_server(
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n{"a": 1}'
    )
    r = await request(
        "POST",
        f"http://127.0.0.1:{port}/x/y?q=1&r=2",
        body=b'{"k":"v"}',
        headers={"Authorization": "tok"},
        timeout=5,
    )
    assert r.status == 200 and r.json() == {"a": 1}
    assert seen["head"].startswith("POST /x/y?q=1&r=2 HTTP/1.1\r\n")
    assert "Authorization: tok" in seen["head"] and seen["body"] == b'{"k":"v"}'


@pytest.mark.usefixtures("pool_closed")
async def test_transport_chunked_and_until_eof() -> None:
    port, _ = _one_shot_server(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\n[1, \r\n3;x=y\r\n2, \r\n2\r\n3]\r\n0\r\n\r\n"
    )
    assert (await request("GET", f"http://127.0.0.1:{port}/", timeout=5)).json() == [1, 2, 3]
    port, _ = _one_shot_server(b"HTTP/1.0 200 OK\r\n\r\nhello")
    assert (await request("GET", f"http://127.0.0.1:{port}/", timeout=5)).body == b"hello"
    port, _ = _one_shot_server(b"HTTP/1.1 204 No Content\r\n\r\n")
    r = await request("GET", f"http://127.0.0.1:{port}/", timeout=5)
    assert r.status == 204 and r.json() is None


@pytest.mark.usefixtures("pool_closed")
async def test_transport_errors() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(TransportError, match="refused"):
        await request("GET", f"http://127.0.0.1:{port}/", timeout=5)
    port, _ = _one_shot_server(b"")  # closes without answering
    with pytest.raises(TransportError):
        await request("GET", f"http://127.0.0.1:{port}/", timeout=5)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)  # accepts (backlog) but never answers
    try:
        with pytest.raises(TransportError, match="no answer"):
            await request("GET", f"http://127.0.0.1:{srv.getsockname()[1]}/", timeout=0.3)
    finally:
        srv.close()


async def test_transport_cancellation_is_clean() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        task = asyncio.ensure_future(request("GET", f"http://127.0.0.1:{srv.getsockname()[1]}/", timeout=30))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        srv.close()

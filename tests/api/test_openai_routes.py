"""RunPod's OpenAI-compatible routes over real HTTP, with the ``openai`` package as the client and a
worker driven by hand through the worker protocol (so each step, such as "the first chunk is read
before the last is produced", is ordered by the test, not by timing)."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from emulator.config import default_settings_for_tests
from emulator.testing import BackgroundControlPlane
from tests.helpers import ProtocolWorker, wait_for

KEY = "openai-test-key"


def client_for(plane: BackgroundControlPlane, endpoint: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{plane.client_url}/v2/{endpoint}/openai/v1", api_key=key, timeout=30)


class Call:
    """A blocking client call run in a thread; ``result()`` re-raises what it raised."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.value = fn()
        except BaseException as exc:  # handed to the test's thread
            self.error = exc

    def result(self, timeout_s: float = 30) -> Any:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the client call did not return"
        if self.error is not None:
            raise self.error
        return self.value


@pytest.fixture
def worker(plane: BackgroundControlPlane, endpoint: str) -> Iterator[ProtocolWorker]:
    w = ProtocolWorker(plane.client_url, endpoint)
    yield w
    w.close()


def job_detail(api: httpx.Client, endpoint: str, job_id: str) -> dict[str, Any]:
    r = api.get(f"/v1/endpoints/{endpoint}/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


CHAT = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi there"}, "finish_reason": "stop"}
    ],
}


def chunk(text: str, first: bool = False, finish: str | None = None) -> dict[str, Any]:
    delta = {"role": "assistant", "content": text} if first else ({"content": text} if text else {})
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def test_models_list_is_a_job_with_only_the_route(
    plane: BackgroundControlPlane, endpoint: str, worker: ProtocolWorker
) -> None:
    client = client_for(plane, endpoint)
    call = Call(lambda: client.models.list())
    job = worker.take_job()
    assert job["input"] == {"openai_route": "/v1/models"}
    assert job["id"].startswith("sync-")
    listing = {"object": "list", "data": [{"id": "emu-1", "object": "model", "created": 1, "owned_by": "me"}]}
    assert worker.done(job["id"], {"output": [listing]}).status_code == 200  # aggregated: a one-element list
    assert [m.id for m in call.result()] == ["emu-1"]


def test_chat_completion_plain_carries_the_body_and_answers_the_output(
    plane: BackgroundControlPlane, api: httpx.Client, endpoint: str, worker: ProtocolWorker
) -> None:
    client = client_for(plane, endpoint)
    messages = [{"role": "user", "content": "héllo"}]
    call = Call(lambda: client.chat.completions.create(model="m", messages=messages, max_tokens=5))  # type: ignore[arg-type]
    job = worker.take_job()
    assert job["input"] == {
        "openai_route": "/v1/chat/completions",
        "openai_input": {"model": "m", "messages": messages, "max_tokens": 5},
    }
    worker.done(job["id"], {"output": CHAT})
    answer = call.result()
    assert answer.choices[0].message.content == "hi there"
    detail = job_detail(api, endpoint, job["id"])
    assert detail["status"] == "COMPLETED" and detail["openai"] == {
        "route": "/v1/chat/completions",
        "stream": False,
    }


def test_stream_first_chunk_is_read_before_the_last_is_produced(
    plane: BackgroundControlPlane, api: httpx.Client, endpoint: str, worker: ProtocolWorker
) -> None:
    client = client_for(plane, endpoint)
    received: queue.Queue[Any] = queue.Queue()

    def consume() -> str:
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        )
        for part in stream:
            received.put(part)
        received.put(None)  # the stream ended
        return "ended"

    call = Call(consume)
    job = worker.take_job()
    assert job["input"]["openai_input"]["stream"] is True
    pieces = ["Hel", "lo", " wor", "ld"]
    hop_ms = []  # from the worker posting a chunk to the client holding its delta (figures, not checked)
    for i, piece in enumerate(pieces):
        posted = time.perf_counter()
        assert worker.stream(job["id"], chunk(piece, first=i == 0)).status_code == 200
        part = received.get(timeout=20)  # this chunk reached the client; the next one does not exist yet
        hop_ms.append(round((time.perf_counter() - posted) * 1000, 1))
        assert part is not None and part.choices[0].delta.content == piece
        assert api.get(f"/v2/{endpoint}/status/{job['id']}").json()["status"] == "IN_PROGRESS"
    worker.stream(job["id"], chunk("", finish="stop"))
    assert received.get(timeout=20).choices[0].finish_reason == "stop"
    worker.done(job["id"], {"output": None})
    assert received.get(timeout=20) is None
    assert call.result() == "ended"
    print(f"\nworker chunk POST to client delta: {hop_ms} ms")
    figures = wait_for(
        lambda: (
            job_detail(api, endpoint, job["id"]).get("openai", {}).get("chunks") == 5
            and job_detail(api, endpoint, job["id"])["openai"]
        ),
        what="stream figures",
    )
    assert figures["route"] == "/v1/chat/completions" and figures["stream"] is True
    assert figures["ttftMs"] > 0 and figures["chunksPerS"] > 0 and figures["streamMs"] >= figures["ttftMs"]
    dashboard = api.get("/v1/dashboard").json()
    row = next(j for e in dashboard["endpoints"] for j in e["jobs"] if j["id"] == job["id"])
    assert row["openai"] == figures  # the dashboard's recent jobs show them
    metrics = api.get("/metrics").text
    assert f'emulator_openai_ttft_seconds_count{{endpoint="{endpoint}"}} 1.0' in metrics
    assert f'emulator_openai_stream_chunks_per_second_count{{endpoint="{endpoint}"}} 1.0' in metrics


def test_stream_framing_verbatim_sse_text_objects_and_done(
    plane: BackgroundControlPlane, api: httpx.Client, endpoint: str, worker: ProtocolWorker
) -> None:
    """Raw SSE text (worker-vllm's default) goes out as it is; objects become data events; a stream
    whose worker sent no [DONE] gets one."""
    for kind in ("raw", "objects", "whole"):
        body = {"model": "m", "prompt": "p", "stream": True}

        def post(sent: dict[str, Any] = body) -> httpx.Response:
            return httpx.post(
                f"{plane.client_url}/v2/{endpoint}/openai/v1/completions", json=sent, timeout=30
            )

        call = Call(post)
        job = worker.take_job()
        assert job["input"] == {"openai_route": "/v1/completions", "openai_input": body}
        if kind == "raw":
            worker.stream(job["id"], 'data: {"a":1}\n\ndata: {"a":2}\n\n')
            worker.stream(job["id"], "data: [DONE]\n\n")
            worker.done(job["id"], {"output": None})
        elif kind == "objects":
            worker.stream(job["id"], {"a": 1})
            worker.stream(job["id"], [{"a": 2}, {"a": 3}])
            worker.done(job["id"], {"output": None})
        else:  # a worker that answers in one piece although asked to stream
            worker.done(job["id"], {"output": [{"a": 1}]})
        r = call.result()
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert (
            r.text
            == {
                "raw": 'data: {"a":1}\n\ndata: {"a":2}\n\ndata: [DONE]\n\n',
                "objects": 'data: {"a":1}\n\ndata: {"a":2}\n\ndata: {"a":3}\n\ndata: [DONE]\n\n',
                "whole": 'data: {"a":1}\n\ndata: [DONE]\n\n',
            }[kind]
        )


def test_failing_handler_is_an_api_status_error_with_its_message(
    plane: BackgroundControlPlane, api: httpx.Client, endpoint: str, worker: ProtocolWorker
) -> None:
    client = client_for(plane, endpoint)
    call = Call(lambda: client.completions.create(model="m", prompt="p"))
    job = worker.take_job()
    # RunPod's SDK reports an uncaught exception like this
    error = json.dumps(
        {
            "error_type": "<class 'ValueError'>",
            "error_message": "model m is not loaded",
            "error_traceback": "Traceback ...",
            "hostname": "h",
            "worker_id": worker.id,
        }
    )
    worker.done(job["id"], {"error": error})
    with pytest.raises(openai.APIStatusError) as caught:
        call.result()
    assert caught.value.status_code == 500
    assert caught.value.body == {
        "message": "model m is not loaded",
        "type": "server_error",
        "code": "handler_error",
    }
    # not retried by the client (x-should-retry: false): one job only
    jobs = api.get(f"/v1/endpoints/{endpoint}/jobs").json()["jobs"]
    assert [j["id"] for j in jobs] == [job["id"]]


def test_an_error_object_in_the_output_sets_the_status(
    plane: BackgroundControlPlane, endpoint: str, worker: ProtocolWorker
) -> None:
    client = client_for(plane, endpoint)
    call = Call(lambda: client.embeddings.create(model="nope", input="x"))
    job = worker.take_job()
    worker.done(
        job["id"],
        {
            "output": [
                {
                    "object": "error",
                    "message": "model nope does not exist",
                    "type": "NotFoundError",
                    "param": None,
                    "code": 404,
                }
            ]
        },
    )
    with pytest.raises(openai.NotFoundError) as caught:
        call.result()
    assert caught.value.body == {"message": "model nope does not exist", "type": "NotFoundError", "code": 404}


def test_failure_after_the_first_chunk_is_an_error_event(
    plane: BackgroundControlPlane, endpoint: str, worker: ProtocolWorker
) -> None:
    client = client_for(plane, endpoint)
    got: list[str] = []

    def consume() -> None:
        for part in client.chat.completions.create(model="m", messages=[], stream=True):
            got.append(part.choices[0].delta.content or "")

    call = Call(consume)
    job = worker.take_job()
    worker.stream(job["id"], chunk("a", first=True))
    wait_for(lambda: got == ["a"], what="the first delta")
    worker.done(job["id"], {"error": "out of memory while decoding"})
    with pytest.raises(openai.APIError, match="out of memory while decoding"):
        call.result()


def test_failure_before_the_first_chunk_is_an_http_error(
    plane: BackgroundControlPlane, endpoint: str, worker: ProtocolWorker
) -> None:
    client = client_for(plane, endpoint)
    call = Call(lambda: list(client.chat.completions.create(model="m", messages=[], stream=True)))
    job = worker.take_job()
    worker.done(job["id"], {"error": "no GPU memory"})
    with pytest.raises(openai.InternalServerError) as caught:
        call.result()
    assert caught.value.body["message"] == "no GPU memory"  # type: ignore[index]


@pytest.mark.parametrize("streamed", [True, False])
def test_client_going_away_cancels_the_job(
    plane: BackgroundControlPlane, api: httpx.Client, endpoint: str, worker: ProtocolWorker, streamed: bool
) -> None:
    body = json.dumps({"model": "m", "messages": [], "stream": streamed}).encode()
    url = httpx.URL(plane.client_url)
    sock = socket.create_connection((url.host, url.port), timeout=30)
    try:
        sock.sendall(
            f"POST /v2/{endpoint}/openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        job = worker.take_job()
        if streamed:
            worker.stream(job["id"], chunk("a", first=True))
            seen = b""
            while b"data: " not in seen:  # the first event reached the client
                data = sock.recv(65536)
                assert data, seen
                seen += data
            assert seen.startswith(b"HTTP/1.1 200")
    finally:
        sock.close()  # hang up mid-stream / mid-wait
    wait_for(
        lambda: api.get(f"/v2/{endpoint}/status/{job['id']}").json()["status"] == "CANCELLED",
        what="the job cancelled",
    )
    assert job["id"] in worker.stops().json()["jobsToStop"]  # and its worker is told to stop it


def test_no_answer_within_the_wait_is_a_504_and_the_job_is_cancelled(tmp_path: Path) -> None:
    settings = default_settings_for_tests(tmp_path / "data", openai_wait_s=1.0)
    with BackgroundControlPlane(settings) as cp:
        assert (
            httpx.post(
                f"{cp.client_url}/v1/endpoints", json={"name": "w", "id": "w", "imageName": "x"}
            ).status_code
            == 201
        )
        for stream in (False, True):
            r = httpx.post(
                f"{cp.client_url}/v2/w/openai/v1/completions",
                json={"prompt": "p", "stream": stream},
                timeout=30,
            )
            assert r.status_code == 504 and r.json()["error"]["code"] == "no_answer", r.text
            assert r.headers["x-should-retry"] == "false"
        jobs = httpx.get(f"{cp.client_url}/v1/endpoints/w/jobs").json()["jobs"]
        assert [j["status"] for j in jobs] == ["CANCELLED", "CANCELLED"]


def test_bad_requests_get_openai_shaped_4xx(
    plane: BackgroundControlPlane, api: httpx.Client, endpoint: str
) -> None:
    base = f"/v2/{endpoint}/openai/v1/chat/completions"
    r = api.post(base, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert "not valid JSON" in r.json()["error"]["message"]
    r = api.post("/v2/nope/openai/v1/models", json={})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = api.post("/v2/bad$id/openai/v1/models", json={})
    assert r.status_code == 400
    big = plane.settings.max_runsync_body_bytes + 1
    r = api.post(base, content=b"x" * big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[BackgroundControlPlane]:
    settings = default_settings_for_tests(
        tmp_path / "data", api_key=KEY, job_take_hold_s=2.0, job_stop_hold_s=2.0
    )
    with BackgroundControlPlane(settings) as cp:
        yield cp


def test_wrong_api_key_is_refused_and_the_right_one_works(keyed: BackgroundControlPlane) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    assert (
        httpx.post(
            f"{keyed.client_url}/v1/endpoints", headers=auth, json={"name": "k", "id": "k", "imageName": "x"}
        ).status_code
        == 201
    )
    with pytest.raises(openai.AuthenticationError) as caught:
        client_for(keyed, "k", key="wrong").models.list()
    assert caught.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    assert (
        httpx.get(f"{keyed.client_url}/v1/endpoints/k/jobs", headers=auth).json()["jobs"] == []
    )  # no job made
    worker = ProtocolWorker(keyed.client_url, "k", headers=auth)
    call = Call(lambda: client_for(keyed, "k", key=KEY).models.list())
    job = worker.take_job()
    worker.done(job["id"], {"output": {"object": "list", "data": []}})
    assert list(call.result()) == []
    worker.close()

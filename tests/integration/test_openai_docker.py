"""The ``openai`` package against real worker containers through ``/v2/{id}/openai/v1``: the
``openai-compatible`` sample (worker_sdk, chunk objects) and the ``openai-runpod-sdk`` sample (RunPod's
own SDK, a worker-vllm-style async generator yielding raw SSE text), plus time to first chunk through
the emulator against the worker's own delay. Containers are removed by their instance label."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from emulator.testing import BackgroundControlPlane
from tests.helpers import wait_for
from tests.integration import docker_fixtures
from tests.integration.docker_fixtures import DockerSession, Instance, docker_settings, sample

docker_session = docker_fixtures.docker_session  # fixtures, shared without a conftest of our own
instance = docker_fixtures.instance

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]
SAMPLES = ("openai-compatible", "openai-runpod-sdk")
PROMPT = "the quick brown fox"
WORDS = ["echo: ", "the ", "quick ", "brown ", "fox"]


@pytest.fixture
def plane(docker_session: DockerSession, instance: Instance) -> Iterator[BackgroundControlPlane]:
    missing = [sample(n) for n in SAMPLES if not docker_session.client.images.list(name=sample(n))]
    if missing:
        pytest.skip(
            f"sample images missing ({', '.join(missing)}): run `python -m emulator.images build-samples`"
        )
    with BackgroundControlPlane(docker_settings(instance)) as cp:
        for name in SAMPLES:
            r = httpx.post(
                f"{cp.client_url}/v1/endpoints",
                json={
                    "id": name,
                    "name": name,
                    "imageName": sample(name),
                    "workersMin": 1,
                    "workersMax": 1,
                    "extraWorkers": 0,
                },
            )
            assert r.status_code == 201, r.text
        yield cp


def client(plane: BackgroundControlPlane, endpoint: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{plane.client_url}/v2/{endpoint}/openai/v1", api_key="local", timeout=120)


def deltas(stream: Any) -> list[str]:
    out = []
    for part in stream:
        choice = part.choices[0]
        text = choice.delta.content if hasattr(choice, "delta") else choice.text
        if text:
            out.append(text)
    return out


@pytest.mark.parametrize("endpoint", SAMPLES)
def test_openai_client_against_a_real_worker(plane: BackgroundControlPlane, endpoint: str) -> None:
    c = client(plane, endpoint)
    assert [m.id for m in c.models.list()] == ["emulator/echo-1"]

    messages = [{"role": "user", "content": PROMPT}]
    answer = c.chat.completions.create(model="emulator/echo-1", messages=messages)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "".join(WORDS)
    assert answer.usage is not None and answer.usage.completion_tokens == len(WORDS)

    stream = c.chat.completions.create(model="emulator/echo-1", messages=messages, stream=True)  # type: ignore[arg-type]
    assert deltas(stream) == WORDS  # every delta, in order, and the stream ended

    assert (
        c.completions.create(model="emulator/echo-1", prompt=PROMPT, max_tokens=3).choices[0].text
        == "echo: the quick"
    )
    assert deltas(c.completions.create(model="emulator/echo-1", prompt=PROMPT, stream=True)) == WORDS

    first = c.embeddings.create(model="emulator/echo-1", input=["a", "b"])
    again = c.embeddings.create(model="emulator/echo-1", input="a")
    assert [len(d.embedding) for d in first.data] == [8, 8]
    assert again.data[0].embedding == first.data[0].embedding != first.data[1].embedding

    with pytest.raises(openai.APIStatusError) as caught:
        c.chat.completions.create(model="fail", messages=messages)  # type: ignore[arg-type]
    assert caught.value.status_code == 500
    assert "the sample worker was asked to fail" in caught.value.body["message"]  # type: ignore[index]

    with pytest.raises(openai.NotFoundError):  # the worker's own 404 (vLLM's error object)
        c.post("/responses", body={"model": "x"}, cast_to=httpx.Response)


def test_runpod_sdk_worker_sees_runpods_input_and_its_raw_sse_passes_verbatim(
    plane: BackgroundControlPlane,
) -> None:
    base = f"{plane.client_url}/v2/openai-runpod-sdk/openai"
    with httpx.Client(timeout=120) as http:
        body = {"model": "m", "temperature": 0.5, "messages": [{"role": "user", "content": "hi"}]}
        r = http.post(f"{base}/v1/echo", json=body)
        assert r.status_code == 200, r.text
        assert r.json() == {"object": "echo", "input": {"openai_route": "/v1/echo", "openai_input": body}}
        assert http.get(f"{base}/v1/echo").json() == {"object": "echo", "input": {"openai_route": "/v1/echo"}}

        with http.stream("POST", f"{base}/v1/chat/completions", json={**body, "stream": True}) as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            text = s.read().decode()
    events = text.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"  # the worker's own [DONE], once
    assert text.count("[DONE]") == 1
    assert all(e.startswith("data: {") for e in events[:-2])


def test_time_to_first_chunk_through_the_emulator(
    plane: BackgroundControlPlane, record_property: Any
) -> None:
    """The first chunk is read while the worker still produces the rest; TTFT through the emulator
    against the worker's own delay before its first token (figures printed and kept as properties)."""
    c = client(plane, "openai-compatible")
    api = httpx.Client(base_url=plane.client_url, timeout=30)
    first_delay_s, token_delay_s = 0.3, 0.5
    overheads_ms: list[float] = []
    recorded_ms: list[float] = []
    c.models.list()  # the worker is up
    for _ in range(5):
        started = time.perf_counter()
        stream = c.chat.completions.create(
            model="emulator/echo-1",
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
            extra_body={"first_token_delay_s": first_delay_s, "token_delay_s": token_delay_s},
        )
        parts = iter(stream)
        first = next(parts)
        ttft_s = time.perf_counter() - started
        job_id = first.id.removeprefix("cmpl-")
        # the worker has 3 more tokens to produce, token_delay_s apart: the job is still running
        assert api.get(f"/v2/openai-compatible/status/{job_id}").json()["status"] == "IN_PROGRESS"
        rest = [p.choices[0].delta.content for p in parts]
        assert first.choices[0].delta.content == "echo: " and [t for t in rest if t] == [
            "one ",
            "two ",
            "three",
        ]
        overheads_ms.append((ttft_s - first_delay_s) * 1000)

        def recorded(job: str = job_id) -> float | None:
            figures: dict[str, Any] = (
                api.get(f"/v1/endpoints/openai-compatible/jobs/{job}").json().get("openai", {})
            )
            return figures.get("ttftMs")

        figures = wait_for(recorded, what="the recorded TTFT")
        recorded_ms.append(figures)
    median = statistics.median(overheads_ms)
    record_property("ttft_overhead_ms_median", round(median, 1))
    record_property("ttft_recorded_ms", recorded_ms)
    print(
        f"\nTTFT through the emulator minus the worker's {first_delay_s * 1000:.0f} ms first-token delay: "
        f"median {median:.1f} ms, all {[round(x, 1) for x in overheads_ms]}; recorded ttftMs {recorded_ms}"
    )
    assert all(
        r >= first_delay_s * 1000 for r in recorded_ms
    )  # the recorded figure includes the worker's delay
    api.close()

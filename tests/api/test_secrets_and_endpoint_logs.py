"""/v1/secrets and GET /v1/endpoints/{id}/logs over real HTTP (no containers: a worker registered
through the API, log lines written into the control plane's store)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from emulator.testing import BackgroundControlPlane


def test_secrets_crud_and_bad_input(api: httpx.Client) -> None:
    r = api.post("/v1/secrets", json={"name": "hf_token", "value": "hf_abc123"})
    assert r.status_code == 201 and set(r.json()) == {"name", "createdAt", "updatedAt"}
    assert api.post("/v1/secrets", json={"name": "hf_token", "value": "x"}).status_code == 409
    assert [s["name"] for s in api.get("/v1/secrets").json()] == ["hf_token"]
    assert api.get("/v1/secrets/hf_token").json()["name"] == "hf_token"
    assert api.patch("/v1/secrets/hf_token", json={"value": "hf_new"}).status_code == 200
    for body, field in (
        ({"name": "bad name", "value": "v"}, "name"),
        ({"name": "ok"}, "value"),
        ({"name": "ok", "value": ""}, "value"),
        ({"name": "ok", "value": 5}, "value"),
        ({"name": "ok", "value": "v", "extra": 1}, "extra"),
    ):
        r = api.post("/v1/secrets", json=body)
        assert r.status_code == 422 and r.json()["field"] == field, (body, r.text)
    assert api.post("/v1/secrets", content=b"[1]").status_code == 400
    assert api.post("/v1/secrets", content=b"{nope").status_code == 400
    assert api.get("/v1/secrets/missing").status_code == 404
    assert api.get("/v1/secrets/bad%20name").status_code == 400
    assert api.patch("/v1/secrets/missing", json={"value": "v"}).status_code == 404
    assert "hf_abc123" not in api.get("/v1/secrets").text and "hf_new" not in api.get("/v1/secrets").text
    assert api.delete("/v1/secrets/hf_token").status_code == 204
    assert api.get("/v1/secrets").json() == []


def test_endpoint_env_refers_to_secrets(api: httpx.Client) -> None:
    body = {"name": "s", "id": "s", "imageName": "img", "env": {"HF_TOKEN": "{{ RUNPOD_SECRET_hf }}"}}
    r = api.post("/v1/endpoints", json=body)
    assert r.status_code == 422 and r.json()["field"] == "env" and "hf" in r.json()["error"]
    api.post("/v1/secrets", json={"name": "hf", "value": "hf_value_123"}).raise_for_status()
    created = api.post("/v1/endpoints", json=body)
    assert created.status_code == 201 and created.json()["env"] == {"HF_TOKEN": "{{ RUNPOD_SECRET_hf }}"}
    r = api.patch("/v1/endpoints/s", json={"env": {"HF_TOKEN": "{{ RUNPOD_SECRET_other }}"}})
    assert r.status_code == 422 and "other" in r.json()["error"]
    # a worker registered through the API is shown the reference, not the value
    registered = api.post("/v1/endpoints/s/workers").json()
    assert registered["env"]["HF_TOKEN"] == "{{ RUNPOD_SECRET_hf }}"
    assert "hf_value_123" not in json.dumps(registered)
    assert api.delete("/v1/secrets/hf").status_code == 409
    assert api.delete("/v1/endpoints/s").status_code == 204
    assert api.delete("/v1/secrets/hf").status_code == 204


def _append(plane: BackgroundControlPlane, *lines: tuple[str, str | None, str]) -> None:
    """Lines written into the control plane's log store on its own loop, as the log collector does."""
    assert plane.plane is not None
    core = plane.plane.core
    assert core is not None

    async def write() -> None:
        for worker, job, text in lines:
            core.logs.append("echo", worker, job, text, core.clock.now())

    plane.call(write())


def test_endpoint_logs_filters_and_follow(
    api: httpx.Client, plane: BackgroundControlPlane, endpoint: str
) -> None:
    assert api.get("/v1/endpoints/nope/logs").status_code == 404
    assert api.get(f"/v1/endpoints/{endpoint}/logs").json() == {"lines": []}
    # a follower of an endpoint with no lines yet gets the first one written
    with api.stream("GET", f"/v1/endpoints/{endpoint}/logs/stream") as stream:
        _append(plane, ("w1", None, "booting"))
        first = next(json.loads(raw[6:]) for raw in stream.iter_lines() if raw.startswith("data: "))
    assert first["line"] == "booting" and first["seq"] == 1
    _append(plane, ("w1", "job-1", "one"), ("w2", "job-2", "two"))
    lines = api.get(f"/v1/endpoints/{endpoint}/logs").json()["lines"]
    assert [(i["workerId"], i["requestId"], i["line"]) for i in lines] == [
        ("w1", None, "booting"),
        ("w1", "job-1", "one"),
        ("w2", "job-2", "two"),
    ]
    assert [
        i["line"] for i in api.get(f"/v1/endpoints/{endpoint}/logs", params={"job": "job-1"}).json()["lines"]
    ] == ["one"]
    assert [
        i["line"] for i in api.get(f"/v1/endpoints/{endpoint}/logs", params={"worker": "w2"}).json()["lines"]
    ] == ["two"]
    assert api.get(f"/v1/endpoints/{endpoint}/logs", params={"since": "2999-01-01T00:00:00Z"}).json() == {
        "lines": []
    }
    assert len(api.get(f"/v1/endpoints/{endpoint}/logs", params={"since": "0"}).json()["lines"]) == 3
    for params, field in (
        ({"since": "yesterday"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"job": "a b"}, "job"),
    ):
        r = api.get(f"/v1/endpoints/{endpoint}/logs", params=params)
        assert 400 <= r.status_code < 500 and r.json()["field"] == field, r.text
    # follow: the lines so far after Last-Event-ID, then a new one as it is written
    with api.stream("GET", f"/v1/endpoints/{endpoint}/logs/stream", headers={"Last-Event-ID": "2"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events: list[dict[str, Any]] = []
        for raw in stream.iter_lines():
            if raw.startswith("data: "):
                events.append(json.loads(raw[6:]))
                if len(events) == 1:
                    _append(plane, ("w2", "job-3", "three"))
                if len(events) == 2:
                    break
    assert [(e["seq"], e["line"]) for e in events] == [(3, "two"), (4, "three")]
    # with wait=, the stream ends by itself (the lines so far, then nothing new for a second)
    with api.stream(
        "GET", f"/v1/endpoints/{endpoint}/logs/stream", params={"wait": "1000", "job": "job-3"}
    ) as stream:
        data = [json.loads(raw[6:]) for raw in stream.iter_lines() if raw.startswith("data: ")]
    assert [e["line"] for e in data] == ["three"]
    assert api.get(f"/v1/endpoints/{endpoint}/logs/stream", params={"wait": "soon"}).status_code == 400
    assert api.delete(f"/v1/endpoints/{endpoint}").status_code == 204
    assert (
        api.post("/v1/endpoints", json={"name": "echo", "id": "echo", "imageName": "img"}).status_code == 201
    )
    assert api.get("/v1/endpoints/echo/logs").json() == {"lines": []}  # deleted with their endpoint

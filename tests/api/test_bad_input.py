"""Bad input gets a clear 4xx naming what is wrong, never a 500, and loses nothing."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "needs a JSON body"),
        (b"[1, 2]", 400, "JSON object"),
        (b'"just text"', 400, "JSON object"),  # (an object without `input` is accepted: #13 item 4)
        (b'{"input": {}, "policy": {"executionTimeout": 10}}', 422, "policy.executionTimeout"),
        (b'{"input": {}, "policy": {"ttl": "soon"}}', 422, "policy.ttl"),
        (b'{"input": {}, "webhook": "ftp://x"}', 422, "webhook"),
        (b"\xff\xfe\xfa", 400, "UTF-8"),
        (b"[" * 100000 + b"]" * 100000, 400, ""),
    ],
)
def test_bad_run_bodies(api: httpx.Client, endpoint: str, body: bytes, status: int, needle: str) -> None:
    r = api.post(f"/v2/{endpoint}/run", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]
    assert api.get(f"/v2/{endpoint}/health").json()["jobs"]["inQueue"] == 0


def test_oversized_bodies_get_413(api: httpx.Client, endpoint: str) -> None:
    big = b'{"input": "' + b"x" * (10 * 1024 * 1024 + 10) + b'"}'
    r = api.post(f"/v2/{endpoint}/run", content=big)
    assert r.status_code == 413 and "limit" in r.json()["error"]
    r = api.post(f"/v2/{endpoint}/runsync?wait=1000", content=big)  # under the 20 MB runsync limit
    assert r.status_code == 200
    huge = b'{"input": "' + b"x" * (20 * 1024 * 1024 + 10) + b'"}'
    assert api.post(f"/v2/{endpoint}/runsync", content=huge).status_code == 413


def test_unknown_endpoint_and_job(api: httpx.Client, endpoint: str) -> None:
    r = api.post("/v2/nope/run", json={"input": {}})
    assert r.status_code == 404 and "nope" in r.json()["error"]
    assert api.get(f"/v2/{endpoint}/status/no-such-job").status_code == 404
    assert api.get(f"/v2/{endpoint}/status/..%2F..%2Fetc").status_code in (400, 404)
    assert api.get("/v2/bad%20id/health").status_code == 400


def test_bad_wait_values(api: httpx.Client, endpoint: str) -> None:
    r = api.post(f"/v2/{endpoint}/runsync?wait=soon", json={"input": {}})
    assert r.status_code == 400 and "wait" in r.json()["error"]


def test_management_validation_names_the_field(api: httpx.Client) -> None:
    cases = [
        ({"imageName": "x"}, "name"),
        ({"name": "a"}, "imageName"),
        ({"name": "a", "imageName": "x", "workersMax": -1}, "workersMax"),
        ({"name": "a", "imageName": "x", "scalerType": "FAST"}, "scalerType"),
        ({"name": "a", "imageName": "x", "colour": "red"}, "colour"),
        ({"name": "a", "imageName": "x", "workersMin": 5, "workersMax": 2}, "workersMin"),
        ({"name": "a", "imageName": "x", "id": "../etc"}, "id"),
        ({"name": "a", "imageName": "x", "env": {"A=B": "c"}}, "env"),
    ]
    for body, field in cases:
        r = api.post("/v1/endpoints", json=body)
        assert r.status_code == 422, (body, r.text)
        assert field in r.json()["error"], (body, r.json())
    assert api.get("/v1/endpoints").json() == []

"""Hostile input: schemathesis against /openapi.json (every operation, coverage, fuzzing and stateful
phases) finds no 5xx and no answer that breaks the schema; hand-made attacks (oversized and deeply
nested bodies, invalid UTF-8, huge headers, path tricks in ids) get a 4xx with a message, on the
client API and on the worker protocol alike, and change nothing.

CI runs schemathesis with a fixed seed and few examples per operation; RELIABILITY_SOAK=1 runs many
more with a random seed. The SSE stream (/v1/events/stream never ends) is left to its own tests.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.config import default_settings_for_tests
from emulator.testing import BackgroundControlPlane
from tests.helpers import ProtocolWorker
from tests.reliability.common import ROOT, SOAK, AutoWorker

pytestmark = pytest.mark.timeout(900)
KEY = "hostile-test-key"
# Response-conformance checks: what the brief calls "no 5xx and no answer that breaks the schema",
# plus the HTTP ones schemathesis has (405 with Allow, use after delete, resource availability).
# positive_data_acceptance / negative_data_rejection are left out: the API validates more than a JSON
# schema says (workersMin <= workersMax) and pydantic takes 0/1 for booleans.
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
    "response_headers_conformance,unsupported_method,allow_header_conformance,use_after_free,"
    "ensure_resource_availability,missing_required_header"
)


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[BackgroundControlPlane]:
    settings = default_settings_for_tests(
        tmp_path / "data", job_take_hold_s=0.5, job_stop_hold_s=0.5, worker_lost_after_s=120.0
    )
    with BackgroundControlPlane(settings) as cp:
        yield cp


def run_schemathesis(
    url: str, report_dir: Path, extra: list[str], max_examples: int, seed: int | None
) -> dict[str, Any]:
    env = dict(
        os.environ,
        SCHEMATHESIS_HOOKS="tests.reliability.st_hooks",
        PYTHONPATH=str(ROOT),
        NO_COLOR="1",
        COLUMNS="200",
    )
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        "--exclude-path",
        "/v1/events/stream",
        "--max-examples",
        str(max_examples),
        "--request-timeout",
        "20",
        "--workers",
        "2",
        "--report",
        "ndjson",
        "--report-dir",
        str(report_dir),
        *extra,
    ]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    out = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=840)
    text = out.stdout + out.stderr
    generated = re.search(r"(\d+) generated", text)
    operations = re.search(r"Tested:\s+(\d+)", text)
    return {
        "returncode": out.returncode,
        "output": text,
        "cases": int(generated.group(1)) if generated else 0,
        "operations": int(operations.group(1)) if operations else 0,
    }


def _module_available() -> None:
    try:
        import schemathesis  # noqa: F401
    except ImportError:
        pytest.fail("schemathesis is not installed: pip install -e '.[test]'")


def test_schemathesis_every_operation_no_5xx_no_schema_break(
    plane: BackgroundControlPlane, tmp_path: Path, figures: dict[str, Any]
) -> None:
    _module_available()
    api = httpx.Client(base_url=plane.client_url, timeout=30)
    api.post("/v1/endpoints", json={"name": "echo", "id": "echo", "imageName": "x"}).raise_for_status()
    schema = api.get("/openapi.json").json()
    operations = sum(len(ops) for path, ops in schema["paths"].items() if path != "/v1/events/stream")
    with AutoWorker(plane.client_url) as worker:
        result = run_schemathesis(
            plane.client_url,
            tmp_path / "st",
            ["--checks", CHECKS],
            max_examples=60 if SOAK else 12,
            seed=None if SOAK else 20261122,
        )
    figures.update(
        cases=result["cases"],
        operations=result["operations"],
        jobs_completed=worker.completed,
        returncode=result["returncode"],
    )
    assert result["returncode"] == 0, result["output"][-12000:]
    assert result["operations"] == operations, result["output"][-3000:]
    assert result["cases"] > 20 * operations
    # the server is still whole
    assert api.get("/ping").status_code == 200
    assert api.get("/v2/echo/health").status_code in (200, 404)  # schemathesis may have deleted it


def test_schemathesis_with_an_api_key_every_operation_needs_it(
    tmp_path: Path, figures: dict[str, Any]
) -> None:
    _module_available()
    settings = default_settings_for_tests(
        tmp_path / "data", job_take_hold_s=0.5, job_stop_hold_s=0.5, api_key=KEY
    )
    with (
        BackgroundControlPlane(settings) as plane,
        AutoWorker(plane.client_url, {"Authorization": f"Bearer {KEY}"}),
    ):
        schema = httpx.get(f"{plane.client_url}/openapi.json").json()
        assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
        result = run_schemathesis(
            plane.client_url,
            tmp_path / "st",
            [
                "--checks",
                "not_a_server_error,ignored_auth,status_code_conformance,response_schema_conformance",
                "--header",
                f"Authorization: Bearer {KEY}",
                "--phases",
                "coverage,fuzzing",
            ],
            max_examples=30 if SOAK else 5,
            seed=None if SOAK else 20261123,
        )
    figures.update(cases=result["cases"], operations=result["operations"], returncode=result["returncode"])
    assert result["returncode"] == 0, result["output"][-12000:]
    assert result["operations"] > 20


# --- hand-made attacks --------------------------------------------------------------------------------
NESTED = b"[" * 200_000 + b"]" * 200_000


@pytest.fixture
def setup(plane: BackgroundControlPlane) -> Iterator[tuple[httpx.Client, ProtocolWorker, str]]:
    api = httpx.Client(base_url=plane.client_url, timeout=60)
    assert api.post("/v1/endpoints", json={"name": "e", "id": "e", "imageName": "x"}).status_code == 201
    worker = ProtocolWorker(plane.client_url, "e")
    job_id = api.post("/v2/e/run", json={"input": {"keep": "me"}}).json()["id"]
    assert worker.take_job()["id"] == job_id
    yield api, worker, job_id
    worker.close()
    api.close()


def assert_4xx_with_message(r: httpx.Response, what: str) -> str:
    assert 400 <= r.status_code < 500, (what, r.status_code, r.text[:300])
    message = r.json()["error"]
    assert isinstance(message, str) and message, (what, r.text[:300])
    return message


def test_bodies_too_big_too_deep_or_not_utf8(
    setup: tuple[httpx.Client, ProtocolWorker, str], figures: dict[str, Any]
) -> None:
    api, worker, job_id = setup
    done_url = worker.url("RUNPOD_WEBHOOK_POST_OUTPUT", job_id) + "&isStream=false"
    stream_url = worker.url("RUNPOD_WEBHOOK_POST_STREAM", job_id) + "&isStream=false"
    cases: list[tuple[str, str, str, bytes, dict[str, str], int]] = [
        ("client", "POST", "/v2/e/run", b'{"input": "' + b"x" * (10 * 1024 * 1024 + 1) + b'"}', {}, 413),
        ("client", "POST", "/v2/e/runsync", b'{"input": "' + b"x" * (20 * 1024 * 1024 + 1) + b'"}', {}, 413),
        ("client", "POST", "/v1/endpoints", b'{"name": "' + b"n" * (1024 * 1024 + 1) + b'"}', {}, 413),
        ("client", "POST", "/v2/e/run", b'{"input": ' + NESTED + b"}", {}, 400),
        ("client", "POST", "/v1/endpoints", NESTED, {}, 400),
        ("client", "PATCH", "/v1/endpoints/e", NESTED, {}, 400),
        ("client", "POST", "/v2/e/run", b'{"input": "\xff\xfe"}', {}, 400),
        ("client", "POST", "/v1/endpoints", b'{"name": "\xc3\x28", "imageName": "x"}', {}, 400),
        ("client", "PATCH", "/v1/endpoints/e", b'{"name": "\xed\xa0\x80"}', {}, 400),  # a UTF-8 surrogate
        ("client", "POST", "/v2/e/run", b'{"input": "\\ud800"}', {}, 400),  # a lone surrogate, escaped
        ("client", "POST", "/v2/e/runsync", b'{"input": {"\\udfff": 1}}', {}, 400),
        (
            "client",
            "POST",
            "/v1/endpoints",
            b'{"name": "s", "imageName": "x", "env": {"A": "\\ud83d"}}',
            {},
            400,
        ),
        ("client", "POST", "/v2/e/runsync?wait=1e309", b'{"input": 1}', {}, 400),
        ("client", "GET", f"/v2/e/status-sync/{job_id}?wait=-1e999", b"", {}, 400),
        ("client", "GET", f"/v2/e/stream/{job_id}?wait=nan", b"", {}, 400),
        ("client", "GET", "/v1/endpoints/e/jobs?limit=" + "9" * 5000, b"", {}, 422),
        ("worker", "POST", done_url, NESTED, {}, 400),
        ("worker", "POST", stream_url, b'{"output": ' + NESTED + b"}", {}, 400),
        ("worker", "POST", done_url, b'{"output": "\xff"}', {}, 400),
        ("worker", "POST", done_url, b'{"output": "\\udbff"}', {}, 400),
        ("worker", "POST", stream_url, b'{"output": "\\udc00"}', {}, 400),
        ("worker", "POST", done_url, b"", {}, 400),
        (
            "worker",
            "POST",
            stream_url,
            b'{"output": "' + b"s" * (1024 * 1024 + 10) + b'"}',
            {},
            400,
        ),  # over the 1 MB chunk limit: 400 naming it, like every refused worker post (#13)
    ]
    for side, method, path, body, headers, expected in cases:
        client = api if side == "client" else worker.http
        r = client.request(method, path, content=body, headers=headers)
        assert r.status_code == expected, (method, path[:80], r.status_code, r.text[:300])
        assert_4xx_with_message(r, path[:80])
    # a Content-Length of 100 GB is refused before a byte of the body is read
    host, port = api.base_url.host, api.base_url.port
    with socket.create_connection((host, port), timeout=10) as raw:
        raw.sendall(
            b"POST /v2/e/run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 99999999999\r\n\r\n{"
        )
        received = b""
        while b'"}' not in received:
            chunk = raw.recv(65536)
            if not chunk:
                break
            received += chunk
        answer = received.decode("utf-8", "replace")
    assert answer.startswith("HTTP/1.1 413"), answer[:300]
    assert '"error"' in answer
    # nothing changed: the job is still the worker's, the endpoint as it was, the queue empty
    assert api.get(f"/v2/e/status/{job_id}").json()["status"] == "IN_PROGRESS"
    assert api.get("/v1/endpoints/e").json()["name"] == "e"
    assert api.get("/v2/e/health").json()["jobs"]["inQueue"] == 0
    assert worker.done(job_id, {"output": {"keep": "me"}}).status_code == 200
    assert api.get(f"/v2/e/status/{job_id}").json()["output"] == {"keep": "me"}
    figures.update(bodies_tried=len(cases), five_xx=0)


def test_huge_headers_never_break_the_server(setup: tuple[httpx.Client, ProtocolWorker, str]) -> None:
    api, worker, _ = setup
    for size in (16 * 1024, 256 * 1024, 4 * 1024 * 1024):
        try:
            r = api.get("/v2/e/health", headers={"X-Padding": "p" * size})
        except httpx.TransportError:
            pass  # the server may drop such a request: fine, as long as it is not a 5xx and it lives on
        else:
            assert r.status_code < 500, (size, r.status_code)
        try:
            r = api.get("/v2/e/health", headers={f"X-H{i}": "v" * 100 for i in range(size // 1024)})
        except httpx.TransportError:
            pass
        else:
            assert r.status_code < 500, (size, r.status_code)
    assert api.get("/v2/e/health").status_code == 200
    assert worker.ping().status_code == 200


# (literal "." and ".." segments are resolved by the HTTP client before sending: their encoded forms are used)
TRICKY_IDS = [
    "%2E%2E",
    "%2e%2e%2f%2e%2e",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e",
    "a%2Fb",
    "a%5Cb",
    "%00",
    "a%00b",
    "%FF%FE",
    "%C3%A9t%C3%A9",
    "%E2%80%AE",
    "%F0%9F%92%A5",
    "a" * 5000,
    "-" * 200,
    "%2E",
    "%20",
    "a%0Ab",
    "a;b",
    "$ID",
    "%24RUNPOD_POD_ID",
    "{job_id}",
    "'%20OR%201=1--",
    "%25%32%65",
]


def test_path_tricks_in_ids_get_a_4xx_with_a_message(
    setup: tuple[httpx.Client, ProtocolWorker, str], figures: dict[str, Any]
) -> None:
    api, worker, job_id = setup
    client_paths = [
        "GET /v2/{x}/health",
        "POST /v2/{x}/run",
        "GET /v2/e/status/{x}",
        "POST /v2/e/status/{x}",
        "GET /v2/e/status-sync/{x}?wait=1000",
        "GET /v2/e/stream/{x}",
        "POST /v2/e/cancel/{x}",
        "POST /v2/e/retry/{x}",
        "GET /v1/endpoints/{x}",
        "PATCH /v1/endpoints/{x}",
        "DELETE /v1/endpoints/{x}",
        "GET /v1/endpoints/{x}/workers",
        "POST /v1/endpoints/{x}/workers",
        "GET /v1/endpoints/{x}/jobs",
        "GET /v1/endpoints/e/jobs/{x}",
        "GET /v1/workers/{x}/logs",
        "DELETE /v1/workers/{x}",
        "GET /v1/endpoints/{x}/events",
        "GET /static/{x}",
    ]
    take = worker.url("RUNPOD_WEBHOOK_GET_JOB")
    base = take.split("/v2/")[0]
    worker_paths = [
        f"GET {base}/v2/{{x}}/job-take/{worker.id}?gpu=1",
        f"GET {base}/v2/e/job-take/{{x}}?gpu=1",
        f"POST {base}/v2/e/job-done/{worker.id}/{{x}}?gpu=1",
        f"POST {base}/v2/e/job-stream/{worker.id}/{{x}}?gpu=1",
        f"GET {base}/v2/e/job-stop/{{x}}?gpu=1",
        f"GET {base}/v2/e/ping/{{x}}?gpu=1",
    ]
    tried = 0
    for templates, client in ((client_paths, api), (worker_paths, worker.http)):
        for template in templates:
            method, path = template.split(" ", 1)
            for trick in TRICKY_IDS:
                url = path.replace("{x}", trick)
                r = client.request(
                    method, url, content=b'{"input": 1}' if method in ("POST", "PATCH") else None
                )
                tried += 1
                unsubstituted = (trick in ("$ID", "%24RUNPOD_POD_ID") and "/job-" in url) or (
                    "/ping/" in url and trick[0] in "$%"
                )
                if unsubstituted and r.status_code in (200, 204):
                    continue  # RunPod's unsubstituted templates name the token's worker
                if r.status_code == 405:  # a trick that changed the path's shape (../): no such route
                    assert "error" in r.json()
                    continue
                assert_4xx_with_message(r, f"{method} {url[:100]}")
                assert len(r.content) < 4096, (
                    url[:100],
                    len(r.content),
                )  # a 5000-char id is not echoed whole
    # ids a worker sends in X-Request-ID are checked too
    r = worker.http.post(
        f"{base}/v2/e/job-done/{worker.id}?gpu=1", headers={"X-Request-ID": "../" * 50}, content=b"{}"
    )
    assert_4xx_with_message(r, "X-Request-ID")
    # nothing moved
    assert api.get(f"/v2/e/status/{job_id}").json()["status"] == "IN_PROGRESS"
    assert [e["id"] for e in api.get("/v1/endpoints").json()] == ["e"]
    assert api.get("/v2/e/health").json()["jobs"]["inQueue"] == 0
    figures.update(path_tricks_tried=tried, five_xx=0)


def test_the_job_store_keeps_hostile_strings_verbatim(
    setup: tuple[httpx.Client, ProtocolWorker, str],
) -> None:
    """Quotes, NULs, lone surrogates escaped in JSON, SQL and HTML look-alikes: stored and returned as sent."""
    api, worker, _ = setup
    nasty = [
        "'; DROP TABLE jobs; --",
        "\u0000nul",
        "\\ud800",
        "<script>alert(1)</script>",
        "\u202eevil",
        "🚀" * 100,
        {"$where": "1"},
        [None, True, 1e308, -0.0],
        "\n".join(["line"] * 100),
    ]
    r = api.post("/v2/e/run", content=json.dumps({"input": nasty}).encode())
    assert r.status_code == 200, r.text
    job = worker.take_job()
    assert job["input"] == nasty
    assert worker.done(job["id"], {"output": job["input"]}).status_code == 200
    assert api.get(f"/v2/e/status/{job['id']}").json()["output"] == nasty


def test_the_openapi_document_has_every_body_and_unique_operation_ids(plane: BackgroundControlPlane) -> None:
    """What schemathesis relies on: bodies of the routes that read them raw, one id per operation, and
    no warning from FastAPI while the document is made (it warned about duplicate operation ids)."""
    import warnings

    from emulator.api.app import create_client_app

    assert plane.plane is not None and plane.plane.ctx is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # FastAPI's "Duplicate Operation ID" is a UserWarning
        document = create_client_app(plane.plane.ctx).openapi()
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    bodies = {
        ("/v2/{endpoint_id}/run", "post"): "JobRequest",
        ("/v2/{endpoint_id}/runsync", "post"): "JobRequest",
        ("/v1/endpoints", "post"): "EndpointSpec",
        ("/v1/endpoints/{endpoint_id}", "patch"): "EndpointPatch",
    }
    for (path, method), model in bodies.items():
        schema = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith(f"/{model}")
        assert model in document["components"]["schemas"]
    for path in ("/v2/{endpoint_id}/status/{job_id}", "/v2/{endpoint_id}/stream/{job_id}"):
        assert set(document["paths"][path]) == {"get", "post"}
    # every error is documented with the shape the API sends
    for ops in document["paths"].values():
        for op in ops.values():
            for code, answer in op["responses"].items():
                if code.startswith(("4", "5")):
                    assert "ErrorBody" in str(answer), (op["operationId"], code)

"""Security:

* with an API key set, no client or management route answers without it: the routes are read from
  the apps' own route tables, so a route added later is checked too (the public ones are listed
  here, with the reason);
* worker routes never take the user's key, and a worker's token cannot take, report, stream, stop or
  ping for another worker or another endpoint;
* endpoint ``env`` values that look secret are masked (``********``) in every /v1 answer, kept for the
  containers, and a PATCH that sends the mask back keeps them; neither env values, nor the API key,
  nor worker tokens (``RUNPOD_AI_API_KEY``) appear in the control plane's logs;
* real worker containers run unprivileged, without the Docker socket, host networking, added
  capabilities or devices.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.api.app import create_client_app, create_worker_app
from emulator.api.routes import iter_routes
from emulator.api.secrets import MASK, looks_secret
from emulator.config import default_settings_for_tests
from emulator.testing import BackgroundControlPlane
from tests.helpers import ProtocolWorker, wait_for
from tests.reliability.common import (
    ECHO,
    DockerInstance,
    ServeProcess,
    docker_instance,
    serve_env,
)

__all__ = ["docker_instance"]
pytestmark = pytest.mark.timeout(300)
KEY = "the-users-api-key-7f3a"
AUTH = {"Authorization": f"Bearer {KEY}"}
# Routes that answer without the key, and why.
PUBLIC = {
    "/ping": "liveness, for start-up scripts (the contract says no auth)",
    "/": "the dashboard's static page: no data; it asks for the key and reads /v1 with it",
    "/static/{name}": "the dashboard's CSS, JS and icons from emulator/static (no data)",
    "/openapi.json": "the API's schema (the same for every emulator)",
    "/docs": "Swagger UI page (static; its calls need the key)",
    "/docs/oauth2-redirect": "Swagger UI helper page",
    "/redoc": "ReDoc page (static)",
}
SECRETS = {
    "HF_TOKEN": "hf_secret_token_value_1111",
    "DB_PASSWORD": "pw-secret-value-2222",
    "OPENAI_API_KEY": "sk-secret-value-3333",
    "MY_SECRET": "my-secret-value-4444",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-value-5555",
    "DB_PASS": "pass-secret-value-6666",
}
PLAIN = {"GREETING": "plain-visible-value-7777", "MODEL_NAME": "model-visible-value-8888"}


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[BackgroundControlPlane]:
    settings = default_settings_for_tests(
        tmp_path / "data", api_key=KEY, job_take_hold_s=0.3, job_stop_hold_s=0.3
    )
    with BackgroundControlPlane(settings) as cp:
        yield cp


def fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), path)


def test_every_route_of_the_route_table_needs_the_key(
    keyed: BackgroundControlPlane, figures: dict[str, Any]
) -> None:
    api = httpx.Client(base_url=keyed.client_url, timeout=30, headers=AUTH)
    assert api.post("/v1/endpoints", json={"name": "e", "id": "e", "imageName": "x"}).status_code == 201
    worker = ProtocolWorker(keyed.client_url, "e", headers=AUTH)
    job_id = api.post("/v2/e/run", json={"input": 1}).json()["id"]
    values = {"endpoint_id": "e", "job_id": job_id, "worker_id": worker.id, "name": "app.css"}
    assert keyed.plane is not None and keyed.plane.ctx is not None
    routes = [
        (info.path, method)
        for info in iter_routes(create_client_app(keyed.plane.ctx).routes)
        for method in sorted(info.methods - {"HEAD"})
    ]
    assert len(routes) > 30  # the table was read, not an empty walk
    assert {p for p, _ in routes} >= {
        "/v2/{endpoint_id}/run",
        "/v1/endpoints",
        "/metrics",
        "/v1/events/stream",
    }

    guarded = 0
    wrong_credentials = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "wrong"},
        {"Authorization": worker.token},
        {"Authorization": f"Bearer {worker.token}"},
        {"Authorization": f"Basic {KEY}"},
        {"X-Api-Key": KEY},
        {"Authorization": f"Bearer {KEY}x"},
        {"Authorization": f"Bearer {KEY[:-1]}"},
        {"Authorization": "Bearer"},
    ]
    for path, method in routes:
        if path in PUBLIC:
            continue
        guarded += 1
        url = fill(path, values)
        for headers in wrong_credentials:
            with httpx.Client(base_url=keyed.client_url, timeout=30) as anon:
                r = anon.request(method, url, headers=headers, json={"input": 1})
            assert r.status_code == 401, (method, url, headers, r.status_code, r.text[:200])
            error = r.json()["error"]  # /openai/* answers OpenAI's shape, {"error": {"message", ...}}
            assert "key" in (error["message"] if isinstance(error, dict) else error)
        r = httpx.request(method, f"{keyed.client_url}{url}?key=wrong", json={"input": 1})
        assert r.status_code == 401, (method, url, "?key=wrong")
    # the right key opens them (GET routes; the SSE stream also takes ?key= since EventSource sends no headers)
    for path, method in routes:
        if method != "GET" or path in PUBLIC or path == "/v1/events/stream":
            continue
        if (
            "/openai/" in path
        ):  # a job that waits for a worker; the right key: tests/api/test_openai_routes.py
            continue
        r = api.get(fill(path, values) + ("?wait=1000" if "sync" in path or "stream" in path else ""))
        assert r.status_code != 401, (path, r.status_code)
    with httpx.stream("GET", f"{keyed.client_url}/v1/events/stream?key={KEY}", timeout=10) as r:
        assert r.status_code == 200
    # the public routes answer without a key, and carry no data
    page = httpx.get(f"{keyed.client_url}/").text
    for secret in (KEY, worker.token, job_id):
        assert secret not in page
    assert httpx.get(f"{keyed.client_url}/static/..%2Fapi%2Fdeps.py").status_code == 404
    assert httpx.get(f"{keyed.client_url}/ping").status_code == 200
    figures.update(
        routes=len(routes),
        guarded=guarded,
        public=sorted(PUBLIC),
        credentials_tried=len(wrong_credentials) + 1,
    )


def test_worker_routes_refuse_the_users_key_and_other_workers(keyed: BackgroundControlPlane) -> None:
    api = httpx.Client(base_url=keyed.client_url, timeout=30, headers=AUTH)
    for name in ("e", "f"):
        assert api.post("/v1/endpoints", json={"name": name, "id": name, "imageName": "x"}).status_code == 201
    a = ProtocolWorker(keyed.client_url, "e", headers=AUTH)
    b = ProtocolWorker(keyed.client_url, "e", headers=AUTH)
    other = ProtocolWorker(keyed.client_url, "f", headers=AUTH)
    job_id = api.post("/v2/e/run", json={"input": {"mine": "a"}}).json()["id"]
    assert a.take_job()["id"] == job_id
    base = a.env["RUNPOD_WEBHOOK_GET_JOB"].split("/v2/")[0]

    # every worker route (from the worker app's table) refuses no token, a wrong one and the user's key
    assert keyed.plane is not None and keyed.plane.ctx is not None
    worker_routes = [
        (info.path, m)
        for info in iter_routes(create_worker_app(keyed.plane.ctx).routes)
        for m in info.methods - {"HEAD"}
        if info.path != "/ping"
    ]
    assert len(worker_routes) >= 7
    for path, method in worker_routes:
        url = base + fill(path, {"endpoint_id": "e", "worker_id": a.id, "job_id": job_id})
        for headers in (
            {},
            {"Authorization": "wrong"},
            {"Authorization": KEY},
            {"Authorization": f"Bearer {KEY}"},
        ):
            r = httpx.request(
                method, url + "?gpu=1", headers={**headers, "X-Request-ID": job_id}, content=b"{}"
            )
            assert r.status_code == 401, (method, path, headers, r.status_code)

    # b's token cannot act as a, nor on a's job; f's worker cannot act on endpoint e
    as_a = {
        "take": ("GET", f"{base}/v2/e/job-take/{a.id}?gpu=1&job_in_progress=0"),
        "take-batch": ("GET", f"{base}/v2/e/job-take-batch/{a.id}?gpu=1&batch_size=4"),
        "stop": ("GET", f"{base}/v2/e/job-stop/{a.id}?gpu=1"),
        "ping": ("GET", f"{base}/v2/e/ping/{a.id}?gpu=1&job_id={job_id}"),
        "done": ("POST", f"{base}/v2/e/job-done/{a.id}/{job_id}?gpu=1&isStream=false"),
        "stream": ("POST", f"{base}/v2/e/job-stream/{a.id}/{job_id}?gpu=1&isStream=false"),
    }
    for intruder in (b, other):
        for what, (method, url) in as_a.items():
            r = intruder.http.request(method, url, content=b'{"output": "stolen"}')
            assert r.status_code == 403, (what, intruder.endpoint_id, r.status_code, r.text)
    # ... nor with its own id in the path (the job was not handed to it)
    for verb in ("job-done", "job-stream"):
        r = b.http.post(
            f"{base}/v2/e/{verb}/{b.id}/{job_id}?gpu=1&isStream=false", content=b'{"output": "stolen"}'
        )
        assert r.status_code == 403, (verb, r.text)
        r = other.http.post(
            f"{base}/v2/f/{verb}/{other.id}/{job_id}?gpu=1&isStream=false", content=b'{"output": "x"}'
        )
        assert r.status_code in (403, 404), (verb, r.text)
    r = b.http.post(
        f"{base}/v2/e/job-done/{b.id}?gpu=1", headers={"X-Request-ID": job_id}, content=b'{"output": "x"}'
    )
    assert r.status_code == 403
    # a worker token is no user key: it cannot cancel (stop) a job through the client API
    r = httpx.post(f"{keyed.client_url}/v2/e/cancel/{job_id}", headers={"Authorization": b.token})
    assert r.status_code == 401
    # nothing happened to the job; its own worker finishes it
    body = api.get(f"/v2/e/status/{job_id}").json()
    assert body["status"] == "IN_PROGRESS" and body["workerId"] == a.id
    assert api.get(f"/v2/e/stream/{job_id}").json()["stream"] == []
    assert a.done(job_id, {"output": {"mine": "a"}}).status_code == 200
    assert api.get(f"/v2/e/status/{job_id}").json()["output"] == {"mine": "a"}


def check_masked(body: Any) -> None:
    env = body["env"]
    for key, value in SECRETS.items():
        assert env[key] == MASK, (key, env)
        assert value not in str(body)
    for key, value in PLAIN.items():
        assert env[key] == value


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_env_secrets_masked_in_v1_and_never_logged(
    tmp_path: Path, figures: dict[str, Any], log_format: str
) -> None:
    server = ServeProcess(
        tmp_path / "data",
        tmp_path / "serve.log",
        runtime="none",
        env={
            "EMULATOR_API_KEY": KEY,
            "EMULATOR_LOG_LEVEL": "debug",
            "EMULATOR_LOG_FORMAT": log_format,
            "EMULATOR_JOB_TAKE_HOLD_S": "0.3",
            "EMULATOR_JOB_STOP_HOLD_S": "0.3",
        },
    )
    tokens: list[str] = []
    try:
        server.start()
        api = httpx.Client(base_url=server.url, timeout=30, headers=AUTH)
        r = api.post(
            "/v1/endpoints", json={"name": "s", "id": "s", "imageName": "x", "env": {**SECRETS, **PLAIN}}
        )
        assert r.status_code == 201, r.text
        check_masked(r.json())
        check_masked(api.get("/v1/endpoints/s").json())
        check_masked(api.get("/v1/endpoints").json()[0])
        # the worker's env (what a worker runs with) has the real values
        worker = ProtocolWorker(server.url, "s", headers=AUTH)
        tokens.append(worker.token)
        assert {k: worker.env[k] for k in SECRETS} == SECRETS
        assert worker.env["RUNPOD_AI_API_KEY"] == worker.token

        # a client that reads the endpoint and writes it back does not overwrite the secrets with the mask
        read = api.get("/v1/endpoints/s").json()
        r = api.patch("/v1/endpoints/s", json={"env": read["env"], "workersMax": 2})
        assert r.status_code == 200, r.text
        check_masked(r.json())
        assert r.json()["version"] == 1  # the env did not change
        again = ProtocolWorker(server.url, "s", headers=AUTH)
        tokens.append(again.token)
        assert {k: again.env[k] for k in SECRETS} == SECRETS
        # a real change goes through (and is masked too)
        r = api.patch("/v1/endpoints/s", json={"env": {**read["env"], "HF_TOKEN": "hf_rotated_value_9999"}})
        assert r.json()["version"] == 2 and r.json()["env"]["HF_TOKEN"] == MASK
        rotated = ProtocolWorker(server.url, "s", headers=AUTH)
        tokens.append(rotated.token)
        assert rotated.env["HF_TOKEN"] == "hf_rotated_value_9999"
        assert rotated.env["DB_PASSWORD"] == SECRETS["DB_PASSWORD"]

        # jobs, errors, stream, dashboard: none of it shows or logs a secret
        job_id = api.post("/v2/s/run", json={"input": {"q": 1}}).json()["id"]
        job = rotated.take_job()
        rotated.stream(job["id"], {"chunk": 1})
        rotated.ping([job["id"]])
        rotated.done(job["id"], {"output": {"a": 1}})
        assert api.get(f"/v2/s/status/{job_id}").json()["status"] == "COMPLETED"
        api.patch("/v1/endpoints/s", json={"env": {"A=B": "x"}})  # refused, names the key only
        api.post("/v1/endpoints", json={"name": "t", "imageName": "x", "env": {"K": 5}})
        httpx.get(f"{server.url}/v1/endpoints", headers={"Authorization": "Bearer wrong-key-attempt"})
        rotated.http.get(
            rotated.url("RUNPOD_WEBHOOK_GET_JOB"), headers={"Authorization": "bad-token-attempt"}
        )
        views = [
            api.get(p).text
            for p in (
                "/v1/dashboard",
                "/v1/endpoints/s/events",
                "/metrics",
                "/v1/endpoints/s/jobs",
                "/v1/endpoints/s/workers",
                "/openapi.json",
            )
        ]
        for text in views:
            for value in [*SECRETS.values(), "hf_rotated_value_9999", KEY]:
                assert value not in text
        assert server.stop() == 0
        log = server.log_text()
        assert "job queued" in log and "worker created" in log  # the log is the real one
        leaked = [
            v for v in [*SECRETS.values(), *PLAIN.values(), "hf_rotated_value_9999", KEY, *tokens] if v in log
        ]
        assert not leaked, leaked
        figures.update(
            secret_keys=len(SECRETS),
            masked_in=["POST/GET/PATCH /v1/endpoints"],
            leaked_in_logs=0,
            log_lines=len(log.splitlines()),
        )
    finally:
        server.close()


def test_masking_rule() -> None:
    for key in ("HF_TOKEN", "api_key", "Password", "DB_PASS", "MY_SECRET", "GCP_CREDENTIALS", "AUTH_HEADER"):
        assert looks_secret(key), key
    for key in ("GREETING", "MODEL_NAME", "PORT", "LOG_LEVEL"):
        assert not looks_secret(key), key


@pytest.mark.docker
def test_worker_containers_are_confined(
    docker_instance: DockerInstance, tmp_path: Path, figures: dict[str, Any]
) -> None:
    env = serve_env(docker_instance, EMULATOR_API_KEY=KEY)
    server = ServeProcess(docker_instance.data_dir, tmp_path / "serve.log", env=env)
    try:
        server.start()
        api = httpx.Client(base_url=server.url, timeout=60, headers=AUTH)
        r = api.post(
            "/v1/endpoints",
            json={
                "name": "c",
                "id": "c",
                "imageName": ECHO,
                "workersMin": 1,
                "workersMax": 2,
                "extraWorkers": 1,
                "env": {**SECRETS, **PLAIN},
            },
        )
        assert r.status_code == 201, r.text
        check_masked(r.json())
        wait_for(
            lambda: (
                any(w["status"] == "IDLE" for w in api.get("/v1/endpoints/c/workers").json()["workers"])
                and len(docker_instance.containers()) >= 2
            ),
            timeout_s=90,
            interval_s=0.2,
            what="an IDLE worker and a standby container",
        )
        assert api.post("/v2/c/runsync", json={"input": {"hi": 1}}).json()["output"] == {"hi": 1}
        containers = docker_instance.containers()
        assert len(containers) >= 2  # a serving worker and a standby one
        tokens = []
        for container in containers:
            container.reload()
            host = container.attrs["HostConfig"]
            assert host["Privileged"] is False
            assert host["NetworkMode"] == docker_instance.network, host["NetworkMode"]
            assert not host.get("CapAdd")
            assert host.get("PidMode", "") in ("", None) and host.get("IpcMode") not in ("host",)
            assert host.get("UsernsMode", "") in ("", None) and not host.get("Devices")
            assert not host.get("Binds")
            assert all("docker.sock" not in str(m) for m in container.attrs.get("Mounts", []))
            assert not container.attrs.get("Mounts")
            assert not any("unconfined" in str(opt) for opt in host.get("SecurityOpt") or [])
            env_list = container.attrs["Config"]["Env"]
            env = dict(item.split("=", 1) for item in env_list)
            assert {k: env[k] for k in SECRETS} == SECRETS  # containers get the real values
            assert not any("DOCKER_HOST" in item for item in env_list)
            tokens.append(env["RUNPOD_AI_API_KEY"])
        check_masked(api.get("/v1/endpoints/c").json())
        worker_id = next(
            w["id"] for w in api.get("/v1/endpoints/c/workers").json()["workers"] if w["status"] == "IDLE"
        )
        container_log = api.get(f"/v1/workers/{worker_id}/logs?tail=500").text
        assert server.stop() == 0
        assert docker_instance.containers() == []
        log = server.log_text()
        assert "worker state" in log
        leaked = [
            v for v in [*SECRETS.values(), *PLAIN.values(), KEY, *tokens] if v in log or v in container_log
        ]
        assert not leaked, leaked
        figures.update(
            containers_inspected=len(containers),
            privileged=False,
            docker_socket=False,
            host_network=False,
            leaked_in_logs=0,
        )
    finally:
        server.close()

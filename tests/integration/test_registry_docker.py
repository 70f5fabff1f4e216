"""Image pulls from a real registry (Debian's docker-registry on a loopback port with htpasswd auth):
an endpoint made from a template with a registry credential pulls its private image on a cold start
(progress on the worker, ``pullMs`` in the job's cold-start breakdown); a wrong password and a missing
tag leave the worker UNHEALTHY with the registry's reason in words; an image pushed after the endpoint
was made is picked up by the back-off retry; a new digest behind the same tag, re-pulled by
``POST /v1/endpoints/{id}/update``, rolls out as a new version. Also measures the emulator's pull time
against ``docker pull`` of the same image in the same run.

Everything is removed at the end: containers by instance label (docker_fixtures), the registry process
and its storage, and every image tag the tests made or pulled (registry_fixture)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import structlog.testing

from emulator.control_plane import ControlPlane
from tests.integration import docker_fixtures, registry_fixture
from tests.integration.docker_fixtures import Instance, docker_settings, eventually, sample
from tests.integration.registry_fixture import Registry

docker_session = docker_fixtures.docker_session  # fixtures, shared without a conftest of our own
instance = docker_fixtures.instance
registry = registry_fixture.registry

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


@pytest.fixture(scope="module", autouse=True)
def info_logs() -> Iterator[None]:
    """Log at info level while this module runs (an earlier in-process CLI test may have set "error"), so
    that the pulls' own log lines exist and the password check below is not vacuous."""
    previous = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        yield
    finally:
        structlog.configure(wrapper_class=previous)


@pytest.fixture(scope="module")
def source(registry: Registry) -> Iterator[str]:
    """Two worker images in the registry only: ``se-private:v1`` (the echo sample plus a 4 MB layer of its
    own) and ``se-private:next`` (plus 512 KB); removed locally, so a pull downloads their own layer."""
    for tag, size_kb in (("v1", 4096), ("next", 512)):
        marker = uuid.uuid4().hex[:10]
        registry.build(sample("echo"), marker, size_kb=size_kb)
        registry.push(f"se-registry-test-src:{marker}", "se-private", tag)
        registry.remove_local(f"se-registry-test-src:{marker}")
    yield "se-private"


async def _workers(api: httpx.AsyncClient, endpoint: str) -> list[dict[str, Any]]:
    r = await api.get(f"/v1/endpoints/{endpoint}/workers")
    r.raise_for_status()
    return [w for w in r.json()["workers"] if not w["standby"]]


async def _credential(api: httpx.AsyncClient, name: str, username: str, password: str) -> str:
    r = await api.post(
        "/v1/containerregistryauth", json={"name": name, "username": username, "password": password}
    )
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"id", "name"}  # the password is write-only
    return str(r.json()["id"])


async def _run(api: httpx.AsyncClient, endpoint: str, job_input: dict[str, Any]) -> dict[str, Any]:
    body = (await api.post(f"/v2/{endpoint}/runsync?wait=60000", json={"input": job_input})).json()
    deadline = time.monotonic() + 120
    while body.get("status") in ("IN_QUEUE", "IN_PROGRESS") and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        body = (await api.get(f"/v2/{endpoint}/status/{body['id']}")).json()
    return body  # type: ignore[no-any-return]


def _docker_cli_pull_s(registry: Registry, ref: str) -> float:
    """``docker pull`` of ``ref`` with the registry's credentials in a throw-away config folder."""
    with tempfile.TemporaryDirectory() as config:
        login = [
            "docker",
            "--config",
            config,
            "login",
            "-u",
            registry.username,
            "--password-stdin",
            registry.host,
        ]
        subprocess.run(login, input=registry.password.encode(), check=True, capture_output=True, timeout=60)
        began = time.monotonic()
        subprocess.run(
            ["docker", "--config", config, "pull", "-q", ref], check=True, capture_output=True, timeout=120
        )
        return time.monotonic() - began


async def test_template_endpoint_pulls_a_private_image_on_a_cold_start(
    instance: Instance, registry: Registry, source: str
) -> None:
    ref = registry.ref(source, "v1")
    assert not registry.local(ref)
    async with (
        ControlPlane(docker_settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=60) as api,
    ):
        auth_id = await _credential(api, "local-registry", registry.username, registry.password)
        listed = (await api.get("/v1/containerregistryauth")).json()
        assert registry.password not in str(listed)
        r = await api.post(
            "/v1/templates",
            json={
                "name": "private-echo",
                "imageName": ref,
                "isServerless": True,
                "containerRegistryAuthId": auth_id,
                "env": {"FROM_TEMPLATE": "yes"},
                "containerDiskInGb": 5,
            },
        )
        assert r.status_code == 200, r.text
        template_id = r.json()["id"]
        r = await api.post(
            "/v1/endpoints",
            json={
                "name": "private",
                "templateId": template_id,
                "workersMin": 0,
                "workersMax": 1,
                "extraWorkers": 0,
            },
        )
        assert r.status_code == 201, r.text
        created = r.json()
        assert created["imageName"] == ref and created["containerRegistryAuthId"] == auth_id
        assert (
            created["imageStatus"]["local"] is False and "will pull it" in created["imageStatus"]["message"]
        )
        endpoint = created["id"]

        seen: list[dict[str, Any]] = []

        async def watch() -> None:
            while True:
                for w in await _workers(api, endpoint):
                    if w.get("pull") and w["pull"]["status"] not in ("complete", "failed"):
                        seen.append(w["pull"] | {"reason": w["reason"], "state": w["status"]})
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch())
        try:
            body = await _run(api, endpoint, {"message": "pulled"})
        finally:
            watcher.cancel()
        assert body["status"] == "COMPLETED", body
        assert body["output"] == {"message": "pulled"}
        cold = body["coldStart"]
        assert cold["coldStart"] is True and isinstance(cold["pullMs"], int), cold
        (w,) = await _workers(api, endpoint)
        pull = w["pull"]
        assert pull["status"] == "complete" and pull["image"] == ref and pull["digest"].startswith("sha256:")
        assert pull["layersTotal"] >= 1 and pull["layersDone"] == pull["layersTotal"]
        assert pull["bytesTotal"] >= 4 * 1024 * 1024 and pull["bytesDone"] == pull["bytesTotal"], pull
        for snapshot in seen:  # every progress seen while pulling: INITIALIZING, and said in the reason
            assert snapshot["state"] == "INITIALIZING" and snapshot["reason"].startswith(f"pulling {ref}")
        assert registry.local(ref)
        assert (await api.delete(f"/v1/endpoints/{endpoint}")).status_code == 204
        assert (await api.delete(f"/v1/templates/{template_id}")).status_code == 204

    # the same pull by `docker pull`, from the same registry, with the image absent again
    registry.remove_local(ref)
    cli_s = _docker_cli_pull_s(registry, ref)
    registry.remove_local(ref)
    print(
        f"\npull of {ref} (echo sample + 4 MB layer): emulator {cold['pullMs']} ms, "
        f"`docker pull` {cli_s * 1000:.0f} ms; progress snapshots seen while pulling: {len(seen)}"
    )


async def test_wrong_password_and_missing_tag_are_unhealthy_with_the_reason(
    instance: Instance, registry: Registry, source: str
) -> None:
    async with (
        ControlPlane(docker_settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=60) as api,
    ):
        logged = await _failing_pulls(api, registry, source)
    # the passwords are never logged: the pulls that used them were (with the credential's id)
    pulls = [e for e in logged if e.get("event") in ("pulling image", "image pull failed")]
    assert pulls and any(e.get("credential") for e in pulls), logged
    assert registry.password not in repr(logged) and "not-the-password" not in repr(logged)


async def _failing_pulls(
    api: httpx.AsyncClient, registry: Registry, source: str
) -> list[MutableMapping[str, Any]]:
    with structlog.testing.capture_logs() as logged:
        wrong = await _credential(api, "wrong", registry.username, "not-the-password")
        right = await _credential(api, "right", registry.username, registry.password)
        slow_retry = {"initialDelayS": 120}
        cases = {
            "wrong-password": (registry.ref(source, "v1"), wrong, "authentication failed"),
            "missing-tag": (registry.ref(source, "no-such-tag"), right, "no such tag"),
        }
        for name, (image, auth_id, _) in cases.items():
            r = await api.post(
                "/v1/endpoints",
                json={
                    "name": name,
                    "id": name,
                    "imageName": image,
                    "containerRegistryAuthId": auth_id,
                    "workersMin": 1,
                    "workersMax": 1,
                    "extraWorkers": 0,
                    "backoff": slow_retry,
                },
            )
            assert r.status_code == 201, r.text
        for name, (image, _, words) in cases.items():

            async def unhealthy(name: str = name) -> list[dict[str, Any]]:
                return [w for w in await _workers(api, name) if w["status"] == "UNHEALTHY"]

            (w,) = await eventually(unhealthy, f"{name}: an UNHEALTHY worker", timeout_s=60)
            assert w["reason"].startswith(words), w["reason"]
            assert image in w["reason"] and w["nextRetryAt"] is not None and w["pull"]["status"] == "failed"
        assert "not-the-password" not in (await api.get("/v1/endpoints/wrong-password/workers")).text
    return logged


async def test_an_image_pushed_later_is_picked_up_and_a_new_digest_rolls_out_on_update(
    instance: Instance, registry: Registry, source: str
) -> None:
    ref = registry.ref(source, "late")
    async with (
        ControlPlane(docker_settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=60) as api,
    ):
        auth_id = await _credential(api, "right", registry.username, registry.password)
        r = await api.post(
            "/v1/endpoints",
            json={
                "name": "late",
                "id": "late",
                "imageName": ref,
                "containerRegistryAuthId": auth_id,
                "workersMin": 1,
                "workersMax": 1,
                "extraWorkers": 0,
                "backoff": {"initialDelayS": 1, "factor": 1, "maxDelayS": 1},
            },
        )
        assert r.status_code == 201 and r.json()["imageStatus"]["local"] is False, r.text

        async def state(want: str) -> list[dict[str, Any]]:
            return [w for w in await _workers(api, "late") if w["status"] == want]

        (w,) = await eventually(lambda: state("UNHEALTHY"), "UNHEALTHY before the push", timeout_s=60)
        assert "no such tag" in w["reason"]
        registry.retag(source, "v1", "late")  # pushed after the endpoint was made
        (w,) = await eventually(lambda: state("IDLE"), "IDLE after the push", timeout_s=90)
        assert w["restarts"] >= 1 and w["version"] == 1
        first = await _run(api, "late", {"n": 1})
        assert first["status"] == "COMPLETED", first

        # a new image behind the same tag: POST …/update pulls it and rolls it out as version 2
        registry.retag(source, "next", "late")
        r = await api.post("/v1/endpoints/late/update", json={})
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 2 and r.json()["imageStatus"]["pull"]["changed"] is True, r.json()
        same = await api.post("/v1/endpoints/late/update")  # nothing new: no new version
        assert same.status_code == 200 and same.json()["version"] == 2, same.text

        async def updated() -> list[dict[str, Any]]:
            return [w for w in await state("IDLE") if w["version"] == 2]

        await eventually(updated, "a version 2 worker IDLE", timeout_s=90)
        second = await _run(api, "late", {"n": 2})
        assert second["status"] == "COMPLETED" and second["workerId"] != first["workerId"], second


async def test_without_a_credential_the_hosts_docker_config_is_used(
    instance: Instance, registry: Registry, source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No containerRegistryAuthId: the Docker SDK sends the credentials of the Docker config it reads
    (``$DOCKER_CONFIG/config.json``, as ``docker login`` writes it; here a throw-away one)."""
    token = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": token}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    ref = registry.ref(source, "v1")
    registry.remove_local(ref)
    async with (
        ControlPlane(docker_settings(instance)) as cp,
        httpx.AsyncClient(base_url=cp.client_url, timeout=60) as api,
    ):
        r = await api.post(
            "/v1/endpoints",
            json={
                "name": "hostcreds",
                "id": "hostcreds",
                "imageName": ref,
                "workersMax": 1,
                "extraWorkers": 0,
            },
        )
        assert r.status_code == 201, r.text
        body = await _run(api, "hostcreds", {"via": "config.json"})
        assert body["status"] == "COMPLETED" and "pullMs" in body["coldStart"], body

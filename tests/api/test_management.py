from __future__ import annotations

import httpx

from emulator.testing import BackgroundControlPlane


def test_endpoint_crud_and_versioning(api: httpx.Client) -> None:
    r = api.post("/v1/endpoints", json={"name": "alpha", "imageName": "img:1", "workersMax": 5})
    assert r.status_code == 201
    ep = r.json()
    assert ep["id"] and ep["version"] == 1 and ep["workersMin"] == 0 and ep["idleTimeout"] == 5
    assert ep["scalerType"] == "QUEUE_DELAY" and ep["scalerValue"] == 4 and ep["extraWorkers"] == 2
    assert api.post("/v1/endpoints", json={"name": "alpha", "imageName": "x"}).status_code == 409
    assert [e["name"] for e in api.get("/v1/endpoints").json()] == ["alpha"]

    patched = api.patch(f"/v1/endpoints/{ep['id']}", json={"workersMax": 7}).json()
    assert patched["workersMax"] == 7 and patched["version"] == 1  # scaling is not a new version
    patched = api.patch(f"/v1/endpoints/{ep['id']}", json={"imageName": "img:2"}).json()
    assert patched["version"] == 2
    patched = api.patch(f"/v1/endpoints/{ep['id']}", json={"env": {"A": "1"}}).json()
    assert patched["version"] == 3
    assert api.patch(f"/v1/endpoints/{ep['id']}", json={"id": "other"}).status_code == 422
    assert api.patch(f"/v1/endpoints/{ep['id']}", json={"workersMin": 9}).status_code == 422
    assert api.get(f"/v1/endpoints/{ep['id']}").json()["version"] == 3

    workers = api.get(f"/v1/endpoints/{ep['id']}/workers").json()
    assert workers["endpointVersion"] == 3 and workers["workers"] == []
    assert workers["summary"]["total"] == 0

    assert api.delete(f"/v1/endpoints/{ep['id']}").status_code == 204
    assert api.get(f"/v1/endpoints/{ep['id']}").status_code == 404
    assert api.post(f"/v2/{ep['id']}/run", json={"input": 1}).status_code == 404


def test_worker_list_shape(api: httpx.Client, plane: BackgroundControlPlane, endpoint: str) -> None:
    from tests.helpers import ProtocolWorker

    worker = ProtocolWorker(plane.client_url, endpoint)
    body = api.get(f"/v1/endpoints/{endpoint}/workers").json()
    (w,) = body["workers"]
    for key in (
        "id",
        "status",
        "version",
        "isStale",
        "containerId",
        "gpuIds",
        "jobIds",
        "restarts",
        "reason",
        "nextRetryAt",
        "startedAt",
    ):
        assert key in w
    assert w["status"] == "INITIALIZING"
    worker.ping()
    assert api.get(f"/v1/endpoints/{endpoint}/workers").json()["workers"][0]["status"] == "IDLE"

"""RunPod's REST v1 management shape over real HTTP (no container runtime): templates, registry
credentials, endpoints from ``templateId``, RunPod's field names and types, ``POST …/update`` aliases,
and the GraphQL subset driven by RunPod's own Python SDK (runpod 1.12.0) with ``RUNPOD_API_BASE_URL``.

The field types are those of RunPod's published REST schema (docs ``api-reference/openapi.json``,
schemas ``Endpoint`` and ``Template``): integers where it has integers, timestamps as strings."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from emulator.testing import BackgroundControlPlane

IMAGE = "serverless-emulator/sample-echo:latest"

# RunPod REST v1 `Endpoint` and `Template` field types (JSON: int for "integer", str for "string", ...)
ENDPOINT_TYPES: dict[str, type] = {
    "id": str,
    "name": str,
    "templateId": str,
    "computeType": str,
    "gpuTypeIds": list,
    "gpuCount": int,
    "idleTimeout": int,
    "scalerType": str,
    "scalerValue": int,
    "workersMin": int,
    "workersMax": int,
    "executionTimeoutMs": int,
    "version": int,
    "createdAt": str,
    "env": dict,
    "networkVolumeId": str,
    "allowedCudaVersions": list,
    "dataCenterIds": list,
    "minCudaVersion": str,
    "networkVolumeIds": list,
    "template": dict,
}
TEMPLATE_TYPES: dict[str, type] = {
    "id": str,
    "name": str,
    "imageName": str,
    "env": dict,
    "dockerStartCmd": list,
    "dockerEntrypoint": list,
    "containerDiskInGb": int,
    "volumeInGb": int,
    "volumeMountPath": str,
    "ports": list,
    "isServerless": bool,
    "isPublic": bool,
    "isRunpod": bool,
    "readme": str,
    "containerRegistryAuthId": str,
    "runtimeInMin": int,
}
RUNPOD_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def check_types(doc: dict[str, Any], types: dict[str, type]) -> None:
    for name, kind in types.items():
        value = doc.get(name)
        if value is None:
            continue  # not set (RunPod leaves such fields out)
        assert type(value) is kind, (
            f"{name}: {value!r} is {type(value).__name__}, RunPod's type is {kind.__name__}"
        )


def test_template_crud_and_an_endpoint_from_it(api: httpx.Client) -> None:
    r = api.post(
        "/v1/templates",
        json={
            "name": "echo-t",
            "imageName": IMAGE,
            "isServerless": True,
            "env": {"A": "1", "API_KEY": "s3cret"},
            "dockerStartCmd": ["python", "-u", "handler.py"],
            "containerDiskInGb": 20,
            "ports": ["8000/http"],
        },
    )
    assert r.status_code == 200, r.text
    template = r.json()
    check_types(template, TEMPLATE_TYPES)
    assert template["containerDiskInGb"] == 20 and template["isRunpod"] is False
    tid = template["id"]
    assert api.get(f"/v1/templates/{tid}").json() == template
    assert [t["id"] for t in api.get("/v1/templates").json()] == [tid]

    r = api.post(
        "/v1/endpoints",
        json={
            "name": "from-t",
            "templateId": tid,
            "computeType": "GPU",
            "gpuTypeIds": ["NVIDIA L4"],
            "dataCenterIds": ["EU-RO-1"],
            "allowedCudaVersions": ["12.4"],
            "idleTimeout": 7,
            "scalerValue": 2,
            "workersMax": 1,
            "env": {"B": "2"},
        },
    )
    assert r.status_code == 201, r.text
    ep = r.json()
    check_types(ep, ENDPOINT_TYPES)
    assert ep["imageName"] == IMAGE and ep["templateId"] == tid and ep["gpuCount"] == 1
    assert ep["env"] == {"A": "1", "API_KEY": "********", "B": "2"}
    assert ep["dockerStartCmd"] == ["python", "-u", "handler.py"]
    assert ep["idleTimeout"] == 7 and ep["scalerValue"] == 2 and RUNPOD_TIME.match(ep["createdAt"])
    assert ep["notEmulated"] == ["gpuTypeIds", "dataCenterIds", "allowedCudaVersions"]
    with_template = api.get(f"/v1/endpoints/{ep['id']}", params={"includeTemplate": "true"}).json()
    assert with_template["template"]["id"] == tid and '"idleTimeout":7,' in api.get("/v1/endpoints").text

    # a template change is applied to its endpoints: a new version
    r = api.patch(f"/v1/templates/{tid}", json={"imageName": "serverless-emulator/sample-slow:latest"})
    assert r.status_code == 200 and r.json()["imageName"].endswith("sample-slow:latest"), r.text
    ep2 = api.get(f"/v1/endpoints/{ep['id']}").json()
    assert ep2["imageName"].endswith("sample-slow:latest") and ep2["version"] == ep["version"] + 1
    assert ep2["env"]["B"] == "2"  # the endpoint's own env stays
    r = api.post(f"/v1/templates/{tid}/update", json={"env": {"A": "9"}})
    assert r.status_code == 200 and api.get(f"/v1/endpoints/{ep['id']}").json()["env"] == {"A": "9", "B": "2"}

    # POST …/update is PATCH for endpoints too
    r = api.post(f"/v1/endpoints/{ep['id']}/update", json={"workersMax": 2})
    assert r.status_code == 200 and r.json()["workersMax"] == 2, r.text

    assert api.delete(f"/v1/templates/{tid}").status_code == 409  # in use
    assert api.delete(f"/v1/endpoints/{ep['id']}").status_code == 204
    assert api.delete(f"/v1/templates/{tid}").status_code == 204
    assert api.get(f"/v1/templates/{tid}").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"name": "x", "imageName": IMAGE, "templateid": "t"}, 422, "templateid"),  # a typo is still a 422
        ({"name": "x"}, 422, "imageName or templateId"),
        ({"name": "x", "templateId": "nosuch"}, 422, "templateId"),
        (
            {"name": "x", "imageName": IMAGE, "containerRegistryAuthId": "nosuch"},
            422,
            "containerRegistryAuthId",
        ),
        ({"name": "x", "imageName": IMAGE, "computeType": "TPU"}, 422, "computeType"),
        ({"name": "x", "imageName": IMAGE, "gpuTypeIds": "NVIDIA L4"}, 422, "gpuTypeIds"),
    ],
)
def test_endpoint_body_errors_name_the_field(
    api: httpx.Client, body: dict[str, Any], status: int, names: str
) -> None:
    r = api.post("/v1/endpoints", json=body)
    assert r.status_code == status and names in r.text, r.text


def test_template_body_errors(api: httpx.Client) -> None:
    assert api.post("/v1/templates", json={"name": "t"}).status_code == 422
    r = api.post("/v1/templates", json={"name": "t", "imageName": IMAGE, "imagename": "x"})
    assert r.status_code == 422 and "imagename" in r.text
    assert api.post("/v1/templates", json={"name": "t", "imageName": IMAGE}).status_code == 200
    assert api.post("/v1/templates", json={"name": "t", "imageName": IMAGE}).status_code == 409
    assert api.patch("/v1/templates/nosuch", json={"name": "u"}).status_code == 404


def test_registry_credentials_are_write_only(api: httpx.Client, plane: BackgroundControlPlane) -> None:
    r = api.post(
        "/v1/containerregistryauth",
        json={"name": "private-registry", "username": "me", "password": "hunter2-pw"},
    )
    assert r.status_code == 200 and set(r.json()) == {"id", "name"}, r.text
    auth_id = r.json()["id"]
    assert "hunter2-pw" not in api.get("/v1/containerregistryauth").text
    assert api.get(f"/v1/containerregistryauth/{auth_id}").json() == {
        "id": auth_id,
        "name": "private-registry",
    }
    r = api.post(
        "/v1/templates",
        json={"name": "priv", "imageName": "registry.example.com/me/x:1", "containerRegistryAuthId": auth_id},
    )
    assert r.status_code == 200, r.text
    assert api.delete(f"/v1/containerregistryauth/{auth_id}").status_code == 409  # a template uses it
    assert api.delete(f"/v1/templates/{r.json()['id']}").status_code == 204
    assert api.delete(f"/v1/containerregistryauth/{auth_id}").status_code == 204
    assert api.get(f"/v1/containerregistryauth/{auth_id}").status_code == 404
    assert api.post("/v1/containerregistryauth", json={"name": "n", "username": "u"}).status_code == 422


def test_runpod_sdk_management_calls_through_graphql(
    api: httpx.Client, plane: BackgroundControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runpod
    from runpod.error import QueryError

    monkeypatch.setenv("RUNPOD_API_BASE_URL", plane.client_url)
    monkeypatch.setattr(runpod, "api_key", "anything")
    template = runpod.create_template(
        name="sdk-t",
        image_name=IMAGE,
        docker_start_cmd="python -u handler.py",
        env={"K": "v"},
        is_serverless=True,
    )
    assert template["imageName"] == IMAGE and template["env"] == [{"key": "K", "value": "v"}]
    assert template["dockerArgs"] == "python -u handler.py" and template["isServerless"] is True
    endpoint = runpod.create_endpoint(
        name="sdk-e", template_id=template["id"], gpu_ids="AMPERE_16", workers_max=2
    )
    assert endpoint["templateId"] == template["id"] and endpoint["gpuIds"] == "AMPERE_16"
    assert endpoint["workersMax"] == 2 and endpoint["idleTimeout"] == 5 and endpoint["gpuCount"] == 1
    rest = api.get(f"/v1/endpoints/{endpoint['id']}").json()
    assert rest["imageName"] == IMAGE and rest["gpuTypeIds"] == ["AMPERE_16"] and rest["env"] == {"K": "v"}

    listed = runpod.get_endpoints()
    assert [e["id"] for e in listed] == [endpoint["id"]]
    assert listed[0]["templateId"] == template["id"] and RUNPOD_TIME.match(listed[0]["createdAt"])

    other = runpod.create_template(name="sdk-t2", image_name="serverless-emulator/sample-slow:latest")
    changed = runpod.update_endpoint_template(endpoint["id"], other["id"])
    assert changed == {"id": endpoint["id"], "templateId": other["id"]}
    after = api.get(f"/v1/endpoints/{endpoint['id']}").json()
    assert after["imageName"].endswith("sample-slow:latest") and after["version"] == rest["version"] + 1

    auth = runpod.create_container_registry_auth("reg", "me", "pw-never-shown")
    assert set(auth) == {"id", "name"}

    with pytest.raises(QueryError, match="answers only these GraphQL operations"):
        runpod.get_gpus()
    # deleting an endpoint: the mutation runpodctl sends (the Python SDK has no call for it)
    r = api.post("/graphql", json={"query": f'mutation {{ deleteEndpoint(id: "{endpoint["id"]}") }}'})
    assert r.status_code == 200 and r.json() == {"data": {"deleteEndpoint": None}}, r.text
    assert api.get(f"/v1/endpoints/{endpoint['id']}").status_code == 404
    r = api.post("/graphql", json={"query": 'mutation { deleteEndpoint(id: "gone") }'})
    assert "does not exist" in r.json()["errors"][0]["message"]
    assert (
        "not valid GraphQL"
        in api.post("/graphql", json={"query": "mutation {"}).json()["errors"][0]["message"]
    )
    assert api.post("/graphql", json=[1]).json()["errors"]

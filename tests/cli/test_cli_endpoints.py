"""`serverless-emulator endpoints create|list|show|update|delete` against a live control plane."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx

from emulator.config import default_settings_for_tests
from emulator.testing import BackgroundControlPlane
from tests.cli.conftest import Cli

IMAGE = "serverless-emulator/sample-echo:latest"


def test_create_list_update_delete(cli: Cli, api: httpx.Client) -> None:
    r = cli(
        "endpoints",
        "create",
        "--name",
        "mine",
        "--id",
        "mine",
        "--image",
        IMAGE,
        "--workers-max",
        "2",
        "--gpu-count",
        "0",
        "--env",
        "A=1",
        "--env",
        "B=x=y",
    )
    assert r.exit_code == 0, r.output
    assert "created endpoint mine" in r.output
    ep = api.get("/v1/endpoints/mine").json()
    assert ep["imageName"] == IMAGE and ep["workersMax"] == 2 and ep["env"] == {"A": "1", "B": "x=y"}

    r = cli("endpoints", "list")
    assert r.exit_code == 0, r.output
    assert "mine" in r.output and IMAGE in r.output and "0–2" in r.output

    r = cli("endpoints", "list", "--json")
    assert [e["id"] for e in json.loads(r.stdout)] == ["mine"]

    r = cli("endpoints", "update", "mine", "--env", "C=3", "--unset-env", "A", "--workers-max", "3")
    assert r.exit_code == 0, r.output
    assert "version 1 → 2" in r.output and "rolling update" in r.output
    ep = api.get("/v1/endpoints/mine").json()
    assert ep["env"] == {"B": "x=y", "C": "3"} and ep["workersMax"] == 3 and ep["version"] == 2

    r = cli("endpoints", "update", "mine", "--idle-timeout", "9")
    assert r.exit_code == 0 and "idleTimeout" in r.output and "version" not in r.output

    r = cli("endpoints", "show", "mine")
    assert r.exit_code == 0 and re.search(r"idleTimeout\s+9\s", r.output), r.output  # RunPod's integer

    r = cli("endpoints", "delete", "mine")
    assert r.exit_code == 0, r.output
    assert "deleted endpoint mine" in r.output
    assert api.get("/v1/endpoints/mine").status_code == 404


def test_create_from_file_with_flag_override(cli: Cli, api: httpx.Client, tmp_path: Path) -> None:
    spec = tmp_path / "endpoint.json"
    spec.write_text(
        json.dumps({"name": "from-file", "id": "ff", "imageName": IMAGE, "workersMax": 1, "env": {"K": "v"}})
    )
    r = cli("endpoints", "create", "--file", str(spec), "--workers-max", "2", "--env", "L=w")
    assert r.exit_code == 0, r.output
    ep = api.get("/v1/endpoints/ff").json()
    assert ep["workersMax"] == 2 and ep["env"] == {"K": "v", "L": "w"}

    toml = tmp_path / "endpoints.toml"
    toml.write_text(
        f'[[endpoints]]\nname = "t1"\nid = "t1"\nimageName = "{IMAGE}"\n'
        f'[[endpoints]]\nname = "t2"\nid = "t2"\nimageName = "{IMAGE}"\n'
    )
    r = cli("endpoints", "create", "--file", str(toml))
    assert r.exit_code == 0, r.output
    assert {e["id"] for e in api.get("/v1/endpoints").json()} == {"ff", "t1", "t2"}


def test_api_errors_show_message_and_status(cli: Cli, endpoint: str) -> None:
    r = cli("endpoints", "create", "--name", "echo", "--image", IMAGE)  # the name exists
    assert r.exit_code == 1
    assert "error: an endpoint with name 'echo' already exists (HTTP 409)" in r.stderr

    r = cli(
        "endpoints", "create", "--name", "x", "--image", IMAGE, "--workers-min", "5", "--workers-max", "2"
    )
    assert r.exit_code == 1 and "workersMin must not exceed workersMax (HTTP 422)" in r.stderr

    r = cli("endpoints", "update", "nope", "--workers-max", "1")
    assert r.exit_code == 1
    assert "endpoint 'nope' does not exist (HTTP 404)" in r.stderr
    assert "hint: see the endpoints with `serverless-emulator endpoints list`" in r.stderr

    r = cli("endpoints", "delete", "nope")
    assert r.exit_code == 1 and "(HTTP 404)" in r.stderr


def test_usage_errors(cli: Cli, endpoint: str, tmp_path: Path) -> None:
    r = cli("endpoints", "create", "--name", "only-a-name")
    assert r.exit_code == 1 and "missing --image" in r.stderr and "hint:" in r.stderr
    r = cli("endpoints", "create", "--name", "n", "--image", IMAGE, "--env", "NOEQUALS")
    assert r.exit_code == 1 and "expected KEY=VALUE" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = cli("endpoints", "create", "--file", str(bad))
    assert r.exit_code == 1 and "is not valid JSON" in r.stderr
    r = cli("endpoints", "update", "echo")
    assert r.exit_code == 1 and "nothing to change" in r.stderr


def test_unreachable_emulator_hint(cli: Cli) -> None:
    from tests.helpers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    r = cli("endpoints", "list", "--url", url, url=False)
    assert r.exit_code == 1
    assert f"the emulator is not reachable at {url}" in r.stderr
    assert "start it with `serverless-emulator serve`" in r.stderr


def test_url_and_api_key_from_the_environment(tmp_path: Path) -> None:
    settings = default_settings_for_tests(tmp_path / "data", api_key="sekrit")
    with BackgroundControlPlane(settings) as plane:
        cli = Cli(plane.client_url)
        r = cli("endpoints", "list")
        assert r.exit_code == 1 and "(HTTP 401)" in r.stderr and "EMULATOR_API_KEY" in r.stderr
        r = cli(
            "endpoints",
            "create",
            "--name",
            "k",
            "--image",
            IMAGE,
            url=False,
            env={"EMULATOR_URL": plane.client_url, "EMULATOR_API_KEY": "sekrit"},
        )
        assert r.exit_code == 0, r.output
        r = cli("endpoints", "list", "--api-key", "sekrit")
        assert r.exit_code == 0 and "k" in r.output


def test_create_from_a_template_and_update_with_pull(cli: Cli, api: httpx.Client) -> None:
    template = api.post("/v1/templates", json={"name": "t", "imageName": IMAGE, "env": {"T": "1"}}).json()
    r = cli("endpoints", "create", "--name", "from-t", "--id", "from-t", "--template", template["id"])
    assert r.exit_code == 0, r.output
    ep = api.get("/v1/endpoints/from-t").json()
    assert ep["imageName"] == IMAGE and ep["templateId"] == template["id"] and ep["env"] == {"T": "1"}
    r = cli("endpoints", "update", "from-t", "--pull")  # POST /v1/endpoints/{id}/update (no runtime: no pull)
    assert r.exit_code == 0 and "no change" in r.output, r.output
    r = cli("endpoints", "create", "--name", "neither")
    assert r.exit_code != 0 and "--image" in r.output

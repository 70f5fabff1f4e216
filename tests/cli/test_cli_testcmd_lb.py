"""`serverless-emulator test --type LB`: the request file (pure), its errors (no Docker needed), and
the sample load-balancing image with real containers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from emulator.cli.hubtests import NOTHING
from emulator.cli.lbtests import default_cases, is_lb_run, judge, parse_requests
from emulator.cli.main import app

LB_IMAGE = "serverless-emulator/sample-load-balancer:latest"
runner = CliRunner()


def test_request_file_parsing_and_judging() -> None:
    (case,) = parse_requests({"requests": [{"method": "post", "path": "/generate", "json": {"p": 1}}]}, "f")
    assert (case.name, case.method, case.path, case.json_body, case.status) == (
        "POST /generate",
        "POST",
        "/generate",
        {"p": 1},
        None,
    )
    assert case.as_test_case().request == {"method": "POST", "path": "/generate", "json": {"p": 1}}
    twice = parse_requests([{"path": "/a"}, {"path": "/a", "timeout": 500}], "f")
    assert [c.name for c in twice] == ["GET /a #1", "GET /a #2"] and twice[1].timeout_s == 0.5
    for bad, words in (
        ([], "a list of requests"),
        ([{"method": "GET"}], '"path"'),
        ([{"path": "/x", "method": "BREW"}], '"method"'),
        ([{"path": "/x", "json": 1, "body": "y"}], "not both"),
        ([{"path": "/x", "status": 700}], '"status"'),
        ([{"path": "/x", "surprise": 1}], "unknown field"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_requests(bad, "f")
    assert default_cases("/health")[0].path == "/health" and default_cases("/health")[0].status == 200
    assert judge(case, 201, "{}").problem is None  # any 2xx by default
    assert "expected a 2xx" in (judge(case, 404, "nope").problem or "")
    exact = parse_requests([{"path": "/s", "status": 200, "expected": {"n": 1}, "contains": "1"}], "f")[0]
    assert exact.expected != NOTHING
    assert judge(exact, 200, '{"n": 1}').problem is None
    differs = judge(exact, 200, '{"n": 2}')
    assert differs.problem == "the answer differs from the expected one" and '+  "n": 2' in (
        differs.diff or ""
    )
    assert "expected 200" in (judge(exact, 500, "boom").problem or "")


def test_which_runs_are_load_balancing() -> None:
    assert is_lb_run("lb", False, False) and is_lb_run("LOAD_BALANCER", False, False)
    assert is_lb_run(None, True, False) and is_lb_run(None, False, True)  # --requests, DIR/test_requests.json
    assert not is_lb_run(None, False, False) and not is_lb_run("QB", False, True)  # QB wins over the file
    with pytest.raises(ValueError, match="--requests is for load-balancing"):
        is_lb_run("QUEUE", True, False)
    with pytest.raises(ValueError, match="--type must be QB or LB"):
        is_lb_run("XX", False, False)


def test_a_wrong_request_file_exits_1_naming_the_field(tmp_path: Path) -> None:
    requests = tmp_path / "requests.json"
    requests.write_text(json.dumps([{"path": "generate"}]))
    r = runner.invoke(app, ["test", "some/image:1", "--requests", str(requests)])
    assert r.exit_code == 1 and '"path" must be a string starting with' in r.stderr
    r = runner.invoke(app, ["test", "some/image:1", "--type", "XX"])
    assert r.exit_code == 1 and "--type must be QB or LB" in r.stderr


@pytest.mark.docker
def test_the_load_balancing_sample_passes_and_a_wrong_answer_fails(docker_run: Any, tmp_path: Path) -> None:
    requests = tmp_path / "requests.json"
    requests.write_text(
        json.dumps(
            [
                {
                    "method": "POST",
                    "path": "/generate",
                    "json": {"prompt": "Hello, world!"},
                    "status": 200,
                    "contains": "Response to: Hello, world!",
                },
                {"path": "/stats", "status": 200},
                {"path": "/nothing-here", "status": 200},
            ]
        )
    )
    r = docker_run(LB_IMAGE, "--type", "LB", "--requests", str(requests), "--env", "WARMUP_S=0.5")
    assert r.exit_code == 1, r.output  # the third request is a 404
    assert "cold start" in r.stdout and "POST /generate" in r.stdout
    assert "GET /nothing-here: HTTP 404, expected 200" in r.stdout
    assert "FAILED: 1 of 3 test(s)" in r.stdout
    # no file: the health path must answer 200 through the proxy
    r = docker_run(LB_IMAGE, "--type", "LB")
    assert r.exit_code == 0, r.output
    assert "GET /ping" in r.stdout and "PASSED: 1 test(s)" in r.stdout


@pytest.mark.docker
def test_an_image_whose_health_port_is_deaf_exits_2(docker_run: Any) -> None:
    r = docker_run(LB_IMAGE, "--type", "LB", "--env", "PORT_HEALTH=5999", "--cold-start", "5")
    assert r.exit_code == 2, r.output
    assert "5999" in r.output

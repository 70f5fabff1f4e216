"""`serverless-emulator test IMAGE_OR_DIR`: inputs, expectations and diffs (pure), error hints
(no Docker needed), and the real thing with Docker."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from emulator.cli.hubtests import (
    json_diff,
    parse_expected,
    parse_inputs,
    unwrap_expected,
)
from emulator.cli.main import app
from emulator.errors import RuntimeUnavailable
from emulator.images import build as images

ROOT = Path(__file__).resolve().parents[2]
ECHO = ROOT / "sample_workers" / "echo"
runner = CliRunner()


# --- pure -------------------------------------------------------------------------------------------------


def test_inputs_and_expectations() -> None:
    assert parse_inputs({"input": {"a": 1}}, "f") == [{"input": {"a": 1}}]
    assert parse_inputs([{"input": 1}, {"input": 2, "policy": {}}], "f") == [
        {"input": 1},
        {"input": 2, "policy": {}},
    ]
    for bad in ({"a": 1}, [], [{"input": 1}, 3]):
        with pytest.raises(ValueError, match="input|nothing to run"):
            parse_inputs(bad, "f")  # (an empty list: "nothing to run")
    assert unwrap_expected({"output": [1]}) == [1]
    assert unwrap_expected({"output": 1, "status": "COMPLETED", "id": "x"}) == 1  # a pasted status body
    assert unwrap_expected({"output": 1, "other": 2}) == {"output": 1, "other": 2}  # a bare output
    assert parse_expected({"output": 5}, 2, True, "f") == [5, 5]
    assert parse_expected([{"output": 1}, 2], 2, True, "f") == [1, 2]
    assert parse_expected([1, 2], 1, False, "f") == [[1, 2]]  # one job: a list is the bare output
    with pytest.raises(ValueError, match="3 expected outputs for 2 inputs"):
        parse_expected([1, 2, 3], 2, True, "f")


def test_diff_is_key_sorted_pretty_json() -> None:
    assert json_diff({"b": 1, "a": [1, 2]}, {"a": [1, 2], "b": 1}) is None
    diff = json_diff({"message": "hi", "n": 1}, {"n": 1, "message": "ho"})
    assert diff is not None
    assert diff.splitlines()[:2] == ["--- expected", "+++ actual"]
    assert '-  "message": "hi",' in diff and '+  "message": "ho",' in diff


# --- errors before anything runs -------------------------------------------------------------------------


def test_missing_input_file(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    r = runner.invoke(app, ["test", str(tmp_path)])
    assert r.exit_code == 1
    assert "no tests in" in r.stderr and "hint:" in r.stderr and "test_input.json" in r.stderr
    assert ".runpod/tests.json" in r.stderr


def test_bad_input_file(tmp_path: Path) -> None:
    (tmp_path / "test_input.json").write_text('{"prompt": "no input key"}')
    r = runner.invoke(app, ["test", str(tmp_path)])
    assert r.exit_code == 1 and 'must be an object like {"input"' in r.stderr


def test_docker_not_running(monkeypatch: pytest.MonkeyPatch) -> None:
    def down() -> None:
        raise RuntimeUnavailable("the Docker engine does not answer; is dockerd running?")

    monkeypatch.setattr(images, "require_docker", down)
    r = runner.invoke(app, ["test", str(ECHO)])
    assert r.exit_code == 2  # nothing could start
    assert "the Docker engine does not answer" in r.stderr and "hint: start Docker" in r.stderr


def test_image_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "require_docker", lambda: None)
    monkeypatch.setattr(images, "image_id", lambda tag: None)
    r = runner.invoke(app, ["test", "no-such/image:1", "--input", str(ECHO / "test_input.json")])
    assert r.exit_code == 2
    assert "the image no-such/image:1 is not present locally" in r.stderr
    assert "hint: build it with `serverless-emulator images build DIR`" in r.stderr


def test_port_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "require_docker", lambda: None)
    monkeypatch.setattr(images, "image_id", lambda tag: "sha256:x")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = runner.invoke(
            app, ["test", "some/image:1", "--input", str(ECHO / "test_input.json"), "--port", str(port)]
        )
    assert r.exit_code == 1
    assert f"127.0.0.1:{port} is already in use" in r.stderr and "hint: leave out --port" in r.stderr


# --- with Docker -------------------------------------------------------------------------------------------------


@pytest.mark.docker
def test_echo_sample_passes(docker_run: Any) -> None:
    r = docker_run(str(ECHO), "--timeout", "120")
    assert r.exit_code == 0, r.output
    assert "PASSED: 1 test(s), 1 output(s) as expected" in r.stdout
    for column in ("CREATE", "START", "READY", "QUEUE WAIT", "EXECUTION"):
        assert column in r.stdout
    row = next(line for line in r.stdout.splitlines() if "COMPLETED" in line)
    assert "pass" in row and row.count(" ms") + row.count(" s ") >= 4  # measured create/start/ready/wait


@pytest.mark.docker
def test_wrong_expectation_fails_with_a_diff(docker_run: Any, tmp_path: Path) -> None:
    expect = tmp_path / "expected.json"
    expect.write_text('{"output": {"message": "goodbye", "extra": true}}')
    r = docker_run(str(ECHO), "--expect", str(expect), "--timeout", "120")
    assert r.exit_code == 1, r.output
    out = r.stdout
    assert "output differs from the expected output" in out
    assert "--- expected\n+++ actual\n" in out
    assert '-  "extra": true,' in out and '-  "message": "goodbye"' in out
    assert '+  "message": "hello from echo"' in out
    assert "FAILED: 1 of 1 test(s)" in out


@pytest.mark.docker
def test_several_jobs_from_an_image(docker_run: Any, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.json"
    inputs.write_text('[{"input": {"n": 1}}, {"input": {"n": 2}}]')
    expect = tmp_path / "expected.json"
    expect.write_text('[{"output": {"n": 1}}, {"n": 2}]')
    r = docker_run(images.sample_image_tag("echo"), "--input", str(inputs), "--expect", str(expect))
    assert r.exit_code == 0, r.output
    assert "PASSED: 2 test(s)" in r.stdout and "warm" in r.stdout  # the second job found the worker warm


def test_a_fresh_ci_runner_without_a_base_image_builds_on_python_slim(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No local base image (a fresh GitHub runner): the build gets python:3.12-slim for BASE_IMAGE, which
    `docker build` pulls if the Dockerfile uses it, instead of refusing to build."""
    from emulator.errors import RuntimeFailure

    seen: list[str | None] = []

    def build(directory: Any, tag: Any, base: str | None, *args: Any, **kw: Any) -> str:
        seen.append(base)
        raise RuntimeFailure("docker build stopped here by the test")

    monkeypatch.setattr(images, "require_docker", lambda: None)
    monkeypatch.setattr(images, "default_base_image", lambda: None)
    monkeypatch.setattr(images, "build_image", build)
    (tmp_path / "Dockerfile").write_text("FROM python:3.12-slim\n")
    (tmp_path / "test_input.json").write_text('{"input": {}}')
    r = runner.invoke(app, ["test", str(tmp_path)])
    assert seen == [images.UPSTREAM_BASE_IMAGE]
    assert r.exit_code == 2 and "docker build stopped here by the test" in r.stderr


@pytest.mark.docker
def test_own_input_is_not_compared_with_the_folders_expected_output(docker_run: Any, tmp_path: Path) -> None:
    """DIR/expected_output.json belongs to DIR/test_input.json: `--input FILE` alone compares nothing (#13 item 6)."""
    inputs = tmp_path / "mine.json"
    inputs.write_text('{"input": {"message": "hello"}}')
    r = docker_run(str(ECHO), "--input", str(inputs), "--timeout", "120")
    assert r.exit_code == 0, r.output
    assert "PASSED: 1 test(s)" in r.stdout

"""Local one-shot mode: --test_input / ./test_input.json, every handler kind, exit codes."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.worker_sdk.procs import HANDLERS, clean_env, find_python

GENERIC = str(HANDLERS / "generic.py")


def run_local(
    kind: str, *args: str, cwd: str | Path, python: str | None = None, env: dict[str, str] | None = None
) -> tuple[int, Any, str]:
    """Run generic.py locally; returns (exit code, the last JSON line printed or None, stdout)."""
    proc = subprocess.run(
        [python or sys.executable, GENERIC, *args],
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(dict(env or {}, HANDLER_KIND=kind)),
    )
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, (results[-1] if results else None), proc.stdout


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_plain_handlers(tmp_path: Path, kind: str) -> None:
    code, result, out = run_local(
        kind, "--test_input", json.dumps({"input": {"echo": [1, "x"]}}), cwd=tmp_path
    )
    assert code == 0, out
    assert result["output"]["echo"] == [1, "x"]


@pytest.mark.parametrize("kind", ["gen", "agen"])
def test_generators_print_the_aggregated_list(tmp_path: Path, kind: str) -> None:
    code, result, out = run_local(kind, '--test_input={"input": {"items": [1, {"b": 2}]}}', cwd=tmp_path)
    assert code == 0, out
    assert result == {"output": [1, {"b": 2}]}
    assert "stream: 1" in out


def test_test_input_json_file(tmp_path: Path) -> None:
    (tmp_path / "test_input.json").write_text(json.dumps({"input": {"echo": "from file"}, "id": "my-id"}))
    code, result, out = run_local("sync", cwd=tmp_path)
    assert code == 0 and result["output"]["echo"] == "from file"
    assert "| my-id |" in out


@pytest.mark.parametrize(
    "setup, args, message",
    [
        (None, (), "test_input.json not found"),
        ("{not json", (), "is not valid JSON"),
        (None, ("--test_input", "{bad"), "is not valid JSON"),
        (None, ("--test_input", '{"no_input": 1}'), 'must be a JSON object with an "input" field'),
        (None, ("--test_input", "[1]"), 'must be a JSON object with an "input" field'),
    ],
)
def test_bad_inputs_exit_non_zero(
    tmp_path: Path, setup: str | None, args: tuple[str, ...], message: str
) -> None:
    if setup is not None:
        (tmp_path / "test_input.json").write_text(setup)
    code, result, out = run_local("sync", *args, cwd=tmp_path)
    assert code == 1 and result is None and message in out


@pytest.mark.parametrize("kind", ["sync", "async", "gen", "agen"])
def test_handler_errors_exit_non_zero(tmp_path: Path, kind: str) -> None:
    code, result, out = run_local(
        kind, "--test_input", json.dumps({"input": {"fail": "boom", "items": [1]}}), cwd=tmp_path
    )
    assert code == 1
    assert json.loads(result["error"])["error_message"] == "boom"


def test_generator_error_item_exits_non_zero(tmp_path: Path) -> None:
    code, result, _ = run_local(
        "gen", "--test_input", json.dumps({"input": {"items": [1, 2], "error_at": 1}}), cwd=tmp_path
    )
    assert code == 1 and result == {"error": "bad item 1"}


def test_test_input_wins_over_a_control_plane_env(tmp_path: Path) -> None:
    env = {"RUNPOD_WEBHOOK_GET_JOB": "http://127.0.0.1:9/v2/x/job-take/$ID?gpu=local"}
    code, result, _ = run_local("sync", "--test_input", '{"input": {"echo": 5}}', cwd=tmp_path, env=env)
    assert code == 0 and result["output"]["echo"] == 5


def test_progress_update_is_logged_locally(tmp_path: Path) -> None:
    code, result, out = run_local(
        "sync", "--test_input", '{"input": {"progress": ["half"], "progress_gap": 0}}', cwd=tmp_path
    )
    assert code == 0 and "progress: 'half'" in out


def test_unknown_arguments_are_left_for_the_handler(tmp_path: Path) -> None:
    code, _, _ = run_local(
        "sync", "--rp_log_level", "ERROR", "--other", "--test_input", '{"input": {}}', cwd=tmp_path
    )
    assert code == 0


@pytest.mark.parametrize("version", ["3.9", "3.12"])
def test_local_mode_on_other_pythons(tmp_path: Path, version: str) -> None:
    python = find_python(version)
    if python is None:
        pytest.skip(f"no Python {version} interpreter on this machine")
    for kind in ("sync", "async", "gen", "agen"):
        code, result, out = run_local(
            kind, "--test_input", '{"input": {"items": [1], "echo": 1}}', cwd=tmp_path, python=python
        )
        assert code == 0, out

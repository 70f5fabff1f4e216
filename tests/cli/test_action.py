"""The GitHub Action (action.yml at the repository's root): its run: lines, run here in bash as a runner
runs them (inputs and github.action_path filled in, RUNNER_TEMP, GITHUB_PATH, GITHUB_OUTPUT and
GITHUB_STEP_SUMMARY files), install the package into a fresh virtual environment and test the
runpod-test-runner fixture with real Docker. The setup-python step is the runner's; python3 here
stands in for it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator.images import build as images
from tests.cli.conftest import docker_ok, leftovers_of_run

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / "action.yml"
EXPRESSION = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


def _action() -> dict[str, Any]:
    data = yaml.safe_load(ACTION.read_text())
    assert isinstance(data, dict)
    return data


def _expand(text: str, inputs: dict[str, str]) -> str:
    """GitHub's expressions as the action uses them: inputs.NAME and github.action_path only."""

    def value(match: re.Match[str]) -> str:
        expression = match.group(1)
        if expression.startswith("inputs."):
            return inputs[expression.removeprefix("inputs.")]
        assert expression == "github.action_path", f"the test does not know {expression!r}"
        return str(ROOT)

    return EXPRESSION.sub(value, text)


def test_action_yml_shape() -> None:
    action = _action()
    assert action["runs"]["using"] == "composite"
    assert set(action["inputs"]) >= {"path", "image", "junit-xml"}
    steps = action["runs"]["steps"]
    assert steps[0]["uses"].startswith("actions/setup-python@")
    for step in steps[1:]:
        assert step["shell"] == "bash" and "run" in step  # composite run steps must name a shell
        assert "${{" not in step["run"], "inputs reach the script through env:, never pasted into it"
    assert any(s.get("id") == "test" for s in steps)
    for name in ("total-tests", "succeeded", "failed"):
        assert action["outputs"][name]["value"] == "${{ steps.test.outputs." + name + " }}"


@pytest.mark.docker
def test_the_actions_lines_install_and_test_a_worker(tmp_path: Path) -> None:
    if not docker_ok():
        pytest.skip("needs a running Docker engine")
    built_tag = images.default_tag_for(
        ROOT / "tests" / "cli" / "repos" / "runner-worker"
    )  # the action's build
    existed = images.image_id(built_tag) is not None
    action = _action()
    defaults = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()}
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    files = {
        name: tmp_path / name.lower() for name in ("GITHUB_PATH", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")
    }
    for path in files.values():
        path.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "EMULATOR_", "PYTHON"))}
    # the runner's PATH without this test's virtual environment (setup-python puts its python3 first)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    env.update({"RUNNER_TEMP": str(temp), **{name: str(path) for name, path in files.items()}})

    def run_steps(inputs: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
        done = []
        for step in action["runs"]["steps"][1:]:
            if (
                step.get("name") == "Install serverless-emulator"
                and (temp / "serverless-emulator-venv").exists()
            ):
                continue  # installed by the first run
            step_env = dict(env)
            extra = [line for line in files["GITHUB_PATH"].read_text().splitlines() if line]
            step_env["PATH"] = os.pathsep.join([*reversed(extra), step_env["PATH"]])
            step_env.update({k: _expand(str(v), inputs) for k, v in (step.get("env") or {}).items()})
            done.append(
                subprocess.run(
                    ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
                    cwd=ROOT,
                    env=step_env,
                    capture_output=True,
                    text=True,
                    timeout=400,
                )
            )
            assert done[-1].returncode == 0 or step.get("id") == "test", done[-1].stderr[-3000:]
        return done

    junit = tmp_path / "junit.xml"
    try:
        # 1: the folder, built (tests/cli/repos/runner-worker: .github/tests.json with expected outputs)
        inputs = {**defaults, "path": "tests/cli/repos/runner-worker", "junit-xml": str(junit)}
        steps = run_steps(inputs)
        tested = steps[-1]
        assert leftovers_of_run(tested.stderr) == []
        assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-3000:]
        assert "PASSED: 3 test(s), 2 output(s) as expected" in tested.stdout
        venv_python = temp / "serverless-emulator-venv" / "bin" / "python"
        assert (
            venv_python.is_file()
            and str(temp / "serverless-emulator-venv" / "bin") in files["GITHUB_PATH"].read_text()
        )
        suite = ET.parse(junit).getroot().find("testsuite")
        assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "0"
        assert files["GITHUB_OUTPUT"].read_text() == "total-tests=3\nsucceeded=3\nfailed=0\n"
        assert "### ✅ serverless-emulator test:" in files["GITHUB_STEP_SUMMARY"].read_text()

        # 2: an image given, the tests still read from the folder
        files["GITHUB_OUTPUT"].write_text("")
        echo = images.sample_image_tag("echo")
        tested = run_steps({**defaults, "path": "tests/cli/repos/runner-worker", "image": echo})[-1]
        assert leftovers_of_run(tested.stderr) == []
        assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-3000:]
        assert f"serverless-emulator test: {echo}" in tested.stdout
        assert files["GITHUB_OUTPUT"].read_text() == "total-tests=3\nsucceeded=3\nfailed=0\n"
    finally:
        if not existed:
            subprocess.run(["docker", "rmi", "-f", built_tag], capture_output=True)

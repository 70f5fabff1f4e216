"""`serverless-emulator test` on the fixture repositories under tests/cli/repos, with real Docker: judged
as RunPod's Hub judges them (a Hub-style worker on RunPod's own SDK, a runpod-test-runner layout), the
JUnit file and GitHub Actions files CI reads, and exit code 2 for an image that does not build."""

from __future__ import annotations

import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from emulator.cli.main import app

REPOS = Path(__file__).resolve().parent / "repos"
HUB = REPOS / "hub-worker"
RUNNER = REPOS / "runner-worker"

pytestmark = pytest.mark.docker


@pytest.fixture
def tag() -> Iterator[str]:
    """A unique tag for an image the test builds; removed afterwards (its build cache stays)."""
    name = f"serverless-emulator-test/fixture-{uuid.uuid4().hex[:8]}:latest"
    yield name
    subprocess.run(["docker", "rmi", "-f", name], capture_output=True)


@pytest.fixture(scope="module")
def hub_image() -> Iterator[str]:
    """The Hub fixture's image, built once for this module (the command's own builds of the folder hit
    its cache); removed at the end."""
    name = f"serverless-emulator-test/hub-worker-{uuid.uuid4().hex[:8]}:latest"
    built = subprocess.run(
        ["docker", "build", "-q", "-f", str(HUB / ".runpod" / "Dockerfile"), "-t", name, str(HUB)],
        capture_output=True,
        text=True,
    )
    try:
        if built.returncode != 0:
            pytest.skip(
                f"the hub fixture did not build (are the sample images built?): {built.stderr[-500:]}"
            )
        yield name
    finally:
        subprocess.run(["docker", "rmi", "-f", name], capture_output=True)


def _suite(path: Path) -> ET.Element:
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    return suite


def test_hub_worker_passes_as_on_runpods_hub(
    docker_run: Callable[..., Result], hub_image: str, tmp_path: Path
) -> None:
    junit, summary, outputs = tmp_path / "junit.xml", tmp_path / "summary.md", tmp_path / "outputs"
    r = docker_run(
        str(HUB),
        "--tag",
        hub_image,
        "--junit-xml",
        str(junit),
        env={"GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(outputs)},
    )
    assert r.exit_code == 0, r.output
    # the root Dockerfile cannot build: passing means .runpod/Dockerfile was built
    assert "(.runpod/ takes precedence, as on RunPod's Hub)" in r.stderr
    assert "2 test(s) from" in r.stderr and "(hub format)" in r.stderr
    assert "PASSED: 2 test(s)" in r.stdout
    suite = _suite(junit)
    assert (suite.get("tests"), suite.get("failures")) == ("2", "0")
    names = [case.get("name") for case in suite.findall("testcase")]
    assert names == ["greets_with_hub_defaults", "tests_json_env_overrides_hub_json"]
    out = [case.findtext("system-out") or "" for case in suite.findall("testcase")]
    assert (
        '"greeting": "Hello, Ada!"' in out[0] and '"mode": "fixture"' in out[0]
    )  # hub.json + tests.json env
    assert '"greeting": "Hello, Grace!"' in out[1]
    assert all(float(case.get("time") or 0) > 0 for case in suite.findall("testcase"))
    assert summary.read_text().startswith("### ✅ serverless-emulator test:")
    assert "| greets_with_hub_defaults | COMPLETED | pass |" in summary.read_text()
    assert outputs.read_text() == "total-tests=2\nsucceeded=2\nfailed=0\n"


def test_an_output_with_an_error_key_fails_the_run(
    docker_run: Callable[..., Result], hub_image: str, tmp_path: Path
) -> None:
    junit = tmp_path / "junit.xml"
    r = docker_run(
        hub_image,
        "--tests-from",
        str(HUB),
        "--input",
        str(HUB / ".runpod" / "tests_with_error.json"),
        "--env",
        "GREETING=Hi",
        "--junit-xml",
        str(junit),
    )
    assert r.exit_code == 1, r.output
    assert "✗ output_holds_error: the output holds an error: asked to fail" in r.stdout
    assert "FAILED: 1 of 2 test(s)" in r.stdout
    good, bad = _suite(junit).findall("testcase")
    assert good.find("failure") is None
    assert '"greeting": "Hi, Ada!"' in (good.findtext("system-out") or "")  # --env over hub.json
    failure = bad.find("failure")
    assert failure is not None and failure.get("message") == "the output holds an error: asked to fail"
    assert (bad.findtext("system-err") or "").strip(), "the worker's last log lines are in the report"


def test_gpu_count_is_emulated_on_a_host_without_gpus(
    docker_run: Callable[..., Result], hub_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emulator.cli.check import gpu_settings

    if not gpu_settings(2)[1]:
        pytest.skip("this host has 2 GPUs: nothing is emulated")
    for name in ("EMULATOR_GPU_MODE", "EMULATOR_GPUS", "EMULATOR_EMULATED_GPUS"):
        monkeypatch.delenv(name, raising=False)
    r = docker_run(hub_image, "--tests-from", str(HUB), "--input", str(HUB / ".runpod" / "tests_gpu.json"))
    assert r.exit_code == 0, r.output  # the handler checked RUNPOD_GPU_COUNT and NVIDIA_VISIBLE_DEVICES
    assert "the tests ask for 2 GPU(s) and this host has 0: the worker gets 2 emulated GPU(s)" in r.stderr


def test_runner_layout_with_expected_outputs(docker_run: Callable[..., Result], tag: str) -> None:
    r = docker_run(str(RUNNER), "--tag", tag)
    assert r.exit_code == 0, r.output
    assert "3 test(s) from" in r.stderr and "(test-runner format)" in r.stderr
    assert "PASSED: 3 test(s), 2 output(s) as expected" in r.stdout


def test_an_image_that_does_not_build_exits_2(
    docker_run: Callable[..., Result], tag: str, tmp_path: Path
) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\nRUN false\n")
    (tmp_path / "test_input.json").write_text('{"input": {}}')
    junit = tmp_path / "junit.xml"
    r = CliRunner().invoke(app, ["test", str(tmp_path), "--tag", tag, "--junit-xml", str(junit)])
    assert r.exit_code == 2, r.output
    assert "docker build" in r.stderr and "failed" in r.stderr
    failure = _suite(junit).find("testcase/failure")
    assert failure is not None and failure.get("type") == "IMAGE"


def test_a_worker_that_never_starts_exits_2(
    docker_run: Callable[..., Result], tag: str, tmp_path: Path
) -> None:
    from emulator.images import build as images

    (tmp_path / "Dockerfile").write_text(
        f"FROM {images.sample_image_tag('echo')}\n"
        'CMD ["python3", "-c", "import sys; print(\'cannot load the model\'); sys.exit(3)"]\n'
    )
    (tmp_path / "test_input.json").write_text('[{"input": {"n": 1}}, {"input": {"n": 2}}]')
    junit = tmp_path / "junit.xml"
    r = docker_run(str(tmp_path), "--tag", tag, "--junit-xml", str(junit), "--timeout", "120")
    assert r.exit_code == 2, r.output
    assert "the worker keeps failing to start" in r.stdout
    assert "cannot load the model" in r.stdout  # the worker's last log lines
    first, second = _suite(junit).findall("testcase")
    first_failure, second_failure = first.find("failure"), second.find("failure")
    assert first_failure is not None and "the worker keeps failing to start" in (
        first_failure.get("message") or ""
    )
    assert second_failure is not None and second_failure.get("message") == "not run: the worker did not start"

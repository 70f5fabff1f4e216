"""Building and running a sample image with the real Docker engine (emulator.images.build).

Everything made here carries the label serverless-emulator.test=1 and is removed by id.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.errors import EmulatorError, RuntimeFailure
from emulator.images import build as images

pytestmark = pytest.mark.docker

TEST_LABEL = {"serverless-emulator.test": "1"}
ECHO = images.repo_root() / "sample_workers" / "echo"


def docker(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout_s, check=False)


def remove_image(tag: str) -> None:
    image = images.image_id(tag)
    if image and docker("image", "rm", image).returncode != 0:
        docker("image", "rm", tag)  # the id has other tags too: drop only ours


@pytest.fixture(scope="module")
def base_image() -> str:
    try:
        images.require_docker()
    except EmulatorError as exc:
        pytest.skip(f"no Docker engine: {exc.message}")
    return images.default_base_image() or images.build_base()


@pytest.fixture
def echo_image(base_image: str) -> Iterator[str]:
    tag = f"serverless-emulator/test-echo:{uuid.uuid4().hex[:10]}"
    lines: list[str] = []
    try:
        assert (
            images.build_image(ECHO, tag=tag, base_image=base_image, progress=lines.append, labels=TEST_LABEL)
            == tag
        )
        yield tag
    finally:
        remove_image(tag)


def test_echo_image_builds_with_the_label_and_runs_in_local_mode(echo_image: str) -> None:
    labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", echo_image).stdout)
    assert labels.get("serverless-emulator.test") == "1"

    test_input = (ECHO / "test_input.json").read_text()
    expected = json.loads((ECHO / "expected_output.json").read_text())
    created = docker("create", "--label", "serverless-emulator.test=1", echo_image,
                     "python3", "handler.py", "--test_input", test_input)  # fmt: skip
    assert created.returncode == 0, created.stderr
    container = created.stdout.strip()
    try:
        run = docker("start", "--attach", container, timeout_s=120)
        assert run.returncode == 0, run.stdout + run.stderr
        results = [
            json.loads(line) for line in (run.stdout + run.stderr).splitlines() if line.startswith("{")
        ]
        assert expected in results, run.stdout + run.stderr
    finally:
        docker("rm", "--force", container)
    assert docker("ps", "--all", "--quiet", "--filter", f"id={container}").stdout.strip() == ""


def test_a_failing_build_reports_its_last_lines(base_image: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo about-to-fail && exit 3\n"
    )
    tag = f"serverless-emulator/test-broken:{uuid.uuid4().hex[:10]}"
    try:
        with pytest.raises(RuntimeFailure) as caught:
            images.build_image(tmp_path, tag=tag, base_image=base_image, labels=TEST_LABEL)
        assert "about-to-fail" in caught.value.message
        assert images.image_id(tag) is None
    finally:
        remove_image(tag)


def test_probe_python_reads_the_base_image(base_image: str) -> None:
    target = images.probe_python(base_image)
    assert target.version.startswith("3.")
    assert target.platforms()

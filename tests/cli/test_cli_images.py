"""`serverless-emulator images build-base|build`: the CLI wiring of emulator.images.build (builds faked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from emulator.cli.main import app
from emulator.errors import ImageNotFound, RuntimeFailure, RuntimeUnavailable
from emulator.images import build as images

runner = CliRunner()


def test_build_passes_arguments_and_prints_the_tag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[Any, ...]] = []

    def fake_build(directory: Any, tag: Any, base: Any, progress: Any, **kw: Any) -> str:
        calls.append((Path(directory), tag, base, kw))
        progress("building my-tag:1 from Dockerfile")
        progress(images.COMMAND_OUTPUT + "Step 1/3 : FROM base")
        return "my-tag:1"

    monkeypatch.setattr(images, "build_image", fake_build)
    r = runner.invoke(app, ["images", "build", str(tmp_path), "--tag", "my-tag:1", "--base-image", "b:1"])
    assert r.exit_code == 0, r.output
    assert calls == [(tmp_path, "my-tag:1", "b:1", {"no_cache": False})]
    assert r.stdout.strip() == "my-tag:1"
    assert "building my-tag:1 from Dockerfile" in r.stderr and "✓ built my-tag:1" in r.stderr
    assert "Step 1/3" not in r.output  # command output only with --verbose (or live on a terminal)

    r = runner.invoke(app, ["images", "build", str(tmp_path), "-v"])
    assert r.exit_code == 0 and "Step 1/3 : FROM base" in r.stderr


def test_build_base(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_base(tag: str, force: bool, progress: Any) -> str:
        seen.update(tag=tag, force=force)
        progress("python:3.12-slim is not present")
        return tag

    monkeypatch.setattr(images, "build_base", fake_base)
    r = runner.invoke(app, ["images", "build-base", "--force", "--tag", "me/base:1"])
    assert r.exit_code == 0, r.output
    assert seen == {"tag": "me/base:1", "force": True}
    assert r.stdout.strip() == "me/base:1" and "EMULATOR_BASE_IMAGE=me/base:1" in r.stderr


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (RuntimeUnavailable("the Docker engine does not answer"), "start Docker"),
        (ImageNotFound("no Python base image: ..."), "images build-base"),
        (RuntimeFailure("docker build of x failed (exit 1); last lines:\nboom"), None),
    ],
)
def test_build_errors_have_hints(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: Exception, hint: str | None
) -> None:
    def failing(*a: Any, **kw: Any) -> str:
        raise error

    monkeypatch.setattr(images, "build_image", failing)
    r = runner.invoke(app, ["images", "build", str(tmp_path)])
    assert r.exit_code == 1
    assert f"error: {error}".splitlines()[0] in r.stderr
    if hint:
        assert "hint:" in r.stderr and hint in r.stderr


def test_build_needs_a_directory(tmp_path: Path) -> None:
    r = runner.invoke(app, ["images", "build", str(tmp_path / "missing")])
    assert r.exit_code == 1 and "is not a directory" in r.stderr

"""``serverless-emulator images build-base|build``: emulator.images.build with a live progress display."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any

import typer
from rich.console import Group
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from emulator.cli.common import console, err_console, fail
from emulator.errors import EmulatorError, ImageNotFound, InvalidInput, RuntimeUnavailable
from emulator.images import build as images

app = typer.Typer(help="Build the Python base image and worker images.", no_args_is_help=True)

DOCKER_IMAGES_HINT = "start Docker (`sudo systemctl start docker`); image builds need the Docker engine"


class BuildDisplay:
    """A progress callback for emulator.images.build: on a terminal, a spinner with the current step, the
    elapsed time and the last few lines of the command's output; elsewhere (CI logs) the steps as
    plain lines, and the command's output too with ``verbose``."""

    def __init__(self, title: str, verbose: bool = False, lines: int = 6) -> None:
        self.title = title
        self.verbose = verbose
        self.output: deque[str] = deque(maxlen=lines)
        self.started = time.monotonic()
        self.live: Live | None = None
        self.count = 0

    def __enter__(self) -> BuildDisplay:
        if err_console.is_terminal:
            self.live = Live(
                self._render(),
                console=err_console,
                refresh_per_second=8,
                transient=True,
                get_renderable=self._render,
            )
            self.live.start()
        else:
            err_console.print(f"{self.title}…")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def __call__(self, line: str) -> None:
        """The ``progress`` callback: module messages as they are, command lines indented."""
        if line.startswith(images.COMMAND_OUTPUT):
            text = line[len(images.COMMAND_OUTPUT) :]
            self.count += 1
            self.output.append(text)
            if self.verbose:
                self._print(Text(text, style="dim"))
            return
        self._print(Text.assemble(("• ", "cyan"), line))

    def _print(self, text: Text) -> None:
        if self.live is not None:
            self.live.console.print(text)  # above the live area
        else:
            err_console.print(text)

    def _render(self) -> Group:
        # the steps themselves are printed above the live area; the spinner shows what and how long
        spinner = Spinner(
            "dots",
            text=Text.assemble(
                (self.title, "bold"),
                (f"  {time.monotonic() - self.started:.0f}s", "dim"),
                (f"  · {self.count} lines of output" if self.count else "", "dim"),
            ),
        )
        tail = [
            Text("  " + line[: max(20, err_console.width - 4)], style="dim", no_wrap=True)
            for line in self.output
        ]
        return Group(spinner, *([] if self.verbose else tail))

    def done(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        err_console.print(Text.assemble(("✓ ", "green"), message, (f"  ({elapsed:.1f}s)", "dim")))


def fail_build(exc: EmulatorError) -> None:
    if isinstance(exc, RuntimeUnavailable):
        fail(exc.message, DOCKER_IMAGES_HINT)
    if isinstance(exc, ImageNotFound) and "base image" in exc.message:
        fail(exc.message, "run `serverless-emulator images build-base` first")
    if isinstance(exc, InvalidInput) and "Dockerfile" in exc.message:
        fail(exc.message, "pass the folder that holds your handler's Dockerfile")
    fail(exc.message)


def build_directory(
    directory: Path,
    tag: str | None = None,
    base_image: str | None = None,
    verbose: bool = False,
    no_cache: bool = False,
    **kw: Any,
) -> str:
    """Build a handler folder with the progress display; exits with a hint on failure."""
    title = f"building {tag or images.default_tag_for(directory)}"
    try:
        with BuildDisplay(title, verbose) as display:
            built = images.build_image(directory, tag, base_image, display, no_cache=no_cache, **kw)
    except EmulatorError as exc:
        fail_build(exc)
        raise  # unreachable: fail exits
    display.done(f"built {built}")
    return built


@app.command("build-base")
def build_base(
    force: bool = typer.Option(False, "--force", help="Rebuild the local base image from Debian's packages"),
    tag: str = typer.Option(images.LOCAL_BASE_IMAGE, "--tag", help="Tag of the locally built base image"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show every line of the commands' output"),
) -> None:
    """Make sure a Python base image exists (python:3.12-slim, or one made from Debian's packages
    when no registry answers) and print its tag."""
    try:
        with BuildDisplay("base image", verbose) as display:
            result = images.build_base(tag, force, display)
    except EmulatorError as exc:
        fail_build(exc)
    display.done(f"base image {result}")
    if result != images.UPSTREAM_BASE_IMAGE:
        err_console.print(
            f"worker builds use it automatically; or export {images.BASE_IMAGE_ENV}={result}", style="dim"
        )
    console.out(result, highlight=False)


@app.command("build")
def build(
    directory: Path = typer.Argument(..., metavar="DIR", help="A folder with a Dockerfile (your handler)"),
    tag: str | None = typer.Option(None, "--tag", "-t", help="Image tag [NAME:latest from the folder name]"),
    base_image: str | None = typer.Option(
        None,
        "--base-image",
        help="BASE_IMAGE build argument [EMULATOR_BASE_IMAGE, python:3.12-slim or the local base]",
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Build without Docker's cache"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show every line of docker build's output"),
) -> None:
    """Build a handler folder's Dockerfile (with --build-arg BASE_IMAGE) and print the image tag."""
    if not directory.is_dir():
        fail(f"{directory} is not a directory", "pass the folder that holds your handler's Dockerfile")
    built = build_directory(directory, tag, base_image, verbose, no_cache)
    err_console.print(
        f"run it: serverless-emulator test {directory}   (or endpoints create --image {built})", style="dim"
    )
    console.out(built, highlight=False)

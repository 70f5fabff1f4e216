"""The ``serverless-emulator`` command (typer)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path

import typer

from emulator import logs
from emulator.cli import check as cli_testcmd
from emulator.cli import endpoints as cli_endpoints
from emulator.cli import images as cli_images
from emulator.cli import run as cli_run
from emulator.cli import workers as cli_workers
from emulator.cli.common import fail
from emulator.config import Settings
from emulator.errors import EmulatorError, PortInUse, RuntimeFailure, RuntimeUnavailable

HINTS: dict[type[EmulatorError], str] = {
    RuntimeUnavailable: "start Docker (`sudo systemctl start docker`) or run with --runtime none",
    RuntimeFailure: "check the Docker engine (`docker info`), or run with --runtime none",
    PortInUse: "another emulator may be running; pick a free port with --port",
}


def hint_for(exc: EmulatorError) -> str | None:
    """What to do about an error that stopped ``serve``: the hint of the nearest class in its MRO."""
    return next((HINTS[kind] for kind in type(exc).__mro__ if kind in HINTS), None)


app = typer.Typer(
    help="A local emulator of RunPod Serverless that runs real Docker containers as workers.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def root() -> None:
    """Run `serverless-emulator COMMAND --help` for a command's options."""


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Client API address [127.0.0.1]"),
    port: int | None = typer.Option(None, help="Client API port [8000]"),
    config: Path | None = typer.Option(None, help="endpoints.toml to create or update at start-up"),
    data_dir: Path | None = typer.Option(None, help="Where the job store lives [./.emulator]"),
    runtime: str | None = typer.Option(
        None, help="docker (default) or none (no containers: bring your own workers)"
    ),
    keep_workers: bool | None = typer.Option(
        None, "--keep-workers", help="Leave worker containers running on exit"
    ),
    log_format: str | None = typer.Option(None, help="auto, json or console"),
    log_level: str | None = typer.Option(None, help="debug, info, warning"),
    s3: bool | None = typer.Option(
        None,
        "--s3",
        help="Run a local S3 server for endpoints with localS3 "
        "(needs moto: pip install 'serverless-emulator[s3]')",
    ),
) -> None:
    """Run the control plane and its supervisor until Ctrl-C or SIGTERM."""
    from emulator.control_plane import ControlPlane

    try:
        settings = Settings.load(
            host=host,
            port=port,
            config=config,
            data_dir=data_dir,
            runtime=runtime,
            keep_workers=keep_workers,
            log_format=log_format,
            log_level=log_level,
            s3=s3,
        )
    except Exception as exc:  # pydantic ValidationError: a bad flag or EMULATOR_* value
        fail(f"bad setting: {exc}")
        return
    logs.configure(settings.log_format, settings.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await ControlPlane(settings).serve_until_stopped(stop)

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(main())
    except EmulatorError as exc:
        fail(exc.message, hint_for(exc))


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (it comes with uvicorn[standard]), else asyncio's default loop."""
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


app.add_typer(cli_endpoints.app, name="endpoints")
app.command("workers")(cli_workers.workers)
app.command("logs")(cli_workers.logs)
app.command("run")(cli_run.run)
app.add_typer(cli_images.app, name="images")
app.command("test")(cli_testcmd.check_image_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

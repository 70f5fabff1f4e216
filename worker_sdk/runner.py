"""``start(config)``: parse RunPod's CLI flags, then run locally once or as a production worker."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from . import __version__, log

if TYPE_CHECKING:
    from typing import Any

    from .config import Settings
    from .loop import Worker

    Options = dict[str, str | bool]

# RunPod's flags (runpod/serverless/__init__.py); the ones taking a value.
_VALUE_FLAGS = (
    "--test_input",
    "--rp_log_level",
    "--rp_api_port",
    "--rp_api_concurrency",
    "--rp_api_host",
    "--test_output",
)
_BOOL_FLAGS = ("--rp_debugger", "--rp_serve_api")


def parse_args(argv: list[str]) -> tuple[Options, list[str]]:
    """Return ``(options, remaining argv)``; recognised flags are removed like RunPod's SDK does."""
    options: Options = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in _VALUE_FLAGS:
            if not eq:
                if i + 1 >= len(argv):
                    raise ValueError(f"{name} needs a value")
                value = argv[i + 1]
                i += 1
            options[name[2:]] = value
        elif arg in _BOOL_FLAGS:
            options[arg[2:]] = True
        else:
            rest.append(arg)
        i += 1
    return options, rest


def _validate(config: object) -> None:
    if not isinstance(config, dict):
        raise TypeError("start() expects a dict such as {'handler': handler}")
    if not callable(config.get("handler")):
        raise ValueError("config['handler'] must be a callable")
    modifier = config.get("concurrency_modifier")
    if modifier is not None and not callable(modifier):
        raise ValueError("config['concurrency_modifier'] must be a callable")


def start(config: dict[str, Any]) -> None:
    _validate(config)
    try:
        options, rest = parse_args(sys.argv[1:])
    except ValueError as exc:
        log.error(str(exc))
        raise SystemExit(2) from None
    sys.argv = sys.argv[:1] + rest
    if options.get("rp_log_level"):
        log.set_level(options["rp_log_level"])
    if options.get("rp_serve_api"):
        log.warn("--rp_serve_api is not supported by worker_sdk; use the emulator's API instead")
    log.info(f"--- worker_sdk {__version__} ---")

    if "test_input" in options or not os.environ.get("RUNPOD_WEBHOOK_GET_JOB"):
        from .local import run_local

        test_input = options.get("test_input")
        assert test_input is None or isinstance(test_input, str)  # a value flag (parse_args)
        raise SystemExit(run_local(config, test_input))

    from .config import Settings

    settings = Settings()
    if not settings.job_done_template:
        log.error("RUNPOD_WEBHOOK_POST_OUTPUT is not set and cannot be derived: results could not be posted")
        raise SystemExit(2)
    raise SystemExit(run_worker(config, settings))


def run_worker(config: dict[str, Any], settings: Settings) -> int:
    import asyncio

    from .loop import Worker

    worker = Worker(config, settings)

    async def main() -> int:
        _install_signals(worker)
        return await worker.run()

    code = asyncio.run(main())
    sys.stdout.flush()
    return code


def _install_signals(worker: Worker) -> None:
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, worker.on_signal, sig.name)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
            try:

                def on_signal(num: int, frame: object, n: str = sig.name) -> None:
                    loop.call_soon_threadsafe(worker.on_signal, n)

                signal.signal(sig, on_signal)
            except ValueError:
                log.warn(f"cannot install a {sig.name} handler (not the main thread)")

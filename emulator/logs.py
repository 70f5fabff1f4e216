"""Structured logs with structlog, on stderr.

* ``json``: one JSON object per line (``timestamp``, ``level``, ``event`` and the event's keys), for
  log shippers and ``jq``. Records of the standard ``logging`` module (uvicorn, libraries) go through
  the same renderer, so every line is JSON.
* ``console``: ``key=value`` pairs after the message, coloured when stderr is a terminal.
* ``auto`` (the default): ``console``.

The project's events carry ``endpoint``, ``worker`` and ``job`` (null when not applicable), and
worker state changes ``from_state``, ``to_state`` and ``reason``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

FORMATS = ("auto", "json", "console")


def _shared(as_json: bool) -> list[Any]:
    chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if as_json:
        chain.append(structlog.processors.format_exc_info)  # the console renderer formats tracebacks itself
    return chain


def _renderer(as_json: bool, colors: bool) -> Any:
    if as_json:
        return structlog.processors.JSONRenderer(ensure_ascii=False)
    # plain tracebacks: the rich ones print local variables, which can hold tokens and secrets
    return structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback)


def configure(fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    """Set up structlog and the root logger of ``logging`` once, at start-up."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    out = stream if stream is not None else sys.stderr
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    as_json = fmt == "json"
    colors = not as_json and hasattr(out, "isatty") and out.isatty()
    shared = _shared(as_json)

    structlog.configure(
        processors=[*shared, _renderer(as_json, colors)],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )

    # the standard library's records (uvicorn, asyncio, libraries) in the same format
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _renderer(as_json, colors),
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(numeric, logging.WARNING))

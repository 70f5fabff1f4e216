"""Plain log lines on stdout: ``LEVEL | job_id | message``; level from RUNPOD_LOG_LEVEL (default INFO)."""

from __future__ import annotations

import _thread
import os
import sys

_LEVELS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "WARN": 30, "WARNING": 30, "ERROR": 40, "NOTSET": 100}
_lock = _thread.allocate_lock()
_threshold: int | None = None  # resolved on first use


def _parse(name: object) -> int | None:
    if name is None:
        return None
    text = str(name).strip().upper()
    if text.isdigit():  # RunPod also accepts an index into NOTSET, TRACE, DEBUG, INFO, WARN, ERROR
        order = ["NOTSET", "TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
        return _LEVELS[order[int(text)]] if int(text) < len(order) else None
    return _LEVELS.get(text)


def set_level(name: object) -> None:
    """Set the threshold by name (DEBUG, INFO, WARN, ERROR, NOTSET=off); unknown names are ignored."""
    global _threshold
    value = _parse(name)
    if value is not None:
        _threshold = value


def _current() -> int:
    global _threshold
    if _threshold is None:
        env = os.environ.get("RUNPOD_LOG_LEVEL") or os.environ.get("RUNPOD_DEBUG_LEVEL")
        _threshold = _parse(env) or _LEVELS["INFO"]
    return _threshold


def enabled(level: str) -> bool:
    return _LEVELS[level] >= _current()


def log(level: str, message: object, job_id: str | None = None) -> None:
    if _LEVELS[level] < _current():
        return
    label = "WARN" if level == "WARNING" else level
    line = f"{label:<5} | {job_id or '-'} | {message}\n"
    write(line)


def write(text: str) -> None:
    """Write and flush stdout under the module lock (whole lines never interleave)."""
    with _lock:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except (OSError, ValueError):  # closed or broken stdout must never kill the worker
            pass


def trace(message: object, job_id: str | None = None) -> None:
    log("TRACE", message, job_id)


def debug(message: object, job_id: str | None = None) -> None:
    log("DEBUG", message, job_id)


def info(message: object, job_id: str | None = None) -> None:
    log("INFO", message, job_id)


def warn(message: object, job_id: str | None = None) -> None:
    log("WARN", message, job_id)


def error(message: object, job_id: str | None = None) -> None:
    log("ERROR", message, job_id)

"""Local one-shot mode: run the handler once on ``--test_input`` or ``./test_input.json``, print the result.

Unlike RunPod's SDK, generator handlers are run too: streamed items are logged and the printed
result is ``{"output": [all items]}``. Exit status: 0 on success, 1 on any error.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import TYPE_CHECKING

from . import log
from .jobs import Execution, handler_kind

if TYPE_CHECKING:
    from typing import Any

    JobOrProblem = tuple[dict[str, Any], None] | tuple[None, str]

TEST_INPUT_FILE = "test_input.json"


def load_job(test_input: str | None) -> JobOrProblem:
    """Return ``(job, None)`` or ``(None, error message)``."""
    if test_input is not None:
        source, text = "--test_input", test_input
    else:
        if not os.path.exists(TEST_INPUT_FILE):
            return None, (
                f"{TEST_INPUT_FILE} not found in {os.getcwd()} and no --test_input given; nothing to run"
            )
        source = TEST_INPUT_FILE
        try:
            with open(TEST_INPUT_FILE, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            return None, f"cannot read {TEST_INPUT_FILE}: {exc}"
    try:
        job = json.loads(text)
    except ValueError as exc:
        return None, f"{source} is not valid JSON: {exc}"
    if not isinstance(job, dict) or job.get("input") is None:
        return None, f'{source} must be a JSON object with an "input" field, e.g. {{"input": {{...}}}}'
    job.setdefault("id", "local_test")
    job["id"] = str(job["id"])
    return job, None


def run_local(config: dict[str, Any], test_input: str | None = None) -> int:
    job, problem = load_job(test_input)
    if job is None:
        log.error(problem)
        return 1
    log.info(
        "local mode: running the handler once (input from %s)"
        % ("--test_input" if test_input is not None else TEST_INPUT_FILE),
        job["id"],
    )
    handler = config["handler"]

    async def emit(item: Any) -> None:
        log.info(f"stream: {_dump(item)}", job["id"])

    execution = Execution(handler, handler_kind(handler), job, emit, aggregate=True)
    result, _ = asyncio.run(execution.run())
    try:
        text = json.dumps(result)
    except (TypeError, ValueError) as exc:
        log.error(f"handler output is not JSON serializable: {exc}", job["id"])
        return 1
    log.write(text + "\n")
    if result.get("error"):
        log.error("job failed", job["id"])
        return 1
    log.info("job completed", job["id"])
    return 0


def _dump(item: object) -> str:
    try:
        return json.dumps(item)
    except (TypeError, ValueError):
        return repr(item)

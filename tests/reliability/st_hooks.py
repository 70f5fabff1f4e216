"""Schemathesis hooks for the hostile-input test (loaded through SCHEMATHESIS_HOOKS).

/runsync, /status-sync and /stream hold the request up to ``?wait`` ms (default 90 s; /stream
answers at once without a wait) while a job is not finished: the generated numeric waits are capped so that one case cannot outlast the request
timeout. Non-numeric waits are left alone (they must get a 400).
"""

from __future__ import annotations

import ast
import threading
from typing import Any

import schemathesis

# CPython 3.11 converts a parsed tree with one recursion counter per interpreter, so two of
# schemathesis's workers describing a lambda (hypothesis parses its source module) at the same moment
# fail with "SystemError: AST constructor recursion depth mismatch": parse one at a time.
_parse = ast.parse
_parse_lock = threading.Lock()


def _parse_one_at_a_time(*args: Any, **kwargs: Any) -> Any:
    with _parse_lock:
        return _parse(*args, **kwargs)


ast.parse = _parse_one_at_a_time

MAX_WAIT_MS = 1500
_LONG_POLLS = ("/runsync", "/status-sync/{job_id}", "/stream/{job_id}")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if not str(getattr(case, "path", "")).endswith(_LONG_POLLS):
        return
    query = dict(case.query or {})
    wait = query.get("wait")
    if isinstance(wait, list):
        wait = wait[0] if wait else None
    if wait is not None and str(wait) != "":  # an empty wait means the default: 90 s
        try:
            value = float(str(wait))
        except ValueError:
            return  # not a number: the API must answer 400
        if value != value or value <= MAX_WAIT_MS or value == float("inf"):
            return  # nan and inf get a 400; a short wait is kept as generated
    query["wait"] = str(MAX_WAIT_MS)
    case.query = query

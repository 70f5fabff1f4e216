"""``serverless-emulator logs --endpoint ID [--job JOB] [--worker W] [--since T] [-f]``: an endpoint's
worker output from ``GET /v1/endpoints/{id}/logs``, kept after its workers are gone.

Each line is printed as written; without ``--job`` or a worker, the worker id comes first. ``-f`` polls
for lines after the last one shown (the ``Last-Event-ID`` header carries its ``seq``) until Ctrl-C.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from emulator.cli.common import Api, api_error, console, err_console, fail_api


def format_line(item: dict[str, Any], with_worker: bool) -> str:
    return f"{item.get('workerId')}  {item.get('line', '')}" if with_worker else str(item.get("line", ""))


def show(
    api: Api,
    endpoint_id: str,
    params: dict[str, Any],
    follow: bool,
    interval_s: float = 1.0,
    emit: Callable[[str], None] | None = None,
    polls: int | None = None,
) -> int:
    """Print the endpoint's matching lines (then new ones with ``follow``); answers how many were printed."""
    out = emit or (lambda text: console.out(text, highlight=False))
    with_worker = not params.get("worker") and not params.get("job")
    last_seq = 0
    printed = 0
    done = 0
    while True:
        headers = {"Last-Event-ID": str(last_seq)} if last_seq else None
        response = api.request("GET", f"/v1/endpoints/{endpoint_id}/logs", params=params, headers=headers)
        if response.status_code >= 400:
            fail_api(api_error(response))
        for item in response.json().get("lines", []):
            out(format_line(item, with_worker))
            last_seq = max(last_seq, int(item.get("seq", 0)))
            printed += 1
        if not follow or (polls is not None and done >= polls):
            break
        done += 1
        time.sleep(interval_s)
    if not printed and not follow and err_console.is_terminal:
        err_console.print("(no lines match)", style="dim")
    return printed

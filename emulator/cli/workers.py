"""``serverless-emulator workers [ENDPOINT] [--watch]`` and ``logs WORKER [-f] [--tail N]`` (or
``logs --endpoint ID [--job JOB]``: ``emulator.cli.endpoint_logs``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from emulator.cli.common import (
    API_KEY_OPTION,
    SERVE_HINT,
    URL_OPTION,
    Api,
    ApiError,
    api_error,
    console,
    err_console,
    fail,
    fail_api,
    fmt_duration,
    fmt_until,
    state_text,
)
from emulator.cli.endpoints import worker_summary

FOLLOW_WINDOW = 5000  # lines fetched per poll by `logs -f`


# --- workers ----------------------------------------------------------------------------------------------


class Unreachable(Exception):
    pass


def fetch(api: Api, endpoint_id: str | None) -> list[tuple[str, dict[str, Any]]]:
    """[(endpoint id, GET /v1/endpoints/{id}/workers body)] for one endpoint or all of them."""
    try:
        if endpoint_id is not None:
            return [(endpoint_id, api.call("GET", f"/v1/endpoints/{endpoint_id}/workers"))]
        out = []
        for ep in api.call("GET", "/v1/endpoints") or []:
            try:
                out.append((ep["id"], api.call("GET", f"/v1/endpoints/{ep['id']}/workers")))
            except ApiError as exc:
                if exc.status != 404:  # deleted between the two calls: skip it
                    raise
        return out
    except httpx.HTTPError as exc:
        raise Unreachable(f"the emulator is not reachable at {api.url} ({type(exc).__name__})") from exc


def workers_table(
    data: list[tuple[str, dict[str, Any]]], now: float | None = None, title: str | None = None
) -> Table:
    now = time.time() if now is None else now
    many = len(data) != 1
    table = Table(title=title, title_justify="left", expand=False)
    if many:
        table.add_column("ENDPOINT", no_wrap=True)
    for column in ("WORKER", "STATE", "VERSION", "JOB", "UPTIME", "RESTARTS", "REASON", "NEXT RETRY"):
        table.add_column(
            column, no_wrap=column not in ("REASON", "JOB"), min_width=len(column), overflow="fold"
        )
    for endpoint_id, body in data:
        for w in body.get("workers", []):
            version = Text(str(w.get("version", "?")))
            if w.get("isStale"):
                version.append(f" (< {body.get('endpointVersion')})", style="magenta")
            jobs = w.get("jobIds") or []
            state = state_text(w.get("status"))
            for flag in ("paused", "stopping"):  # (a standby container's status says STANDBY)
                if w.get(flag):
                    state.append(f" {flag}", style="dim")
            row = [
                Text(w.get("id", "?"), style="bold"),
                state,
                version,
                ", ".join(jobs) if jobs else Text("—", style="dim"),
                fmt_duration(w.get("uptimeSeconds")),
                str(w.get("restarts", 0)),
                w.get("reason") or "",
                fmt_until(w.get("nextRetryAt"), now),
            ]
            table.add_row(*([endpoint_id] if many else []), *row)
    if any(w.get("status") == "STANDBY" for _, body in data for w in body.get("workers", [])):
        table.caption = (
            "STANDBY: a standby container (extraWorkers), created but not started; not a serving worker"
        )
        table.caption_justify = "left"
    return table


def render(
    api: Api, endpoint_id: str | None, watching: bool, data: list[tuple[str, dict[str, Any]]] | None = None
) -> Group:
    stamp = time.strftime("%H:%M:%S")
    if data is None:
        try:
            data = fetch(api, endpoint_id)
        except Unreachable as exc:
            return Group(Text(f"{stamp}  {exc}; retrying… ({SERVE_HINT})", style="red"))
        except ApiError as exc:
            return Group(Text(f"{stamp}  {exc.message} (HTTP {exc.status}); retrying…", style="red"))
    if endpoint_id is not None:
        body = data[0][1]
        title = f"Workers of {endpoint_id} (version {body.get('endpointVersion', '?')})"
    else:
        title = f"Workers of {len(data)} endpoint(s) at {api.url}"
    parts: list[Any] = []
    if not any(body.get("workers") for _, body in data):
        parts.append(Text(title, style="italic"))
        parts.append(
            Text(
                "no workers"
                + (
                    " (endpoints start workers when jobs arrive, or keep workersMin running)"
                    if data
                    else "; no endpoints either"
                ),
                style="dim",
            )
        )
    else:
        parts.append(workers_table(data, title=title))
    totals: dict[str, int] = {}
    for _, body in data:
        for key, value in (body.get("summary") or {}).items():
            totals[key] = totals.get(key, 0) + int(value)
    footer = (
        Text.assemble(worker_summary(totals), f"  · {totals.get('total', 0)} total")
        if totals.get("total")
        else Text()
    )
    if watching:
        footer.append(f"  · {stamp}  (Ctrl-C to stop)", style="dim")
    parts.append(footer)
    return Group(*parts)


def workers(
    endpoint_id: str | None = typer.Argument(None, metavar="[ENDPOINT]", help="Endpoint id [all endpoints]"),
    watch: bool = typer.Option(
        False, "--watch", "-w", help="Keep the table on screen, refreshed every second"
    ),
    interval: float = typer.Option(1.0, "--interval", help="Seconds between refreshes with --watch"),
    count: int | None = typer.Option(None, "--count", "-n", help="With --watch: stop after N refreshes"),
    url: str = URL_OPTION,
    api_key: str | None = API_KEY_OPTION,
) -> None:
    """The workers of one endpoint (or all) and their states: version, job, uptime, restarts, reason."""
    with Api(url, api_key, timeout_s=10) as api:
        if not watch:
            try:
                data = fetch(api, endpoint_id)
            except ApiError as exc:
                fail_api(exc)
            console.print(render(api, endpoint_id, False, data))
            return
        try:
            fetch(api, endpoint_id)  # a wrong endpoint id fails now, not in the live table
        except Unreachable:
            fail(f"the emulator is not reachable at {api.url}", SERVE_HINT)
        except ApiError as exc:
            fail_api(exc)
        api.raise_network_errors = True  # from now on the live table shows them and keeps trying
        try:
            if console.is_terminal:
                with Live(render(api, endpoint_id, True), console=console, auto_refresh=False) as live:
                    for _ in _ticks(count, interval):
                        live.update(render(api, endpoint_id, True), refresh=True)
            else:  # a log or a pipe: one table per refresh
                console.print(render(api, endpoint_id, True))
                for _ in _ticks(count, interval):
                    console.print()
                    console.print(render(api, endpoint_id, True))
        except KeyboardInterrupt:
            pass


def _ticks(count: int | None, interval: float) -> Iterator[int]:
    """Sleep ``interval`` between refreshes; ``count`` refreshes in all (the first is drawn already)."""
    done = 1
    while count is None or done < count:
        time.sleep(max(0.1, interval))
        done += 1
        yield done


# --- logs --------------------------------------------------------------------------------------------------


def new_lines(previous: list[str], current: list[str]) -> list[str]:
    """The lines of ``current`` after those already shown in ``previous``, for two tail windows of
    the same log: the fewest new lines that align ``previous``'s end with ``current``."""
    if not previous:
        return current
    for new in range(0, len(current) + 1):
        end = len(current) - new
        overlap = min(len(previous), end)
        if overlap and current[end - overlap : end] == previous[len(previous) - overlap :]:
            return current[end:]
    return current  # no overlap: everything is new (the log moved past our window, or restarted)


class LogFollower:
    """Turns repeated tail fetches of one log into the stream of its new lines."""

    def __init__(self, window: int = FOLLOW_WINDOW) -> None:
        self.window = window
        self.seen: list[str] = []

    def update(self, current: list[str]) -> list[str]:
        if len(current) < self.window and len(self.seen) < self.window:
            # the whole log fits in the window: a count is exact (repeated lines included)
            if len(current) >= len(self.seen) and current[: len(self.seen)] == self.seen:
                fresh = current[len(self.seen) :]
            else:
                fresh = current  # shorter or different: a new container's log
        else:
            fresh = new_lines(self.seen, current)
        self.seen = current
        return fresh


def follow(
    fetch_lines: Callable[[int], list[str] | None],
    tail: int,
    emit: Callable[[str], None],
    interval_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    polls: int | None = None,
) -> None:
    """Print the last ``tail`` lines, then new lines as they come; stop when ``fetch_lines`` answers
    None (the worker is gone) or after ``polls`` polls."""
    follower = LogFollower()
    first = fetch_lines(follower.window)
    if first is None:
        return
    follower.seen = first
    for line in first[-tail:]:
        emit(line)
    done = 0
    while polls is None or done < polls:
        sleep(interval_s)
        done += 1
        current = fetch_lines(follower.window)
        if current is None:
            return
        for line in follower.update(current):
            emit(line)


def logs(
    worker_id: str | None = typer.Argument(
        None, metavar="[WORKER]", help="Worker id (see `serverless-emulator workers`)"
    ),
    follow_: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines"),
    tail: int = typer.Option(200, "--tail", "-t", help="How many recent lines to print first"),
    interval: float = typer.Option(1.0, "--interval", help="Seconds between polls with --follow"),
    endpoint: str | None = typer.Option(
        None,
        "--endpoint",
        "-e",
        help="The endpoint's logs, kept after its workers are gone (WORKER then filters)",
    ),
    job: str | None = typer.Option(None, "--job", "-j", help="With --endpoint: only this job's lines"),
    since: str | None = typer.Option(
        None, "--since", help="With --endpoint: unix seconds or an ISO 8601 time"
    ),
    url: str = URL_OPTION,
    api_key: str | None = API_KEY_OPTION,
) -> None:
    """A worker container's recent output (stdout and stderr), or with --endpoint every worker's, kept."""
    if tail < 1:
        fail("--tail must be at least 1")
    if endpoint is not None:
        from emulator.cli import endpoint_logs

        params = {
            k: v for k, v in {"worker": worker_id, "job": job, "since": since, "limit": tail}.items() if v
        }
        with Api(url, api_key, timeout_s=30) as api, contextlib.suppress(KeyboardInterrupt):
            endpoint_logs.show(api, endpoint, params, follow_, interval)
        return
    if worker_id is None or job is not None or since is not None:
        fail("give a WORKER, or --endpoint ID (with --job / --since to filter)")
    with Api(url, api_key, timeout_s=30) as api:

        def fetch_lines(n: int) -> list[str] | None:
            response = api.request("GET", f"/v1/workers/{worker_id}/logs", params={"tail": min(n, 100_000)})
            if response.status_code == 404 and gone[0]:
                return None
            if response.status_code >= 400:
                fail_api(api_error(response))
            gone[0] = True  # from now on a 404 means the worker went away
            return response.text.splitlines()

        gone = [False]
        if not follow_:
            lines = fetch_lines(tail) or []
            for line in lines[-tail:]:
                console.out(line, highlight=False)
            if not lines and err_console.is_terminal:
                err_console.print("(no output yet)", style="dim")
            return
        try:
            follow(fetch_lines, tail, lambda line: console.out(line, highlight=False), interval_s=interval)
            err_console.print(f"worker {worker_id} is gone", style="yellow")
        except KeyboardInterrupt:
            pass

"""Shared pieces of the CLI: consoles, errors with hints, the HTTP client for a running emulator,
and small formatters. The command modules (``cli_*.py``) build on these."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.text import Text

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
SERVE_HINT = "start it with `serverless-emulator serve` (or point --url / EMULATOR_URL at a running emulator)"
DOCKER_HINT = "start Docker (`sudo systemctl start docker`) or use --runtime none"
BUILD_HINT = "build it with `serverless-emulator images build DIR`"

STATE_STYLES = {
    "INITIALIZING": "blue",
    "IDLE": "green",
    "RUNNING": "bold green",
    "THROTTLED": "yellow",
    "OUTDATED": "magenta",
    "UNHEALTHY": "red",
    "STANDBY": "dim",  # a standby container (extraWorkers): created, not started, not serving
}
JOB_STYLES = {
    "IN_QUEUE": "blue",
    "IN_PROGRESS": "cyan",
    "COMPLETED": "bold green",
    "FAILED": "bold red",
    "CANCELLED": "yellow",
    "TIMED_OUT": "bold red",
}

# stdout carries results (tables, job output) so that it can be piped; stderr carries messages
# (not on a terminal, as in CI logs and pipes, tables get 160 columns rather than rich's 80, unless COLUMNS says)


def _width(stream: Any) -> int | None:
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return None if tty or os.environ.get("COLUMNS") else 160


console = Console(highlight=False, width=_width(sys.stdout))
err_console = Console(stderr=True, highlight=False, width=_width(sys.stderr))


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    """Print ``error: message`` (and ``hint: ...``) on stderr and exit with ``code``."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    if hint:
        typer.secho(f"hint: {hint}", fg=typer.colors.YELLOW, err=True)
    raise typer.Exit(code)


def busy(message: str) -> contextlib.AbstractContextManager[Any]:
    """A spinner on stderr while something slow happens (nothing when stderr is not a terminal)."""
    return err_console.status(message) if err_console.is_terminal else contextlib.nullcontext()


# --- options shared by the commands that talk to a running emulator ------------------------------------

URL_OPTION = typer.Option(
    DEFAULT_URL, "--url", envvar="EMULATOR_URL", help="The emulator's address", show_envvar=True
)
API_KEY_OPTION = typer.Option(
    None,
    "--api-key",
    envvar="EMULATOR_API_KEY",
    help="The emulator's API key (sent as a Bearer token)",
    show_envvar=True,
)


# --- HTTP ------------------------------------------------------------------------------------------------


class ApiError(Exception):
    """The emulator answered with an error status: its message, status code and field."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message
        self.field = field


def api_error(response: httpx.Response) -> ApiError:
    message, field = "", None
    try:
        body = response.json()
        if isinstance(body, dict):
            message = str(body.get("error") or body.get("detail") or "")
            field = body.get("field")
    except ValueError:
        pass
    if not message:
        message = response.text.strip()[:500] or response.reason_phrase or "request failed"
    return ApiError(response.status_code, message, field)


def hint_for(error: ApiError) -> str | None:
    if error.status == 401:
        return "set EMULATOR_API_KEY (or --api-key) to the key the emulator was started with"
    if error.status == 404 and "endpoint" in error.message.lower():
        return "see the endpoints with `serverless-emulator endpoints list`"
    if error.status == 404 and "worker" in error.message.lower():
        return "see the workers with `serverless-emulator workers`"
    if error.status == 422 and ("image" in error.message.lower() and ("not" in error.message.lower())):
        return BUILD_HINT
    if error.status == 503 and "docker" in error.message.lower():
        return "start Docker (`sudo systemctl start docker`), then try again"
    return None


class Api:
    """A small synchronous client for a running emulator; every failure becomes ``fail`` with a hint."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s, transport=transport)
        self.raise_network_errors = False  # True: network failures raise httpx errors instead of exiting

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, *, timeout_s: float | None = None, **kw: Any) -> httpx.Response:
        """The response (any status); network failures exit with a hint."""
        if timeout_s is not None:
            kw["timeout"] = timeout_s
        try:
            return self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            if self.raise_network_errors:
                raise
            self._network_failure(method, path, exc)

    def _network_failure(self, method: str, path: str, exc: httpx.HTTPError) -> NoReturn:
        if isinstance(exc, httpx.ConnectError):
            fail(f"the emulator is not reachable at {self.url}", SERVE_HINT)
        if isinstance(exc, httpx.TimeoutException):
            fail(
                f"the emulator at {self.url} did not answer {method} {path} in time",
                "it may be overloaded or stuck; check its log",
            )
        fail(f"{method} {self.url}{path} failed: {exc}", SERVE_HINT)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        """The decoded JSON body (None for 204, text for text bodies); an error status raises ApiError."""
        response = self.request(method, path, **kw)
        if response.status_code >= 400:
            raise api_error(response)
        if response.status_code == 204 or not response.content:
            return None
        if "json" in response.headers.get("content-type", ""):
            return response.json()
        return response.text

    def checked(self, method: str, path: str, **kw: Any) -> Any:
        """Like ``call``, but an error status exits with the API's message, status code and a hint."""
        try:
            return self.call(method, path, **kw)
        except ApiError as exc:
            fail_api(exc)


def fail_api(exc: ApiError) -> NoReturn:
    message = (
        exc.message
        if exc.field is None or exc.field in exc.message
        else f"{exc.message} [field: {exc.field}]"
    )
    fail(f"{message} (HTTP {exc.status})", hint_for(exc))


# --- JSON arguments -------------------------------------------------------------------------------------


def load_json_arg(value: str, what: str) -> Any:
    """A JSON value given inline, as ``@path``, or as ``-`` (stdin)."""
    source = "inline"
    text = value
    if value == "-":
        text, source = sys.stdin.read(), "stdin"
    elif value.startswith("@"):
        path = Path(value[1:]).expanduser()
        text, source = read_text(path, what), str(path)
    try:
        return json.loads(text)
    except ValueError as exc:
        fail(
            f"{what} is not valid JSON ({source}): {exc}",
            'quote it for the shell, e.g. --input \'{"prompt": "hi"}\', or pass @file.json',
        )


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        fail(f"{what}: no such file {path}")
    except OSError as exc:
        fail(f"{what}: cannot read {path}: {exc.strerror}")


def load_json_file(path: Path, what: str) -> Any:
    try:
        return json.loads(read_text(path, what))
    except ValueError as exc:
        fail(f"{what} {path} is not valid JSON: {exc}")


def parse_env(pairs: list[str] | None) -> dict[str, str]:
    """``["A=1", "B=x=y"]`` -> ``{"A": "1", "B": "x=y"}``."""
    env: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"bad --env {pair!r}: expected KEY=VALUE")
        env[key] = value
    return env


# --- formatting --------------------------------------------------------------------------------------------


def fmt_ms(ms: Any) -> str:
    if ms is None or ms == "":
        return "—"
    try:
        value = float(ms)
    except (TypeError, ValueError):
        return str(ms)
    if value < 1000:
        return f"{value:.0f} ms"
    return f"{value / 1000:.2f} s"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def fmt_until(timestamp: float | None, now: float | None = None) -> str:
    """An epoch time as ``in 4s`` (or ``now``), for next-retry columns."""
    if not timestamp:
        return "—"
    delta = float(timestamp) - (time.time() if now is None else now)
    return "now" if delta <= 0.5 else f"in {fmt_duration(delta)}"


def state_text(state: str | None) -> Text:
    state = state or "?"
    return Text(state, style=STATE_STYLES.get(state, ""))


def job_status_text(status: str | None) -> Text:
    status = status or "?"
    return Text(status, style=JOB_STYLES.get(status, ""))


def short_json(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_error(error: Any) -> str:
    """A job's ``error`` for people: RunPod's SDKs send a JSON object (error_type, error_message,
    error_traceback), often as a string; show the type and message, then the traceback."""
    if isinstance(error, str):
        try:
            parsed = json.loads(error)
        except ValueError:
            return error
        if not isinstance(parsed, dict):
            return error
        error = parsed
    if isinstance(error, dict) and ("error_message" in error or "error_type" in error):
        kind = str(error.get("error_type") or "").removeprefix("<class '").removesuffix("'>")
        text = f"{kind}: {error.get('error_message')}" if kind else str(error.get("error_message"))
        traceback = str(error.get("error_traceback") or "").rstrip()
        return text + ("\n" + traceback if traceback else "")
    return json.dumps(error, indent=2, ensure_ascii=False, default=str)

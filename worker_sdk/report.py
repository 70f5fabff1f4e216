"""POSTing results, stream chunks and progress to the control plane, with retries and clear logs."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from . import log
from .transport import TransportError, request

if TYPE_CHECKING:
    from collections.abc import Callable

    from .config import Settings
    from .loop import Worker

OK, GONE, REJECTED, ABANDONED = "ok", "gone", "rejected", "abandoned"
GONE_STATUSES = (404, 409, 410)  # job unknown, not this worker's, or already final


def retryable(status: int) -> bool:
    # 401/403 are retried too: a restarting control plane may briefly not know the worker's token.
    return status in (401, 403, 408, 425, 429) or status >= 500


def backoff(settings: Settings, attempt: int) -> float:
    """Exponential backoff: initial, 2x initial, 4x ... capped at ``backoff_max_s``."""
    return min(settings.backoff_max_s, settings.backoff_initial_s * (2.0 ** min(attempt, 30)))


def encode(body: object) -> bytes:
    """``body`` as compact UTF-8 JSON; TypeError/ValueError when it is not JSON serializable."""
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


class Link:
    """Remembers whether the control plane answered lately, so an outage is logged once, not per retry."""

    def __init__(self) -> None:
        self.failures = 0

    def failure(self, what: str, reason: str, url: str, job_id: str | None = None) -> None:
        self.failures += 1
        answered = reason.startswith("HTTP ")
        if self.failures == 1:
            problem = (
                "the control plane answered with an error" if answered else "cannot reach the control plane"
            )
            log.warn(f"{problem} ({what} {_origin(url)}): {reason}; retrying with backoff", job_id)
        elif self.failures % 20 == 0:
            log.warn(f"control plane still failing after {self.failures} attempts ({what}: {reason})", job_id)

    def success(self) -> None:
        if self.failures:
            log.info(f"control plane reachable again after {self.failures} failed attempt(s)")
            self.failures = 0


def _origin(url: str) -> str:
    head, _, _ = url.partition("?")
    return head


async def deliver(
    worker: Worker,
    what: str,
    url: str,
    body: bytes,
    job_id: str,
    timeout: float,
    keep_going: Callable[[], bool] | None = None,
    busy: Callable[[bool], None] | None = None,
) -> tuple[str, int | None]:
    """POST ``body`` until it lands. Returns ``(outcome, status)``.

    Retries connection errors, timeouts, 5xx, 429, 401/403 forever with capped exponential backoff;
    stops on 2xx (OK), 404/409/410 (GONE), another 4xx (REJECTED), or when ``keep_going()`` turns
    false between attempts (ABANDONED). ``busy(flag)`` is told when a request is on the wire.
    """
    settings = worker.settings
    attempt = 0
    while True:
        if keep_going is not None and not keep_going():
            return ABANDONED, None
        if busy is not None:
            busy(True)
        status: int | None
        try:
            response = await request(
                "POST", url, body=body, headers=_headers(settings, job_id), timeout=timeout
            )
        except TransportError as exc:
            problem, status = str(exc), None
            worker.link.failure(what, problem, url, job_id)
        else:
            status = response.status
            problem = f"HTTP {status} {response.text(200)}"
            if 200 <= status < 300:
                worker.link.success()
                if attempt:
                    log.info(f"{what} delivered after {attempt + 1} attempts", job_id)
                return OK, status
            if status in GONE_STATUSES:
                log.warn(
                    f"control plane refused the {what} with HTTP {status} (job gone, not ours, or already final): "
                    f"{response.text(200)}",
                    job_id,
                )
                return GONE, status
            if not retryable(status):
                log.error(f"control plane rejected the {what}: {problem}", job_id)
                return REJECTED, status
        finally:
            if busy is not None:
                busy(False)
        attempt += 1
        if attempt == 1 or attempt % 10 == 0:
            log.warn(f"{what} not delivered ({problem}); attempt {attempt} failed, retrying", job_id)
        await asyncio.sleep(backoff(settings, attempt - 1))


def _headers(settings: Settings, job_id: str) -> dict[str, str]:
    headers = settings.headers(job_id)
    headers["Content-Type"] = "application/json"
    return headers

"""PURE: the load balancer's decisions, with no I/O: ports, health answers, affinity, routing, headers.

Follows RunPod's load-balancing pages (docs.runpod.io/serverless/load-balancing/overview,
build-a-worker, worker-affinity): a worker serves HTTP on ``PORT`` (default 80) and answers its health
check on ``PORT_HEALTH`` (default ``PORT``) at ``HEALTH_CHECK_PATH`` (default ``/ping``): 200 is ready,
204 is still initializing, anything else is unhealthy and takes the worker out of the routing pool.
Every answer carries ``X-Runpod-Worker-Id``; a client may send it back (plain: soft affinity;
``strict <id>``; ``strict-resume <id>``).
"""

from __future__ import annotations

import hmac
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from emulator.store.jobs import QueueStats

WORKER_ID_HEADER = "x-runpod-worker-id"
PATH_PREFIX = "/lb/"

# RFC 9110 section 7.6.1: connection-specific headers a proxy must not forward; plus the ones the
# emulator sets itself (host for the worker, the client's key, which never reaches a worker)
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED = HOP_BY_HOP | {"host", "authorization"}
# the emulator's HTTP server writes its own Date and Server; the worker id is the emulator's to set
_NOT_RETURNED = HOP_BY_HOP | {"date", "server", WORKER_ID_HEADER}
_WS_OWN = frozenset(
    {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol"}
)
_HOST_FORM = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,63})\.localhost(?::\d+)?$", re.IGNORECASE)


# --- health -----------------------------------------------------------------------------------------
Verdict = Literal["ready", "initializing", "bad", "silent"]


def verdict(status: int | None) -> Verdict:
    """A health check's answer: 200 ready, 204 initializing, another status bad, no answer silent."""
    if status is None:
        return "silent"
    if status == 200:
        return "ready"
    if status == 204:
        return "initializing"
    return "bad"


@dataclass(frozen=True)
class HealthStep:
    """What one health answer means for a worker."""

    routable: bool  # in the routing pool after this answer
    contact: bool  # the worker is alive and ready (the first one makes an INITIALIZING worker IDLE)
    bad_since: float | None  # start of the current run of failed checks (None: the last one passed)
    fail: str | None  # a reason: the worker is UNHEALTHY now


def health_step(
    answer: Verdict,
    detail: str,
    ready_before: bool,
    bad_since: float | None,
    now: float,
    unhealthy_after_s: float,
    busy: bool = False,
) -> HealthStep:
    """The effect of one health answer.

    ``ready_before``: the worker answered 200 since its container started. A worker that answers
    something other than 200 or 204 for ``unhealthy_after_s`` (or, once ready, stops answering for
    as long) fails; a starting worker that does not answer at all is left to the start-up timeout
    (a server that is still loading does not listen yet). A ``busy`` worker (requests in flight) that
    does not answer is serving, not lost: it takes no new request until it answers 200 again."""
    if answer == "ready":
        return HealthStep(True, True, None, None)
    if answer == "initializing":
        return HealthStep(False, False, None, None)
    if answer == "silent" and busy and ready_before:
        return HealthStep(False, True, None, None)
    since = now if bad_since is None else bad_since
    counts = answer == "bad" or ready_before
    if counts and now - since >= unhealthy_after_s:
        return HealthStep(False, False, since, f"health check failed for {now - since:.1f}s: {detail}")
    return HealthStep(False, False, since, None)


# --- affinity ---------------------------------------------------------------------------------------
AffinityMode = Literal["none", "soft", "strict", "strict-resume"]


@dataclass(frozen=True)
class Affinity:
    mode: AffinityMode = "none"
    worker_id: str = ""


def affinity(value: str | None) -> Affinity:
    """``X-Runpod-Worker-Id`` as sent by a client: empty, ``<id>``, ``strict <id>``, ``strict-resume <id>``.
    Raises ValueError for a strict form with no worker id."""
    text = (value or "").strip()
    if not text:
        return Affinity()
    head, _, rest = text.partition(" ")
    if head.lower() in ("strict", "strict-resume"):
        target = rest.strip()
        if not target:
            raise ValueError(f"X-Runpod-Worker-Id {text!r} names no worker: send '{head} <worker id>'")
        return Affinity("strict" if head.lower() == "strict" else "strict-resume", target)
    return Affinity("soft", text)


# --- routing ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """One worker of the endpoint as the router sees it."""

    worker_id: str
    routable: bool  # current version, ready (last health check 200), not paused, not leaving
    in_flight: int = 0
    last_pick: int = 0  # when it was last picked (a counter): ties go to the least recently used
    alive: bool = True  # not leaving (OUTDATED, stopping, removed): strict affinity may still wait for it
    paused: bool = False


@dataclass(frozen=True)
class Choice:
    """``route`` to ``worker_id``; ``wait`` (and ``resume`` the paused target first); or ``gone``."""

    action: Literal["route", "wait", "gone"]
    worker_id: str = ""
    resume: bool = False


def per_worker(scaler_value: float) -> int:
    """Requests in flight a worker takes before others are preferred (REQUEST_COUNT's ``scalerValue``)."""
    return max(1, math.ceil(scaler_value))


def choose(candidates: Sequence[Candidate], wanted: Affinity, per_worker_cap: int, coming: bool) -> Choice:
    """Which worker serves a request now, or wait.

    Normal routing takes the routable worker with the fewest requests in flight (the least recently
    used on a tie) among those under ``per_worker_cap``; when every routable worker is at the cap, the
    request waits while another worker is ``coming`` (starting, or the endpoint may still grow: the
    scaler counts the waiting request), else goes to the least loaded one (there is no queue to hold
    it). Soft affinity prefers its worker when it is routable and under the cap; strict forms route
    only to theirs (waiting while it is busy or not ready), ``gone`` when the endpoint has no such
    worker any more."""
    if wanted.mode in ("strict", "strict-resume"):
        target = next((c for c in candidates if c.worker_id == wanted.worker_id), None)
        if target is None or not target.alive:
            return Choice("gone", wanted.worker_id)
        if target.routable and target.in_flight < per_worker_cap:
            return Choice("route", target.worker_id)
        return Choice("wait", target.worker_id, resume=wanted.mode == "strict-resume" and target.paused)
    ready = [c for c in candidates if c.routable]
    if wanted.mode == "soft":
        target = next((c for c in ready if c.worker_id == wanted.worker_id), None)
        if target is not None and target.in_flight < per_worker_cap:
            return Choice("route", target.worker_id)
    under = [c for c in ready if c.in_flight < per_worker_cap]
    pool = under or ([] if coming else ready)
    if not pool:
        return Choice("wait")
    best = min(pool, key=lambda c: (c.in_flight, c.last_pick, c.worker_id))
    return Choice("route", best.worker_id)


def stats(waiting: int, in_flight: int, oldest_wait_s: float) -> QueueStats:
    """The scaler's input for a load-balancing endpoint: requests waiting for a worker count as queued,
    requests in flight as in progress (RunPod's REQUEST_COUNT, the only scaler of this type)."""
    return QueueStats(
        in_queue=waiting, in_progress=in_flight, in_queue_scaling=waiting, oldest_scaling_wait_s=oldest_wait_s
    )


# --- addressing and headers --------------------------------------------------------------------------
def endpoint_from_host(host: str | None) -> str | None:
    """``{endpoint_id}.localhost[:port]`` (RunPod's ``{endpoint_id}.api.runpod.ai``) -> the endpoint id."""
    if not host:
        return None
    match = _HOST_FORM.match(host.strip())
    return match.group(1) if match else None


def split_lb_path(path: str) -> tuple[str, str] | None:
    """``/lb/{endpoint_id}/{rest}`` -> (endpoint id, ``/{rest}``); None for other paths."""
    if not path.startswith(PATH_PREFIX):
        return None
    endpoint_id, slash, rest = path[len(PATH_PREFIX) :].partition("/")
    if not endpoint_id:
        return None
    return endpoint_id, "/" + rest if slash else "/"


def request_headers(
    headers: Iterable[tuple[bytes, bytes]], client_ip: str | None, scheme: str, websocket: bool = False
) -> list[tuple[str, str]]:
    """The client's headers as the worker gets them: hop-by-hop headers, those the ``Connection`` header
    names, ``Host`` and ``Authorization`` dropped; ``X-Forwarded-For`` (appended to), ``-Proto`` and
    ``-Host`` set. For a WebSocket the handshake's own headers are left to the client library."""
    pairs = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in headers]
    named = {t.strip().lower() for k, v in pairs if k == "connection" for t in v.split(",")}
    skip = _NOT_FORWARDED | named | (_WS_OWN if websocket else frozenset())
    out = [(k, v) for k, v in pairs if k not in skip and not k.startswith("x-forwarded-")]
    prior = ", ".join(v for k, v in pairs if k == "x-forwarded-for")
    if client_ip:
        out.append(("x-forwarded-for", f"{prior}, {client_ip}" if prior else client_ip))
    elif prior:
        out.append(("x-forwarded-for", prior))
    out.append(("x-forwarded-proto", scheme))
    host = next((v for k, v in pairs if k == "host"), None)
    if host:
        out.append(("x-forwarded-host", host))
    return out


def response_headers(headers: Iterable[tuple[str, str]], worker_id: str) -> list[tuple[bytes, bytes]]:
    """The worker's headers as the client gets them: hop-by-hop ones dropped (and ``Date``/``Server``, which
    the emulator's server writes itself), ``X-Runpod-Worker-Id`` set."""
    pairs = list(headers)
    named = {t.strip().lower() for k, v in pairs if k.lower() == "connection" for t in v.split(",")}
    out = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in pairs
        if k.lower() not in _NOT_RETURNED and k.lower() not in named
    ]
    out.append((WORKER_ID_HEADER.encode(), worker_id.encode("latin-1")))
    return out


def has_token(value: str | None, key: str) -> bool:
    """Whether an ``Authorization`` value carries ``key`` (``Bearer KEY`` or the raw key, as on /v2)."""
    if not value:
        return False
    text = value.strip()
    if text.lower().startswith("bearer "):
        text = text[7:].strip()
    return hmac.compare_digest(text.encode(), key.encode())


def transport_error(exc: BaseException) -> str:
    """A failed connection in words: "connection refused (nothing listens on that port)" when the
    cause chain holds a refusal (httpx says only "All connection attempts failed"), else its text."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or "Connection refused" in str(seen):
            return "connection refused (nothing listens on that port)"
        seen = seen.__cause__ or seen.__context__
    return str(exc) or type(exc).__name__

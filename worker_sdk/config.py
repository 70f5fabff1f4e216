"""Worker settings read from RunPod's environment variables (protocol.md section 3.2) and URL building."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import quote

from . import __version__, log

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

_STOP_ROUTE = ("/job-take/", "/job-stop/")
_BATCH_ROUTE = ("/job-take/", "/job-take-batch/")


def add_query(url: str, param: str) -> str:
    """Append ``name=value`` the way RunPod does (with ``&``), but also cope with a URL lacking ``?``."""
    if "?" not in url:
        return url + "?" + param
    if url.endswith(("?", "&")):
        return url + param
    return url + "&" + param


def _number(env: Mapping[str, str], name: str, default: float, minimum: float | None = None) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        log.warn(f"ignoring {name}={raw!r} (not a number); using {default}")
        return default
    if minimum is not None and value < minimum:
        return minimum
    return value


class Settings:
    """Everything the worker loop needs from the environment, plus tunables tests may shrink."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.worker_id = env.get("RUNPOD_POD_ID") or _random_id()
        self.api_key = env.get("RUNPOD_AI_API_KEY") or ""
        self.hostname = env.get("RUNPOD_POD_HOSTNAME") or "unknown"
        self.endpoint_id = env.get("RUNPOD_ENDPOINT_ID") or ""

        raw_take = env.get("RUNPOD_WEBHOOK_GET_JOB") or ""
        self.job_take_url = raw_take.replace("$ID", self.worker_id) if raw_take else None
        take = self.job_take_url or ""
        self.can_batch = _BATCH_ROUTE[0] in take
        self.job_stop_url = take.replace(*_STOP_ROUTE) if _STOP_ROUTE[0] in take else None

        self.job_done_template = self._template(env, "RUNPOD_WEBHOOK_POST_OUTPUT", raw_take, "/job-done/")
        self.job_stream_template = self._template(env, "RUNPOD_WEBHOOK_POST_STREAM", raw_take, "/job-stream/")
        ping = env.get("RUNPOD_WEBHOOK_PING") or ""
        if ping == "PING_NOT_SET":
            ping = ""
        self.ping_url = ping.replace("$RUNPOD_POD_ID", self.worker_id).replace("$ID", self.worker_id) or None
        # RunPod's SDK integer-divides the ms value; we keep fractions but never ping more than once a second.
        self.ping_interval_s = _number(env, "RUNPOD_PING_INTERVAL", 10000.0) / 1000.0
        self.ping_interval_s = max(1.0, self.ping_interval_s)
        self.grace_s = _number(env, "WORKER_SDK_GRACE_S", 25.0, minimum=0.0)

        # Tunables (not environment variables): timeouts and backoff, in seconds.
        self.take_timeout_s = 90.0  # client-side bound on one job-take long poll
        self.stop_timeout_s = 90.0  # same for the job-stop long poll
        self.post_timeout_s = 30.0  # one result or stream-chunk POST
        self.progress_timeout_s = 10.0  # one progress POST
        self.progress_flush_s = 10.0  # how long a final result waits for an in-flight progress POST
        self.backoff_initial_s = 0.25
        self.backoff_max_s = 5.0
        self.too_many_requests_s = 5.0  # after a 429 on job-take / job-stop
        self.min_poll_gap_s = 0.25  # floor between empty long polls, if the server answers at once

    def _template(self, env: Mapping[str, str], name: str, raw_take: str, route: str) -> str | None:
        value = env.get(name) or ""
        if not value and "/job-take/$ID" in raw_take:
            # Not set: derive it from the job-take template, which names the same endpoint.
            value = raw_take.replace("/job-take/$ID", route + "$RUNPOD_POD_ID/$ID")
        return value.replace("$RUNPOD_POD_ID", self.worker_id) or None

    # ---- URLs --------------------------------------------------------------------------
    def take_url(self, count: int, in_progress: bool) -> str:
        url = self.job_take_url or ""
        if count > 1 and self.can_batch:
            url = add_query(url.replace(*_BATCH_ROUTE), f"batch_size={count}")
        return add_query(url, f"job_in_progress={1 if in_progress else 0}")

    def stop_url(self, in_progress: bool) -> str:
        return add_query(self.job_stop_url or "", f"job_in_progress={1 if in_progress else 0}")

    def done_url(self, job_id: str, is_stream: bool) -> str:
        url = (self.job_done_template or "").replace("$ID", quote(str(job_id), safe=""))
        return add_query(url, "isStream=" + ("true" if is_stream else "false"))

    def stream_url(self, job_id: str) -> str:
        url = (self.job_stream_template or "").replace("$ID", quote(str(job_id), safe=""))
        return add_query(url, "isStream=false")

    def ping_url_for(self, job_ids: Sequence[str]) -> str:
        url = self.ping_url or ""
        if job_ids:
            url = add_query(url, "job_id=" + ",".join(quote(str(j), safe="") for j in job_ids))
        return add_query(url, "runpod_version=" + quote(__version__, safe=""))

    def headers(self, job_id: str | None = None) -> dict[str, str]:
        headers = {"User-Agent": "worker_sdk/" + __version__}
        if self.api_key:
            headers["Authorization"] = self.api_key  # raw key, no "Bearer", as RunPod's SDK sends it
        if job_id is not None:
            headers["X-Request-ID"] = str(job_id)
        return headers


def _random_id() -> str:
    import uuid

    return str(uuid.uuid4())

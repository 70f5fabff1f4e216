"""An in-test stand-in for the control plane's worker routes (RunPod's wire shapes, protocol.md 3.3-3.6).

Threaded stdlib HTTP server on 127.0.0.1. It queues jobs, holds job-take / job-stop long polls,
records every request, and can inject faults (status codes, dropped connections, delays).
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, unquote

ROUTE = re.compile(
    r"^/v2/(?P<ep>[^/]+)/(?P<route>job-take-batch|job-take|job-stop|job-done|job-stream|ping)"
    r"/(?P<worker>[^/]+)(?:/(?P<job>[^/]+))?$"
)
DROP = "drop"  # fault: close the connection without answering
T = TypeVar("T")
# An injected answer: a status code, DROP, or ("delay", seconds).
Fault = int | str | tuple[str, float]


class Request:
    """One request the stub received; ``body`` is the parsed JSON (or the raw bytes if not JSON)."""

    def __init__(
        self,
        method: str,
        route: str,
        worker: str,
        job: str | None,
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
    ) -> None:
        self.t = time.time()
        self.method, self.route, self.worker, self.job = method, route, worker, job
        self.query, self.headers, self.body = query, headers, body
        self.conn = 0  # which accepted connection (1, 2, ...) carried it
        self.status: int | None = None  # what the stub answered
        self.done_t: float | None = None  # when the answer was decided, just before it was written

    def __repr__(self) -> str:
        return f"<{self.method} {self.route} job={self.job} q={self.query} body={self.body!r}>"


class StubControlPlane:
    def __init__(self, hold_s: float = 1.0, endpoint: str = "ep", token: str = "tok") -> None:
        self.hold_s, self.endpoint, self.token = hold_s, endpoint, token
        self.cond = threading.Condition()
        self.queue: list[dict[str, Any]] = []  # job dicts waiting
        self.jobs: dict[str, dict[str, Any]] = {}  # id -> {"job", "state", "worker"}
        self.stop_signals: dict[str, list[str]] = {}  # worker -> [job ids]
        self.faults: dict[str, list[Fault]] = {}  # route -> [status | DROP | ("delay", s)]
        self.requests: list[Request] = []
        self.accepted = 0  # TCP connections accepted over the stub's life (keep-alive makes it small)
        self._live: set[socket.socket] = set()  # open client connections, closed by stop() like a restart
        self.port = 0
        self._server: ThreadingHTTPServer | None = None

    # ---- server lifecycle ---------------------------------------------------------------------
    def start(self, port: int = 0) -> StubControlPlane:
        stub = self

        class Handler(_Handler):
            owner = stub

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", port or self.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Stop like a process that exits: the listener and every open connection (kept-alive ones too) close."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.cond:
            live, self._live = list(self._live), set()
        for conn in live:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        with self.cond:
            self.cond.notify_all()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, worker_id: str = "w-1", **extra: str) -> dict[str, str]:
        b, ep = self.base, self.endpoint
        env = {
            "RUNPOD_WEBHOOK_GET_JOB": f"{b}/v2/{ep}/job-take/$ID?gpu=local",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{b}/v2/{ep}/job-done/$RUNPOD_POD_ID/$ID?gpu=local",
            "RUNPOD_WEBHOOK_POST_STREAM": f"{b}/v2/{ep}/job-stream/$RUNPOD_POD_ID/$ID?gpu=local",
            "RUNPOD_WEBHOOK_PING": f"{b}/v2/{ep}/ping/$RUNPOD_POD_ID?gpu=local",
            "RUNPOD_POD_ID": worker_id,
            "RUNPOD_AI_API_KEY": self.token,
            "RUNPOD_ENDPOINT_ID": ep,
            "RUNPOD_PING_INTERVAL": "1000",
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
            "RUNPOD_SKIP_GPU_CHECK": "true",
        }
        env.update(extra)
        return env

    # ---- test controls ------------------------------------------------------------------------
    def add_job(self, input: Any = None, job_id: str | None = None, **extra: Any) -> str:
        job_id = job_id or "job-" + uuid.uuid4().hex[:8]
        job = dict(extra, id=job_id, input=input if input is not None else {})
        with self.cond:
            self.jobs[job_id] = {"job": job, "state": "IN_QUEUE", "worker": None}
            self.queue.append(job)
            self.cond.notify_all()
        return job_id

    def cancel(self, job_id: str) -> None:
        with self.cond:
            entry = self.jobs[job_id]
            entry["state"] = "CANCELLED"
            if entry["worker"]:
                self.stop_signals.setdefault(entry["worker"], []).append(job_id)
            self.queue = [j for j in self.queue if j["id"] != job_id]
            self.cond.notify_all()

    def fault(self, route: str, *answers: Fault) -> None:
        """Answer the next requests on ``route`` with these statuses / DROP / ("delay", seconds)."""
        with self.cond:
            self.faults.setdefault(route, []).extend(answers)

    def state(self, job_id: str) -> str:
        with self.cond:
            return str(self.jobs[job_id]["state"])

    def recorded(self, route: str | None = None, job: str | None = None) -> list[Request]:
        with self.cond:
            return [
                r
                for r in self.requests
                if (route is None or r.route == route) and (job is None or r.job == job)
            ]

    def done_posts(self, job_id: str) -> list[Any]:
        return [r.body for r in self.recorded("job-done", job_id)]

    def final(self, job_id: str) -> Any:
        """The job's final job-done body (any JSON), or None if none came yet."""
        for body in self.done_posts(job_id):
            if not (isinstance(body, dict) and body.get("status") == "IN_PROGRESS"):
                return body
        return None

    def chunks(self, job_id: str) -> list[Any]:
        return [r.body for r in self.recorded("job-stream", job_id)]

    def wait_final(self, job_id: str, timeout: float = 10.0) -> Any:
        wait_until(lambda: self.final(job_id) is not None, timeout, f"final result of {job_id}")
        return self.final(job_id)


def wait_until(
    predicate: Callable[[], T | None | Literal[False]],
    timeout: float,
    what: str = "condition",
    interval: float = 0.02,
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


class _Handler(BaseHTTPRequestHandler):
    owner: StubControlPlane
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def setup(self) -> None:
        super().setup()
        with self.owner.cond:
            self.owner.accepted += 1
            self.owner._live.add(self.connection)
        self.conn_no = self.owner.accepted

    def finish(self) -> None:
        with self.owner.cond:
            self.owner._live.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        stub = self.owner
        path, _, query = self.path.partition("?")
        if not query and "&" in path:  # a template without "?" produces ".../w-1&job_in_progress=0"
            path, _, query = path.partition("&")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        match = ROUTE.match(path)
        if not match:
            self._record = None
            return self._send(404, {"error": "no route " + path})
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        route, worker, job = match["route"], unquote(match["worker"]), match["job"] and unquote(match["job"])
        q = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        self._record = Request(method, route, worker, job, q, dict(self.headers), body)
        self._record.conn = self.conn_no
        with stub.cond:
            stub.requests.append(self._record)
            fault = stub.faults.get(route, []).pop(0) if stub.faults.get(route) else None
        if isinstance(fault, tuple):
            time.sleep(fault[1])
        elif fault == DROP:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        elif isinstance(fault, int):
            return self._send(fault, {"error": f"injected {fault}"})
        if self.headers.get("Authorization") != stub.token:
            return self._send(401, {"error": "bad token"})
        getattr(self, "_" + route.replace("-", "_"))(stub, worker, job, q, body)

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _hold(self, stub: StubControlPlane, ready: Callable[[], object]) -> bool:
        """Wait (up to hold_s) until ready() is true; False if the client left or time ran out."""
        deadline = time.monotonic() + stub.hold_s
        with stub.cond:
            while not ready():
                left = deadline - time.monotonic()
                if left <= 0 or stub._server is None:
                    return False
                stub.cond.wait(min(left, 0.05))
                if self._client_gone():
                    return False
            return True

    def _job_take(
        self,
        stub: StubControlPlane,
        worker: str,
        job: str | None,
        q: dict[str, str],
        body: Any,
        batch: bool = False,
    ) -> None:
        size = int(q.get("batch_size", 1)) if batch else 1
        with stub.cond:
            if not self._hold(stub, lambda: stub.queue):
                return self._send(204, None)
            taken = stub.queue[:size]
            del stub.queue[:size]
            for j in taken:
                stub.jobs[j["id"]].update(state="IN_PROGRESS", worker=worker)
        self._send(200, taken if batch else taken[0])

    def _job_take_batch(
        self, stub: StubControlPlane, worker: str, job: str | None, q: dict[str, str], body: Any
    ) -> None:
        self._job_take(stub, worker, job, q, body, batch=True)

    def _job_stop(
        self, stub: StubControlPlane, worker: str, job: str | None, q: dict[str, str], body: Any
    ) -> None:
        with stub.cond:
            if not self._hold(stub, lambda: stub.stop_signals.get(worker)):
                return self._send(204, None)
            ids = stub.stop_signals.pop(worker)
        self._send(200, {"jobsToStop": ids})

    def _job_done(
        self, stub: StubControlPlane, worker: str, job: str | None, q: dict[str, str], body: Any
    ) -> None:
        with stub.cond:
            entry = stub.jobs.get(job) if job is not None else None
            if entry is None:
                return self._send(404, {"error": "unknown job"})
            if entry["worker"] != worker or entry["state"] != "IN_PROGRESS":
                return self._send(409, {"error": "job is {}".format(entry["state"])})
            if not (isinstance(body, dict) and body.get("status") == "IN_PROGRESS"):
                entry["state"] = "FAILED" if isinstance(body, dict) and body.get("error") else "COMPLETED"
            stub.cond.notify_all()
        self._send(200, {})

    def _job_stream(
        self, stub: StubControlPlane, worker: str, job: str | None, q: dict[str, str], body: Any
    ) -> None:
        with stub.cond:
            entry = stub.jobs.get(job) if job is not None else None
            if entry is None:
                return self._send(404, {"error": "unknown job"})
            if entry["state"] != "IN_PROGRESS":
                return self._send(409, {"error": "job is {}".format(entry["state"])})
        self._send(200, {})

    def _ping(
        self, stub: StubControlPlane, worker: str, job: str | None, q: dict[str, str], body: Any
    ) -> None:
        self._send(200, {})

    def _send(self, status: int, payload: Any) -> None:
        data = b"" if status == 204 or payload is None else json.dumps(payload).encode()
        record = getattr(self, "_record", None)
        if record is not None:
            # stamped before the answer is written: a client that waits for the answer cannot
            # send its next request before this moment (stamping after the write raced with it)
            record.status, record.done_t = status, time.time()
        try:
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass

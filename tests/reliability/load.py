"""A load generator for the client API: N concurrent clients mixing run, runsync, status, stream and
cancel, and a ledger that proves nothing was lost or duplicated.

Each job's input is unique (client, sequence number, nonce); the echo worker returns its input, so a
COMPLETED job must carry exactly its own input as output. The ledger also remembers the first
COMPLETED output each job showed: any later answer that is not the same COMPLETED output is a lost
result. Transport errors (a control plane being SIGKILLed) are retried with backoff and counted.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
OPS = ("run", "runsync", "stream", "cancel", "recheck")
WEIGHTS = (30, 25, 15, 15, 15)
_MISSING = object()


class Unreachable(Exception):
    """The control plane did not answer within the retry budget."""


class SentAndLost(Exception):
    """A request that may have reached the control plane, whose answer never came."""


@dataclass
class Answer:
    status_code: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class JobEntry:
    id: str
    input: dict[str, Any]
    kind: str
    first_output: Any = _MISSING
    last_status: str = ""
    retries: int = 0


@dataclass
class Ledger:
    jobs: dict[str, JobEntry] = field(default_factory=dict)
    duplicate_ids: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    ops: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    transport_errors: Counter[str] = field(default_factory=Counter)
    unknown_submissions: int = 0  # a /run whose answer was lost (the control plane died mid-request)
    requests: int = 0

    def add(self, job_id: str, job_input: dict[str, Any], kind: str) -> JobEntry:
        if job_id in self.jobs:
            self.duplicate_ids.append(job_id)
            self.violations.append(f"job id {job_id} handed out twice")
        entry = JobEntry(job_id, job_input, kind)
        self.jobs[job_id] = entry
        return entry

    def observe(self, entry: JobEntry, body: dict[str, Any], where: str) -> None:
        status = body.get("status", "")
        if body.get("id") not in (None, entry.id):
            self.violations.append(f"{where}: asked for {entry.id}, answered {body.get('id')}")
        entry.last_status = status
        entry.retries = max(entry.retries, int(body.get("retries") or 0))
        if status == "COMPLETED" and "output" in body:
            output = body["output"]
            if entry.first_output is _MISSING:
                entry.first_output = output
                if output != entry.input:
                    self.violations.append(
                        f"{where}: {entry.id} output {output!r} is not its input {entry.input!r}"
                    )
            elif output != entry.first_output:
                self.violations.append(
                    f"{where}: {entry.id} output changed from {entry.first_output!r} to {output!r}"
                )
        elif entry.first_output is not _MISSING:
            self.violations.append(
                f"{where}: {entry.id} was COMPLETED, now {status!r}: a reported result was lost"
            )
        if status in ("FAILED", "TIMED_OUT"):
            self.violations.append(f"{where}: {entry.id} is {status}: {str(body.get('error'))[:200]}")
        if status == "CANCELLED" and entry.kind != "cancel":
            self.violations.append(f"{where}: {entry.id} CANCELLED but nobody cancelled it")

    @property
    def completed(self) -> list[JobEntry]:
        return [j for j in self.jobs.values() if j.first_output is not _MISSING]

    def summary(self) -> dict[str, Any]:
        statuses = Counter(j.last_status for j in self.jobs.values())
        return {
            "requests": self.requests,
            "jobs": len(self.jobs),
            "jobs_by_status": dict(statuses),
            "ops": dict(self.ops),
            "http_statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "5xx": len(self.server_errors),
            "transport_errors": sum(self.transport_errors.values()),
            "unknown_submissions": self.unknown_submissions,
            "retried_jobs": sum(1 for j in self.jobs.values() if j.retries),
            "violations": len(self.violations),
        }


class LoadClient:
    """The clients share one HTTP pool; each is a coroutine looping over random operations."""

    def __init__(
        self,
        url: str,
        endpoint: str,
        ledger: Ledger,
        headers: dict[str, str] | None = None,
        patience_s: float = 60.0,
        sleep_s: float = 0.2,
        seed: int = 0,
        work_s: float = 0.0,
    ) -> None:
        self.url = url
        self.endpoint = endpoint
        self.ledger = ledger
        self.headers = headers or {}
        self.patience_s = patience_s  # how long a request is retried while the control plane is away
        self.sleep_s = sleep_s  # what a cancel job sleeps in the handler
        self.work_s = work_s  # what every other job sleeps (so that workers are caught mid-job)
        self.rng = random.Random(seed)
        self.http: aiohttp.ClientSession | None = None

    # --- requests ----------------------------------------------------------------------------------
    async def request(
        self, method: str, path: str, *, json: Any = None, timeout: float = 30.0, idempotent: bool = True
    ) -> Answer:
        """One request; connection failures are retried (a POST only when it surely was not sent).

        aiohttp, not httpx: one process drives 200 clients at several hundred requests a second."""
        assert self.http is not None
        deadline = time.monotonic() + self.patience_s
        delay = 0.05
        while True:
            self.ledger.requests += 1
            try:
                async with self.http.request(
                    method,
                    f"{self.url}{path}",
                    json=json,
                    headers=self.headers,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as r:
                    answer = Answer(r.status, await r.text())
            except aiohttp.ClientConnectorError as exc:
                self.ledger.transport_errors[type(exc).__name__] += 1  # not sent: always safe to retry
            except (TimeoutError, aiohttp.ClientError) as exc:
                self.ledger.transport_errors[type(exc).__name__] += 1
                if not idempotent:
                    raise SentAndLost(f"{method} {path}: {type(exc).__name__}") from exc
            else:
                self.ledger.statuses[answer.status_code] += 1
                if answer.status_code >= 500:
                    self.ledger.server_errors.append(
                        f"{method} {path} -> {answer.status_code} {answer.text[:300]}"
                    )
                return answer
            if time.monotonic() > deadline:
                raise Unreachable(f"{method} {path}: no answer for {self.patience_s}s")
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)

    def _check(self, r: Answer, what: str) -> dict[str, Any] | None:
        if r.status_code == 200:
            body: dict[str, Any] = r.json()
            return body
        if r.status_code < 500:
            self.ledger.violations.append(f"{what}: HTTP {r.status_code} {r.text[:200]}")
        return None

    async def submit(
        self, sync: bool, job_input: dict[str, Any], kind: str
    ) -> tuple[JobEntry, dict[str, Any]] | None:
        route = "runsync?wait=30000" if sync else "run"
        try:
            r = await self.request(
                "POST",
                f"/v2/{self.endpoint}/{route}",
                json={"input": job_input},
                timeout=60.0,
                idempotent=False,
            )
        except SentAndLost:
            self.ledger.unknown_submissions += 1  # sent, answer lost: the job may exist; health counts it
            return None
        body = self._check(r, f"POST {route}")
        if body is None:
            return None
        return self.ledger.add(body["id"], job_input, kind), body

    async def status(
        self, entry: JobEntry, route: str = "status", method: str = "GET"
    ) -> dict[str, Any] | None:
        query = "?wait=5000" if route in ("status-sync", "stream") else ""
        r = await self.request(method, f"/v2/{self.endpoint}/{route}/{entry.id}{query}", timeout=30.0)
        body = self._check(r, f"{method} {route} {entry.id}")
        if body is not None and route != "stream":
            self.ledger.observe(entry, body, f"{method} {route}")
        return body

    async def until_terminal(self, entry: JobEntry, route: str = "status") -> None:
        deadline = time.monotonic() + max(120.0, self.patience_s * 2)
        while time.monotonic() < deadline:
            body = await self.status(entry, route, self.rng.choice(("GET", "POST")))
            if body is not None and body.get("status") in TERMINAL:
                return
            if route == "status":
                await asyncio.sleep(0.05 + self.rng.random() * 0.1)
        self.ledger.violations.append(f"{entry.id} not terminal after polling (last {entry.last_status})")

    # --- operations -----------------------------------------------------------------------------
    def new_input(self, client: int, n: int, kind: str) -> dict[str, Any]:
        job_input: dict[str, Any] = {"c": client, "n": n, "k": kind, "nonce": uuid.uuid4().hex}
        if kind == "cancel":
            job_input["sleep"] = self.sleep_s
        elif self.work_s:
            job_input["sleep"] = self.work_s
        return job_input

    async def op_run(self, client: int, n: int) -> None:
        submitted = await self.submit(False, self.new_input(client, n, "run"), "run")
        if submitted is not None:
            await self.until_terminal(submitted[0])

    async def op_runsync(self, client: int, n: int) -> None:
        submitted = await self.submit(True, self.new_input(client, n, "runsync"), "runsync")
        if submitted is None:
            return
        entry, body = submitted
        self.ledger.observe(entry, body, "runsync")
        if body.get("status") not in TERMINAL:
            await self.until_terminal(entry, "status-sync")

    async def op_stream(self, client: int, n: int) -> None:
        submitted = await self.submit(False, self.new_input(client, n, "stream"), "stream")
        if submitted is None:
            return
        entry = submitted[0]
        deadline = time.monotonic() + max(120.0, self.patience_s * 2)
        while time.monotonic() < deadline:
            body = await self.status(entry, "stream")
            if body is None:
                continue
            if body.get("stream"):  # echo does not stream: a chunk here came from somewhere else
                self.ledger.violations.append(f"stream of {entry.id} returned chunks {body['stream']!r}")
            if body.get("status") in TERMINAL:
                break
        await self.until_terminal(entry)

    async def op_cancel(self, client: int, n: int) -> None:
        submitted = await self.submit(False, self.new_input(client, n, "cancel"), "cancel")
        if submitted is None:
            return
        entry = submitted[0]
        await asyncio.sleep(self.rng.random() * 0.2)
        r = await self.request("POST", f"/v2/{self.endpoint}/cancel/{entry.id}")
        body = self._check(r, f"cancel {entry.id}")
        if body is not None and body.get("status") not in ("CANCELLED", "COMPLETED"):
            self.ledger.violations.append(f"cancel {entry.id} answered {body}")
        await self.until_terminal(entry)

    async def op_recheck(self, client: int, n: int) -> None:
        done = self.ledger.completed
        if not done:
            await self.op_run(client, n)
            return
        await self.status(self.rng.choice(done), self.rng.choice(("status", "status-sync")))

    # --- running ------------------------------------------------------------------------------------
    async def client(self, client: int, until: float) -> None:
        n = 0
        while time.monotonic() < until:
            n += 1
            op = self.rng.choices(OPS, WEIGHTS)[0]
            self.ledger.ops[op] += 1
            try:
                await getattr(self, f"op_{op}")(client, n)
            except Unreachable as exc:
                self.ledger.violations.append(f"client {client}: {exc}")
                await asyncio.sleep(1.0)

    def session(self, connections: int) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections, force_close=False))

    async def run(self, clients: int, duration_s: float) -> None:
        async with self.session(clients + 50) as http:
            self.http = http
            until = time.monotonic() + duration_s
            await asyncio.gather(*(self.client(i, until) for i in range(clients)))
            self.http = None

    async def final_check(self, concurrency: int = 50) -> None:
        """Every job the clients saw is terminal, with its own input as output when COMPLETED."""
        async with self.session(concurrency + 10) as http:
            self.http = http
            queue: asyncio.Queue[JobEntry] = asyncio.Queue()
            for entry in self.ledger.jobs.values():
                queue.put_nowait(entry)

            async def check() -> None:
                while not queue.empty():
                    entry = queue.get_nowait()
                    body = await self.status(entry)
                    if body is None or body.get("status") not in TERMINAL:
                        self.ledger.violations.append(f"final: {entry.id} is {body and body.get('status')}")
                    elif entry.kind != "cancel" and body.get("status") != "COMPLETED":
                        self.ledger.violations.append(
                            f"final: {entry.id} ({entry.kind}) is {body.get('status')}"
                        )

            await asyncio.gather(*(check() for _ in range(concurrency)))
            self.http = None


def run_load(client: LoadClient, clients: int, duration_s: float) -> None:
    asyncio.run(client.run(clients, duration_s))


def final_check(client: LoadClient) -> None:
    asyncio.run(client.final_check())


def health(url: str, endpoint: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    r = httpx.get(f"{url}/v2/{endpoint}/health", headers=headers or {}, timeout=30)
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


def wait_drained(url: str, endpoint: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """Wait until nothing is queued or in progress; returns /health."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = health(url, endpoint)
        except httpx.HTTPError:
            time.sleep(0.5)
            continue
        if last["jobs"]["inQueue"] == 0 and last["jobs"]["inProgress"] == 0:
            return last
        time.sleep(0.25)
    raise AssertionError(f"jobs still queued or running after {timeout_s}s: {last}")


def executions_by_job(containers: list[Any]) -> Counter[str]:
    """How many times each job was started, from the worker containers' logs (worker_sdk logs
    ``INFO  | <job id> | started`` once per execution)."""
    counts: Counter[str] = Counter()
    for container in containers:
        try:
            text = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        except Exception:
            continue
        for line in text.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) >= 3 and parts[2] == "started":
                counts[parts[1]] += 1
    return counts

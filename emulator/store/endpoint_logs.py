"""Endpoint logs that outlive workers (RunPod: serverless/development/logs): every line a worker
container writes, kept per endpoint in the data dir, tagged with the worker and the job it ran.

Files: ``<data dir>/logs/<endpoint id>.jsonl`` (JSON lines ``{"seq", "ts", "worker", "job", "line"}``)
and, once that passes half of ``EMULATOR_ENDPOINT_LOG_MB``, it becomes ``<endpoint id>.1.jsonl`` (the
previous ``.1`` dropped): at most that many MB per endpoint, oldest lines dropped first. Readers filter
by worker, job and time (``query``) and followers are woken for each new line (``wait``).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MAX_LINE_CHARS = 16 * 1024
RECENT_LINES = 2000
DIR_NAME = "logs"


@dataclass(frozen=True)
class LogLine:
    seq: int
    ts: float  # unix seconds
    worker: str
    job: str | None
    line: str

    def public(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "workerId": self.worker,
            "requestId": self.job,
            "line": self.line,
        }


@dataclass(frozen=True)
class LogFilter:
    """What to return: lines of ``worker`` / ``job`` (None: any), newer than ``since`` (unix s) and
    after ``after_seq``; the last ``limit`` of those."""

    worker: str | None = None
    job: str | None = None
    since: float | None = None
    after_seq: int = 0
    limit: int = 1000

    def matches(self, item: LogLine) -> bool:
        return (
            item.seq > self.after_seq
            and (self.worker is None or item.worker == self.worker)
            and (self.job is None or item.job == self.job)
            and (self.since is None or item.ts >= self.since)
        )


def job_of_line(line: str, current: str | None) -> str | None:
    """The job a line belongs to: the ``requestId`` RunPod's SDK writes in its JSON log lines, else the
    job the worker held when the line was read (``current``)."""
    text = line.strip()
    if text.startswith("{") and '"requestId"' in text:
        try:
            parsed = json.loads(text)
        except ValueError:
            return current
        if isinstance(parsed, dict) and isinstance(parsed.get("requestId"), str) and parsed["requestId"]:
            return str(parsed["requestId"])
    return current


class EndpointLogStore:
    """Append and read endpoint logs; ``max_mb`` per endpoint (split over two files)."""

    def __init__(self, data_dir: Path, max_mb: float) -> None:
        self.dir = data_dir / DIR_NAME
        self.max_bytes = max(64 * 1024, int(max_mb * 1024 * 1024))
        self._seq: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._recent: dict[str, deque[LogLine]] = {}  # the newest lines, for followers asking after a seq
        # one open (unbuffered: a line is in the file when append returns) handle per endpoint, so a
        # line costs one write, not mkdir + stat + open + close (#19: 5% of the control plane per job)
        self._files: dict[str, BinaryIO] = {}

    def _path(self, endpoint_id: str, old: bool = False) -> Path:
        return self.dir / (f"{endpoint_id}.1.jsonl" if old else f"{endpoint_id}.jsonl")

    def last_seq(self, endpoint_id: str) -> int:
        """The ``seq`` of the endpoint's newest line (0: none yet)."""
        return self._last_seq(endpoint_id)

    def _last_seq(self, endpoint_id: str) -> int:
        if endpoint_id not in self._seq:
            last = 0
            for item in self._read(endpoint_id):
                last = item.seq
            self._seq[endpoint_id] = last
        return self._seq[endpoint_id]

    def append(self, endpoint_id: str, worker: str, job: str | None, line: str, ts: float) -> LogLine:
        """Store one line (cut at 16 KiB) and wake the endpoint's followers."""
        item = LogLine(self._last_seq(endpoint_id) + 1, round(ts, 3), worker, job, line[:MAX_LINE_CHARS])
        self._seq[endpoint_id] = item.seq
        data = (json.dumps(item.public(), ensure_ascii=False) + "\n").encode()
        path = self._path(endpoint_id)
        size = self._sizes.get(endpoint_id)
        if size is None:
            size = path.stat().st_size if path.exists() else 0
        if size + len(data) > self.max_bytes // 2 and size > 0:
            self._close_file(endpoint_id)
            os.replace(path, self._path(endpoint_id, old=True))
            size = 0
        out = self._files.get(endpoint_id)
        if out is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            out = self._files[endpoint_id] = path.open("ab", buffering=0)
        out.write(data)
        self._sizes[endpoint_id] = size + len(data)
        self._recent.setdefault(endpoint_id, deque(maxlen=RECENT_LINES)).append(item)
        event = self._changed.pop(endpoint_id, None)
        if event is not None:
            event.set()
        return item

    def _read(self, endpoint_id: str) -> Iterator[LogLine]:
        for path in (self._path(endpoint_id, old=True), self._path(endpoint_id)):
            try:
                with path.open("rb") as source:
                    for raw in source:
                        try:
                            d = json.loads(raw)
                            yield LogLine(
                                int(d["seq"]),
                                float(d["ts"]),
                                str(d["workerId"]),
                                d.get("requestId"),
                                str(d["line"]),
                            )
                        except (ValueError, KeyError, TypeError):
                            continue  # a line cut by a crash mid-write
            except FileNotFoundError:
                continue

    def query(self, endpoint_id: str, selector: LogFilter) -> list[LogLine]:
        """The last ``selector.limit`` stored lines that match, oldest first."""
        recent = self._recent.get(endpoint_id)
        if selector.after_seq and recent and recent[0].seq <= selector.after_seq + 1:
            source: Iterable[LogLine] = recent  # a follower's next lines: from memory, not the files
        else:
            source = self._read(endpoint_id)
        found = [item for item in source if selector.matches(item)]
        return found[-selector.limit :] if selector.limit > 0 else found

    def lines(
        self,
        endpoint_id: str,
        *,
        worker: str | None = None,
        job: str | None = None,
        since: float | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """``query`` as the API answers it: ``[{"seq", "ts", "workerId", "requestId", "line"}, ...]``."""
        selector = LogFilter(worker, job, since, after_seq, limit)
        return [item.public() for item in self.query(endpoint_id, selector)]

    async def wait(self, endpoint_id: str, timeout_s: float, after_seq: int = 0) -> bool:
        """Until the endpoint has a line after ``after_seq`` (True; at once when it has one already, so a
        line appended between a reader's query and its wait is not missed) or ``timeout_s`` passes."""
        if after_seq and self._last_seq(endpoint_id) > after_seq:
            return True
        event = self._changed.setdefault(endpoint_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _close_file(self, endpoint_id: str) -> None:
        out = self._files.pop(endpoint_id, None)
        if out is not None:
            out.close()

    def close(self) -> None:
        """Close the open log files (at shutdown); a later ``append`` opens them again."""
        for endpoint_id in list(self._files):
            self._close_file(endpoint_id)

    def delete(self, endpoint_id: str) -> None:
        """Forget an endpoint's logs (when the endpoint is deleted)."""
        self._close_file(endpoint_id)
        for path in (self._path(endpoint_id, old=True), self._path(endpoint_id)):
            path.unlink(missing_ok=True)
        self._seq.pop(endpoint_id, None)
        self._sizes.pop(endpoint_id, None)
        self._recent.pop(endpoint_id, None)

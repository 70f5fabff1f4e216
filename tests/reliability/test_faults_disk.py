"""A data dir that is full or read-only: the control plane answers 503 with a message (never 500),
keeps serving what is stored, and loses or corrupts nothing once space is back or after a restart.

The real cases need a small file system of their own: a 2 MB tmpfs (``mount -t tmpfs``, which needs
root); without it they are skipped, and the same SQLite errors are produced inside the process
instead (``PRAGMA max_page_count`` for full, ``PRAGMA query_only`` for read-only). A running data
dir cannot be remounted read-only (the kernel refuses while the store is open for writing), so
read-only is checked at start-up for real and at run time with ``query_only``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator.config import default_settings_for_tests
from emulator.testing import BackgroundControlPlane
from tests.helpers import ProtocolWorker
from tests.reliability.common import ServeProcess

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs, unmounted at the end."""
    where = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
    where.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}): the in-process variants cover it"
        )
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(where: Path, leave: int = 0) -> Path:
    """A file that takes every free byte of the file system but ``leave``."""
    filler = where / "filler"
    with filler.open("wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
            f.flush()
    with contextlib.suppress(OSError), filler.open("ab") as f:
        while True:
            f.write(b"\0" * 512)
            f.flush()
    if leave:
        with filler.open("r+b") as f:
            f.truncate(max(0, filler.stat().st_size - leave))
    return filler


def integrity(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


class Scenario:
    """An endpoint, a hand-driven worker, jobs done and queued: what must survive."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.api = httpx.Client(base_url=url, timeout=30)
        r = self.api.post("/v1/endpoints", json={"name": "disk", "id": "disk", "imageName": "x"})
        assert r.status_code == 201, r.text
        self.worker = ProtocolWorker(url, "disk")
        self.done: dict[str, Any] = {}
        self.queued: dict[str, Any] = {}
        for i in range(6):
            job_input = {"i": i, "pad": "x" * 2000}
            job_id = self.api.post("/v2/disk/run", json={"input": job_input}).json()["id"]
            self.queued[job_id] = job_input
        for _ in range(3):
            job = self.worker.take_job()
            assert self.worker.done(job["id"], {"output": job["input"]}).status_code == 200
            self.done[job["id"]] = self.queued.pop(job["id"])

    def reconnect(self, url: str) -> None:
        self.url = url
        self.api.close()
        self.api = httpx.Client(base_url=url, timeout=30)

    def stored_intact(self) -> None:
        for job_id, job_input in self.done.items():
            body = self.api.get(f"/v2/disk/status/{job_id}").json()
            assert body["status"] == "COMPLETED" and body["output"] == job_input, body
        for job_id in self.queued:
            body = self.api.get(f"/v2/disk/status/{job_id}").json()
            assert body["status"] in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED"), body

    def submit_until_refused(self, limit: int = 400) -> tuple[httpx.Response, list[int]]:
        codes: list[int] = []
        for i in range(limit):
            job_input = {"fill": i, "pad": "y" * 20_000}
            r = self.api.post("/v2/disk/run", json={"input": job_input})
            codes.append(r.status_code)
            if r.status_code == 200:
                self.queued[r.json()["id"]] = job_input
            else:
                return r, codes
        raise AssertionError(f"{limit} submissions of 20 KB all accepted: the data dir never filled up")

    def finish_queue(self) -> None:
        while True:
            r = self.worker.take()
            if r.status_code != 200:
                break
            job = r.json()
            assert self.worker.done(job["id"], {"output": job["input"]}).status_code == 200
            self.done[job["id"]] = self.queued.pop(job["id"])
        assert not self.queued, self.queued

    def close(self) -> None:
        self.api.close()
        self.worker.close()


def assert_clear_503(r: httpx.Response, *words: str) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    message = r.json()["error"]
    assert any(w in message for w in words), message


# --- real file systems ---------------------------------------------------------------------------------
def test_data_dir_full_then_freed_then_restarted(
    small_fs: Path, tmp_path: Path, figures: dict[str, Any]
) -> None:
    server = ServeProcess(
        small_fs / "data",
        tmp_path / "serve.log",
        runtime="none",
        env={"EMULATOR_JOB_TAKE_HOLD_S": "0.5", "EMULATOR_JOB_STOP_HOLD_S": "0.5"},
    )
    scenario: Scenario | None = None
    try:
        server.start()
        scenario = Scenario(server.url)
        filler = fill(small_fs, leave=150_000)
        refused, codes = scenario.submit_until_refused()
        assert_clear_503(refused, "full")
        assert 500 not in codes
        # while full: what is stored stays readable, and more writes are refused the same way
        scenario.stored_intact()
        assert_clear_503(scenario.api.post("/v2/disk/run", json={"input": {"more": 1}}), "full")
        assert_clear_503(
            scenario.api.post("/v1/endpoints", json={"name": "n", "id": "n", "imageName": "x"}), "full"
        )
        assert scenario.api.get("/v1/endpoints/disk").status_code == 200
        assert scenario.api.get("/v2/disk/health").status_code == 200

        filler.unlink()  # space is back: writes work again, without a restart
        r = scenario.api.post("/v2/disk/run", json={"input": {"after": "freed"}})
        assert r.status_code == 200, r.text
        scenario.queued[r.json()["id"]] = {"after": "freed"}
        scenario.finish_queue()
        scenario.stored_intact()

        assert server.stop() == 0
        assert integrity(small_fs / "data" / "emulator.db") == "ok"
        server.start()
        scenario.stored_intact()
        figures.update(
            accepted_before_full=codes.count(200),
            refused_with=refused.status_code,
            message=refused.json()["error"][:120],
            jobs_kept=len(scenario.done),
            lost=0,
        )
        assert "Traceback" not in server.log_text()
    finally:
        if scenario is not None:
            scenario.close()
        server.close()


def test_read_only_data_dir_at_start_is_a_clear_error(
    small_fs: Path, tmp_path: Path, figures: dict[str, Any]
) -> None:
    data = small_fs / "data"
    server = ServeProcess(
        data,
        tmp_path / "serve.log",
        runtime="none",
        env={"EMULATOR_JOB_TAKE_HOLD_S": "0.5", "EMULATOR_JOB_STOP_HOLD_S": "0.5"},
    )
    scenario: Scenario | None = None
    try:
        server.start()
        scenario = Scenario(server.url)
        assert server.stop() == 0
        before = (data / "emulator.db").read_bytes()
        subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
        try:
            with pytest.raises(AssertionError, match="exited"):
                server.start(timeout_s=30)
            assert server.proc is not None and server.proc.returncode != 0
            out = server.log_tail(2000)
            assert "read-only" in out and str(data) in out, out
            assert "Traceback" not in out, out
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
        assert (data / "emulator.db").read_bytes() == before  # untouched
        server.start()
        scenario.reconnect(server.url)
        scenario.stored_intact()
        scenario.finish_queue()
        assert server.stop() == 0
        assert integrity(data / "emulator.db") == "ok"
        figures.update(start_on_read_only="refused with a message", lost=0)
    finally:
        if scenario is not None:
            scenario.close()
        server.close()


# --- the same SQLite errors, produced inside the process (no mount needed) ----------------------------
def _on_loop(cp: BackgroundControlPlane, sql: str) -> None:
    async def run() -> None:
        assert cp.plane is not None and cp.plane.core is not None
        cp.plane.core.jobs.conn.execute(sql)

    coro: Coroutine[Any, Any, None] = run()
    cp.call(coro)


@pytest.mark.parametrize(("mode", "words"), [("full", ("full",)), ("read-only", ("read-only", "readonly"))])
def test_store_refusing_writes_in_process(tmp_path: Path, mode: str, words: tuple[str, ...]) -> None:
    settings = default_settings_for_tests(tmp_path / "data", job_take_hold_s=0.5, job_stop_hold_s=0.5)
    with BackgroundControlPlane(settings) as cp:
        scenario = Scenario(cp.client_url)
        try:
            if mode == "full":
                pages = int(sqlite3.connect(str(settings.db_path)).execute("PRAGMA page_count").fetchone()[0])
                _on_loop(cp, f"PRAGMA max_page_count={pages + 2}")
                refused, codes = scenario.submit_until_refused()
            else:
                _on_loop(cp, "PRAGMA query_only=ON")
                refused = scenario.api.post("/v2/disk/run", json={"input": {"ro": 1}})
                codes = [refused.status_code]
            assert_clear_503(refused, *words)
            assert 500 not in codes
            scenario.stored_intact()
            job = scenario.worker.take()  # a worker's report is refused with 503 too: it retries later
            assert job.status_code in (200, 204, 503), job.text
            unreported: dict[str, Any] | None = None
            if job.status_code == 200:  # full: an update in place may still fit; read-only: refused
                taken = job.json()
                done = scenario.worker.done(taken["id"], {"output": taken["input"]})
                if mode == "read-only" or done.status_code != 200:
                    assert_clear_503(done, *words)
                    unreported = taken
                else:
                    scenario.done[taken["id"]] = scenario.queued.pop(taken["id"])
            _on_loop(cp, "PRAGMA max_page_count=1073741823" if mode == "full" else "PRAGMA query_only=OFF")
            r = scenario.api.post("/v2/disk/run", json={"input": {"after": mode}})
            assert r.status_code == 200, r.text
            scenario.queued[r.json()["id"]] = {"after": mode}
            if unreported is not None:  # the worker's retry lands now
                assert (
                    scenario.worker.done(unreported["id"], {"output": unreported["input"]}).status_code == 200
                )
                scenario.done[unreported["id"]] = scenario.queued.pop(unreported["id"])
            scenario.finish_queue()
            scenario.stored_intact()
        finally:
            scenario.close()
    assert integrity(settings.db_path) == "ok"

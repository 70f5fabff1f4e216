"""The SQLite file: one connection, WAL mode, schema migrations by ``user_version``.

The control plane is one process with one event loop; every statement is short, so the store is
called directly from the loop (no thread hop) and ``commit`` happens per logical operation.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from emulator.errors import StoreError, describe_store_error

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE endpoints (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        endpoint_id TEXT NOT NULL,
        status TEXT NOT NULL,
        input TEXT NOT NULL,
        webhook TEXT,
        s3_config TEXT,
        low_priority INTEGER NOT NULL DEFAULT 0,
        execution_timeout_ms INTEGER NOT NULL,
        ttl_ms INTEGER NOT NULL,
        is_sync INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        queued_at REAL NOT NULL,
        started_at REAL,
        completed_at REAL,
        worker_id TEXT,
        past_workers TEXT NOT NULL DEFAULT '',
        lease_expires_at REAL,
        retries INTEGER NOT NULL DEFAULT 0,
        output TEXT,
        error TEXT,
        progress TEXT,
        expires_at REAL,
        stop_pending INTEGER NOT NULL DEFAULT 0,
        breakdown TEXT,
        webhook_state TEXT
    );
    CREATE INDEX jobs_queue ON jobs (endpoint_id, status, seq);
    CREATE INDEX jobs_worker ON jobs (worker_id, status);
    CREATE INDEX jobs_expiry ON jobs (expires_at);
    CREATE TABLE job_stream (
        job_id TEXT NOT NULL,
        n INTEGER NOT NULL,
        chunk TEXT NOT NULL,
        delivered INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (job_id, n)
    );
    CREATE TABLE webhook_attempts (
        job_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        at REAL NOT NULL,
        url TEXT NOT NULL,
        status_code INTEGER,
        error TEXT,
        PRIMARY KEY (job_id, attempt)
    );
    CREATE TABLE endpoint_counters (
        endpoint_id TEXT NOT NULL,
        name TEXT NOT NULL,
        value INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (endpoint_id, name)
    );
    CREATE TABLE workers (
        id TEXT PRIMARY KEY,
        endpoint_id TEXT NOT NULL,
        token TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL
    );
    """,
    # 2: the OpenAI passthrough's route and stream figures per job ("openai" in the /v1 job views)
    "ALTER TABLE jobs ADD COLUMN openai TEXT",
    # 3: issue #13: a request without `input`, the pings that named a job, the execution-timeout
    #    clock kept across requeues, and results refused for their size
    """
    ALTER TABLE jobs ADD COLUMN has_input INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE jobs ADD COLUMN named_at REAL;
    ALTER TABLE jobs ADD COLUMN dropped_at REAL;
    ALTER TABLE jobs ADD COLUMN first_started_at REAL;
    ALTER TABLE jobs ADD COLUMN result_refused TEXT
    """,
    # 4: issue #19: JobStore.running_at (one query per worker log line) sorted all of the worker's jobs
    #    by started_at (about 0.5 ms at 1,250 jobs per worker); with this index it reads one or two rows
    "CREATE INDEX IF NOT EXISTS jobs_worker_started ON jobs (worker_id, started_at)",
]


def _read_only(path: Path) -> bool:
    folder = path.parent if path.parent.exists() else path.parent.parent
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY) or not os.access(folder, os.W_OK)
    except OSError:
        return False


def connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA foreign_keys=ON")
        migrate(conn)
    except (sqlite3.Error, OSError) as exc:
        if _read_only(path):
            message = (
                f"cannot open the job store at {path}: the data dir is read-only ({exc}); make it writable"
            )
        else:
            message = describe_store_error(exc, f"cannot open the job store at {path}")
        raise StoreError(message, path=str(path)) from exc
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may already have rolled back by itself (a full disk does): a second ROLLBACK would fail
    # with "no transaction is active" and hide the real error
    if conn.in_transaction:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


FREED_MARGIN_BYTES = 256 * 1024  # space that must come back before new work is accepted again
FULL_RECHECK_S = 5.0  # at the latest, a write is tried again after this long (quota, odd file systems)


class _Full:
    """A connection whose data dir filled up: new work is refused until room comes back.

    SQLite can accept a small write into pages it already holds (a rolled-back WAL frame, a free
    page) right after refusing a larger one, so "full" would flicker between 503 and 200. Once a
    write fails because the disk (or the database's ``max_page_count``) is full, new work
    (``transaction(conn, new_work=True)``) is refused with the same error until there is
    ``FREED_MARGIN_BYTES`` more room than at the failure, or ``FULL_RECHECK_S`` passed. Writes that
    finish work already accepted (results, requeues, deletions) are always tried.
    """

    __slots__ = ("folder", "room_at_failure", "failed_at", "message")

    def __init__(self, conn: sqlite3.Connection, folder: str, message: str) -> None:
        self.folder, self.message = folder, message
        self.room_at_failure = _room_bytes(conn, folder)
        self.failed_at = time.monotonic()

    def still_full(self, conn: sqlite3.Connection) -> bool:
        if time.monotonic() - self.failed_at >= FULL_RECHECK_S:
            return False
        return _room_bytes(conn, self.folder) < self.room_at_failure + FREED_MARGIN_BYTES


_full: dict[int, _Full] = {}  # id(connection) -> latch; one entry per control plane at most


def _room_bytes(conn: sqlite3.Connection, folder: str) -> int:
    """Bytes the database can still grow by: the file system's free space, or less when the
    database's ``max_page_count`` is nearer."""
    try:
        st = os.statvfs(folder)
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = 0
    try:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        limit = conn.execute("PRAGMA max_page_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    except sqlite3.Error:
        return int(free)
    return int(min(free, max(0, limit - pages) * size))


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc).lower()


def _latch_full(conn: sqlite3.Connection, exc: sqlite3.Error, message: str) -> None:
    if not _is_full(exc):
        return
    try:
        row = conn.execute("PRAGMA database_list").fetchone()
        folder = os.path.dirname(row[2]) if row is not None and row[2] else "."
    except sqlite3.Error:
        folder = "."
    _full[id(conn)] = _Full(conn, folder, message)


def _check_full(conn: sqlite3.Connection) -> None:
    latch = _full.get(id(conn))
    if latch is None:
        return
    if latch.still_full(conn):
        raise StoreError(latch.message)
    del _full[id(conn)]


@contextmanager
def transaction(conn: sqlite3.Connection, *, new_work: bool = False) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error; SQLite errors become StoreError.

    ``new_work=True`` (a new job, endpoint or template) is refused at once with the last "data dir
    is full" error while the data dir has not got space back (see ``_Full``).
    """
    if new_work:
        _check_full(conn)
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        message = describe_store_error(exc, "the job store is not writable")
        _latch_full(conn, exc, message)
        raise StoreError(message) from exc
    try:
        yield conn
    except sqlite3.Error as exc:
        _rollback(conn)
        message = describe_store_error(exc)
        _latch_full(conn, exc, message)
        raise StoreError(message) from exc
    except BaseException:
        _rollback(conn)
        raise
    else:
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            message = describe_store_error(exc, "the job store could not commit")
            _latch_full(conn, exc, message)
            raise StoreError(message) from exc


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )

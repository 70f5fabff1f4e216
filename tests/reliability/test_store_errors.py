"""The job store's errors when the data dir is full or read-only: one clear StoreError (503), never
SQLite's follow-up "cannot rollback - no transaction is active" that used to hide the cause."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from emulator.api.errors import status_for
from emulator.errors import StoreError
from emulator.errors import describe_store_error as describe
from emulator.store.db import connect, transaction


def test_a_full_store_says_full_and_the_connection_stays_usable(tmp_path: Path) -> None:
    conn = connect(tmp_path / "emulator.db")
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages + 1}")
    with pytest.raises(StoreError) as caught:
        for i in range(100):
            with transaction(conn):
                conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (f"k{i}", "x" * 50_000))
    assert "the data dir is full" in caught.value.message
    assert "no transaction is active" not in caught.value.message
    assert status_for(caught.value) == 503
    assert not conn.in_transaction
    conn.execute("PRAGMA max_page_count=1073741823")
    with transaction(conn):
        conn.execute("INSERT INTO meta (key, value) VALUES ('after', 'ok')")
    assert conn.execute("SELECT value FROM meta WHERE key = 'after'").fetchone()[0] == "ok"
    conn.close()


def test_a_read_only_store_says_read_only(tmp_path: Path) -> None:
    conn = connect(tmp_path / "emulator.db")
    conn.execute("PRAGMA query_only=ON")
    with pytest.raises(StoreError) as caught, transaction(conn):
        conn.execute("INSERT INTO meta (key, value) VALUES ('a', 'b')")
    assert "read-only" in caught.value.message
    conn.close()


def test_describe_names_the_cause() -> None:
    assert "full" in describe(sqlite3.OperationalError("database or disk is full"))
    assert "read-only" in describe(sqlite3.OperationalError("attempt to write a readonly database"))
    assert describe(sqlite3.OperationalError("boom"), "x") == "x: boom"

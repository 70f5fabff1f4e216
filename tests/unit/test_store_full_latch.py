"""The store's "data dir is full" latch: once a write fails for lack of space, new work is refused
the same way until space comes back (the real file system case is tests/reliability/test_faults_disk.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.errors import StoreError
from emulator.store import db


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = db.connect(tmp_path / "emulator.db")
    c.execute("CREATE TABLE t (x INTEGER)")
    yield c
    db._full.pop(id(c), None)
    c.close()


def _fail_full(conn: sqlite3.Connection) -> None:
    with pytest.raises(StoreError, match="full"), db.transaction(conn):
        raise sqlite3.OperationalError("database or disk is full")


def test_new_work_is_refused_until_space_comes_back(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    free = {"bytes": 10_000}
    monkeypatch.setattr(db, "_room_bytes", lambda conn, folder: free["bytes"])
    _fail_full(conn)
    # new work: refused without trying, with the same message
    with pytest.raises(StoreError, match="the data dir is full"), db.transaction(conn, new_work=True):
        pytest.fail("the body must not run while the data dir is full")
    # finishing accepted work is still tried (and here it fits)
    with db.transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
    free["bytes"] += db.FREED_MARGIN_BYTES - 1
    with pytest.raises(StoreError), db.transaction(conn, new_work=True):
        pass
    free["bytes"] += 1  # now enough came back
    with db.transaction(conn, new_work=True):
        conn.execute("INSERT INTO t VALUES (2)")
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 2
    assert id(conn) not in db._full


def test_the_latch_is_retried_after_a_while(
    conn: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "_room_bytes", lambda conn, folder: 0)  # e.g. a quota: free space never changes
    _fail_full(conn)
    with pytest.raises(StoreError), db.transaction(conn, new_work=True):
        pass
    db._full[id(conn)].failed_at -= db.FULL_RECHECK_S
    with db.transaction(conn, new_work=True):
        conn.execute("INSERT INTO t VALUES (1)")


def test_other_errors_do_not_latch(conn: sqlite3.Connection) -> None:
    with pytest.raises(StoreError, match="no such table"), db.transaction(conn):
        conn.execute("INSERT INTO missing VALUES (1)")
    assert id(conn) not in db._full
    with db.transaction(conn, new_work=True):
        conn.execute("INSERT INTO t VALUES (1)")


def test_room_is_the_nearer_of_disk_and_max_page_count(conn: sqlite3.Connection) -> None:
    unlimited = db._room_bytes(conn, ".")
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages + 3}")
    assert db._room_bytes(conn, ".") == 3 * size < unlimited

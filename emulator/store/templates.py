"""Templates and container registry credentials as rows (RunPod REST v1's ``/templates`` and
``/containerregistryauth``), each a JSON body with a unique name, in the data dir's SQLite file.

Their tables are created here (``CREATE TABLE IF NOT EXISTS``) rather than in a numbered migration, so
that they need no schema version of their own. A credential's password is stored because pulls need it;
it is never returned by an API answer and never logged.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from emulator.errors import Conflict, NotFound
from emulator.store.db import transaction

_TABLES = {
    "templates": "template",
    "registry_auths": "container registry credential",
}


class NamedDocs:
    """Rows ``(id, name UNIQUE, body JSON)`` of one table, with an in-memory copy (one writer: this process)."""

    def __init__(self, conn: sqlite3.Connection, table: str) -> None:
        if table not in _TABLES:
            raise ValueError(f"unknown table {table!r}")
        self.conn = conn
        self.table = table
        self.what = _TABLES[table]
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, body TEXT NOT NULL)"
        )
        rows = conn.execute(f"SELECT id, body FROM {table} ORDER BY rowid").fetchall()
        self._cache: dict[str, dict[str, Any]] = {str(r[0]): json.loads(r[1]) for r in rows}

    def list(self) -> list[dict[str, Any]]:
        return [dict(v) for v in self._cache.values()]

    def get(self, doc_id: str) -> dict[str, Any] | None:
        found = self._cache.get(doc_id)
        return None if found is None else dict(found)

    def require(self, doc_id: str) -> dict[str, Any]:
        found = self.get(doc_id)
        if found is None:
            raise NotFound(f"{self.what} {doc_id!r} does not exist")
        return found

    def put(self, doc: dict[str, Any], *, create: bool) -> dict[str, Any]:
        """Insert (``create``) or replace the row ``doc["id"]``; Conflict on a name in use, NotFound on a
        replace of a missing row."""
        doc_id, name = str(doc["id"]), str(doc["name"])
        with transaction(self.conn, new_work=create):
            clash = self.conn.execute(
                f"SELECT id FROM {self.table} WHERE name = ? AND id != ?", (name, doc_id)
            ).fetchone()
            if clash is not None:
                raise Conflict(f"a {self.what} named {name!r} already exists", field="name")
            body = json.dumps(doc)
            if create:
                if doc_id in self._cache:
                    raise Conflict(f"a {self.what} with id {doc_id!r} already exists", field="id")
                self.conn.execute(
                    f"INSERT INTO {self.table} (id, name, body) VALUES (?, ?, ?)", (doc_id, name, body)
                )
            else:
                cur = self.conn.execute(
                    f"UPDATE {self.table} SET name = ?, body = ? WHERE id = ?", (name, body, doc_id)
                )
                if cur.rowcount == 0:
                    raise NotFound(f"{self.what} {doc_id!r} does not exist")
        self._cache[doc_id] = dict(doc)
        return dict(doc)

    def delete(self, doc_id: str) -> None:
        with transaction(self.conn):
            self.conn.execute(f"DELETE FROM {self.table} WHERE id = ?", (doc_id,))
        self._cache.pop(doc_id, None)

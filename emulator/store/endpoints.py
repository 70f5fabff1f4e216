"""Endpoints as rows: the validated ``Endpoint`` model stored as JSON, name unique."""

from __future__ import annotations

import sqlite3

from emulator.errors import Conflict, NotFound
from emulator.models import Endpoint
from emulator.store.db import transaction


class EndpointStore:
    """Reads come from an in-memory copy (this process is the only writer); writes go through SQLite."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        rows = conn.execute("SELECT body FROM endpoints ORDER BY created_at, id").fetchall()
        self._cache: dict[str, Endpoint] = {}
        for (body,) in rows:
            endpoint = Endpoint.model_validate_json(body)
            self._cache[endpoint.id] = endpoint

    def list(self) -> list[Endpoint]:
        return sorted(self._cache.values(), key=lambda e: (e.createdAt, e.id))

    def get(self, endpoint_id: str) -> Endpoint | None:
        return self._cache.get(endpoint_id)

    def require(self, endpoint_id: str) -> Endpoint:
        endpoint = self.get(endpoint_id)
        if endpoint is None:
            raise NotFound(f"endpoint {endpoint_id!r} does not exist", endpoint=endpoint_id)
        return endpoint

    def create(self, endpoint: Endpoint) -> Endpoint:
        with transaction(self.conn, new_work=True):
            clash = self.conn.execute(
                "SELECT id, name FROM endpoints WHERE id = ? OR name = ?", (endpoint.id, endpoint.name)
            ).fetchone()
            if clash is not None:
                which = "id" if clash[0] == endpoint.id else "name"
                value = endpoint.id if which == "id" else endpoint.name
                raise Conflict(f"an endpoint with {which} {value!r} already exists", field=which)
            self.conn.execute(
                "INSERT INTO endpoints (id, name, body, created_at) VALUES (?, ?, ?, ?)",
                (endpoint.id, endpoint.name, endpoint.model_dump_json(), endpoint.createdAt),
            )
        self._cache[endpoint.id] = endpoint
        return endpoint

    def save(self, endpoint: Endpoint) -> Endpoint:
        with transaction(self.conn):
            clash = self.conn.execute(
                "SELECT id FROM endpoints WHERE name = ? AND id != ?", (endpoint.name, endpoint.id)
            ).fetchone()
            if clash is not None:
                raise Conflict(f"an endpoint with name {endpoint.name!r} already exists", field="name")
            cur = self.conn.execute(
                "UPDATE endpoints SET name = ?, body = ? WHERE id = ?",
                (endpoint.name, endpoint.model_dump_json(), endpoint.id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"endpoint {endpoint.id!r} does not exist", endpoint=endpoint.id)
        self._cache[endpoint.id] = endpoint
        return endpoint

    def delete(self, endpoint_id: str) -> None:
        with transaction(self.conn):
            self.conn.execute("DELETE FROM endpoints WHERE id = ?", (endpoint_id,))
        self._cache.pop(endpoint_id, None)

"""Secrets (RunPod: pods/templates/secrets): a name and a write-only value, kept in the data dir.

One JSON file, ``secrets.json``, readable by its owner only (mode 0600), written whole and atomically
(a temporary file, then ``os.replace``). Names and values are checked by the use case
(``emulator.service.secrets``); values leave only through ``values()``, for worker environments.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.errors import Conflict, NotFound

FILE_NAME = "secrets.json"


@dataclass(frozen=True)
class Secret:
    name: str
    value: str
    createdAt: float
    updatedAt: float

    def public(self) -> dict[str, Any]:
        """What the API shows: never the value."""
        return {"name": self.name, "createdAt": self.createdAt, "updatedAt": self.updatedAt}


class SecretStore:
    """Secrets by name, in ``<data dir>/secrets.json`` (``data_dir`` None: in memory only)."""

    def __init__(self, data_dir: Path | None) -> None:
        self._path = data_dir / FILE_NAME if data_dir is not None else None
        self._secrets: dict[str, Secret] = {}
        if self._path is not None and self._path.exists():
            raw = json.loads(self._path.read_text(encoding="utf-8"))
            for name, item in raw.items():
                self._secrets[name] = Secret(name, item["value"], item["createdAt"], item["updatedAt"])

    def list(self) -> list[Secret]:
        return sorted(self._secrets.values(), key=lambda s: s.name)

    def get(self, name: str) -> Secret | None:
        return self._secrets.get(name)

    def require(self, name: str) -> Secret:
        found = self._secrets.get(name)
        if found is None:
            raise NotFound(f"secret {name!r} does not exist")
        return found

    def values(self) -> dict[str, str]:
        """Every secret's value by name (for resolving worker environments only)."""
        return {name: s.value for name, s in self._secrets.items()}

    def create(self, name: str, value: str, now: float) -> Secret:
        if name in self._secrets:
            raise Conflict(
                f"a secret named {name!r} already exists (PATCH it to change its value)", field="name"
            )
        secret = Secret(name, value, now, now)
        self._write({**self._secrets, name: secret})
        return secret

    def update(self, name: str, value: str, now: float) -> Secret:
        current = self.require(name)
        secret = Secret(name, value, current.createdAt, now)
        self._write({**self._secrets, name: secret})
        return secret

    def delete(self, name: str) -> None:
        self.require(name)
        self._write({k: v for k, v in self._secrets.items() if k != name})

    def _write(self, secrets: dict[str, Secret]) -> None:
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            body = {
                s.name: {"value": s.value, "createdAt": s.createdAt, "updatedAt": s.updatedAt}
                for s in secrets.values()
            }
            fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".secrets-", suffix=".tmp")
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump(body, out)
                os.replace(tmp, self._path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        self._secrets = secrets

"""Secret use cases (RunPod: pods/templates/secrets): create, change, delete, list; values for workers.

A secret is a name and a write-only value. Answers carry ``name``, ``createdAt`` and ``updatedAt``
(``Secret.public``), never the value; ``values()`` is for resolving worker environments only. A secret
that an endpoint's ``env`` refers to (``{{ RUNPOD_SECRET_name }}``) cannot be deleted (Conflict, 409).
"""

from __future__ import annotations

from emulator.clock import Clock
from emulator.errors import Conflict
from emulator.store.endpoints import EndpointStore
from emulator.store.secrets import Secret, SecretStore
from emulator.workers.secret_refs import check_name, check_value, referenced


class SecretService:
    """Raises InvalidInput (422, naming ``name`` or ``value``), Conflict (409) and NotFound (404)."""

    def __init__(self, store: SecretStore, endpoints: EndpointStore, clock: Clock) -> None:
        self.store = store
        self.endpoints = endpoints
        self.clock = clock

    def list(self) -> list[Secret]:
        return self.store.list()

    def require(self, name: str) -> Secret:
        return self.store.require(check_name(name))

    def values(self) -> dict[str, str]:
        """Every secret's value by name, for the worker environments the supervisor builds."""
        return self.store.values()

    def create(self, name: object, value: object) -> Secret:
        return self.store.create(check_name(name), check_value(value), self.clock.now())

    def update(self, name: str, value: object) -> Secret:
        return self.store.update(check_name(name), check_value(value), self.clock.now())

    def delete(self, name: str) -> None:
        self.store.require(check_name(name))
        users = [e.id for e in self.endpoints.list() if name in referenced(e.env)]
        if users:
            raise Conflict(
                f"secret {name!r} is used by endpoint(s) {', '.join(users)}; remove the reference from their env first",
                field="name",
            )
        self.store.delete(name)

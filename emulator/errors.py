"""The project's errors. Each carries data; the HTTP mapping lives only in ``emulator.api.errors``."""

from __future__ import annotations

from typing import Any


class EmulatorError(Exception):
    """Base of every error the emulator raises on purpose."""

    def __init__(self, message: str, **data: object) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class NotFound(EmulatorError):
    """An endpoint, job or worker that does not exist (or no longer exists)."""


class Conflict(EmulatorError):
    """The request is valid but clashes with the current state (a duplicate name, a job not retryable)."""


class InvalidInput(EmulatorError):
    """A request that is well-formed JSON but wrong: ``field`` names what is wrong."""

    def __init__(self, message: str, field: str | None = None, **data: object) -> None:
        super().__init__(message, field=field, **data)
        self.field = field


class BadRequest(InvalidInput):
    """A malformed request (not JSON, a bad query value): 400 rather than 422."""


class PayloadTooLarge(EmulatorError):
    """A body over the route's size limit."""


class Unauthorized(EmulatorError):
    """A missing or wrong API key or worker token."""


class Forbidden(EmulatorError):
    """A worker acting on a job that was not handed to it."""


class QueueFull(EmulatorError):
    """The endpoint's queue is at its bound; the client should retry later (429)."""


class RuntimeUnavailable(EmulatorError):
    """The container runtime (Docker) cannot be reached."""


class RuntimeFailure(EmulatorError):
    """The container runtime refused an operation; ``reason`` is its explanation."""


class ContainerNotFound(RuntimeFailure):
    """The container is gone."""


class ImageNotFound(RuntimeFailure):
    """The image does not exist locally and cannot be pulled."""


class GpuUnavailable(EmulatorError):
    """GPUs were asked for but the host cannot provide them; the message names the fix."""


class PortInUse(EmulatorError):
    """A listener's port is taken or cannot be bound."""


class StoreError(EmulatorError):
    """The data dir or database cannot be used (read-only, full, corrupt)."""


def describe_store_error(exc: BaseException, doing: str = "the job store failed") -> str:
    """A sentence for an SQLite or OS error that says what to do about a full or read-only data dir."""
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "full" in lowered or getattr(exc, "errno", None) == 28 or getattr(exc, "sqlite_errorcode", None) == 13:
        return f"{doing}: the data dir is full ({text}); free some space, stored jobs stay readable"
    if "readonly" in lowered or "read-only" in lowered or getattr(exc, "errno", None) == 30:
        return f"{doing}: the data dir is read-only ({text}); make it writable, stored jobs stay readable"
    return f"{doing}: {text}"


def describe_validation(errs: list[Any]) -> tuple[str, str | None]:
    """One readable sentence for pydantic/FastAPI validation errors, and the first field's path."""
    parts = []
    first_field: str | None = None
    for err in errs[:5]:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
        field = ".".join(loc) or "body"
        first_field = first_field or field
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{field}: {msg}")
    return "; ".join(parts) or "invalid request", first_field


class ImagePullFailed(EmulatorError):
    """A worker's image could not be pulled; ``message`` says why in words a user acts on."""

"""The only place where the project's errors become HTTP status codes and bodies."""

from __future__ import annotations

import sqlite3
import traceback
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from emulator import errors
from emulator.api.routes import allowed_methods
from emulator.errors import describe_store_error, describe_validation

log = structlog.get_logger("emulator.api")

STATUS: dict[type[errors.EmulatorError], int] = {
    errors.EmulatorError: 500,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.InvalidInput: 422,
    errors.BadRequest: 400,
    errors.PayloadTooLarge: 413,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.QueueFull: 429,
    errors.GpuUnavailable: 422,
    errors.ImageNotFound: 422,
    errors.RuntimeUnavailable: 503,
    errors.RuntimeFailure: 502,
    errors.StoreError: 503,
}
"""HTTP status by error class. An error takes the status of the nearest class in its ``__mro__`` that is
listed (starlette's ``_lookup_exception_handler`` does the same), so a subclass inherits its parent's
status unless it has its own (``BadRequest`` is an ``InvalidInput`` answered 400, not 422)."""


def status_for(exc: errors.EmulatorError) -> int:
    """The HTTP status for ``exc``: see ``STATUS``."""
    for kind in type(exc).__mro__:
        code = STATUS.get(kind)
        if code is not None:
            return code
    return 500


def error_body(message: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"error": message}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.EmulatorError)
    async def _emulator_error(request: Request, exc: errors.EmulatorError) -> JSONResponse:
        code = status_for(exc)
        field = getattr(exc, "field", None) or exc.data.get("field")
        headers = {"Retry-After": "1"} if code == 429 else None
        if code >= 500:
            log.warning("request failed", path=request.url.path, status=code, error=exc.message)
        return JSONResponse(error_body(exc.message, field=field), status_code=code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, field = describe_validation(list(exc.errors()))
        return JSONResponse(error_body(message, field=field), status_code=422)

    @app.exception_handler(ValidationError)
    async def _pydantic(request: Request, exc: ValidationError) -> JSONResponse:
        message, field = describe_validation(list(exc.errors()))
        return JSONResponse(error_body(message, field=field), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
            allowed = allowed_methods(request.app, request.url.path)  # every route on the path, not the first
            if allowed:
                headers["Allow"] = ", ".join(allowed)
        return JSONResponse(error_body(message), status_code=exc.status_code, headers=headers or None)

    @app.exception_handler(sqlite3.Error)
    async def _sqlite(request: Request, exc: sqlite3.Error) -> JSONResponse:
        message = describe_store_error(exc)
        log.error("job store error", path=request.url.path, error=message)
        return JSONResponse(error_body(message), status_code=503)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # the traceback as text: a rich console traceback would print local variables, and with them
        # request headers (the worker token, the API key) and container specs (env secrets)
        log.error(
            "unexpected error",
            path=request.url.path,
            error=f"{type(exc).__name__}: {exc}",
            traceback="".join(traceback.format_exception(exc)),
        )
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}"), status_code=500)

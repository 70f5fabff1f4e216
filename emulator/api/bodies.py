"""Reading request bodies: bounded, strict JSON (RunPod's SDK posts JSON with a form content type, so the
raw bytes are parsed whatever the header), and writing compact JSON answers. HTTP only: the services
receive parsed values."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from emulator.errors import BadRequest, InvalidInput, PayloadTooLarge, describe_validation

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class LoneSurrogate(ValueError):
    """A JSON string holds half of a UTF-16 surrogate pair: it cannot be stored or sent as UTF-8."""


def strict_json_loads(raw: bytes) -> Any:
    """JSON from UTF-8 bytes, refusing what could not be stored and sent back: bytes that are not
    strict UTF-8 (UnicodeDecodeError) and lone surrogates such as ``"\\ud800"`` (LoneSurrogate).
    Also raises json.JSONDecodeError and RecursionError (nesting too deep)."""
    text = raw.decode("utf-8")
    value = json.loads(text)
    if _SURROGATE_ESCAPE.search(text):  # rare: only then the costly check (pairs are fine)
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise LoneSurrogate("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)") from exc
    return value


def parse_body(raw: bytes) -> Any:
    """RunPod's SDK posts JSON with a form content type: parse the raw bytes whatever the header."""
    if not raw.strip():
        raise BadRequest("the body is empty; expected a JSON object", field="body")
    try:
        return strict_json_loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, LoneSurrogate) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", field="body") from exc
    except RecursionError as exc:
        raise BadRequest("the body is nested too deeply", field="body") from exc


async def read_json(request: Request, limit: int, what: str) -> Any:
    """The body as JSON, refusing more than ``limit`` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError as exc:
            raise BadRequest("Content-Length is not a number", field="Content-Length") from exc
        if size > limit:
            raise PayloadTooLarge(f"{what} body is {size} bytes; the limit is {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"{what} body is over the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise BadRequest(f"{what} needs a JSON body", field="body")
    try:
        return strict_json_loads(raw)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{what} body is not valid UTF-8: {exc.reason}", field="body") from exc
    except LoneSurrogate as exc:
        raise BadRequest(f"{what} body is not valid UTF-8 text: {exc}", field="body") from exc
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"{what} body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", field="body"
        ) from exc
    except RecursionError as exc:
        raise BadRequest(f"{what} body is nested too deeply", field="body") from exc


def dumps_compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], body: Any) -> M:
    """``body`` (parsed JSON) as ``model``: ``BadRequest`` (400) when it is not a JSON object,
    ``InvalidInput`` (422, naming the field) when a field is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", field="body")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        message, field = describe_validation(list(exc.errors()))
        raise InvalidInput(message, field=field) from exc

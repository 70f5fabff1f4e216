"""PURE: RunPod's payload limits on what a worker posts for a job (result, progress, stream chunks).

RunPod refuses a payload over 10 MB for a job sent with ``/run`` and over 20 MB for one sent with
``/runsync`` (docs: serverless/workers/handler-functions "Payload limits"; the same limits as the
client's request bodies), and a streamed chunk over 1 MB (docs: serverless/endpoints/operation-reference).
The worker's post then gets 400 and the client never sees the output: large outputs belong in storage.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.config import Settings


@dataclass(frozen=True)
class Refusal:
    """Why a post was refused: ``message`` for the 400 answer and the job's ``resultRefused``."""

    message: str
    limit_bytes: int


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


def route_limit_bytes(is_sync: bool, settings: Settings) -> int:
    """The payload limit of a job's route: ``max_runsync_body_bytes`` for /runsync, else ``max_run_body_bytes``."""
    return settings.max_runsync_body_bytes if is_sync else settings.max_run_body_bytes


def check_post(what: str, size_bytes: int, is_sync: bool, settings: Settings) -> Refusal | None:
    """A result or progress post of ``size_bytes`` for a job of the route (``is_sync``): None when allowed."""
    limit = route_limit_bytes(is_sync, settings)
    if size_bytes <= limit:
        return None
    route = "/runsync" if is_sync else "/run"
    return Refusal(
        f"{what} of {size_bytes} bytes is over RunPod's {_mb(limit)} payload limit for {route} jobs "
        f"({limit} bytes); return large outputs through storage (e.g. S3) instead",
        limit,
    )


def check_chunk(size_bytes: int, stored_bytes: int, is_sync: bool, settings: Settings) -> Refusal | None:
    """A stream chunk of ``size_bytes`` after ``stored_bytes`` already streamed: each chunk is held to
    ``max_stream_chunk_bytes`` and the job's whole stream (what an aggregated result would be) to the
    route's limit. None when allowed."""
    if size_bytes > settings.max_stream_chunk_bytes:
        limit = settings.max_stream_chunk_bytes
        return Refusal(
            f"a stream chunk of {size_bytes} bytes is over RunPod's {_mb(limit)} limit per chunk ({limit} bytes)",
            limit,
        )
    total = stored_bytes + size_bytes
    refusal = check_post("the stream", total, is_sync, settings)
    if refusal is None:
        return None
    return Refusal(
        f"{refusal.message} (the chunks so far and this one of {size_bytes} bytes)", refusal.limit_bytes
    )

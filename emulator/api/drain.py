"""An answer given before the request body was read still reaches the client.

The routes answer 413 (body over the limit), 404 (unknown endpoint) and 401 (wrong key) before they
read the body. uvicorn then closes the connection with the unread bytes still in the socket, and the
kernel resets it: a client that sends its whole body before it reads (Python's ``urllib``, which also
asks for ``Connection: close``) gets "connection reset by peer" instead of the answer. Production
servers read and discard the rest of the body first (nginx's ``lingering_close``, Go's net/http up to
256 KiB); this middleware does the same, up to ``max_bytes`` and ``max_s``, before the answer's first
byte is sent. A body larger than the bound is left unread (the connection may then be reset); one whose
``Content-Length`` already says so is not waited for at all (a client that declares 100 GB and sends
nothing gets its 413 at once, not after ``max_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _may_have_body(scope: Scope) -> bool:
    """HTTP/1.1: a request has a body only with Content-Length (> 0) or Transfer-Encoding."""
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding":
            return True
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
    return False


def _declared_length(scope: Scope) -> int | None:
    """The request's Content-Length in bytes (None: absent, chunked or not a number)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value.strip())
            except ValueError:
                return None
    return None


class DrainUnreadBody:
    """ASGI middleware: before the response starts, read and discard what is left of the request body.

    ``max_bytes``: the most it reads past what the app read (bytes); ``max_s``: the most time it waits
    for those bytes (seconds). Both bound what a client can make the server swallow. It follows what
    RFC 9112 section 9.6 asks of a server that closes a connection ("tear-down").
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_s = max_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _may_have_body(scope):
            await self.app(scope, receive, send)
            return
        finished = False
        received = 0
        declared = _declared_length(scope)

        async def tracked_receive() -> Message:
            nonlocal finished, received
            message = await receive()
            received += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                finished = True
            return message

        async def drain() -> None:
            read = 0
            while not finished and read <= self.max_bytes:
                message = await tracked_receive()
                read += len(message.get("body", b""))

        async def draining_send(message: Message) -> None:
            over_bound = declared is not None and declared - received > self.max_bytes
            if message["type"] == "http.response.start" and not finished and not over_bound:
                with contextlib.suppress(TimeoutError):  # a slow sender: answer anyway
                    await asyncio.wait_for(drain(), self.max_s)
            await send(message)

        await self.app(scope, tracked_receive, draining_send)

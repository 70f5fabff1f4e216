"""WebSocket upgrades to a load-balancing endpoint, relayed to a worker (RunPod's load balancer passes
WebSockets through: docs.runpod.io/serverless/load-balancing/overview).

The client's handshake is checked like an HTTP request (API key, endpoint, affinity), a worker is
acquired, the worker's socket is opened first (with the client's subprotocols and forwarded headers),
then the client's is accepted with the worker's chosen subprotocol and ``X-Runpod-Worker-Id``.
Messages flow both ways until either side closes; the close code is passed on. The worker counts the
connection as a request in flight for as long as it is open. A refusal before the accept closes the
client's socket with 1008 (policy: key, endpoint, affinity) or 1011 (no worker, worker unreachable),
the reason in the close frame.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from starlette.types import Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from emulator.loadbalancer import rules
from emulator.loadbalancer.pool import AffinityGone, AffinityTimeout, Lease, NoWorker
from emulator.loadbalancer.service import LoadBalancer, Refused

log = structlog.get_logger("emulator.loadbalancer")

POLICY = 1008
SERVER_ERROR = 1011


async def relay(
    lb: LoadBalancer, scope: Scope, receive: Receive, send: Send, endpoint_id: str, path: str
) -> None:
    first = await receive()
    if first["type"] != "websocket.connect":
        return
    clock = lb.core.clock
    began = clock.monotonic()
    lease: Lease | None = None
    code = 0
    try:
        endpoint, where = lb.admit(scope, endpoint_id)
        wanted = lb.affinity(scope)
        lease = await lb.pool.acquire(endpoint, wanted, lb.wait_s(wanted))
        query = scope.get("query_string", b"").decode("latin-1")
        url = f"ws://{lease.address}:{where.port}{path}" + (f"?{query}" if query else "")
        headers = rules.request_headers(scope["headers"], _client_ip(scope), "ws", websocket=True)
        limit = lb.settings.lb_max_body_mb * 1024 * 1024
        try:
            upstream = await connect(
                url,
                additional_headers=headers,
                subprotocols=[Subprotocol(p) for p in scope.get("subprotocols") or []] or None,
                max_size=limit,
                open_timeout=10,
                proxy=None,
            )
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            detail = f"answered {exc.response.status_code}" if isinstance(exc, InvalidStatus) else str(exc)
            raise Refused(
                502, {"error": f"worker {lease.worker_id}: WebSocket to port {where.port}: {detail}"}
            ) from exc
        async with upstream:
            await send(
                {
                    "type": "websocket.accept",
                    "subprotocol": upstream.subprotocol,
                    "headers": [(rules.WORKER_ID_HEADER.encode(), lease.worker_id.encode("latin-1"))],
                }
            )
            code = 101
            await _pump(upstream, receive, send)
    except Refused as exc:
        code = exc.status
        await _close(
            send, POLICY if exc.status in (400, 401, 404) else SERVER_ERROR, str(exc.body.get("error"))
        )
    except NoWorker:
        code = 400
        await _close(send, SERVER_ERROR, "no workers available")
    except AffinityGone:
        code = 404
        await _close(send, POLICY, "affinity_worker_gone")
    except AffinityTimeout:
        code = 400
        await _close(send, SERVER_ERROR, "worker_timeout")
    finally:
        if lease is not None:
            lb.pool.release(lease)
        lb.served(scope, endpoint_id, path, code, lease, clock.monotonic() - began)


async def _pump(upstream: ClientConnection, receive: Receive, send: Send) -> None:
    async def client_to_worker() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(code=message.get("code", 1000) or 1000)
                return
            if message["type"] == "websocket.receive":
                data = message.get("bytes")
                await upstream.send(data if data is not None else message.get("text") or "")

    async def worker_to_client() -> None:
        try:
            async for data in upstream:
                if isinstance(data, bytes):
                    await send({"type": "websocket.send", "bytes": data})
                else:
                    await send({"type": "websocket.send", "text": data})
        except ConnectionClosed:
            pass
        close = upstream.close_code or 1000
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": close, "reason": upstream.close_reason or ""})

    tasks = [asyncio.create_task(client_to_worker()), asyncio.create_task(worker_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _close(send: Send, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await send({"type": "websocket.close", "code": code, "reason": reason[:120]})


def _client_ip(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None

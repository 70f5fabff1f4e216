"""The reverse proxy in front of load-balancing workers, as a plain ASGI layer on the client listener.

Two ways in (RunPod: ``https://ENDPOINT_ID.api.runpod.ai/PATH``, docs.runpod.io/serverless/load-balancing/overview):

* ``/lb/{endpoint_id}/{path}`` on the client listener: always works;
* ``Host: {endpoint_id}.localhost:PORT`` with any path (browsers and curl resolve ``*.localhost`` to
  loopback).

Any method and body, streamed both ways (no whole-body buffering), over kept-alive connections to the
workers (one ``httpx.AsyncClient``). With ``EMULATOR_API_KEY`` set a request needs
``Authorization: Bearer KEY`` (401 otherwise) and the key is not passed on. Hop-by-hop headers are
dropped, ``X-Forwarded-For``/``-Proto``/``-Host`` added, and every answer carries ``X-Runpod-Worker-Id``.
Limits (RunPod's): a request waits up to ``lb_wait_for_worker_s`` (2 min) for a worker, then 400
``{"error": "no workers available"}``; it runs at most ``lb_request_timeout_s`` (5.5 min, then 524);
bodies are limited to ``lb_max_body_mb`` (30 MB) each way (413 for a request, 502 for an answer).
A worker whose port takes no connection gives 502 naming the worker. WebSocket upgrades go to
``emulator.loadbalancer.websocket``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulator.loadbalancer import rules
from emulator.loadbalancer.pool import AffinityGone, AffinityTimeout, Lease, NoWorker
from emulator.loadbalancer.service import LoadBalancer, Refused

log = structlog.get_logger("emulator.loadbalancer")


class TooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


class ProxyApp:
    """ASGI: load-balancing requests to the proxy, everything else to ``app``."""

    def __init__(self, app: ASGIApp, lb: LoadBalancer) -> None:
        self.app = app
        self.lb = lb

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        target = self.lb.target(scope)
        if target is None:
            refusal = self.lb.job_route_refusal(scope)
            if refusal is not None:
                await HttpExchange(self.lb, scope, receive, send).refuse(refusal)
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            from emulator.loadbalancer.websocket import relay

            await relay(self.lb, scope, receive, send, *target)
            return
        await HttpExchange(self.lb, scope, receive, send).run(*target)


class HttpExchange:
    """One proxied HTTP request."""

    def __init__(self, lb: LoadBalancer, scope: Scope, receive: Receive, send: Send) -> None:
        self.lb = lb
        self.scope = scope
        self.receive = receive
        self.send = send
        self.started = False  # the answer's head went out: errors can only cut the connection now
        self.status = 0
        self.body_done = asyncio.Event()
        self.limit = lb.settings.lb_max_body_mb * 1024 * 1024

    async def run(self, endpoint_id: str, path: str) -> None:
        clock = self.lb.core.clock
        began = clock.monotonic()
        lease: Lease | None = None
        try:
            endpoint, where = self.lb.admit(self.scope, endpoint_id)
            self._check_declared_size()
            wanted = self.lb.affinity(self.scope)
            lease = await self.lb.pool.acquire(endpoint, wanted, self.lb.wait_s(wanted))
            await self._forward(lease, where.port, path)
        except Refused as exc:
            await self._error(exc.status, exc.body, lease)
        except NoWorker:
            await self._error(400, {"error": "no workers available"}, lease)
        except AffinityGone as exc:
            await self._error(
                404, {"error": "affinity_worker_gone", "message": f"worker {exc.args[0]} is gone"}, lease
            )
        except AffinityTimeout as exc:
            await self._error(
                400,
                {"error": "worker_timeout", "message": f"timed out waiting for worker {exc.args[0]}"},
                lease,
            )
        except (TooLarge, ConnectionAbortedError, httpx.HTTPError) as exc:
            # the answer was under way (the worker died mid-answer, or it passed the body limit): the
            # head went out, so only the connection can end; the client sees a cut answer
            worker = lease.worker_id if lease is not None else None
            if not self.started:
                await self._error(502, {"error": f"worker {worker} failed the request: {_why(exc)}"}, lease)
            else:
                log.warning("load-balancing answer cut", endpoint=endpoint_id, worker=worker, error=_why(exc))
        finally:
            if lease is not None:
                self.lb.pool.release(lease)
            self.lb.served(self.scope, endpoint_id, path, self.status, lease, clock.monotonic() - began)

    async def refuse(self, refusal: Refused) -> None:
        await self._error(refusal.status, refusal.body, None)

    def _check_declared_size(self) -> None:
        declared = _header(self.scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            raise Refused(
                413, {"error": f"request body of {int(declared)} bytes exceeds {self._limit_text()}"}
            )

    def _limit_text(self) -> str:
        return f"the {self.lb.settings.lb_max_body_mb} MB limit of load-balancing endpoints"

    async def _forward(self, lease: Lease, port: int, path: str) -> None:
        worker = lease.worker_id
        query = self.scope.get("query_string", b"").decode("latin-1")
        url = f"http://{lease.address}:{port}{path}" + (f"?{query}" if query else "")
        headers = rules.request_headers(
            self.scope["headers"], _client_ip(self.scope), self.scope.get("scheme", "http")
        )
        has_body = _header(self.scope, b"content-length") not in (None, "0") or (
            _header(self.scope, b"transfer-encoding") is not None
        )
        if not has_body:
            self.body_done.set()
        request = self.lb.client.build_request(
            self.scope["method"], url, headers=headers, content=self._body() if has_body else None
        )
        watcher = asyncio.create_task(self._watch_disconnect())
        streaming = asyncio.create_task(self._exchange(request, worker, port))
        try:
            done, _ = await asyncio.wait(
                {watcher, streaming},
                timeout=self.lb.settings.lb_request_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if streaming in done:
                streaming.result()
                return
            streaming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await streaming
            if watcher in done:  # the client hung up
                self.status = self.status or 499
                return
            limit = self.lb.settings.lb_request_timeout_s
            log.warning("load-balancing request timed out", worker=worker, timeout_s=limit)
            await self._error(
                524, {"error": f"the request exceeded {limit:g}s (lb_request_timeout_s)"}, lease
            )
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _exchange(self, request: httpx.Request, worker: str, port: int) -> None:
        try:
            response = await self.lb.client.send(request, stream=True)
        except TooLarge:
            await self._error(413, {"error": f"request body exceeds {self._limit_text()}"}, None, worker)
            return
        except ClientGone:
            self.status = 499
            return
        except httpx.ConnectError as exc:
            await self._error(
                502,
                {"error": f"worker {worker} took no connection on port {port} (PORT): {_why(exc)}"},
                None,
                worker,
            )
            return
        except httpx.HTTPError as exc:
            await self._error(
                502, {"error": f"worker {worker} failed the request: {_why(exc)}"}, None, worker
            )
            return
        try:
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.limit:
                await self._error(
                    502,
                    {"error": f"worker {worker} answered {declared} bytes, over {self._limit_text()}"},
                    None,
                    worker,
                )
                return
            self.status = response.status_code
            await self.send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": rules.response_headers(response.headers.multi_items(), worker),
                }
            )
            self.started = True
            sent = 0
            async for chunk in response.aiter_raw():
                sent += len(chunk)
                if sent > self.limit:
                    log.warning("load-balancing answer cut at the body limit", worker=worker, bytes=sent)
                    raise TooLarge()
                if chunk:
                    await self.send({"type": "http.response.body", "body": chunk, "more_body": True})
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

    async def _body(self) -> AsyncIterator[bytes]:
        received = 0
        try:
            while True:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone()
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > self.limit:
                    raise TooLarge()
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return
        finally:
            self.body_done.set()

    async def _watch_disconnect(self) -> None:
        await self.body_done.wait()
        while True:
            message: Message = await self.receive()
            if message["type"] == "http.disconnect":
                return

    async def _error(
        self, status: int, body: dict[str, Any], lease: Lease | None, worker: str | None = None
    ) -> None:
        if self.started:
            raise ConnectionAbortedError(body.get("error"))  # the head went out: only the connection can end
        self.status = status
        worker_id = worker or (lease.worker_id if lease is not None else "")
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        if worker_id:
            headers.append((rules.WORKER_ID_HEADER.encode(), worker_id.encode("latin-1")))
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": payload})
        self.started = True


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _client_ip(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def _why(exc: Exception) -> str:
    return rules.transport_error(exc)

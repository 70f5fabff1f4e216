"""Sample load-balancing worker: a FastAPI app served by uvicorn on $PORT (RunPod's load-balancing contract).

Routes: GET /ping (204 for the first WARMUP_S seconds, then 200), POST /generate (like RunPod's
worker-load-balancing template), any method on /echo (what arrived: method, path, query, headers,
body size and digest), GET /stream (``count`` lines, ``delay`` seconds apart), GET /bytes (``n``
bytes in 64 KB chunks), GET /slow (sleeps
``seconds``), GET /stats, and a WebSocket echo at /ws. ``LISTEN_PORT`` overrides the port it listens
on (tests use it to make a worker that does not listen on $PORT).
"""

import asyncio
import hashlib
import os
import time

import uvicorn
from fastapi import FastAPI, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

STARTED = time.monotonic()
WARMUP_S = float(os.environ.get("WARMUP_S", "2"))
WORKER_ID = os.environ.get("RUNPOD_POD_ID", "local")

app = FastAPI(title="load-balancer sample")
served = 0


@app.middleware("http")
async def count_requests(request: Request, call_next):  # type: ignore[no-untyped-def]
    global served
    if request.url.path != "/ping":
        served += 1
    return await call_next(request)


@app.get("/ping")
async def ping() -> Response:
    if time.monotonic() - STARTED < WARMUP_S:
        return Response(status_code=204)  # initializing
    return Response(content='{"status":"healthy"}', media_type="application/json")


@app.post("/generate")
async def generate(request: Request) -> dict:
    body = await request.json()
    return {"generated_text": f"Response to: {body.get('prompt', '')}", "worker": WORKER_ID}


@app.api_route("/echo", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def echo(request: Request) -> dict:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
    return {
        "worker": WORKER_ID,
        "method": request.method,
        "path": request.url.path,
        "query": str(request.url.query),
        "headers": dict(request.headers),
        "bytes": size,
        "sha256": digest.hexdigest(),
    }


@app.get("/stream")
async def stream(count: int = 5, delay: float = 0.5) -> StreamingResponse:
    async def lines():  # type: ignore[no-untyped-def]
        for i in range(count):
            yield f"chunk {i} at {time.time():.3f}\n".encode()
            if i < count - 1:
                await asyncio.sleep(delay)

    return StreamingResponse(lines(), media_type="text/plain")


@app.get("/bytes")
async def some_bytes(n: int = 1024) -> StreamingResponse:
    async def chunks():  # type: ignore[no-untyped-def]
        left = n
        while left > 0:
            size = min(left, 65536)
            left -= size
            yield b"b" * size

    return StreamingResponse(chunks(), media_type="application/octet-stream")


@app.get("/slow")
async def slow(seconds: float = 1.0) -> dict:
    await asyncio.sleep(seconds)
    return {"slept": seconds, "worker": WORKER_ID}


@app.get("/stats")
async def stats() -> dict:
    return {"total_requests": served, "worker": WORKER_ID}


@app.websocket("/ws")
async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await websocket.send_bytes(message["bytes"])
            else:
                await websocket.send_text(f"echo: {message.get('text')}")
    except WebSocketDisconnect:
        return


if __name__ == "__main__":
    port = int(os.environ.get("LISTEN_PORT") or os.environ.get("PORT") or "80")
    uvicorn.run(app, host="0.0.0.0", port=port, log_level="warning")

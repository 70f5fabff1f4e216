"""FastAPI app factories: the client app (/v2 client routes, /v1, /ping) and the worker app."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from emulator.api import (
    client,
    endpoint_logs,
    faults,
    graphql,
    management,
    openai,
    schema,
    secret_routes,
    templates,
    worker,
)
from emulator.api.deps import AppContext
from emulator.api.errors import install


def create_client_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(
        title="serverless-emulator",
        description="RunPod Serverless's client API and a management API, served locally.",
        version="0.1.0",
    )
    app.state.ctx = ctx
    install(app)

    @app.get("/ping", tags=["meta"], summary="200 once the server takes requests")
    async def ping() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app.include_router(client.router)
    app.include_router(management.router)
    app.include_router(faults.router)
    app.include_router(templates.router)
    app.include_router(graphql.router)
    app.include_router(openai.router)
    app.include_router(secret_routes.router)
    app.include_router(endpoint_logs.router)
    for extra in ctx.client_routers:
        app.include_router(extra)
    schema.install(app, ctx.core.settings.api_key)
    return app


def create_worker_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(
        title="serverless-emulator worker protocol", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.ctx = ctx
    install(app)

    @app.get("/ping")
    async def ping() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app.include_router(worker.router)
    return app

"""Hot path: no route dependency is a plain ``def``.

FastAPI runs a synchronous dependency in its thread pool: a thread hop (and GIL hand-off) on every
request. The API-key check runs on every client and management request, so it must be ``async``.
Measured with ``python -m bench.profile --kind runsync``: the sync version cost about 9% of the
control plane's CPU per /runsync job (3.18 -> 2.90 ms/job).
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute

from emulator.api.app import create_client_app, create_worker_app
from emulator.api.deps import AppContext
from emulator.config import default_settings_for_tests
from emulator.service.core import build_core, job_service
from emulator.service.endpoints import EndpointService
from emulator.service.worker_protocol import WorkerProtocol


def _dependant_calls(dependant: Any) -> list[Any]:
    calls = []
    for sub in dependant.dependencies:
        calls.append(sub.call)
        calls += _dependant_calls(sub)
    return calls


def _dependency_calls(routes: list[Any]) -> list[tuple[str, Any]]:
    """(path, callable) of every dependency: routers' own and routes' (whatever FastAPI's version keeps
    included routers as: copied APIRoutes, or wrappers with an ``original_router``)."""
    found: list[tuple[str, Any]] = []
    for route in routes:
        router = getattr(route, "original_router", None)
        if router is not None:
            found += [(router.prefix, d.dependency) for d in router.dependencies]
            found += _dependency_calls(router.routes)
        if isinstance(route, APIRoute):
            found += [(route.path, d.dependency) for d in route.dependencies]
            found += [(route.path, call) for call in _dependant_calls(route.dependant)]
    return found


def test_every_route_dependency_is_async(tmp_path: Path) -> None:
    core = build_core(default_settings_for_tests(tmp_path), None)
    try:
        jobs = job_service(core)
        ctx = AppContext(
            core=core,
            jobs=jobs,
            protocol=WorkerProtocol(core, jobs),
            endpoints=EndpointService(core.endpoints, core.workers, core.jobs, core.hub, core.clock),
        )
        sync = set()
        checked = 0
        for app in (create_client_app(ctx), create_worker_app(ctx)):
            for path, call in _dependency_calls(app.routes):
                checked += 1
                if not (inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)):
                    sync.add(f"{path}: {getattr(call, '__qualname__', call)}")
        assert checked > 0  # the client routes do have dependencies (the API key)
        assert not sync, f"synchronous dependencies run in a thread pool on every request: {sorted(sync)}"
    finally:
        core.close()


def test_api_key_check_still_refuses_and_accepts(tmp_path: Path) -> None:
    from starlette.requests import Request

    from emulator.api.deps import require_api_key
    from emulator.errors import Unauthorized

    core = build_core(default_settings_for_tests(tmp_path, api_key="k3y"), None)
    try:
        jobs = job_service(core)
        ctx = AppContext(
            core=core,
            jobs=jobs,
            protocol=WorkerProtocol(core, jobs),
            endpoints=EndpointService(core.endpoints, core.workers, core.jobs, core.hub, core.clock),
        )

        class _App:
            class state:
                ctx: AppContext

        _App.state.ctx = ctx

        def request(auth: str | None) -> Request:
            headers = [(b"authorization", auth.encode())] if auth else []
            return Request({"type": "http", "headers": headers, "app": _App, "method": "GET", "path": "/"})

        asyncio.run(require_api_key(request("Bearer k3y")))
        asyncio.run(require_api_key(request("k3y")))
        for bad in (None, "Bearer nope"):
            try:
                asyncio.run(require_api_key(request(bad)))
            except Unauthorized:
                continue
            raise AssertionError(f"{bad!r} was accepted")
    finally:
        core.close()

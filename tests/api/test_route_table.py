"""The HTTP route table: every route a user, a script or a worker image relies on stays as it is.

The structural step of 2026-11-30 moved and split modules without changing a route; this table is
the routes as they were before it (``BEFORE_2026_11_30``). Routes added since are listed in ``ADDED``
so that a route that disappears or changes its path or method fails here, by name.
"""

from __future__ import annotations

from pathlib import Path

from emulator.api.routes import iter_routes
from emulator.config import default_settings_for_tests
from emulator.testing import BackgroundControlPlane

BEFORE_2026_11_30 = {
    ("client", "DELETE", "/v1/endpoints/{endpoint_id}"),
    ("client", "DELETE", "/v1/workers/{worker_id}"),
    ("client", "GET", "/"),
    ("client", "GET", "/docs"),
    ("client", "GET", "/docs/oauth2-redirect"),
    ("client", "GET", "/metrics"),
    ("client", "GET", "/openapi.json"),
    ("client", "GET", "/ping"),
    ("client", "GET", "/redoc"),
    ("client", "GET", "/static/{name}"),
    ("client", "GET", "/v1/dashboard"),
    ("client", "GET", "/v1/endpoints"),
    ("client", "GET", "/v1/endpoints/{endpoint_id}"),
    ("client", "GET", "/v1/endpoints/{endpoint_id}/events"),
    ("client", "GET", "/v1/endpoints/{endpoint_id}/jobs"),
    ("client", "GET", "/v1/endpoints/{endpoint_id}/jobs/{job_id}"),
    ("client", "GET", "/v1/endpoints/{endpoint_id}/workers"),
    ("client", "GET", "/v1/events/stream"),
    ("client", "GET", "/v1/workers/{worker_id}/logs"),
    ("client", "GET", "/v2/{endpoint_id}/health"),
    ("client", "GET", "/v2/{endpoint_id}/requests"),
    ("client", "GET", "/v2/{endpoint_id}/status-sync/{job_id}"),
    ("client", "GET", "/v2/{endpoint_id}/status/{job_id}"),
    ("client", "GET", "/v2/{endpoint_id}/stream/{job_id}"),
    ("client", "HEAD", "/docs"),
    ("client", "HEAD", "/docs/oauth2-redirect"),
    ("client", "HEAD", "/openapi.json"),
    ("client", "HEAD", "/redoc"),
    ("client", "PATCH", "/v1/endpoints/{endpoint_id}"),
    ("client", "POST", "/v1/endpoints"),
    ("client", "POST", "/v1/endpoints/{endpoint_id}/workers"),
    ("client", "POST", "/v1/workers/{worker_id}/faults"),
    ("client", "POST", "/v2/{endpoint_id}/cancel/{job_id}"),
    ("client", "POST", "/v2/{endpoint_id}/purge-queue"),
    ("client", "POST", "/v2/{endpoint_id}/retry/{job_id}"),
    ("client", "POST", "/v2/{endpoint_id}/run"),
    ("client", "POST", "/v2/{endpoint_id}/runsync"),
    ("client", "POST", "/v2/{endpoint_id}/status-sync/{job_id}"),
    ("client", "POST", "/v2/{endpoint_id}/status/{job_id}"),
    ("client", "POST", "/v2/{endpoint_id}/stream/{job_id}"),
    ("worker", "GET", "/ping"),
    ("worker", "GET", "/v2/{endpoint_id}/job-stop/{worker_id}"),
    ("worker", "GET", "/v2/{endpoint_id}/job-take-batch/{worker_id}"),
    ("worker", "GET", "/v2/{endpoint_id}/job-take/{worker_id}"),
    ("worker", "GET", "/v2/{endpoint_id}/ping/{worker_id}"),
    ("worker", "POST", "/v2/{endpoint_id}/job-done/{worker_id}"),
    ("worker", "POST", "/v2/{endpoint_id}/job-done/{worker_id}/{job_id}"),
    ("worker", "POST", "/v2/{endpoint_id}/job-stream/{worker_id}/{job_id}"),
}
ADDED: set[tuple[str, str, str]] = set()
ADDED |= {  # images (#14): RunPod REST v1 templates, registry credentials, POST …/update, the SDK's GraphQL
    ("client", "POST", "/v1/endpoints/{endpoint_id}/update"),
    ("client", "POST", "/v1/templates"),
    ("client", "GET", "/v1/templates"),
    ("client", "GET", "/v1/templates/{template_id}"),
    ("client", "PATCH", "/v1/templates/{template_id}"),
    ("client", "POST", "/v1/templates/{template_id}/update"),
    ("client", "DELETE", "/v1/templates/{template_id}"),
    ("client", "POST", "/v1/containerregistryauth"),
    ("client", "GET", "/v1/containerregistryauth"),
    ("client", "GET", "/v1/containerregistryauth/{auth_id}"),
    ("client", "DELETE", "/v1/containerregistryauth/{auth_id}"),
    ("client", "POST", "/graphql"),
}
ADDED |= {  # openai (#15): the OpenAI-compatible passthrough, any method
    ("client", m, "/v2/{endpoint_id}/openai/{path:path}") for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
}
ADDED |= {  # lb (#16): load-balancing endpoints' last requests (the proxy itself, /lb/{id}/... and
    # {id}.localhost, is an ASGI layer in front of the client app, not a route: tests/loadbalancer)
    ("client", "GET", "/v1/endpoints/{endpoint_id}/requests"),
}
ADDED |= {  # parity (#18): secrets and the endpoint's kept worker output
    ("client", "POST", "/v1/secrets"),
    ("client", "GET", "/v1/secrets"),
    ("client", "GET", "/v1/secrets/{name}"),
    ("client", "PATCH", "/v1/secrets/{name}"),
    ("client", "DELETE", "/v1/secrets/{name}"),
    ("client", "GET", "/v1/endpoints/{endpoint_id}/logs"),
    ("client", "GET", "/v1/endpoints/{endpoint_id}/logs/stream"),
}


def route_table(plane: BackgroundControlPlane) -> set[tuple[str, str, str]]:
    """``(listener, method, path)`` for every route of both listeners (``WS`` for a WebSocket route)."""
    assert plane.plane is not None
    worker_app, client_app = plane.plane.worker_app, plane.plane.client_app
    assert worker_app is not None and client_app is not None
    apps = {"worker": worker_app, "client": client_app}
    table = set()
    for listener, app in apps.items():
        for info in iter_routes(app.routes):
            for method in sorted(info.methods) or ["WS"]:
                table.add((listener, method, info.path))
    return table


def test_every_route_is_kept(tmp_path: Path) -> None:
    with BackgroundControlPlane(default_settings_for_tests(tmp_path / "data")) as plane:
        table = route_table(plane)
    missing = BEFORE_2026_11_30 - table
    assert not missing, f"routes gone: {sorted(missing)}"
    unexpected = table - BEFORE_2026_11_30 - ADDED
    assert not unexpected, f"routes not listed in ADDED: {sorted(unexpected)}"

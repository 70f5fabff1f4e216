"""7. The load-balancing proxy's added latency: the same request to the same warm worker, straight to its
port on the Docker network and through ``/lb/{endpoint}/...`` on the control plane, in alternating rounds.

Needs the ``load-balancer`` sample image (``python -m emulator.images build-samples load-balancer``).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench import dockerx
from bench.context import Run
from bench.report import Row, Section, median, ms, pct, ratio

ROWS = [
    ("lb.proxy_p50", "Load-balancing proxy: GET /stats through /lb/{id}/, p50 (1 warm worker, 1 client)"),
    ("lb.proxy_added", "Load-balancing proxy: added latency per request, p50 (proxy minus direct)"),
]
IMAGE = "serverless-emulator/sample-load-balancer:latest"
PATH = "/stats"


async def _sequential(url: str, n: int, warmup: int, headers: dict[str, str] | None = None) -> list[float]:
    """Milliseconds per request, one keep-alive connection, ``warmup`` requests not counted."""
    connector = aiohttp.TCPConnector(limit=1, keepalive_timeout=75)
    out: list[float] = []
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        for i in range(n + warmup):
            began = time.perf_counter()
            async with http.get(url) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"GET {url}: {resp.status}")
            if i >= warmup:
                out.append((time.perf_counter() - began) * 1000)
    return out


def run(ctx: Run, section: Section) -> None:
    if not dockerx.image_exists(IMAGE):
        section.rows += [Row(k, w, "not measured: no sample-load-balancer image") for k, w in ROWS]
        return
    c = ctx.counts
    cp = ctx.plane("lbproxy")
    try:
        cp.create_endpoint(
            {
                "name": "lbp",
                "id": "lbp",
                "imageName": IMAGE,
                "type": "LB",
                "workersMin": 1,
                "workersMax": 1,
                "extraWorkers": 0,
                "idleTimeout": 600,
                "env": {"WARMUP_S": "0"},
            }
        )
        cp.wait_ready("lbp", 1)
        (worker,) = [w for w in cp.workers("lbp") if not w["standby"]]
        networks = dockerx.client().api.inspect_container(worker["containerId"])["NetworkSettings"][
            "Networks"
        ]
        address = next(n["IPAddress"] for n in networks.values() if n.get("IPAddress"))
        urls = {"direct": f"http://{address}:80{PATH}", "proxy": f"{cp.url}/lb/lbp{PATH}"}
        samples: dict[str, list[float]] = {k: [] for k in urls}
        per_round = max(1, c.latency_jobs // c.latency_rounds)
        cpu_s, proxied = 0.0, 0
        for r in range(c.latency_rounds):
            for name, url in urls.items():
                warm = c.latency_warmup if r == 0 else 3
                before = cp.cpu_s()
                samples[name] += asyncio.run(_sequential(url, per_round, warm))
                if name == "proxy":
                    cpu_s += cp.cpu_s() - before
                    proxied += per_round + warm
    finally:
        ctx.stop_plane(cp)
    proxy, direct = samples["proxy"], samples["direct"]
    p50, d50 = pct(proxy, 50), pct(direct, 50)
    section.rows += [
        Row("lb.proxy_p50", ROWS[0][1], ms(p50), f"{ms(d50)} (direct to the worker)", ratio(p50, d50)),
        Row("lb.proxy_added", ROWS[1][1], ms(p50 - d50), "", "", ""),
    ]
    section.notes += [
        f"{len(proxy)} requests per target in {c.latency_rounds} alternating rounds after {c.latency_warmup} "
        f"warm-up requests; one aiohttp client on a keep-alive connection; GET {PATH} of the load-balancer sample "
        "(FastAPI + uvicorn in a container).",
        f"Through the proxy: p99 {ms(pct(proxy, 99))}, median {ms(median(proxy))}; direct: p99 {ms(pct(direct, 99))}. "
        f"Control-plane CPU per proxied request: {ms(cpu_s / max(1, proxied) * 1000)} (utime+stime of its process).",
        "Proxy path: client -> control plane (host, ASGI layer, worker picked from the pool, request counted on "
        "the worker record) -> httpx keep-alive connection -> worker container on the Docker bridge network; "
        "direct: client -> the worker's IP and PORT on the same bridge.",
    ]

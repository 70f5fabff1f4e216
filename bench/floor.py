"""The floor of warm ``/runsync``: the same echo handler, the same HTTP hops, nothing else.

The emulator's path of one warm ``/runsync`` job crosses four one-way HTTP messages that the client
waits for, each over the same boundary as here:

1. client -> host:       ``POST /v2/{id}/runsync`` reaches the control plane;
2. host -> container:    the worker's held ``GET job-take`` is answered with the job (Docker bridge);
3. container -> host:    the worker's ``POST job-done`` carries the output (Docker bridge);
4. host -> client:       the ``/runsync`` answer.

(The job-done answer and the worker's next job-take happen after the client is answered: not waited for.)

The floor is a bare relay on the host (aiohttp, no framework, no store) in front of a bare HTTP server
(``bench/floor_server.py``, standard library) running the same ``bench/handler.py`` in a bench-echo
container on the control plane's Docker network: client -> relay (1), relay -> container request (2),
container -> relay answer (3), relay -> client (4). Four messages over the same boundaries, each on a
keep-alive connection like the emulator's. A relay that forwards to the container whose handler then
calls back to a host endpoint before answering would cross six (the callback's request and answer
added), costing more than the path it is meant to bound from below; a container that long-polls the
relay would cross the same four as this one. So this is the cheapest way to pay exactly those hops,
and ``emulator p50 / floor p50`` says how much the control plane, the store and the worker protocol
add on top of them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench import dockerx
from bench.procs import REPO, ControlPlane, _env, _Proc, free_port, http_json, wait_until

SERVER = Path(__file__).resolve().parent / "floor_server.py"
CONTAINER_PORT = 8080


class Floor(_Proc):
    """The floor's container (by id) and its relay (a subprocess of this run, by pid)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.container_id = ""
        self.url = ""

    def start(self, cp: ControlPlane, run_id: str, timeout_s: float = 60.0) -> Floor:
        """Start the container on ``cp``'s network, then the relay on 127.0.0.1; wait until a job passes."""
        self.container_id, address = dockerx.run_labelled(
            dockerx.BENCH_ECHO,
            cp.network,
            run_id,
            ["python3", "-c", SERVER.read_text(), str(CONTAINER_PORT)],
        )
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        target = f"http://{address}:{CONTAINER_PORT}/runsync"
        argv = [sys.executable, "-m", "bench.floor", str(port), target]
        self._spawn(argv, _env({}), self.out_dir / "floor-relay.log", cwd=REPO)

        def answers() -> bool:
            if not self.alive():
                raise RuntimeError(f"the floor's relay exited; its log:\n{self.log_tail()}")
            body = {"input": {"n": 1}}
            return http_json("POST", f"{self.url}/runsync", body, timeout_s=2)[0] == 200

        try:
            wait_until(answers, timeout_s, "the floor (relay and container) to answer", interval_s=0.1)
        except TimeoutError as exc:
            logs = dockerx.container_logs(self.container_id)
            self.stop()
            raise RuntimeError(f"{exc}; relay log:\n{self.log_tail()}\ncontainer log:\n{logs}") from exc
        except BaseException:
            self.stop()
            raise
        return self

    def terminate(self, timeout_s: float) -> None:
        """Stop the relay (by pid) and remove the container (by id)."""
        try:
            super().terminate(timeout_s)
        finally:
            if self.container_id:
                dockerx.remove_container(self.container_id)

    def stop(self) -> None:
        self.terminate(timeout_s=15)


def relay(port: int, target: str) -> None:
    """Serve ``POST /runsync`` on 127.0.0.1:port by forwarding the body to ``target`` (one keep-alive
    connection) and answering with what it answered."""
    import aiohttp
    from aiohttp import web

    session: aiohttp.ClientSession | None = None

    async def forward(request: web.Request) -> web.Response:
        assert session is not None
        body = await request.read()
        async with session.post(target, data=body, headers={"Content-Type": "application/json"}) as resp:
            answer = await resp.read()
            status = resp.status
        return web.Response(body=answer, status=status, content_type="application/json")

    async def open_session(_: web.Application) -> None:
        nonlocal session
        connector = aiohttp.TCPConnector(limit=1, keepalive_timeout=75)
        session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30))

    async def close_session(_: web.Application) -> None:
        if session is not None:
            await session.close()

    app = web.Application()
    app.router.add_post("/runsync", forward)
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    relay(int(sys.argv[1]), sys.argv[2])

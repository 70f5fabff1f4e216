"""``python -m bench.kube_scale``: the supervisor on the Kubernetes runtime at scale (opt-in, not in CI).

A real kube-apiserver + kube-scheduler 1.20 on loopback (``scripts/kubernetes.sh`` builds them; the test
suite's ``tests/runtime/kube_cluster.py`` runs them) with the kubelet stand-in's simulated nodes
(``--nodes`` x ``--gpus`` nvidia.com/gpu); the real supervisor and store in this process, driving
``KubernetesRuntime``; ``--endpoints`` endpoints of ``--workers`` workers each (1 GPU per worker). Pods
only run (no processes): a worker makes contact (a ping through ``WorkerProtocol``, as worker_sdk's
first call) once its Pod is Running, and keeps pinging. Measured:

* the time from the endpoints' creation to the first N ready (IDLE) workers (N = the cluster's GPUs);
* the time until every worker that cannot fit is THROTTLED with the scheduler's message;
* the steady reconcile tick (median, p95, max of ``--ticks`` ticks) and the API requests per tick
  (every HTTP request the runtime's client makes, the long-lived watch apart);
* with ``--rollout``: ``--jobs`` queued jobs (5,000), then a new version of every endpoint: the time
  until the cluster is full of new workers and the queue is drained, and the jobs not completed.

    python -m bench.kube_scale                          # 1,000 workers over 50 nodes of 8 GPUs
    python -m bench.kube_scale --endpoints 4 --workers 25 --nodes 5   # a quick look

Everything it starts (etcd, API server, scheduler, the stand-in) is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from emulator import logs
from emulator.clock import SystemClock
from emulator.models import Endpoint, EndpointPatch, EndpointSpec, JobRequest, WorkerState
from emulator.runtime.kubernetes import KubernetesRuntime
from emulator.service.core import build_core, job_service
from emulator.service.worker_protocol import WorkerProtocol
from emulator.supervisor.supervisor import build_supervisor
from tests.runtime.harness import BASE_IMAGE
from tests.runtime.kube_cluster import Kubelet, missing_binaries, start_cluster
from tests.supervisor.world import settings_for

NAMESPACE = "se-bench"


class Counter:
    """Counts the HTTP requests of one kubernetes ApiClient (wraps its REST client's ``request``)."""

    def __init__(self, api_client: Any) -> None:
        self.requests = 0
        self.watches = 0
        self.by_kind: dict[str, int] = {}  # "GET pods", "POST pods (dry run)", ...
        rest = api_client.rest_client
        original = rest.request

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            query = kwargs.get("query_params") or []
            if "watch=true" in url.lower() or any(key == "watch" and value for key, value in query):
                self.watches += 1
            else:
                self.requests += 1
                path = url.split("?")[0].split("/api/v1/")[-1].split("/")
                what = path[-1] if path[-1] in ("log", "status", "nodes", "pods") else path[-2]
                dry = " (dry run)" if any(k == "dryRun" for k, _ in query) else ""
                kind = f"{method} {what}{dry}"
                self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
            return original(method, url, *args, **kwargs)

        rest.request = request


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cluster = start_cluster()
    kubelet = Kubelet(cluster, run_workers=False)
    work = Path(tempfile.mkdtemp(prefix="se-kube-bench-"))
    result: dict[str, Any] = {"loadavg_start": os.getloadavg()}
    try:
        kubelet.add_nodes(args.nodes, gpus=args.gpus)
        kubelet.start()
        core_api: Any = kubelet.core
        core_api.create_namespace({"metadata": {"name": NAMESPACE}})
        rt = KubernetesRuntime(namespace=NAMESPACE, kubeconfig=str(cluster.kubeconfig), watch_timeout_s=300)
        rt._core()  # the client exists from here: count its requests
        counter = Counter(rt._client)
        settings = settings_for(
            work / "data",
            runtime="kubernetes",
            worker_url="http://127.0.0.1:9",  # nothing calls it: contact is simulated in process
            reconcile_interval_s=0.25,
            startup_timeout_s=600.0,
            worker_lost_after_s=120.0,
            max_concurrent_starts=args.concurrency,
            keep_workers=True,  # the namespace is emptied in one call at the end
        )
        core = build_core(settings, SystemClock())
        jobs = job_service(core)
        sup = await build_supervisor(core, jobs, settings, runtime=rt)
        sup.set_worker_url(settings.worker_url or "")
        await sup.adopt()
        ops = WorkerProtocol(core, jobs)
        began = time.monotonic()
        for index in range(args.endpoints):
            spec = EndpointSpec.model_validate(
                {
                    "id": f"e{index}",
                    "name": f"e{index}",
                    "imageName": BASE_IMAGE,
                    "workersMin": args.workers,
                    "workersMax": args.workers,
                    "gpuCount": 1,
                    "extraWorkers": 0,
                }
            )
            core.endpoints.create(
                Endpoint.model_validate(spec.model_dump() | {"version": 1, "createdAt": core.clock.now()})
            )
        wanted = args.endpoints * args.workers
        capacity = min(wanted, args.nodes * args.gpus)
        first_ready_s: float | None = None
        throttled_seen_s: float | None = None
        deadline = began + args.timeout_s
        while time.monotonic() < deadline:
            await sup.tick()
            pods = {p.id: p for p in await rt.list({})}
            idle = throttled = 0
            for worker in core.workers.all():
                pod = pods.get(worker.container_id or "")
                if (
                    pod is not None
                    and pod.status == "running"
                    and worker.state
                    in (
                        WorkerState.INITIALIZING,
                        WorkerState.IDLE,
                    )
                ):
                    ops.ping(worker, [], None, None)  # first contact, then liveness
                idle += worker.state == WorkerState.IDLE
                throttled += worker.state == WorkerState.THROTTLED and "nodes are available" in (
                    worker.reason or ""
                )
            now = time.monotonic() - began
            if first_ready_s is None and idle >= capacity:
                first_ready_s = now
            if throttled_seen_s is None and throttled >= wanted - capacity:
                throttled_seen_s = now
            if first_ready_s is not None and throttled_seen_s is not None:
                break
            await asyncio.sleep(0.2)
        result.update(
            wanted=wanted,
            capacity=capacity,
            first_ready_s=first_ready_s,
            all_throttled_s=throttled_seen_s,
            requests_during_scale_out=counter.requests,
            requests_by_kind=dict(sorted(counter.by_kind.items())),
        )
        await sup.settle(60)
        # steady state: nothing changes, so a tick should cost the API server nothing
        before = counter.requests
        durations = []
        for _ in range(args.ticks):
            started = time.perf_counter()
            await sup.tick()
            durations.append((time.perf_counter() - started) * 1000)
            for worker in core.workers.all():
                if worker.state == WorkerState.IDLE:
                    ops.ping(worker, [], None, None)
            await asyncio.sleep(0.05)
        states = [w.state for w in core.workers.all()]
        reasons = sorted({w.reason or "" for w in core.workers.all() if w.state == WorkerState.THROTTLED})
        durations.sort()
        result.update(
            idle=states.count(WorkerState.IDLE),
            throttled=states.count(WorkerState.THROTTLED),
            throttled_reasons=reasons,
            tick_ms_median=round(statistics.median(durations), 2),
            tick_ms_p95=round(durations[int(len(durations) * 0.95) - 1], 2),
            tick_ms_max=round(durations[-1], 2),
            api_requests_per_steady_tick=(counter.requests - before) / args.ticks,
            watch_requests=counter.watches,
            relists=rt.watch.relists,
            loadavg_end=os.getloadavg(),
        )
        if args.rollout:
            result.update(await _rollout(args, core, sup, ops, rt, capacity))
        await sup.stop()
        await rt.close()
        core.close()
        return result
    finally:
        try:
            core_api = kubelet.core
            core_api.delete_collection_namespaced_pod(NAMESPACE, grace_period_seconds=0)
        except Exception as exc:
            print(f"could not empty the namespace: {exc}", file=sys.stderr)
        kubelet.stop()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


async def _rollout(
    args: argparse.Namespace, core: Any, sup: Any, ops: WorkerProtocol, rt: KubernetesRuntime, capacity: int
) -> dict[str, Any]:
    """``--jobs`` queued jobs (spread over the endpoints that have a worker placed), then a new version of every endpoint (an env
    change). Workers whose Pod runs take one job per round and finish it the next round (as worker_sdk
    would, in process). Measured: the time until ``capacity`` workers of version 2 are IDLE, none of
    version 1 is left and the queue is empty; and how many jobs did not complete or were requeued."""
    submitted: list[str] = []
    # only endpoints with a worker placed get jobs: the others' workers all wait for GPUs (oversubscribed)
    served = sorted({w.endpoint_id for w in core.workers.all() if w.state == WorkerState.IDLE})
    for index in range(args.jobs):
        endpoint = core.endpoints.require(served[index % len(served)])
        request = JobRequest.model_validate({"input": {"n": index}})
        submitted.append(sup.jobs.submit(endpoint, request, sync=False).id)
    began = time.monotonic()
    for index in range(args.endpoints):
        current = core.endpoints.require(f"e{index}")
        updated, _ = current.apply_patch(EndpointPatch.model_validate({"env": {"V": "2"}}))
        core.endpoints.save(updated)
    held: dict[str, list[str]] = {}  # worker id -> the jobs it took last round
    done_s: float | None = None
    while time.monotonic() - began < args.timeout_s:
        await sup.tick()
        pods = {p.id: p for p in await rt.list({})}
        for worker in core.workers.all():
            pod = pods.get(worker.container_id or "")
            if pod is None or pod.status != "running":
                continue
            for job_id in held.pop(worker.id, []):
                ops.done(worker, job_id, {"output": {"by": worker.id}})
            ops.ping(worker, [], None, None)
            if not worker.stopping and worker.state in (WorkerState.IDLE, WorkerState.RUNNING):
                held[worker.id] = [job["id"] for job in await ops.take(worker, 1, 0)]
        workers = core.workers.all()
        new_idle = sum(w.version == 2 and w.state == WorkerState.IDLE for w in workers)
        queued = sum(
            stats.in_queue + stats.in_progress
            for stats in (core.jobs.stats(endpoint_id, core.clock.now()) for endpoint_id in served)
        )
        if new_idle >= capacity and not [w for w in workers if w.version == 1] and queued == 0:
            done_s = time.monotonic() - began
            break
        await asyncio.sleep(0.05)
    records = [core.jobs.get(job_id) for job_id in submitted]
    statuses: dict[str, int] = {}
    for record in records:
        status = "missing" if record is None else record.status.value
        statuses[status] = statuses.get(status, 0) + 1
    return {
        "rollout_s": done_s,
        "jobs": len(submitted),
        "jobs_on_endpoints": len(served),
        "jobs_by_status": statuses,
        "jobs_requeued": sum(1 for r in records if r is not None and r.retries > 0),
        "loadavg_after_rollout": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.kube_scale", description=__doc__.splitlines()[0])
    p.add_argument("--endpoints", type=int, default=20)
    p.add_argument("--workers", type=int, default=50, help="workersMin = workersMax of each endpoint")
    p.add_argument("--nodes", type=int, default=50)
    p.add_argument("--gpus", type=int, default=8, help="nvidia.com/gpu of each node")
    p.add_argument("--ticks", type=int, default=50, help="steady ticks measured")
    p.add_argument("--concurrency", type=int, default=16, help="max_concurrent_starts")
    p.add_argument("--timeout-s", type=float, default=600.0)
    p.add_argument("--rollout", action="store_true", help="then a new version of every endpoint, timed")
    p.add_argument(
        "--jobs", type=int, default=5000, help="jobs queued before the rollout (drained during it)"
    )
    args = p.parse_args(argv)
    logs.configure(level="warning", stream=sys.stderr)  # stdout is the JSON result
    missing = missing_binaries()
    if missing:
        print(f"missing {', '.join(missing)}: run `sudo bash scripts/kubernetes.sh` first", file=sys.stderr)
        return 2
    print(json.dumps(asyncio.run(run(args)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

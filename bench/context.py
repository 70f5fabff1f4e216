"""One benchmark run: its id, counts, output dir, and everything it started (stopped by ``close``)."""

from __future__ import annotations

import contextlib
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench import dockerx
from bench.load import Clients
from bench.procs import ControlPlane, HostWorker, Peer, _Proc


@dataclass(frozen=True)
class Counts:
    latency_jobs: int  # per target, split over rounds that alternate emulator and peer
    latency_warmup: int
    latency_rounds: int
    latency_rp_jobs: int  # RunPod's SDK worker paces sequential jobs about 1 s apart: few of them
    tput_clients: int
    tput_warm_s: float
    tput_window_s: float
    tput_poll_s: float
    client_procs: int
    cold_runs: int
    flash_runs: int
    scale_jobs: int
    scale_workers: int
    scale_procs: int
    scale_concurrency: int  # connections per submitting process
    import_runs: int
    queued_jobs: int  # the deep-queue run (no workers)
    pacing_jobs: int  # RunPod's SDK worker, sequential jobs about 1 s apart


MODES = {
    "full": Counts(1000, 50, 5, 10, 16, 2.0, 10.0, 0.01, 2, 5, 3, 10_000, 8, 4, 16, 20, 100_000, 10),
    "quick": Counts(150, 20, 3, 3, 16, 1.0, 4.0, 0.01, 2, 1, 1, 1_000, 8, 2, 16, 3, 10_000, 4),
    "smoke": Counts(20, 5, 2, 2, 16, 0.5, 1.5, 0.01, 2, 1, 1, 100, 2, 2, 8, 2, 500, 2),
}


@dataclass
class Run:
    mode: str
    out_dir: Path
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    images: dict[str, str | None] = field(default_factory=dict)
    planes: list[ControlPlane] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)
    others: list[_Proc] = field(default_factory=list)  # host workers
    _peer: Peer | None = None
    _clients: Clients | None = None

    @property
    def counts(self) -> Counts:
        return MODES[self.mode]

    @property
    def dir(self) -> Path:
        return self.out_dir / self.run_id

    def plane(self, name: str, env: dict[str, str] | None = None) -> ControlPlane:
        cp = ControlPlane(self.run_id, name, self.dir, dict(env or {}))
        self.planes.append(cp)
        self.instances.append(cp.instance)
        return cp.start()

    def stop_plane(self, cp: ControlPlane) -> None:
        cp.stop()
        if cp in self.planes:
            self.planes.remove(cp)

    def peer(self) -> Peer:
        if self._peer is None or not self._peer.alive():
            if self._peer is not None:
                self._peer.stop()
            self._peer = Peer(self.dir)  # kept before start: a failed start is still stopped by close()
            self._peer.start()
        return self._peer

    def host_worker(self, cp: ControlPlane, endpoint_id: str) -> HostWorker:
        worker = HostWorker(self.dir / cp.name)
        self.others.append(worker)
        return worker.start(cp, endpoint_id)

    def clients(self) -> Clients:
        if self._clients is None:
            self._clients = Clients(self.counts.client_procs)
        return self._clients

    def close(self) -> list[str]:
        """Stop every process this run started and remove its containers; what is left (should be [])."""
        for cp in list(self.planes):
            with contextlib.suppress(Exception):
                self.stop_plane(cp)
        for proc in self.others:
            proc.terminate(timeout_s=15)
        self.others.clear()
        if self._peer is not None:
            self._peer.stop()
            self._peer = None
        if self._clients is not None:
            self._clients.close()
            self._clients = None
        time.sleep(0.2)
        return dockerx.leftovers(self.instances, self.run_id)

"""Typed settings: flags override EMULATOR_* environment variables, which override defaults.

Built once at start-up (``Settings.load``) and passed down; nothing else reads the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMULATOR_", extra="ignore")

    # --- serving -------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".emulator")
    config: Path | None = None  # endpoints.toml
    api_key: str | None = None
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "info"

    # --- how worker containers reach the control plane -----------------------------------
    # The worker protocol is served on its own listener. By default it binds to the gateway
    # address of the Docker network the workers join, so containers reach it and the client
    # API stays on 127.0.0.1. In a container (compose) set worker_host=0.0.0.0 and
    # worker_url=http://<service name>:<worker_port>.
    worker_host: str | None = None  # None: the Docker network's gateway (or 127.0.0.1 without Docker)
    worker_port: int = 0  # 0: pick a free port once and remember it in the data dir
    worker_url: str | None = None  # what containers are told; None: derived from host and port
    network: str = "serverless-emulator"

    # --- runtime ------------------------------------------------------------------------
    runtime: Literal["docker", "kubernetes", "none"] = "docker"
    keep_workers: bool = False
    base_image: str | None = None
    gpu_mode: Literal["auto", "nvidia", "emulate", "off"] = "auto"
    gpus: str | None = None  # comma-separated device ids, overrides discovery
    emulated_gpus: int = 0

    # --- job semantics --------------------------------------------------------------------
    run_retention_s: float = 30 * 60
    sync_retention_s: float = 60
    default_ttl_ms: int = 24 * 3600 * 1000
    max_job_retries: int = 3
    max_queue_per_endpoint: int = 0  # 0: RunPod's bound, max(50, workersMax * 500)
    max_run_body_bytes: int = 10 * 1024 * 1024
    max_runsync_body_bytes: int = 20 * 1024 * 1024
    max_stream_chunk_bytes: int = 1024 * 1024
    webhook_attempts: int = 3
    webhook_interval_s: float = 10.0
    webhook_timeout_s: float = 10.0
    # /v2/{id}/openai/*: how long a call waits for its job's end, or (streamed) for each next chunk
    openai_wait_s: float = 600.0

    # --- worker protocol -------------------------------------------------------------------
    job_take_hold_s: float = 30.0  # how long an empty job-take long poll is held before 204
    job_stop_hold_s: float = 30.0
    ping_interval_ms: int = 2000  # RUNPOD_PING_INTERVAL given to workers (the SDK floors to seconds)
    worker_lost_after_s: float = 15.0  # no ping or poll for this long: the worker is gone
    janitor_interval_s: float = 0.5
    # an answer given before the body was read (413, 404, 401): the rest of the body is read and
    # discarded first, up to this much, so clients that send the whole body first get the answer
    drain_body_max_mb: int = 64
    drain_body_max_s: float = 30.0

    # --- supervisor ------------------------------------------------------------------------
    reconcile_interval_s: float = 0.25
    # while the engine's event stream delivers (a container's start, die, oom, ... wakes the loop at
    # once), the full container listing is a safety net taken this often, not on every tick
    relist_interval_s: float = 5.0
    max_concurrent_starts: int = 4
    startup_timeout_s: float = 120.0
    stop_grace_s: float = 10.0
    # SIGTERM to SIGKILL for a worker that holds no job (scale-down, shutdown, endpoint deletion after the
    # drain): nothing to lose, and RunPod's SDK ignores SIGTERM, so the full stop_grace_s was pure waiting
    idle_stop_grace_s: float = 0.0
    # a job ended (timeout, cancel, TTL) while its worker's pings still name it: the worker stays
    # RUNNING this long, then its container is stopped and replaced (RunPod: "the worker stops")
    ended_job_grace_s: float = 5.0
    worker_memory_budget_mb: int | None = None
    worker_cpu_budget: float | None = None
    flashboot_pause_s: float = 600.0

    # --- load-balancing endpoints (type LB; RunPod's limits) ----------------------------------------------
    lb_wait_for_worker_s: float = 120.0  # a request waits this long for a worker, then "no workers available"
    lb_request_timeout_s: float = 330.0  # 5.5 minutes per request, then 524
    lb_max_body_mb: int = 30  # request and answer bodies
    lb_health_interval_s: float = 1.0  # how often a ready worker's health path is asked
    lb_health_fast_interval_s: float = 0.1  # how often a starting worker's is
    lb_health_timeout_s: float = 2.0
    lb_unhealthy_after_s: float = 10.0  # failed health checks for this long: UNHEALTHY
    lb_affinity_wait_s: float = 300.0  # strict affinity waits this long for its worker
    lb_requests_kept: int = 500  # per-request rows kept for the dashboard
    # --- what a worker container gets (RunPod parity) ----------------------------------------
    worker_shm_mb: int = 8192  # /dev/shm of a worker whose endpoint sets neither shmSizeMb nor memoryInMb
    gpu_name: str | None = None  # RUNPOD_GPU_NAME for workers given GPUs
    hf_hub_cache: Path | None = (
        None  # the host's Hugging Face hub cache; None: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/...
    )
    endpoint_log_mb: float = 20.0  # worker output kept per endpoint in the data dir (oldest dropped)
    s3: bool = False  # run a local S3 server (moto) for endpoints with localS3: true
    s3_port: int = 0  # 0: a free port
    s3_url: str | None = None  # what workers are told; None: http://<worker host>:<s3 port>
    s3_access_key_id: str = "serverless-emulator"
    s3_secret_access_key: str = "serverless-emulator-secret"

    # --- runtime=kubernetes (emulator/runtime/kubernetes.py; needs serverless-emulator[kubernetes]) -----
    kube_namespace: str = "default"  # where worker Pods are created
    kube_config: Path | None = None  # a kube config file; None: $KUBECONFIG or ~/.kube/config
    kube_context: str | None = None
    kube_in_cluster: bool = False  # the control plane runs in a Pod: its service account's credentials
    kube_grace_s: int = 10  # terminationGracePeriodSeconds of worker Pods
    kube_volume_size_gb: int = 10  # the PersistentVolumeClaim asked for a network volume

    @model_validator(mode="after")
    def _kubernetes_needs_a_worker_url(self) -> Settings:
        if self.runtime == "kubernetes" and not self.worker_url:
            raise ValueError(
                "EMULATOR_RUNTIME=kubernetes needs EMULATOR_WORKER_URL: the control plane's worker-protocol "
                "address that Pods can reach (in a cluster: http://<service>.<namespace>.svc:<worker_port>)"
            )
        return self

    def kube_options(self) -> dict[str, object]:
        """Keyword arguments of ``KubernetesRuntime`` from these settings."""
        return {
            "namespace": self.kube_namespace,
            "kubeconfig": str(self.kube_config) if self.kube_config else None,
            "context": self.kube_context,
            "in_cluster": self.kube_in_cluster,
            "grace_s": self.kube_grace_s,
            "volume_size_gb": self.kube_volume_size_gb,
        }

    @property
    def db_path(self) -> Path:
        return self.data_dir / "emulator.db"

    @property
    def hf_cache_dir(self) -> Path:
        """The host's Hugging Face hub cache: EMULATOR_HF_HUB_CACHE, else HF_HUB_CACHE, else
        $HF_HOME/hub, else ~/.cache/huggingface/hub (huggingface_hub's own order)."""
        if self.hf_hub_cache is not None:
            return self.hf_hub_cache.expanduser()
        if os.environ.get("HF_HUB_CACHE"):
            return Path(os.environ["HF_HUB_CACHE"]).expanduser()
        if os.environ.get("HF_HOME"):
            return Path(os.environ["HF_HOME"]).expanduser() / "hub"
        return Path("~/.cache/huggingface/hub").expanduser()

    @classmethod
    def load(cls, **overrides: object) -> Settings:
        """Environment first, then explicit overrides (flags) that are not None."""
        clean = {k: v for k, v in overrides.items() if v is not None}
        return cls(**clean)  # type: ignore[arg-type]


def default_settings_for_tests(data_dir: Path, **kw: object) -> Settings:
    """Settings with short holds, for tests that run many short-lived control planes."""
    base: dict[str, object] = dict(
        data_dir=data_dir,
        port=0,
        runtime="none",
        job_take_hold_s=5.0,
        job_stop_hold_s=5.0,
        webhook_interval_s=0.2,
    )
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


__all__ = ["Settings", "default_settings_for_tests", "Field"]

"""The environment a worker is given: RunPod's worker variables, then the endpoint's own env."""

from __future__ import annotations

from emulator.config import Settings
from emulator.models import Endpoint
from emulator.workers import ports
from emulator.workers.records import WorkerRecord


def worker_env(settings: Settings, worker_url: str, endpoint: Endpoint, worker: WorkerRecord) -> dict[str, str]:
    base = f"{worker_url.rstrip('/')}/v2/{endpoint.id}"
    env = dict(endpoint.env)
    env.update(
        {
            "RUNPOD_WEBHOOK_GET_JOB": f"{base}/job-take/$ID?gpu=local",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base}/job-done/$RUNPOD_POD_ID/$ID?gpu=local",
            "RUNPOD_WEBHOOK_POST_STREAM": f"{base}/job-stream/$RUNPOD_POD_ID/$ID?gpu=local",
            "RUNPOD_WEBHOOK_JOB_STREAM": f"{base}/job-stream/$RUNPOD_POD_ID/$ID?gpu=local",
            "RUNPOD_WEBHOOK_PING": f"{base}/ping/$RUNPOD_POD_ID?gpu=local",
            "RUNPOD_POD_ID": worker.id,
            "RUNPOD_POD_HOSTNAME": worker.id,
            "RUNPOD_AI_API_KEY": worker.token,
            "RUNPOD_ENDPOINT_ID": endpoint.id,
            "RUNPOD_PING_INTERVAL": str(max(1000, settings.ping_interval_ms)),
            "RUNPOD_GPU_COUNT": str(len(worker.gpu_ids) if worker.gpu_ids else endpoint.gpuCount),
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
            "RUNPOD_SKIP_GPU_CHECK": "true",
            "RUNPOD_DC_ID": "local",
        }
    )
    if endpoint.type == "LB":  # load-balancing: where to serve; the endpoint's env wins
        for key, value in ports.defaults(endpoint.env).items():
            env.setdefault(key, value)
    if worker.gpu_ids:
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(worker.gpu_ids)
    elif endpoint.gpuCount == 0:
        env.setdefault("NVIDIA_VISIBLE_DEVICES", "void")
    return env

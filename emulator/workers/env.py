"""The environment a worker is given: the endpoint's own env (secret references resolved), then
RunPod's worker variables, which win over the endpoint's.

RunPod's variables (docs: pods/templates/environment-variables; runpod-python ``serverless/modules``):
the worker protocol's URLs (``RUNPOD_WEBHOOK_*``), the worker's identity (``RUNPOD_POD_ID``,
``RUNPOD_POD_HOSTNAME``), its token (``RUNPOD_AI_API_KEY``), ``RUNPOD_ENDPOINT_ID``,
``RUNPOD_PING_INTERVAL``, and what the worker was given: ``RUNPOD_GPU_COUNT``, ``RUNPOD_CPU_COUNT``,
``RUNPOD_MEM_GB``, ``RUNPOD_GPU_NAME`` (with GPUs), ``RUNPOD_VOLUME_ID`` (with a network volume).
``RUNPOD_PUBLIC_IP`` is not set: RunPod gives it to pods with a public IP, and a serverless worker
has none. README "Your own handler image" lists them all with their source.
"""

from __future__ import annotations

from collections.abc import Mapping

from emulator.config import Settings
from emulator.models import Endpoint
from emulator.workers import ports, resources
from emulator.workers.records import WorkerRecord
from emulator.workers.resources import HostFacts
from emulator.workers.s3 import S3Access
from emulator.workers.secret_refs import resolve


def worker_env(
    settings: Settings,
    worker_url: str,
    endpoint: Endpoint,
    worker: WorkerRecord,
    secrets: Mapping[str, str] | None = None,
    host: HostFacts | None = None,
    s3: S3Access | None = None,
) -> dict[str, str]:
    """The worker's variables. ``secrets`` (name -> value): ``{{ RUNPOD_SECRET_name }}`` references in
    the endpoint's env are replaced (MissingSecret, a 422 InvalidInput, when one is gone); None leaves
    them as written (the env shown to a worker registered through the API). ``host``: the machine's
    CPUs and memory (default: this host's). ``s3``: the local S3 server, whose ``BUCKET_*`` variables an
    endpoint with ``localS3`` gets (unless its own env sets them)."""
    facts = host or resources.host_facts()
    base = f"{worker_url.rstrip('/')}/v2/{endpoint.id}"
    env = resolve(endpoint.env, secrets) if secrets is not None else dict(endpoint.env)
    gpu_count = len(worker.gpu_ids) if worker.gpu_ids else endpoint.gpuCount
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
            "RUNPOD_GPU_COUNT": str(gpu_count),
            "RUNPOD_CPU_COUNT": str(resources.cpu_count(endpoint, facts)),
            "RUNPOD_MEM_GB": str(resources.mem_gb(endpoint, facts)),
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
            "RUNPOD_SKIP_GPU_CHECK": "true",
            "RUNPOD_DC_ID": "local",
        }
    )
    if endpoint.type == "LB":  # load-balancing: where to serve; the endpoint's env wins
        for key, value in ports.defaults(endpoint.env).items():
            env.setdefault(key, value)
    if endpoint.localS3 and s3 is not None:
        for key, value in s3.env().items():
            env.setdefault(key, value)
    if gpu_count:
        env["RUNPOD_GPU_NAME"] = resources.gpu_name(settings)
    if endpoint.networkVolumeId:
        env["RUNPOD_VOLUME_ID"] = endpoint.networkVolumeId
    if worker.gpu_ids:
        env["NVIDIA_VISIBLE_DEVICES"] = ",".join(worker.gpu_ids)
    elif endpoint.gpuCount == 0:
        env.setdefault("NVIDIA_VISIBLE_DEVICES", "void")
    return env

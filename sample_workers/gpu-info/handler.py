"""gpu-info: reports which GPUs the worker was given.

The output holds ``nvidia-smi -L`` lines when the tool is in the container (the NVIDIA runtime
mounts it), and the variables the emulator sets: NVIDIA_VISIBLE_DEVICES, CUDA_VISIBLE_DEVICES,
RUNPOD_GPU_COUNT.
"""

import os
import shutil
import subprocess

import worker_sdk

VARIABLES = ("NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "RUNPOD_GPU_COUNT")


def nvidia_smi():
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {"available": False, "gpus": [], "error": "nvidia-smi not found"}
    try:
        done = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"available": False, "gpus": [], "error": str(exc)}
    gpus = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    error = (done.stderr.strip() or None) if done.returncode else None
    return {"available": done.returncode == 0, "gpus": gpus, "error": error}


def handler(job):
    return {"env": {name: os.environ.get(name) for name in VARIABLES}, "nvidia_smi": nvidia_smi()}


if __name__ == "__main__":
    worker_sdk.start({"handler": handler})

"""The benchmark handler: the echo sample's logic, runnable under RunPod's SDK and under worker_sdk.

The same file runs in three places in one benchmark run:

* in the emulator's worker containers on ``worker_sdk`` (image ``serverless-emulator/bench-echo``,
  built FROM the echo sample image),
* in containers on RunPod's SDK (image ``serverless-emulator/bench-runpod``, FROM the runpod-sdk sample),
* on the host as RunPod's own local test server: ``python bench/handler.py --rp_serve_api --rp_api_port P``.

``BENCH_SDK=runpod | worker_sdk`` picks the SDK; without it, ``--rp_serve_api`` means RunPod's SDK.
Input ``{"n": 1}`` makes it a no-op (it returns its input); ``{"sleep": S}`` waits first, like the echo sample.
"""

import os
import sys
import time
from typing import Any


def handler(job: dict[str, Any]) -> Any:
    job_input = job["input"]
    if isinstance(job_input, dict) and job_input.get("sleep"):
        time.sleep(float(job_input["sleep"]))
    return job_input


if __name__ == "__main__":
    sdk = os.environ.get("BENCH_SDK") or ("runpod" if "--rp_serve_api" in sys.argv else "worker_sdk")
    if sdk == "runpod":
        import runpod

        runpod.serverless.start({"handler": handler})
    else:
        import worker_sdk

        worker_sdk.start({"handler": handler})

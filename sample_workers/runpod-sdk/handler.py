"""runpod-sdk: a handler written for RunPod's own SDK, to show images made for RunPod run unmodified.

Input: {"name": "...", "sleep": S, "progress": true}. Returns a greeting and the SDK's version.
"""

import time

import runpod


def handler(job):
    job_input = job["input"]
    if job_input.get("progress"):
        runpod.serverless.progress_update(job, "halfway there")
    if job_input.get("sleep"):
        time.sleep(float(job_input["sleep"]))
    name = job_input.get("name", "world")
    return {"greeting": f"Hello, {name}!", "runpod_version": runpod.__version__}


if __name__ == "__main__":
    runpod.serverless.start({"handler": handler})

"""echo: returns its input unchanged. ``{"sleep": S}`` makes it wait S seconds first."""

import time

import worker_sdk


def handler(job):
    job_input = job["input"]
    if isinstance(job_input, dict) and job_input.get("sleep"):
        time.sleep(float(job_input["sleep"]))
    return job_input


if __name__ == "__main__":
    worker_sdk.start({"handler": handler})

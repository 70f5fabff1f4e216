"""slow: sleeps ``seconds`` in ``steps`` equal steps, sending a progress update after each."""

import time

import worker_sdk


def handler(job):
    job_input = job["input"]
    seconds = float(job_input.get("seconds", 5))
    steps = max(1, int(job_input.get("steps", 5)))
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)
        worker_sdk.progress_update(job, {"step": step, "of": steps})
    return {"slept": seconds, "steps": steps}


if __name__ == "__main__":
    worker_sdk.start({"handler": handler})

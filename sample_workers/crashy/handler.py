"""crashy: fails on demand, to exercise crash handling, restarts and back-off.

At start-up, with ``CRASH_ON_START=1``, the process exits with ``CRASH_EXIT_CODE`` (default 1)
before taking any job: a crash loop. Per job:
  {"crash": true, "exit_code": 3}  the process exits at once (os._exit) with that code (default 1)
  {"oom": true}                    allocates memory, 64 MiB at a time, until it is killed
  {"raise": "message"}             the handler raises: the job FAILS, the worker lives on
  {"sleep": S}                     waits S seconds first
Anything else: returns {"crashed": false, "input": <input>}.
"""

import os
import sys
import time

import worker_sdk

CHUNK_BYTES = 64 * 1024 * 1024


def crash_on_start():
    if os.environ.get("CRASH_ON_START") == "1":
        code = int(os.environ.get("CRASH_EXIT_CODE", "1"))
        print(f"crashy: CRASH_ON_START=1, exiting with code {code} before taking jobs", flush=True)
        os._exit(code)


def handler(job):
    job_input = job["input"] or {}
    if job_input.get("sleep"):
        time.sleep(float(job_input["sleep"]))
    if job_input.get("crash"):
        code = int(job_input.get("exit_code", 1))
        print(f"crashy: crashing on demand with exit code {code}", flush=True)
        sys.stdout.flush()
        os._exit(code)
    if job_input.get("oom"):
        hoard = []
        while True:  # b"\x01" * n writes every page, so the memory is really used
            hoard.append(b"\x01" * CHUNK_BYTES)
            print(f"crashy: holding {len(hoard) * 64} MiB", flush=True)
    if job_input.get("raise"):
        raise RuntimeError(str(job_input["raise"]))
    return {"crashed": False, "input": job_input}


if __name__ == "__main__":
    crash_on_start()
    worker_sdk.start({"handler": handler})

"""parity-probe: reports what the worker container was given, and uses it.

Input ``{"action": ...}``:

* ``report``: RunPod's variables (``RUNPOD_*`` but the token), ``/dev/shm`` size, the cgroup CPU and
  memory limits, every file under ``/runpod-volume`` (6 levels), and for ``{"secret_env": NAME}`` the
  SHA-256 of that variable (never the value).
* ``selfcheck``: ``{"missing": [...], "shm_over_64mb": bool}``: RunPod's resource variables absent, and
  whether ``/dev/shm`` is bigger than Docker's 64 MB default (the test_input.json job).
* ``shm_write`` ``{"mb": N}``: writes N MB to ``/dev/shm`` and removes it; answers the bytes written.
* ``write`` ``{"path", "text"}``: writes a file (``{pod_id}`` in the path: this worker's id); answers ok
  or the error.

Any job waits ``{"sleep": S}`` seconds first (so that concurrent jobs land on different workers).
* ``print`` ``{"lines": [...]}``: prints each line (for the endpoint-logs tests).
"""

import hashlib
import os
import time

import worker_sdk

RESOURCE_VARIABLES = ("RUNPOD_CPU_COUNT", "RUNPOD_MEM_GB", "RUNPOD_GPU_COUNT", "RUNPOD_POD_ID", "RUNPOD_ENDPOINT_ID")


def read(path):
    try:
        with open(path) as source:
            return source.read().strip()
    except OSError:
        return None


def cpu_limit():
    """CPUs the cgroup allows (quota / period), None when unlimited (cgroup v2, else v1)."""
    v2 = read("/sys/fs/cgroup/cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
    else:
        quota, period = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
    if not quota or not period or quota in ("max", "-1"):
        return None
    return int(quota) / int(period)


def memory_limit_bytes():
    """The cgroup's memory limit, None when unlimited (cgroup v2, else v1)."""
    raw = read("/sys/fs/cgroup/memory.max") or read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
    if not raw or raw == "max" or int(raw) >= 2**62:
        return None
    return int(raw)


def shm_mb():
    stats = os.statvfs("/dev/shm")
    return stats.f_blocks * stats.f_frsize // (1024 * 1024)


def tree(root, depth=6):
    found = []
    for here, dirs, files in os.walk(root):
        if here[len(root):].count("/") >= depth:
            dirs[:] = []
        found.extend(os.path.join(here, name) for name in files)
    return sorted(found)


def report(job_input):
    env = {k: v for k, v in os.environ.items() if k.startswith("RUNPOD_") and k != "RUNPOD_AI_API_KEY"}
    body = {
        "env": env,
        "shm_mb": shm_mb(),
        "cpu_limit": cpu_limit(),
        "memory_limit_bytes": memory_limit_bytes(),
        "volume_files": tree("/runpod-volume") if os.path.isdir("/runpod-volume") else None,
    }
    name = job_input.get("secret_env")
    if name:
        value = os.environ.get(name)
        body["secret_sha256"] = hashlib.sha256(value.encode()).hexdigest() if value is not None else None
    return body


def shm_write(mb):
    chunk = b"\x5a" * (1024 * 1024)
    path = "/dev/shm/parity-probe.bin"
    written = 0
    try:
        with open(path, "wb") as out:
            for _ in range(int(mb)):
                out.write(chunk)
                written += len(chunk)
            out.flush()
            os.fsync(out.fileno())
    finally:
        if os.path.exists(path):
            os.remove(path)
    return {"written_bytes": written}


def write(path, text):
    try:
        with open(path, "w") as out:
            out.write(text)
    except OSError as exc:
        return {"ok": False, "errno": exc.errno, "reason": type(exc).__name__}
    return {"ok": True}


def handler(job):
    job_input = job["input"] or {}
    action = job_input.get("action", "report")
    if job_input.get("sleep"):
        time.sleep(float(job_input["sleep"]))
    if action == "report":
        return report(job_input)
    if action == "selfcheck":
        return {"missing": [n for n in RESOURCE_VARIABLES if not os.environ.get(n)], "shm_over_64mb": shm_mb() > 64}
    if action == "shm_write":
        return shm_write(job_input.get("mb", 1024))
    if action == "write":
        path = job_input["path"].replace("{pod_id}", os.environ.get("RUNPOD_POD_ID", "unknown"))
        return write(path, job_input.get("text", ""))
    if action == "print":
        for line in job_input.get("lines", []):
            print(line, flush=True)
        return {"printed": len(job_input.get("lines", []))}
    return {"error": f"unknown action {action!r}"}


if __name__ == "__main__":
    worker_sdk.start({"handler": handler})

"""stream: a generator handler yielding ``count`` chunks, ``delay`` seconds apart.

With ``return_aggregate_stream`` the job's final output is the list of every chunk.
"""

import time

import worker_sdk


def handler(job):
    job_input = job["input"]
    count = int(job_input.get("count", 3))
    delay_s = float(job_input.get("delay", 0))
    for index in range(count):
        if index and delay_s:
            time.sleep(delay_s)
        yield {"index": index, "text": f"chunk {index + 1} of {count}"}


if __name__ == "__main__":
    worker_sdk.start({"handler": handler, "return_aggregate_stream": True})

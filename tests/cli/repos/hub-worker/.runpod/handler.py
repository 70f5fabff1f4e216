"""A Hub-style handler that checks the env the Hub test gives it (hub.json defaults, tests.json's
config.env) and answers RunPod's way: an ``error`` key in the output when something is wrong."""

import os

import runpod


def handler(job):
    job_input = job["input"]
    wrong = {
        key: os.environ.get(key)
        for key, want in job_input.get("expect_env", {}).items()
        if os.environ.get(key) != want
    }
    if wrong:
        return {"error": f"unexpected env: {wrong}"}
    if job_input.get("fail"):
        # RunPod's SDK turns a dict output's "error" key into a FAILED job; a list output stays COMPLETED,
        # and the Hub's rule (no "error" key in any dict of the list) is what fails it
        return [{"step": 1}, {"error": "asked to fail"}]
    greeting = (
        f"{os.environ.get('GREETING')}, {job_input.get('name', 'world')}{os.environ.get('PUNCTUATION')}"
    )
    return {"greeting": greeting, "mode": os.environ.get("MODE")}


runpod.serverless.start({"handler": handler})

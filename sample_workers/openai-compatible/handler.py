"""openai-compatible: answers RunPod's OpenAI passthrough like worker-vllm, without a model.

Call it with any OpenAI client at ``http://127.0.0.1:8000/v2/openai-compatible/openai/v1``. The job
input is ``{"openai_route": "/v1/...", "openai_input": <request body>}``. A generator handler with
``return_aggregate_stream``: a plain call's output is a one-element list (the emulator unwraps it); a
``"stream": true`` call yields one chunk object per token, which the emulator writes as SSE events.
The answers come from ``fake_llm.py`` beside this file.
"""

import fake_llm

import worker_sdk


def handler(job):
    route, body = fake_llm.route_and_body(job["input"])
    if route == "/v1/models":
        yield fake_llm.models()
    elif route in ("/v1/chat/completions", "/v1/completions"):
        if body.get("stream"):
            yield from fake_llm.chunks(route, body, job["id"])
        else:
            yield fake_llm.completion(route, body, job["id"])
    elif route == "/v1/embeddings":
        yield fake_llm.embeddings(body)
    else:
        yield fake_llm.not_served(route)


if __name__ == "__main__":
    worker_sdk.start({"handler": handler, "return_aggregate_stream": True})

"""openai-runpod-sdk: a worker-vllm-style handler on RunPod's own SDK (runpod==1.12.0).

An async generator, as worker-vllm's ``src/handler.py`` is: it reads ``openai_route`` and
``openai_input`` from the job input and, for ``"stream": true``, yields raw SSE text (several
``data: {...}\\n\\n`` events batched per chunk, ``data: [DONE]\\n\\n`` at the end), as worker-vllm does
with its default ``RAW_OPENAI_OUTPUT=1``; otherwise it yields the whole answer once, and
``return_aggregate_stream`` makes the job's output a one-element list. ``/v1/echo`` answers the job
input it was given, to show its shape. The answers come from ``fake_llm.py`` (shared with the
openai-compatible sample).
"""

import asyncio

import fake_llm
import runpod

BATCH = 2  # tokens per yielded chunk, like worker-vllm's DEFAULT_BATCH_SIZE batching


async def handler(job):
    job_input = job["input"]
    route, body = fake_llm.route_and_body(job_input)
    if route == "/v1/echo":
        yield {"object": "echo", "input": job_input}
    elif route == "/v1/models":
        yield fake_llm.models()
    elif route in ("/v1/chat/completions", "/v1/completions"):
        if body.get("stream"):
            first_delay_s, token_delay_s = fake_llm.delays(body)
            if first_delay_s:
                await asyncio.sleep(first_delay_s)
            pending = []
            for chunk in fake_llm.chunks(route, body, job["id"], sleep=lambda s: None):
                pending.append(fake_llm.sse(chunk))
                if len(pending) == BATCH:
                    yield "".join(pending)
                    pending = []
                    await asyncio.sleep(token_delay_s)
            yield "".join(pending) + "data: [DONE]\n\n"
        else:
            yield fake_llm.completion(route, body, job["id"])
    elif route == "/v1/embeddings":
        yield fake_llm.embeddings(body)
    else:
        yield fake_llm.not_served(route)


if __name__ == "__main__":
    runpod.serverless.start({"handler": handler, "return_aggregate_stream": True})

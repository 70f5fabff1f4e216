"""A deterministic stand-in for an LLM server (standard library only, Python >= 3.9).

It answers OpenAI's shapes for the routes RunPod's OpenAI passthrough hands a worker in
``job["input"]["openai_route"]`` (worker-vllm's convention): ``/v1/models``, ``/v1/chat/completions``,
``/v1/completions`` and ``/v1/embeddings``. A completion repeats the prompt's words (``echo: ...``),
at most ``max_tokens`` of them; an embedding is a fixed-size vector derived from the text's SHA-256.

Non-standard request fields, for tests (OpenAI clients send them with ``extra_body``):
``first_token_delay_s`` (a prefill delay before the first token) and ``token_delay_s`` (between
tokens; default ``TOKEN_DELAY_S`` from the environment, 0.02). The model ``"fail"`` makes the handler
raise, so a client sees a handler error.
"""

import hashlib
import json
import os
import time

MODEL = os.environ.get("MODEL_NAME", "emulator/echo-1")
EMBEDDING_DIM = 8
CREATED = 1_700_000_000


class HandlerFailure(RuntimeError):
    """Raised for the model "fail"."""


def route_and_body(job_input):
    """``(route, body)`` from a job input; a plain job (no ``openai_route``) is a chat completion."""
    if isinstance(job_input, dict) and "openai_route" in job_input:
        return job_input["openai_route"], job_input.get("openai_input") or {}
    return "/v1/chat/completions", job_input if isinstance(job_input, dict) else {}


def models():
    return {"object": "list", "data": [{"id": MODEL, "object": "model", "created": CREATED, "owned_by": "serverless-emulator"}]}


def _prompt_text(route, body):
    if route.endswith("/chat/completions"):
        messages = body.get("messages") or []
        user = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        content = user[-1].get("content", "") if user else ""
        if isinstance(content, list):  # content parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content)
    prompt = body.get("prompt", "")
    return prompt if isinstance(prompt, str) else " ".join(str(p) for p in prompt)


def tokens(route, body):
    """The completion's tokens: words with their trailing space, at most ``max_tokens`` (default 16)."""
    if body.get("model") == "fail":
        raise HandlerFailure("the sample worker was asked to fail (model 'fail')")
    words = ("echo: " + _prompt_text(route, body)).split()
    limit = int(body.get("max_tokens") or 16)
    picked = words[:limit]
    return [w + (" " if i < len(picked) - 1 else "") for i, w in enumerate(picked)]


def delays(body):
    """``(first_token_delay_s, token_delay_s)`` of a request."""
    first = float(body.get("first_token_delay_s", 0))
    between = float(body.get("token_delay_s", os.environ.get("TOKEN_DELAY_S", "0.02")))
    return first, between


def _usage(route, body, n):
    prompt = len(_prompt_text(route, body).split())
    return {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n}


def completion(route, body, job_id):
    """The whole answer of a chat completion or completion (``stream`` false)."""
    toks = tokens(route, body)
    text = "".join(toks)
    finish = "length" if len(toks) == int(body.get("max_tokens") or 16) else "stop"
    if route.endswith("/chat/completions"):
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "logprobs": None}
        kind = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        kind = "text_completion"
    return {"id": f"cmpl-{job_id}", "object": kind, "created": CREATED, "model": body.get("model") or MODEL,
            "choices": [choice], "usage": _usage(route, body, len(toks))}


def chunks(route, body, job_id, sleep=time.sleep):
    """The streamed answer: one chunk object per token (the first chat chunk carries the role),
    then a last chunk with ``finish_reason``; waits ``first_token_delay_s`` before the first token and
    ``token_delay_s`` between tokens."""
    toks = tokens(route, body)
    first_delay, between = delays(body)
    chat = route.endswith("/chat/completions")
    kind = "chat.completion.chunk" if chat else "text_completion"
    model = body.get("model") or MODEL

    def chunk(piece, finish=None, role=False):
        if chat:
            delta = {"role": "assistant", "content": piece} if role else ({"content": piece} if piece else {})
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": 0, "text": piece, "finish_reason": finish, "logprobs": None}
        return {"id": f"cmpl-{job_id}", "object": kind, "created": CREATED, "model": model, "choices": [choice]}

    if first_delay:
        sleep(first_delay)
    for i, tok in enumerate(toks):
        if i and between:
            sleep(between)
        yield chunk(tok, role=(i == 0))
    yield chunk("", finish="stop")


def embeddings(body):
    items = body.get("input", "")
    texts = [items] if isinstance(items, str) else [str(t) for t in items]
    data = []
    for i, text in enumerate(texts):
        digest = hashlib.sha256(text.encode()).digest()
        vector = [round(b / 255.0 * 2 - 1, 6) for b in digest[:EMBEDDING_DIM]]
        data.append({"object": "embedding", "index": i, "embedding": vector})
    n = sum(len(t.split()) for t in texts)
    return {"object": "list", "data": data, "model": body.get("model") or MODEL,
            "usage": {"prompt_tokens": n, "total_tokens": n}}


def not_served(route):
    """vLLM's error object for a route this worker does not serve (the emulator answers its code)."""
    return {"object": "error", "message": f"route {route} is not served by this worker", "type": "NotFoundError", "code": 404}


def sse(obj):
    """One server-sent event, as worker-vllm's raw output writes it."""
    return "data: " + json.dumps(obj, separators=(",", ":")) + "\n\n"

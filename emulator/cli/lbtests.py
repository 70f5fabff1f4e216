"""The request list ``serverless-emulator test --type LB`` runs against a load-balancing image, and the
rule that judges each answer (pure: no I/O).

RunPod documents no test file for load-balancing workers; their READMEs give curl requests. This file
writes those as JSON (``--requests FILE``, else ``DIR/test_requests.json``): a list, or
``{"requests": [...]}``, of

    {"name": "generate",                     # optional; default "METHOD PATH"
     "method": "POST",                       # default GET
     "path": "/generate",                    # required, starts with "/"
     "headers": {"X-Thing": "1"},            # optional
     "json": {"prompt": "Hello"},            # or "body": "raw text" (not both)
     "status": 200,                          # expected status; default: any 2xx
     "expected": {"generated_text": "..."},  # optional: the JSON answer must equal it
     "contains": "Response to",              # optional: the answer's text must contain it
     "timeout": 60000}                       # optional, ms (cold start included for the first)

Without a file the default is one request: ``GET`` of the health path, expecting 200 (the worker is
ready, and the proxy reaches it).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emulator.cli.hubtests import NOTHING, TestCase, Verdict

REQUESTS_FILE = Path("test_requests.json")
LB_TYPES = frozenset({"LB", "LOAD_BALANCER"})
QB_TYPES = frozenset({"QB", "QUEUE"})
KEYS = frozenset(
    {"name", "method", "path", "headers", "json", "body", "status", "expected", "contains", "timeout"}
)
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class HttpCase:
    """One request to send and how to judge its answer (``status`` None: any 2xx)."""

    name: str
    method: str
    path: str
    headers: dict[str, str]
    json_body: Any = NOTHING
    body: str | None = None
    status: int | None = None
    expected: Any = NOTHING
    contains: str | None = None
    timeout_s: float | None = None

    def as_test_case(self) -> TestCase:
        """The shape the reports (JUnit, job summary) take: the request as the case's ``request``."""
        request: dict[str, Any] = {"method": self.method, "path": self.path}
        if self.json_body is not NOTHING:
            request["json"] = self.json_body
        elif self.body is not None:
            request["body"] = self.body
        return TestCase(self.name, request, self.timeout_s, self.expected)


def is_lb_run(endpoint_type: str | None, requests_given: bool, folder_has_requests: bool) -> bool:
    """Whether ``test`` checks a load-balancing image: ``--type LB`` (or ``LOAD_BALANCER``); without
    ``--type``, when ``--requests`` or ``DIR/test_requests.json`` is given. Raises ValueError for an
    unknown type, or ``--requests`` with ``--type QB``."""
    if endpoint_type is None:
        return requests_given or folder_has_requests
    kind = endpoint_type.strip().upper()
    if kind in LB_TYPES:
        return True
    if kind not in QB_TYPES:
        raise ValueError(f"--type must be QB or LB (QUEUE or LOAD_BALANCER), not {endpoint_type!r}")
    if requests_given:
        raise ValueError("--requests is for load-balancing images: leave out --type QB, or use --type LB")
    return False


def default_cases(health_path: str) -> list[HttpCase]:
    """No file: ``GET health_path`` must answer 200."""
    return [HttpCase(f"GET {health_path}", "GET", health_path, {}, status=200)]


def parse_requests(data: Any, source: str) -> list[HttpCase]:
    """The cases of a request file. Raises ValueError naming the entry and field that is wrong."""
    if isinstance(data, dict) and "requests" in data:
        data = data["requests"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise ValueError(
            f'{source}: expected a list of requests (or {{"requests": [...]}}), not {type(data).__name__}'
        )
    cases = [_case(item, f"{source} request {n}") for n, item in enumerate(data, 1)]
    names = [c.name for c in cases]
    for name in names:
        if names.count(name) > 1:
            cases = [
                HttpCase(f"{c.name} #{n}", *_rest(c)) if names.count(c.name) > 1 else c
                for n, c in enumerate(cases, 1)
            ]
            break
    return cases


def _rest(c: HttpCase) -> tuple[Any, ...]:
    return (c.method, c.path, c.headers, c.json_body, c.body, c.status, c.expected, c.contains, c.timeout_s)


def _case(item: Any, where: str) -> HttpCase:
    if not isinstance(item, dict):
        raise ValueError(f'{where}: expected an object with at least "path", not {type(item).__name__}')
    unknown = sorted(set(item) - KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})")
    path = item.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"{where}: \"path\" must be a string starting with '/', not {path!r}")
    method = str(item.get("method") or "GET").upper()
    if method not in METHODS:
        raise ValueError(f'{where}: "method" must be one of {", ".join(sorted(METHODS))}, not {method!r}')
    headers = item.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ValueError(f'{where}: "headers" must be an object of strings')
    if "json" in item and "body" in item:
        raise ValueError(f'{where}: give "json" or "body", not both')
    body = item.get("body")
    if body is not None and not isinstance(body, str):
        raise ValueError(f'{where}: "body" must be a string (use "json" for JSON)')
    status = item.get("status")
    if status is not None and (
        not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599
    ):
        raise ValueError(f'{where}: "status" must be an HTTP status from 100 to 599, not {status!r}')
    contains = item.get("contains")
    if contains is not None and not isinstance(contains, str):
        raise ValueError(f'{where}: "contains" must be a string')
    timeout = item.get("timeout")
    if timeout is not None and (
        not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0
    ):
        raise ValueError(f'{where}: "timeout" must be a positive number of milliseconds, not {timeout!r}')
    return HttpCase(
        name=str(item.get("name") or f"{method} {path}"),
        method=method,
        path=path,
        headers={str(k): v for k, v in headers.items()},
        json_body=item.get("json", NOTHING),
        body=body,
        status=status,
        expected=item.get("expected", NOTHING),
        contains=contains,
        timeout_s=None if timeout is None else timeout / 1000,
    )


def judge(case: HttpCase, status: int, text: str) -> Verdict:
    """Whether an answer (``status``, body ``text``) passes ``case``: the status (any 2xx by default),
    then ``expected`` (JSON equality, with a diff) and ``contains``."""
    if case.status is not None and status != case.status:
        return Verdict(f"HTTP {status}, expected {case.status}: {text[:300]}")
    if case.status is None and not 200 <= status < 300:
        return Verdict(f"HTTP {status}, expected a 2xx answer: {text[:300]}")
    if case.expected is not NOTHING:
        try:
            got = json.loads(text)
        except ValueError:
            return Verdict(f"the answer is not JSON: {text[:300]}")
        if got != case.expected:
            diff = "\n".join(
                difflib.unified_diff(
                    _pretty(case.expected).splitlines(),
                    _pretty(got).splitlines(),
                    "expected",
                    "answer",
                    lineterm="",
                )
            )
            return Verdict("the answer differs from the expected one", diff)
    if case.contains is not None and case.contains not in text:
        return Verdict(f"the answer does not contain {case.contains!r}: {text[:300]}")
    return Verdict()


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)

"""An answer given before the body is read (413, 404, 401) reaches every client (issue #13, item 7).

Python's ``urllib`` sends the whole body before it reads the answer, and asks for ``Connection: close``:
without draining, the server closed the socket over unread bytes and the kernel reset the connection
("connection reset by peer"). ``requests`` and ``httpx`` happened to see the answer. Real HTTP over
sockets to a real control plane, the three clients on the three early answers.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import requests

from emulator.config import default_settings_for_tests
from emulator.testing import BackgroundControlPlane

KEY = "early-answer-key"
BIG = 11 * 1024 * 1024  # over /run's 10 MB limit


@pytest.fixture(scope="module")
def keyed_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundControlPlane]:
    data: Path = tmp_path_factory.mktemp("early") / "data"
    cp = BackgroundControlPlane(default_settings_for_tests(data, api_key=KEY))
    cp.start()
    try:
        r = httpx.post(
            f"{cp.client_url}/v1/endpoints",
            json={"name": "echo", "id": "echo", "imageName": "serverless-emulator/sample-echo:latest"},
            headers={"Authorization": f"Bearer {KEY}"},
        )
        assert r.status_code == 201, r.text
        yield cp
    finally:
        cp.stop()


def _body(size: int) -> bytes:
    pad = size - len(b'{"input": {"x": ""}}')
    return b'{"input": {"x": "' + b"a" * pad + b'"}}'


def with_urllib(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def with_requests(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    r = requests.post(url, data=body, headers=headers, timeout=60)
    return r.status_code, r.json()


def with_httpx(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    r = httpx.post(url, content=body, headers=headers, timeout=60)
    return r.status_code, r.json()


CLIENTS: dict[str, Callable[[str, bytes, dict[str, str]], tuple[int, dict[str, object]]]] = {
    "urllib": with_urllib,
    "requests": with_requests,
    "httpx": with_httpx,
}
AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_413_for_a_body_over_the_limit_reaches_the_client(
    keyed_plane: BackgroundControlPlane, client: str
) -> None:
    status, body = CLIENTS[client](f"{keyed_plane.client_url}/v2/echo/run", _body(BIG), AUTH)
    assert status == 413
    assert "limit" in str(body["error"]) and str(10 * 1024 * 1024) in str(body["error"])


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_404_for_an_unknown_endpoint_reaches_the_client(
    keyed_plane: BackgroundControlPlane, client: str
) -> None:
    status, body = CLIENTS[client](f"{keyed_plane.client_url}/v2/no-such-endpoint/run", _body(BIG), AUTH)
    assert status == 404
    assert "no-such-endpoint" in str(body["error"])


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_401_for_a_wrong_key_reaches_the_client(keyed_plane: BackgroundControlPlane, client: str) -> None:
    headers = {"Authorization": "Bearer wrong", "Content-Type": "application/json"}
    status, body = CLIENTS[client](f"{keyed_plane.client_url}/v2/echo/run", _body(BIG), headers)
    assert status == 401
    assert "API key" in str(body["error"])


def test_the_connection_still_serves_after_an_early_answer(keyed_plane: BackgroundControlPlane) -> None:
    """Draining keeps a kept-alive connection in step: the next request on it is answered normally."""
    with requests.Session() as session:
        r = session.post(f"{keyed_plane.client_url}/v2/echo/run", data=_body(BIG), headers=AUTH, timeout=60)
        assert r.status_code == 413
        r = session.post(
            f"{keyed_plane.client_url}/v2/echo/run", json={"input": {"n": 1}}, headers=AUTH, timeout=60
        )
        assert r.status_code == 200 and r.json()["status"] == "IN_QUEUE"

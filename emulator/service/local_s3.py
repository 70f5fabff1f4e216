"""A local S3-compatible server beside the control plane, for handlers that upload their outputs with
RunPod's ``rp_upload`` (runpod-python ``serverless/utils/rp_upload.py``: boto3 to
``BUCKET_ENDPOINT_URL`` with ``BUCKET_ACCESS_KEY_ID`` / ``BUCKET_SECRET_ACCESS_KEY``; docs:
serverless/endpoints/send-requests, ``s3Config``).

The server is moto's (``moto[server]``, the library LocalStack builds on), run in a thread on the
address workers reach the control plane at (the Docker network's gateway), started with ``serve --s3``
(``EMULATOR_S3=true``). It is the only module that imports moto; moto is an optional dependency
(``pip install 'serverless-emulator[s3]'``). Objects live in the emulator process's memory (moto's
backends are per process: control planes sharing a process, as in tests, share buckets) and go with it.

``rp_upload.upload_image`` writes to a bucket named after the month (``11-26``) that nobody created,
so a write to a bucket that does not exist creates it first (as if the user had made it). Endpoints
with ``localS3: true`` get the three ``BUCKET_*`` variables; the presigned URL a handler returns is
readable from the host, as a RunPod one is from anywhere.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from emulator.errors import EmulatorError
from emulator.workers.s3 import S3Access

INSTALL_HINT = "pip install 'serverless-emulator[s3]' (moto's S3 server)"
_WRITE_METHODS = ("PUT", "POST")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class S3Unavailable(EmulatorError):
    """The local S3 server cannot start (moto missing, the address taken)."""


def bucket_of(path: str) -> str | None:
    """The bucket a path-style request writes an object to (``/bucket/key``), else None."""
    parts = path.lstrip("/").split("/", 1)
    if len(parts) == 2 and parts[0] and parts[1]:
        return parts[0]
    return None


class CreateBucketsOnWrite:
    """WSGI middleware: before an object is written to a bucket not seen yet, the bucket is created."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.known: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        bucket = (
            bucket_of(environ.get("PATH_INFO", ""))
            if environ.get("REQUEST_METHOD") in _WRITE_METHODS
            else None
        )
        if bucket is not None:
            with self._lock:
                if bucket not in self.known:
                    self._create(environ, bucket)
                    self.known.add(bucket)
        return self.app(environ, start_response)

    def _create(self, environ: dict[str, Any], bucket: str) -> None:
        import io

        create = {
            key: value
            for key, value in environ.items()
            if key
            in (
                "SERVER_NAME",
                "SERVER_PORT",
                "HTTP_HOST",
                "HTTP_AUTHORIZATION",
                "REMOTE_ADDR",
                "SERVER_PROTOCOL",
            )
            or key.startswith("wsgi.")
        }
        create.update(
            REQUEST_METHOD="PUT",
            PATH_INFO=f"/{bucket}",
            QUERY_STRING="",
            CONTENT_LENGTH="0",
            CONTENT_TYPE="",
            SCRIPT_NAME="",
        )
        create["wsgi.input"] = io.BytesIO(b"")
        for _chunk in self.app(create, lambda *_args, **_kw: None):
            pass  # 200 created, or 409 BucketAlreadyOwnedByYou: either way it exists


class LocalS3:
    """moto's S3 server in a thread. ``start(host, port)`` answers the URL workers are given."""

    def __init__(self, access_key_id: str, secret_access_key: str) -> None:
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self, host: str, port: int = 0, url: str | None = None) -> S3Access:
        """Listen on ``host:port`` (0: a free port); S3Unavailable naming the fix when it cannot."""
        try:
            from moto.moto_server.werkzeug_app import (
                DomainDispatcherApplication,
                MotoRequestHandler,
                create_backend_app,
            )
            from werkzeug.serving import make_server
        except ImportError as exc:
            raise S3Unavailable(f"the local S3 server needs moto: {INSTALL_HINT} ({exc})") from exc

        class QuietHandler(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                """No access log line per request (the control plane logs what matters)."""

        app = CreateBucketsOnWrite(DomainDispatcherApplication(create_backend_app))
        try:
            self._server = make_server(host, port, app, threaded=True, request_handler=QuietHandler)
        except OSError as exc:
            raise S3Unavailable(
                f"the local S3 server cannot listen on {host}:{port}: {exc.strerror}"
            ) from exc
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-s3", daemon=True)
        self._thread.start()
        bound_port = self._server.server_address[1]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return S3Access(url or f"http://{shown}:{bound_port}", self.access_key_id, self.secret_access_key)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

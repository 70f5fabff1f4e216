"""The floor's container side: bench/handler.py's handler behind a bare HTTP/1.1 server (standard library).

Run inside the bench-echo image (``python3 -c <this file's text> PORT``, working dir /app, where
``bench_handler.py`` is): ``POST /runsync`` with a RunPod job body answers
``{"id", "status": "COMPLETED", "output"}`` with the handler's output, on a keep-alive connection. No
framework, no store, no queue: what is left is the cost of HTTP and of the Docker bridge network.
"""

import importlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

handler = importlib.import_module("bench_handler").handler


class Floor(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the emulator's clients and workers
    disable_nagle_algorithm = True  # one small answer per request: never wait for a delayed ACK

    def do_POST(self) -> None:  # the name http.server calls
        size = int(self.headers.get("Content-Length") or 0)
        job: dict[str, Any] = json.loads(self.rfile.read(size) or b"{}")
        output = handler({"id": "floor", "input": job.get("input")})
        body = json.dumps({"id": "floor", "status": "COMPLETED", "output": output}).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        self.wfile.write(head.encode() + body)  # one write: status line, headers and body together

    def log_message(self, format: str, *args: Any) -> None:  # the base class names it so
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Floor).serve_forever()

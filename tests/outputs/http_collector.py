"""A local HTTP(S) server that records the requests it gets, for the http channel's tests."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Collector:
    """A local HTTP(S) server that records requests and answers `status` (changeable)."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        self.statuses: list[int] = []        # answers to use first, in order
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                peer = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
                owner.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                       "peer": peer})
                status = owner.statuses.pop(0) if owner.statuses else owner.status
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if context is not None:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def bodies(self) -> list[bytes]:
        return [r["body"] for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

"""HTTP/1.1 for the sensor's servers: read one request's head within a small budget, frame its
body, answer.

Written instead of using http.server, whose header parser accepts 100 lines of
64 KiB each (6.5 MB per connection before anyone is authenticated) and whose Content-Length
handling raises on values such as `²` (str.isdigit() is true for it, int() refuses it). Here:
the request line and headers together fit in MAX_HEAD_BYTES or the answer is 431; framing
(Content-Length, Transfer-Encoding) is checked strictly as RFC 9112 §6 says, and a request with
both is refused, since the two could disagree about where it ends; every refusal is an HttpError
carrying the status to answer with.
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO

MAX_HEAD_BYTES = 16 * 1024          # request line plus headers: kube-apiserver sends well under 2 KiB
MAX_HEADERS = 64
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_REQUEST_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (\S+) HTTP/(1\.[01])\r?\n")
_LENGTH = re.compile(r"[0-9]{1,15}")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?\r?\n")
REASONS = {100: "Continue", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 411: "Length Required", 413: "Content Too Large",
           415: "Unsupported Media Type", 431: "Request Header Fields Too Large", 501: "Not Implemented",
           500: "Internal Server Error", 503: "Service Unavailable", 505: "HTTP Version Not Supported"}


class HttpError(Exception):
    """A request refused before its handler saw it: the status and the reason to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Incomplete(Exception):
    """The connection ended (or was cut off at its deadline) in the middle of a request."""


@dataclass
class Request:
    """One request's head. Header names are lower-case; a repeated header is joined with ", "."""

    method: str
    target: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)
    content_length: int | None = None
    chunked: bool = False

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def keep_alive(self) -> bool:
        conn = self.headers.get("connection", "").lower()
        if self.version == "1.0":
            return "keep-alive" in conn
        return "close" not in conn


def read_request(rfile: BinaryIO) -> Request | None:
    """The next request's head, or None when the client closed the connection between requests.

    HttpError for a head that is malformed, too large or badly framed; Incomplete when the
    connection ends part-way.
    """
    budget = MAX_HEAD_BYTES
    line = rfile.readline(budget + 1)
    if line in (b"\r\n", b"\n"):            # RFC 9112 §2.2: one empty line before a request is allowed
        line = rfile.readline(budget + 1)
    if not line:
        return None
    budget -= len(line)
    if budget < 0:
        raise HttpError(431, f"the request line is longer than {MAX_HEAD_BYTES} bytes")
    if not line.endswith(b"\n"):
        raise Incomplete()
    m = _REQUEST_LINE.fullmatch(line)
    if m is None:
        if re.fullmatch(rb"\S+ \S+ HTTP/\d\.\d\r?\n", line):
            raise HttpError(505, "only HTTP/1.1 is served")
        raise HttpError(400, "malformed request line")
    req = Request(m.group(1).decode("ascii"), m.group(2).decode("latin-1"), m.group(3).decode("ascii"))
    count = 0
    while True:
        line = rfile.readline(budget + 1)
        budget -= len(line)
        if budget < 0:
            raise HttpError(431, f"the request's headers are longer than {MAX_HEAD_BYTES} bytes")
        if not line.endswith(b"\n"):
            raise Incomplete()
        if line in (b"\r\n", b"\n"):
            break
        count += 1
        if count > MAX_HEADERS:
            raise HttpError(431, f"more than {MAX_HEADERS} header fields")
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            # Also obs-fold (a line starting with a blank), which RFC 9112 §5.2 lets a server refuse.
            raise HttpError(400, "malformed header field")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t\r\n").decode("latin-1")
        req.headers[key] = f"{req.headers[key]}, {text}" if key in req.headers else text
    _framing(req)
    return req


def _framing(req: Request) -> None:
    """Where the body ends (RFC 9112 §6.3), or HttpError."""
    te = req.headers.get("transfer-encoding")
    cl = req.headers.get("content-length")
    if te is not None:
        if cl is not None:
            raise HttpError(400, "both Transfer-Encoding and Content-Length: send one")
        if te.strip().lower() != "chunked":
            raise HttpError(501, f"Transfer-Encoding {te!r} is not supported; send Content-Length or chunked")
        req.chunked = True
        return
    if cl is None:
        return
    values = {v.strip() for v in cl.split(",")}
    if len(values) != 1 or not _LENGTH.fullmatch(next(iter(values))):
        raise HttpError(400, f"Content-Length {cl[:40]!r} is not a number of bytes")
    req.content_length = int(next(iter(values)))


def read_body(rfile: BinaryIO, req: Request, limit: int) -> bytes:
    """The request's body (Content-Length or chunked), at most `limit` bytes.

    HttpError 413 when a chunked body grows past `limit`, 400 for malformed chunks; Incomplete
    when the connection ends first.
    """
    if not req.chunked:
        n = req.content_length or 0
        body = rfile.read(n)
        if len(body) != n:
            raise Incomplete()
        return body
    parts: list[bytes] = []
    total = 0
    while True:
        line = rfile.readline(1026)
        if not line.endswith(b"\n"):
            raise Incomplete() if len(line) < 1026 else HttpError(400, "malformed chunk size line")
        m = _CHUNK_SIZE.fullmatch(line)
        if m is None:
            raise HttpError(400, "malformed chunk size line")
        size = int(m.group(1), 16)
        if size == 0:
            break
        total += size
        if total > limit:
            raise HttpError(413, f"chunked body of more than {limit} bytes")
        chunk = rfile.read(size)
        if len(chunk) != size:
            raise Incomplete()
        end = rfile.readline(3)
        if end not in (b"\r\n", b"\n"):
            raise Incomplete() if not end.endswith(b"\n") and len(end) < 3 else HttpError(400, "malformed chunk")
        parts.append(chunk)
    trailers = MAX_HEAD_BYTES
    while True:                          # trailer fields up to the blank line
        t = rfile.readline(trailers + 1)
        trailers -= len(t)
        if trailers < 0:
            raise HttpError(431, "trailer fields too long")
        if not t.endswith(b"\n"):
            raise Incomplete()
        if t in (b"\r\n", b"\n"):
            return b"".join(parts)


def response(code: int, body: dict[str, Any] | bytes | None, headers: dict[str, str] | None = None,
             close: bool = False, server: str = "falconet", content_type: str = "application/json",
             head_only: bool = False) -> bytes:
    """One whole answer as bytes: status line, headers, and the body (a dict is sent as JSON).
    `head_only`: the answer to a HEAD request (the headers of the GET, no body)."""
    if isinstance(body, dict):
        data = json.dumps(body, separators=(",", ":")).encode() + b"\n"
    else:
        data = body or b""
    lines = [f"HTTP/1.1 {code} {REASONS.get(code, 'Status')}", f"Server: {server}",
             f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime())}"]
    if code != 100:
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(data)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else data)


LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20


def linger(sock: socket.socket) -> None:
    """Read and discard what the client is still sending before closing, briefly.

    Closing a socket with unread data makes the kernel reset the connection, and the reset can
    destroy our answer (a 413) before the client reads it.
    """
    try:
        socket.socket.shutdown(sock, socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        left = LINGER_BYTES
        while left > 0 and (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            chunk = sock.recv(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)
    except (OSError, ValueError):
        pass

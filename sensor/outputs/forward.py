"""The client side of Fluentd's forward protocol v1, the parts fluent-logger does not have.

(https://github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1.) fluent-logger gives us
the msgpack framing and `EventTime`; this module adds what delivery without loss needs:

- the optional handshake: the server sends `["HELO", {nonce, auth, keepalive}]`, the client answers
  `["PING", self_hostname, salt, sha512_hex(salt + self_hostname + nonce + shared_key), username,
  sha512_hex(auth + username + password)]`, the server replies `["PONG", ok, reason, its hostname,
  sha512_hex(salt + its hostname + nonce + shared_key)]`, which the client checks in turn;
- PackedForward batches `[tag, <msgpack stream of [EventTime, record]>, {"chunk", "size"}]`
  (CompressedPackedForward with `"compressed": "gzip"`), each waiting for the server's
  `{"ack": chunk}` before the next, so a batch counts as delivered only once Fluentd has it;
- TLS (and client certificates) around all of it.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import os
import select
import socket
import ssl
import threading
import time
from typing import Any

import msgpack
from fluent.sender import EventTime


class ForwardError(Exception):
    """The connection, the handshake or the acknowledgement failed."""


def shared_key_digest(salt: bytes, hostname: str, nonce: bytes, shared_key: str) -> str:
    """sha512_hex(salt + hostname + nonce + shared_key), as both sides of the handshake compute it."""
    return hashlib.sha512(salt + hostname.encode() + nonce + shared_key.encode()).hexdigest()


def pack_entry(time_ns: int, record: dict[str, Any]) -> bytes:
    """One PackedForward entry: msgpack `[EventTime, record]` (always EventTime: nanoseconds, and
    no ambiguity between integer and float times on the Fluentd side)."""
    return msgpack.packb([EventTime.from_unix_nano(time_ns), record], use_bin_type=True, default=str)


# What to check for each reason in_forward's check_ping gives (in_forward.rb).
_REFUSALS = {
    "shared_key mismatch": "check fluent_output.shared_key against the shared_key of Fluentd's "
                           "<security> section",
    "username/password mismatch": "Fluentd's <security> has user_auth on: set fluent_output.username "
                                  "and fluent_output.password to one of its <user> sections",
}
_REFUSED_OTHER = "check fluent_output.shared_key, username and password against Fluentd's <security>"


def _as_bytes(v: Any) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode()


class ForwardConnection:
    """One connection to a forward-protocol server; `send_chunk` returns once the chunk is acked."""

    def __init__(self, host: str, port: int, *, tls: ssl.SSLContext | None = None,
                 server_name: str = "", shared_key: str = "", self_hostname: str = "",
                 username: str = "", password: str = "", connect_timeout: float = 10.0,
                 ack_timeout: float = 60.0) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.server_name = server_name or host
        self.shared_key = shared_key
        self.self_hostname = self_hostname or socket.gethostname()
        self.username = username
        self.password = password
        self.connect_timeout = connect_timeout
        self.ack_timeout = ack_timeout
        self.keepalive = True
        self._sock: socket.socket | None = None
        self._unpacker = msgpack.Unpacker(raw=False)
        # Held by the thread doing I/O; a close from another thread only cuts the socket.
        self._io = threading.RLock()

    @property
    def peer(self) -> str:
        return f"{'tls://' if self.tls else ''}{self.host}:{self.port}"

    # -- connecting ------------------------------------------------------------------------------

    def connect(self) -> None:
        with self._io:
            self._connect()

    def _connect(self) -> None:
        self.close()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as e:
            raise ForwardError(f"{self.peer}: cannot connect: {e.strerror or e}") from e
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.server_name)
        except (OSError, ssl.SSLError) as e:
            sock.close()
            raise ForwardError(f"{self.peer}: TLS handshake failed: {e}") from e
        self._sock = sock
        self._unpacker = msgpack.Unpacker(raw=False)
        self.keepalive = True
        if self.shared_key:
            try:
                self._handshake()
            except BaseException:
                self.close()
                raise

    def _handshake(self) -> None:
        helo = self._read(self.connect_timeout, "HELO")
        if not (isinstance(helo, list) and len(helo) == 2 and helo[0] == "HELO"
                and isinstance(helo[1], dict)):
            raise ForwardError(f"{self.peer}: expected HELO from the server, got {helo!r:.80}")
        options = helo[1]
        nonce = _as_bytes(options.get("nonce", b""))
        auth = _as_bytes(options.get("auth", b""))
        self.keepalive = bool(options.get("keepalive", True))
        salt = os.urandom(16).hex().encode()
        ping = ["PING", self.self_hostname, salt,
                shared_key_digest(salt, self.self_hostname, nonce, self.shared_key)]
        # in_forward sends an `auth` salt whenever <security> is on, with user_auth or without;
        # like Fluentd's own out_forward (handshake_protocol.rb generate_ping), answer it with our
        # user name, possibly empty, and its digest: a server without user_auth does not look at them.
        if auth:
            ping += [self.username, hashlib.sha512(auth + self.username.encode() +
                                                   self.password.encode()).hexdigest()]
        else:
            ping += ["", ""]
        self._write(msgpack.packb(ping, use_bin_type=True))
        pong = self._read(self.connect_timeout, "PONG")
        if not (isinstance(pong, list) and len(pong) == 5 and pong[0] == "PONG"):
            raise ForwardError(f"{self.peer}: expected PONG from the server, got {pong!r:.80}")
        _, ok, reason, server_hostname, digest = pong
        if not ok:
            raise ForwardError(f"{self.peer}: the server refused the handshake: {reason} "
                               f"({_REFUSALS.get(str(reason), _REFUSED_OTHER)})")
        if server_hostname == self.self_hostname:
            raise ForwardError(f"{self.peer}: the server's self_hostname equals ours "
                               f"({server_hostname!r}); set a different fluent_output.self_hostname")
        if digest != shared_key_digest(salt, str(server_hostname), nonce, self.shared_key):
            raise ForwardError(f"{self.peer}: the server's PONG does not prove it knows the shared key")

    # -- sending ---------------------------------------------------------------------------------

    def usable(self) -> bool:
        """True when connected and the server has not closed (or written to) the connection."""
        sock = self._sock
        if sock is None:
            return False
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable       # an idle server says nothing: readable means EOF or junk

    def send_chunk(self, tag: str, entries: list[bytes], compress: bool = False) -> None:
        """Send one PackedForward chunk and wait for its ack; ForwardError on any failure."""
        with self._io:
            self._send_chunk(tag, entries, compress)

    def _send_chunk(self, tag: str, entries: list[bytes], compress: bool) -> None:
        if not self.usable():
            self._connect()
        chunk_id = base64.b64encode(os.urandom(16)).decode()
        body = b"".join(entries)
        option: dict[str, Any] = {"chunk": chunk_id, "size": len(entries)}
        if compress:
            body = gzip.compress(body)
            option["compressed"] = "gzip"
        self._write(msgpack.packb([tag, body, option], use_bin_type=True))
        reply = self._read(self.ack_timeout, "ack")
        if isinstance(reply, list) and reply and reply[0] == "HELO":
            self.close()
            raise ForwardError(f"{self.peer}: the server requires the shared-key handshake; set "
                               f"fluent_output.shared_key")
        if not isinstance(reply, dict) or reply.get("ack") != chunk_id:
            self.close()
            raise ForwardError(f"{self.peer}: expected the ack of chunk {chunk_id}, got {reply!r:.80}")
        if not self.keepalive:
            self.close()

    def _write(self, data: bytes) -> None:
        assert self._sock is not None
        try:
            self._sock.settimeout(self.ack_timeout)
            self._sock.sendall(data)
        except (OSError, ssl.SSLError) as e:
            self.close()
            raise ForwardError(f"{self.peer}: send failed: {e}") from e

    def _read(self, timeout: float, what: str) -> Any:
        sock = self._sock
        assert sock is not None
        deadline = time.monotonic() + timeout
        while True:
            for obj in self._unpacker:
                return obj
            left = deadline - time.monotonic()
            if left <= 0:
                self.close()
                raise ForwardError(f"{self.peer}: no {what} within {timeout:g}s")
            try:
                sock.settimeout(left)
                data = sock.recv(65536)
            except TimeoutError:
                continue
            except (OSError, ssl.SSLError) as e:
                self.close()
                raise ForwardError(f"{self.peer}: connection lost waiting for {what}: {e}") from e
            if not data:
                self.close()
                raise ForwardError(f"{self.peer}: connection closed by the server before {what}")
            self._unpacker.feed(data)

    def close(self) -> None:
        """Close the connection; with TLS, end the session with close_notify first (in_forward logs
        "unexpected ssl error ... unexpected eof" for a TLS peer that just goes away).

        Called from another thread while a send is in progress (a channel aborting a send that
        hangs), it only cuts the socket under that send, which then fails and closes it itself.
        """
        if not self._io.acquire(blocking=False):
            sock = self._sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
            return
        try:
            sock, self._sock = self._sock, None
            if sock is None:
                return
            if isinstance(sock, ssl.SSLSocket):
                # Sends close_notify and waits (briefly) for the server's.
                with contextlib.suppress(OSError, ValueError):
                    sock.settimeout(min(1.0, self.connect_timeout))
                    sock.unwrap()
            with contextlib.suppress(OSError):
                sock.close()
        finally:
            self._io.release()

"""A forward-protocol server for tests that decodes what it receives as Fluentd's in_forward does.

It follows in_forward (lib/fluent/plugin/in_forward.rb) and the forward protocol v1 specification:
- the stream is msgpack (or JSON when the first byte is `{` or `[` and no handshake is required);
- `[tag, time, record, option?]` is Message, `[tag, [[time, record], ...], option?]` is Forward,
  `[tag, <bin/str msgpack stream of [time, record]>, option?]` is PackedForward, and with
  `option["compressed"] == "gzip"` CompressedPackedForward (concatenated gzip members allowed);
- a time is an integer, a float, or EventTime (msgpack ext type 0: big-endian uint32 seconds and
  uint32 nanoseconds; any other length is an error); 0 or nil means "now";
- `option["chunk"]` is answered with `{"ack": chunk}` after the chunk's events were taken;
- with a shared key it sends `["HELO", {nonce, auth, keepalive}]` on accept, checks the client's
  `["PING", hostname, salt, sha512_hex(salt + hostname + nonce + key), user, pass_digest]`, and
  answers `["PONG", ok, reason, self_hostname, sha512_hex(salt + self_hostname + nonce + key)]`.

Tests can stop it (every connection is cut) and start it again on the same port, and make it cut
the connection after receiving a chunk without acknowledging it (`cut_before_ack`), as a Fluentd
that crashes mid-chunk would.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import msgpack


@dataclass(frozen=True)
class EventTime:
    """A decoded EventTime (ext type 0)."""

    seconds: int
    nanoseconds: int

    @property
    def ns(self) -> int:
        return self.seconds * 1_000_000_000 + self.nanoseconds


@dataclass
class Received:
    tag: str
    time: Any                 # EventTime, int or float, as sent
    record: dict[str, Any]
    mode: str                 # Message, Forward, PackedForward, CompressedPackedForward
    chunk: str | None


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0:
        if len(data) != 8:
            raise ValueError(f"EventTime must be 8 bytes, got {len(data)}")
        return EventTime(*struct.unpack(">II", data))
    return msgpack.ExtType(code, data)


def _unpacker() -> msgpack.Unpacker:
    # Ruby keeps str and bin alike as String; surrogateescape lets a bin-in-str payload round-trip.
    return msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", ext_hook=_ext_hook,
                            strict_map_key=False)


def _raw(v: Any) -> bytes:
    return v.encode("utf-8", "surrogateescape") if isinstance(v, str) else bytes(v)


@dataclass
class ForwardReceiver:
    """in_forward for tests; `received` holds every event in arrival order."""

    host: str = "127.0.0.1"
    port: int = 0
    shared_key: str | None = None
    self_hostname: str = "fake-fluentd"
    users: dict[str, str] = field(default_factory=dict)       # user auth: username -> password
    tls: ssl.SSLContext | None = None
    keepalive: bool = True
    received: list[Received] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    connections: int = 0
    handshakes: int = 0
    cut_before_ack: int = 0          # cut the connection instead of acking the next N chunks

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._accept_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> ForwardReceiver:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self._listener = sock
        self._accept_thread = threading.Thread(target=self._accept, args=(sock,), daemon=True)
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every connection (Fluentd going down)."""
        sock, self._listener = self._listener, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                c.close()

    def __enter__(self) -> ForwardReceiver:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    # -- queries ---------------------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.record for r in self.received]

    def wait_for(self, predicate: Any, timeout: float) -> bool:
        """Wait until predicate(self) is true."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.2))
            return True

    # -- serving ---------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if self.tls is not None:
                try:
                    conn.settimeout(10)
                    conn = self.tls.wrap_socket(conn, server_side=True)
                    conn.settimeout(None)
                except (OSError, ssl.SSLError) as e:
                    self._error(f"TLS handshake: {e}")
                    conn.close()
                    continue
            with self._lock:
                self._conns.add(conn)
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)
            self._lock.notify_all()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._session(conn)
        except (OSError, ssl.SSLError):
            pass
        except Exception as e:        # a protocol violation: record it, close like in_forward
            self._error(f"{type(e).__name__}: {e}")
        finally:
            with self._lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _session(self, conn: socket.socket) -> None:
        nonce = auth_salt = b""
        established = self.shared_key is None
        if not established:
            nonce, auth_salt = os.urandom(16), os.urandom(16) if self.users else b""
            conn.sendall(msgpack.packb(["HELO", {"nonce": nonce, "auth": auth_salt,
                                                 "keepalive": self.keepalive}], use_bin_type=True))
        first = conn.recv(65536)
        if not first:
            return
        if established and first[:1] in (b"{", b"["):
            self._json_session(conn, first)
            return
        unpacker = _unpacker()
        unpacker.feed(first)
        while True:
            for msg in unpacker:
                if not established:
                    ok, reason, salt = self._check_ping(msg, nonce, auth_salt)
                    if not ok:
                        conn.sendall(msgpack.packb(["PONG", False, reason, "", ""], use_bin_type=True))
                        self._error(f"handshake refused: {reason}")
                        return
                    digest = hashlib.sha512(salt + self.self_hostname.encode() + nonce +
                                            self.shared_key.encode()).hexdigest()   # type: ignore[union-attr]
                    conn.sendall(msgpack.packb(["PONG", True, "", self.self_hostname, digest],
                                               use_bin_type=True))
                    established = True
                    with self._lock:
                        self.handshakes += 1
                    continue
                option = self._on_message(msg)
                if option and option.get("chunk"):
                    with self._lock:
                        cut = self.cut_before_ack > 0
                        if cut:
                            self.cut_before_ack -= 1
                    if cut:
                        return
                    with self._lock:
                        self.acked.append(option["chunk"])
                        self._lock.notify_all()
                    conn.sendall(msgpack.packb({"ack": option["chunk"]}, use_bin_type=True))
                if not self.keepalive:
                    return
            data = conn.recv(65536)
            if not data:
                return
            unpacker.feed(data)

    def _json_session(self, conn: socket.socket, data: bytes) -> None:
        decoder = json.JSONDecoder()
        buf = data.decode()
        while True:
            buf = buf.lstrip()
            while buf:
                try:
                    msg, end = decoder.raw_decode(buf)
                except json.JSONDecodeError:
                    break
                buf = buf[end:].lstrip()
                option = self._on_message(msg)
                if option and option.get("chunk"):
                    conn.sendall(json.dumps({"ack": option["chunk"]}).encode())
            more = conn.recv(65536)
            if not more:
                return
            buf += more.decode()

    def _check_ping(self, msg: Any, nonce: bytes, auth_salt: bytes) -> tuple[bool, str, bytes]:
        if not (isinstance(msg, list) and len(msg) == 6 and msg[0] == "PING"):
            return False, "invalid ping message", b""
        _, hostname, salt, digest, username, password_digest = msg
        salt = _raw(salt)
        expected = hashlib.sha512(salt + str(hostname).encode() + nonce +
                                  self.shared_key.encode()).hexdigest()   # type: ignore[union-attr]
        if digest != expected:
            return False, "shared_key mismatch", b""
        if self.users:
            password = self.users.get(str(username))
            ok = password is not None and hashlib.sha512(
                auth_salt + str(username).encode() + password.encode()).hexdigest() == password_digest
            if not ok:
                return False, "username/password mismatch", b""
        return True, "", salt

    def _on_message(self, msg: Any) -> dict[str, Any] | None:
        if msg is None:
            return None                      # heartbeat
        if not isinstance(msg, list) or len(msg) < 2:
            raise ValueError(f"incoming chunk is broken: {msg!r:.100}")
        tag, entries = str(msg[0]), msg[1]
        out: list[Received] = []
        if isinstance(entries, (bytes, str)):
            option = msg[2] if len(msg) > 2 else None
            raw = _raw(entries)
            mode = "PackedForward"
            if option and option.get("compressed") == "gzip":
                raw, mode = gzip.decompress(raw), "CompressedPackedForward"
            chunk = option.get("chunk") if option else None
            unpacker = _unpacker()
            unpacker.feed(raw)
            events = list(unpacker)
            if option and option.get("size") not in (None, len(events)):
                raise ValueError(f"chunk {chunk}: size option {option['size']} but {len(events)} events")
            for e in events:
                out.append(Received(tag, self._time(e[0]), e[1], mode, chunk))
        elif isinstance(entries, list):
            option = msg[2] if len(msg) > 2 else None
            chunk = option.get("chunk") if option else None
            for e in entries:
                if e[1] is not None:
                    out.append(Received(tag, self._time(e[0]), e[1], "Forward", chunk))
        else:
            option = msg[3] if len(msg) > 3 else None
            if msg[2] is not None:
                out.append(Received(tag, self._time(msg[1]), msg[2], "Message",
                                    option.get("chunk") if option else None))
        for r in out:
            if not isinstance(r.record, dict):
                raise ValueError(f"record is not a map: {r.record!r:.100}")
        with self._lock:
            self.received.extend(out)
            self._lock.notify_all()
        return option

    @staticmethod
    def _time(t: Any) -> Any:
        if t is None or t == 0:
            return time.time()
        if isinstance(t, (EventTime, int, float)):
            return t
        raise ValueError(f"invalid time {t!r}")

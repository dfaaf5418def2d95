"""A forward-protocol server for tests that behaves as Fluentd's in_forward (v1.16/1.19) does.

Written from fluent/fluentd's sources, which it follows wherever a client can tell the difference:
- lib/fluent/plugin/in_forward.rb: `handle_connection`, `read_messages`, `on_message`, `response`,
  `generate_helo`, `check_ping`, `generate_pong`, and the configuration checks of `configure`;
- lib/fluent/plugin_helper/server.rb (`EventHandler::TLSServer`), cert_option.rb and tls.rb: what
  a `<transport tls>` server accepts;
- lib/fluent/plugin/out_forward/handshake_protocol.rb: how Fluentd's own client answers, which is
  the reference our client must match;
- the Forward Protocol Specification v1 (fluent/fluentd wiki).

What it does, as in_forward does:
- With `<security>` on, it sends `["HELO", {"nonce", "auth", "keepalive"}]` the moment a connection
  is up (after the TLS handshake), with a fresh 16-byte `nonce` and a fresh 16-byte `auth` salt
  (binary strings) whether or not `user_auth` is on (`generate_helo`: `auth` is the salt whenever
  `@security` is set). The first message must be `["PING", hostname, salt,
  sha512_hex(salt + hostname + nonce + shared_key), username, password_digest]`, six elements;
  hostname and salt must be strings (Ruby's Digest refuses anything else and the connection is
  dropped). With `user_auth` the password digest must be sha512_hex(auth + username + password)
  of a configured user; without it, username and password digest are not looked at. The answer is
  `["PONG", true, "", self_hostname, sha512_hex(salt + self_hostname + nonce + shared_key)]`, or
  `["PONG", false, reason, "", ""]` followed by closing the connection.
- The stream is msgpack, or JSON when the first byte is `{` or `[`. This model refuses JSON on a
  secured session (in_forward's comment says such a session MUST use msgpack).
- `[tag, time, record, option?]` is Message, `[tag, [[time, record], ...], option?]` Forward,
  `[tag, <str/bin msgpack stream of [time, record]>, option?]` PackedForward, CompressedPackedForward
  with `option["compressed"] == "gzip"`. A time is an integer, a float or EventTime (ext type 0, 8
  bytes); 0 or nil means now. A record that is nil is skipped; a Message whose record is nil gets
  no ack even when it carries a chunk option (`return if record.nil?` comes before the option).
- `{"ack": chunk}` is written after the events were emitted, only when the option is a map with a
  `chunk`, in the serialization the client used (a str chunk id comes back as str). A chunk larger
  than `chunk_size_limit` is dropped without an ack. With `deny_keepalive` the connection is closed
  after the first message's answer (and HELO says `keepalive: false`).
- Server sockets close with SO_LINGER 0 (`linger_timeout` defaults to 0 for servers), so a close
  is a reset.
- `<transport tls>`: `version TLSv1_2` by default, which tls.rb turns into min = max = TLS 1.2; the
  certificate chain comes from `cert_path` (PEM blocks with LF line ends, first is the leaf), the key
  from `private_key_path` (any type OpenSSL reads; `private_key_passphrase`); `client_cert_auth`
  requires a client certificate signed by `ca_path`. A peer that closes without TLS close_notify
  makes Fluentd log "close socket due to unexpected ssl error: ... unexpected eof while reading":
  that, like every protocol violation, is recorded in `errors`, which tests expect to stay empty.

It is at least as strict as in_forward: where Fluentd would log a warning and carry on with
something our client should never send (a non-map record, a time that is not a time, a `size`
option that does not match the entries), this model records an error and drops the connection.

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
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack


class FluentdConfigError(ValueError):
    """A configuration in_forward refuses at start (Fluent::ConfigError), or one this model lacks."""


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


@dataclass
class Security:
    """in_forward's `<security>` section (self_hostname and shared_key have no default there)."""

    shared_key: str
    self_hostname: str
    user_auth: bool = False
    users: dict[str, str] = field(default_factory=dict)      # <user> username -> password


# tls.rb: version names to protocol versions; TLSv1_3 only where OpenSSL has it.
_TLS_VERSIONS = {"TLSv1_1": ssl.TLSVersion.TLSv1_1, "TLS1_1": ssl.TLSVersion.TLSv1_1,
                 "TLSv1_2": ssl.TLSVersion.TLSv1_2, "TLS1_2": ssl.TLSVersion.TLSv1_2,
                 "TLSv1_3": ssl.TLSVersion.TLSv1_3, "TLS1_3": ssl.TLSVersion.TLSv1_3}
CIPHERS_DEFAULT = "ALL:!aNULL:!eNULL:!SSLv2"
# cert_option.rb cert_option_certificates_from_file: only LF-terminated PEM blocks count.
_PEM_CERT = re.compile(r"-+BEGIN CERTIFICATE-+\n(?:[^-]*\n)+-+END CERTIFICATE-+\n")


@dataclass
class TlsTransport:
    """`<transport tls>` of the server plugin helper (server.rb ServerTransportParams)."""

    cert_path: str | None = None
    private_key_path: str | None = None
    private_key_passphrase: str | None = None
    ca_path: str | None = None
    client_cert_auth: bool = False
    version: str = "TLSv1_2"
    min_version: str | None = None
    max_version: str | None = None
    ciphers: str = CIPHERS_DEFAULT

    def context(self) -> ssl.SSLContext:
        """The server context cert_option_create_context builds, or FluentdConfigError as configure raises."""
        if not self.cert_path:
            raise FluentdConfigError("no valid cert options configured. specify either 'cert_path', "
                                     "'ca_cert_path' or 'insecure'")
        if not self.private_key_path:
            raise FluentdConfigError("private_key_path is required when cert_path is specified")
        if (self.min_version is None) != (self.max_version is None):
            raise FluentdConfigError("When you set min_version, must set max_version together")
        for v in (self.version, self.min_version, self.max_version):
            if v is not None and v not in _TLS_VERSIONS:
                raise FluentdConfigError(f"valid options are {','.join(_TLS_VERSIONS)} but got {v}")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _TLS_VERSIONS[self.min_version or self.version]
        ctx.maximum_version = _TLS_VERSIONS[self.max_version or self.version]
        ctx.set_ciphers(CIPHERS_DEFAULT if self.ciphers == CIPHERS_DEFAULT else self.ciphers)
        with open(self.cert_path, encoding="ascii", newline="") as f:
            if not _PEM_CERT.search(f.read()):
                # Fluentd would start with no certificate and fail every handshake.
                raise FluentdConfigError(f"{self.cert_path}: no certificate (PEM blocks with LF line ends)")
        ctx.load_cert_chain(self.cert_path, self.private_key_path, password=self.private_key_passphrase)
        if self.client_cert_auth:
            ctx.verify_mode = ssl.CERT_REQUIRED
        if self.ca_path:
            ctx.load_verify_locations(self.ca_path)
        return ctx


# The parameters of in_forward and its sections (in_forward.rb config_param/config_section, the
# server helper's <transport>); a name outside these is what Fluentd warns about and ignores, this
# model refuses it. Those it knows but does not model are refused too, so that a test never runs
# against a model of a configuration it does not understand.
IN_FORWARD_PARAMS = {"port", "bind", "backlog", "linger_timeout", "blocking_timeout", "resolve_hostname",
                     "deny_keepalive", "send_keepalive_packet", "chunk_size_warn_limit", "chunk_size_limit",
                     "skip_invalid_event", "source_address_key", "source_hostname_key", "add_tag_prefix"}
MODELLED_PARAMS = {"port", "bind", "deny_keepalive", "chunk_size_limit", "chunk_size_warn_limit",
                   "linger_timeout"}
SECURITY_PARAMS = {"self_hostname", "shared_key", "user_auth", "allow_anonymous_source"}
TRANSPORT_PARAMS = {"version", "min_version", "max_version", "ciphers", "insecure", "ca_path", "cert_path",
                    "private_key_path", "private_key_passphrase", "client_cert_auth", "ca_cert_path",
                    "ca_private_key_path", "ca_private_key_passphrase"}
MODELLED_TRANSPORT = {"version", "min_version", "max_version", "ciphers", "ca_path", "cert_path",
                      "private_key_path", "private_key_passphrase", "client_cert_auth"}


def _bool(name: str, value: str | None, default: bool) -> bool:
    if value is None:
        return default
    if value in ("true", "yes"):
        return True
    if value in ("false", "no"):
        return False
    raise FluentdConfigError(f"{name}: {value!r} is not a boolean")


def _size(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmgt]?)b?", value.strip().lower())
    if not m:
        raise FluentdConfigError(f"{name}: {value!r} is not a size")
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))


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


def _is_string(v: Any) -> bool:
    return isinstance(v, (str, bytes))


def _sha512(*parts: Any) -> str:
    h = hashlib.sha512()
    for p in parts:
        if not _is_string(p):
            # Digest::SHA512#update: "no implicit conversion of X into String" (TypeError); the
            # server helper logs "unexpected error on reading data" and drops the connection.
            raise TypeError(f"no implicit conversion of {type(p).__name__} into String")
        h.update(_raw(p))
    return h.hexdigest()


class _Close(Exception):
    """in_forward closes the connection (after writing what it wrote)."""


class ForwardReceiver:
    """in_forward for tests; `received` holds every event in arrival order."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, security: Security | None = None,
                 transport: TlsTransport | None = None, deny_keepalive: bool = False,
                 chunk_size_limit: int | None = None) -> None:
        if security is not None:
            if not security.shared_key:
                raise FluentdConfigError("'shared_key' parameter is required, in section security")
            if not security.self_hostname:
                raise FluentdConfigError("'self_hostname' parameter is required, in section security")
            if security.user_auth and not security.users:
                raise FluentdConfigError("<user> sections required if user_auth enabled")
        self.host = host
        self.port = port
        self.security = security
        self.transport = transport
        self._tls = transport.context() if transport is not None else None
        self.deny_keepalive = deny_keepalive
        self.chunk_size_limit = chunk_size_limit
        self.received: list[Received] = []
        self.acked: list[str] = []
        self.errors: list[str] = []
        self.connections = 0
        self.handshakes = 0
        self.tls_versions: list[str] = []
        self.cut_before_ack = 0          # cut the connection instead of acking the next N chunks
        self._lock = threading.Condition()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._cut: set[socket.socket] = set()      # connections stop() cut: their errors are ours
        self._accept_thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, params: Mapping[str, str | None], *, security: Mapping[str, str | None] | None = None,
                    users: list[Mapping[str, str | None]] = (),    # type: ignore[assignment]
                    transport: tuple[str, Mapping[str, str | None]] | None = None,
                    host: str = "127.0.0.1", port: int | None = None) -> ForwardReceiver:
        """The receiver a `<source> @type forward` with these parameters and sections would be.

        `port` overrides the configured port (tests listen on a free one) and `bind` is not
        followed: the fake listens on `host`, the loopback address, whatever Fluentd would bind."""
        for name, known, modelled in (("in_forward", IN_FORWARD_PARAMS, MODELLED_PARAMS),
                                      ("<security>", SECURITY_PARAMS, SECURITY_PARAMS - {"allow_anonymous_source"}),
                                      ("<transport>", TRANSPORT_PARAMS, MODELLED_TRANSPORT)):
            given = {"in_forward": params, "<security>": security or {},
                     "<transport>": transport[1] if transport else {}}[name]
            for key in given:
                if key.startswith("@"):
                    continue
                if key not in known:
                    raise FluentdConfigError(f"{name} has no parameter {key!r}")
                if key not in modelled:
                    raise FluentdConfigError(f"{name} parameter {key!r} is not modelled by this fake")
        sec = None
        if security is not None:
            sec = Security(shared_key=security.get("shared_key") or "",
                           self_hostname=security.get("self_hostname") or "",
                           user_auth=_bool("user_auth", security.get("user_auth"), False),
                           users={u.get("username") or "": u.get("password") or "" for u in users})
        tls = None
        if transport is not None:
            protocol, t = transport
            if protocol not in ("tcp", "tls"):
                raise FluentdConfigError(f"<transport {protocol}>: valid options are tcp,tls")
            if protocol == "tls":
                tls = TlsTransport(
                    cert_path=t.get("cert_path"), private_key_path=t.get("private_key_path"),
                    private_key_passphrase=t.get("private_key_passphrase"), ca_path=t.get("ca_path"),
                    client_cert_auth=_bool("client_cert_auth", t.get("client_cert_auth"), False),
                    version=t.get("version") or "TLSv1_2", min_version=t.get("min_version"),
                    max_version=t.get("max_version"), ciphers=t.get("ciphers") or CIPHERS_DEFAULT)
        if params.get("linger_timeout") not in (None, "0"):
            raise FluentdConfigError("linger_timeout other than 0 is not modelled by this fake")
        return cls(host, int(params.get("port") or 24224) if port is None else port, security=sec,
                   transport=tls, deny_keepalive=_bool("deny_keepalive", params.get("deny_keepalive"), False),
                   chunk_size_limit=_size("chunk_size_limit", params.get("chunk_size_limit")))

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
            self._cut.update(conns)
        for c in conns:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(c, socket.SHUT_RDWR)

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
            # The server helper's default linger_timeout 0: closing resets the connection.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with self._lock:
                self._conns.add(conn)
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)
            self._lock.notify_all()

    def _serve(self, raw: socket.socket) -> None:
        conn: socket.socket = raw
        try:
            if self._tls is not None:
                raw.settimeout(10)
                try:
                    conn = self._tls.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)
                except (OSError, ssl.SSLError):
                    return          # "unexpected error before accepting TLS connection" (trace level)
                conn.settimeout(None)
                with self._lock:
                    self.tls_versions.append(conn.version() or "")
                    # wrap_socket took the descriptor over: stop() must cut the TLS socket.
                    self._conns.discard(raw)
                    self._conns.add(conn)
                    if raw in self._cut:
                        self._cut.add(conn)
            self._session(conn)
        except Exception as e:
            with self._lock:
                cut = raw in self._cut or conn in self._cut
            if not cut:
                self._failed(e)
        finally:
            with self._lock:
                self._conns.difference_update((raw, conn))
                self._cut.difference_update((raw, conn))
            self._close(conn)

    def _failed(self, e: Exception) -> None:
        if isinstance(e, ssl.SSLError):
            # TLSServer#on_readable; SSLEOFError is a peer gone without close_notify.
            self._error(f"close socket due to unexpected ssl error: {e}")
        elif not isinstance(e, (_Close, OSError)):
            self._error(f"unexpected error on reading data: {type(e).__name__}: {e}")

    @staticmethod
    def _close(conn: socket.socket) -> None:
        if isinstance(conn, ssl.SSLSocket):
            # Ruby's SSLSocket#close sends close_notify and does not wait for the peer's.
            with contextlib.suppress(OSError, ValueError):
                conn.settimeout(0)
                conn.unwrap()
        with contextlib.suppress(OSError):
            conn.close()

    def _session(self, conn: socket.socket) -> None:
        nonce = auth_salt = b""
        established = self.security is None
        if not established:
            nonce, auth_salt = os.urandom(16), os.urandom(16)
            conn.sendall(msgpack.packb(["HELO", {"nonce": nonce, "auth": auth_salt,
                                                 "keepalive": not self.deny_keepalive}], use_bin_type=True))
        first = conn.recv(65536)
        if not first:
            return
        if first[:1] in (b"{", b"["):
            if not established:
                raise ValueError("a JSON stream on a session with <security> (it must be msgpack)")
            self._json_session(conn, first)
            return
        unpacker = _unpacker()
        unpacker.feed(first)
        size = len(first)
        while True:
            for msg in unpacker:
                if not established:
                    self._pingpong(conn, msg, nonce, auth_salt)
                    established = True
                else:
                    self._established(conn, msg, size, json_mode=False)
                size = 0
            data = conn.recv(65536)
            if not data:
                return
            size += len(data)
            unpacker.feed(data)

    def _pingpong(self, conn: socket.socket, msg: Any, nonce: bytes, auth_salt: bytes) -> None:
        ok, reason, salt = self._check_ping(msg, nonce, auth_salt)
        assert self.security is not None
        if not ok:
            conn.sendall(msgpack.packb(["PONG", False, reason, "", ""], use_bin_type=True))
            self._error(f"handshake refused: {reason}")
            raise _Close
        digest = _sha512(salt, self.security.self_hostname, nonce, self.security.shared_key)
        conn.sendall(msgpack.packb(["PONG", True, "", self.security.self_hostname, digest],
                                   use_bin_type=True))
        with self._lock:
            self.handshakes += 1

    def _check_ping(self, msg: Any, nonce: bytes, auth_salt: bytes) -> tuple[bool, str, Any]:
        assert self.security is not None
        if not isinstance(msg, (list, dict)):
            raise TypeError(f"undefined method 'size' for {type(msg).__name__}")
        if not (isinstance(msg, list) and len(msg) == 6 and msg[0] == "PING"):
            return False, "invalid ping message", None
        _, hostname, salt, digest, username, password_digest = msg
        if digest != _sha512(salt, hostname, nonce, self.security.shared_key):
            return False, "shared_key mismatch", None
        if self.security.user_auth:
            ok = False
            for user, password in self.security.users.items():
                if user == username:
                    ok = ok or _sha512(auth_salt, username, password) == password_digest
            if not ok:
                return False, "username/password mismatch", None
        return True, "", salt

    def _established(self, conn: socket.socket, msg: Any, size: int, json_mode: bool) -> None:
        option = self._on_message(msg, size)
        if isinstance(option, dict) and option.get("chunk"):
            with self._lock:
                cut = self.cut_before_ack > 0
                if cut:
                    self.cut_before_ack -= 1
            if cut:
                raise _Close
            with self._lock:
                self.acked.append(option["chunk"])
                self._lock.notify_all()
            ack = {"ack": option["chunk"]}
            conn.sendall(json.dumps(ack).encode() if json_mode else msgpack.packb(ack, use_bin_type=True))
        if self.deny_keepalive:
            raise _Close

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
                size = len(buf[:end].encode())
                buf = buf[end:].lstrip()
                self._established(conn, msg, size, json_mode=True)
            more = conn.recv(65536)
            if not more:
                return
            buf += more.decode()

    def _on_message(self, msg: Any, chunk_size: int) -> Any:
        if msg is None:
            return None                      # heartbeat
        if not isinstance(msg, list) or len(msg) < 2:
            raise ValueError(f"incoming chunk is broken: {msg!r:.100}")
        tag, entries = msg[0], msg[1]
        if not isinstance(tag, str):
            raise ValueError(f"tag is not a string: {tag!r:.60}")
        if self.chunk_size_limit is not None and chunk_size > self.chunk_size_limit:
            self._error(f"Input chunk size is larger than 'chunk_size_limit', dropped: tag={tag} "
                        f"size={chunk_size}")
            return None
        out: list[Received] = []
        if isinstance(entries, (bytes, str)):
            option = msg[2] if len(msg) > 2 else None
            raw = _raw(entries)
            mode = "PackedForward"
            if isinstance(option, dict) and option.get("compressed") == "gzip":
                raw, mode = gzip.decompress(raw), "CompressedPackedForward"
            chunk = option.get("chunk") if isinstance(option, dict) else None
            unpacker = _unpacker()
            unpacker.feed(raw)
            events = list(unpacker)
            if isinstance(option, dict) and option.get("size") not in (None, len(events)):
                raise ValueError(f"chunk {chunk}: size option {option['size']} but {len(events)} events")
            for e in events:
                if not (isinstance(e, list) and len(e) == 2):
                    raise ValueError(f"PackedForward entry is not [time, record]: {e!r:.80}")
                out.append(Received(tag, self._time(e[0]), e[1], mode, chunk))
        elif isinstance(entries, list):
            option = msg[2] if len(msg) > 2 else None
            chunk = option.get("chunk") if isinstance(option, dict) else None
            for e in entries:
                if e[1] is not None:
                    out.append(Received(tag, self._time(e[0]), e[1], "Forward", chunk))
        else:
            if len(msg) < 3 or msg[2] is None:
                return None                  # `return if record.nil?`: no ack either
            option = msg[3] if len(msg) > 3 else None
            out.append(Received(tag, self._time(msg[1]), msg[2], "Message",
                                option.get("chunk") if isinstance(option, dict) else None))
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
        if isinstance(t, (EventTime, int, float)) and not isinstance(t, bool):
            return t
        raise ValueError(f"invalid time {t!r}")

"""The forward protocol client (sensor/outputs/forward.py) against the in-suite in_forward
(tests/fakes/forward.py), and that receiver against fluent-logger's own sender."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import socket
import ssl
import threading
import time
from typing import Any

import msgpack
import pytest
from fakes.forward import EventTime, FluentdConfigError, ForwardReceiver, Security, TlsTransport
from fakes.tls import TlsFiles
from fluent.sender import EventTime as FluentEventTime
from fluent.sender import FluentSender

from sensor.outputs.forward import ForwardConnection, ForwardError, pack_entry, shared_key_digest


@pytest.fixture
def rx() -> Any:
    r = ForwardReceiver().start()
    yield r
    r.stop()


def raw_send(port: int, *messages: Any, read_acks: int = 0) -> list[Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for m in messages:
            s.sendall(m if isinstance(m, bytes) else msgpack.packb(m, use_bin_type=True))
        unpacker = msgpack.Unpacker(raw=False)
        acks: list[Any] = []
        while len(acks) < read_acks:
            unpacker.feed(s.recv(4096))
            acks.extend(unpacker)
        return acks


def test_receiver_decodes_fluent_logger_messages(rx: ForwardReceiver) -> None:
    # fluent-logger is the reference client the fake must understand (Message mode).
    sender = FluentSender("falconet", port=rx.port, nanosecond_precision=True)
    assert sender.emit_with_time("alerts", FluentEventTime(1709296496, 123456789), {"a": 1})
    legacy = FluentSender("falconet", port=rx.port)
    assert legacy.emit_with_time("log", 1709296496, {"b": 2})
    sender.close()
    legacy.close()
    assert rx.wait_for(lambda r: len(r.received) == 2, 10)
    # Two connections: their records may arrive in either order.
    first, second = sorted(rx.received, key=lambda r: r.tag)
    assert (first.tag, first.time, first.record, first.mode) == \
        ("falconet.alerts", EventTime(1709296496, 123456789), {"a": 1}, "Message")
    assert (second.tag, second.time, second.record) == ("falconet.log", 1709296496, {"b": 2})


def test_receiver_modes_and_acks(rx: ForwardReceiver) -> None:
    entries = [pack_entry(1_000_000_001_000_000_002 + i, {"n": i}) for i in range(3)]
    packed = b"".join(entries)
    acks = raw_send(
        rx.port,
        ["t.forward", [[event_time_ext(5, 6), {"n": "f"}], [7, {"n": "g"}]], {"chunk": "c1"}],
        ["t.packed", packed, {"chunk": "c2", "size": 3}],
        ["t.gzip", gzip.compress(packed[:20]) + gzip.compress(packed[20:]), {"chunk": "c3",
                                                                            "compressed": "gzip"}],
        ["t.msg", 9, {"n": "m"}, {"chunk": "c4"}],
        read_acks=4)
    assert acks == [{"ack": "c1"}, {"ack": "c2"}, {"ack": "c3"}, {"ack": "c4"}]
    modes = [(r.tag, r.mode, r.record["n"]) for r in rx.received]
    assert modes == [("t.forward", "Forward", "f"), ("t.forward", "Forward", "g"),
                     ("t.packed", "PackedForward", 0), ("t.packed", "PackedForward", 1),
                     ("t.packed", "PackedForward", 2), ("t.gzip", "CompressedPackedForward", 0),
                     ("t.gzip", "CompressedPackedForward", 1), ("t.gzip", "CompressedPackedForward", 2),
                     ("t.msg", "Message", "m")]
    assert rx.received[2].time == EventTime(1_000_000_001, 2)
    assert rx.acked == ["c1", "c2", "c3", "c4"]


def event_time_ext(sec: int, nsec: int) -> msgpack.ExtType:
    return msgpack.ExtType(0, sec.to_bytes(4, "big") + nsec.to_bytes(4, "big"))


def test_receiver_json_mode_and_bad_event_time(rx: ForwardReceiver) -> None:
    with socket.create_connection(("127.0.0.1", rx.port), timeout=10) as s:
        s.sendall(json.dumps(["t.json", 1709296496, {"j": 1}, {"chunk": "cj"}]).encode())
        assert json.loads(s.recv(4096)) == {"ack": "cj"}
    raw_send(rx.port, ["t.bad", msgpack.ExtType(0, b"1234"), {"x": 1}])
    assert rx.wait_for(lambda r: r.errors, 5)
    assert "EventTime must be 8 bytes" in rx.errors[0]
    assert [r.record for r in rx.received] == [{"j": 1}]


def test_chunk_waits_for_its_ack(rx: ForwardReceiver) -> None:
    conn = ForwardConnection("127.0.0.1", rx.port, ack_timeout=5)
    entries = [pack_entry(1_709_296_496_000_000_000 + i, {"i": i}) for i in range(10)]
    conn.send_chunk("falconet.alerts", entries)
    conn.send_chunk("falconet.alerts", entries[:2], compress=True)
    assert [r.record["i"] for r in rx.received] == [*range(10), 0, 1]
    assert [r.mode for r in rx.received][-1] == "CompressedPackedForward"
    assert len(rx.acked) == 2 and rx.connections == 1          # kept alive between chunks
    conn.close()


def test_no_ack_is_a_failure() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    taken: list[socket.socket] = []
    threading.Thread(target=lambda: taken.append(listener.accept()[0]), daemon=True).start()
    conn = ForwardConnection("127.0.0.1", listener.getsockname()[1], ack_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(ForwardError, match=r"no ack within 0.3s"):
        conn.send_chunk("t", [pack_entry(1, {"a": 1})])
    assert time.monotonic() - started < 3
    listener.close()


def test_cut_before_ack_fails_and_the_resend_arrives(rx: ForwardReceiver) -> None:
    rx.cut_before_ack = 1
    conn = ForwardConnection("127.0.0.1", rx.port, ack_timeout=5)
    entries = [pack_entry(1, {"i": 1})]
    # in_forward closes with SO_LINGER 0: the client sees a reset, not an orderly end.
    with pytest.raises(ForwardError, match=r"connection lost waiting for ack: .*reset by peer"):
        conn.send_chunk("t", entries)
    conn.send_chunk("t", entries)
    assert [r.record for r in rx.received] == [{"i": 1}, {"i": 1}]     # at least once
    assert len(rx.acked) == 1


def test_handshake_with_shared_key() -> None:
    with ForwardReceiver(security=Security("k3y", "aggregator")) as rx:
        conn = ForwardConnection("127.0.0.1", rx.port, shared_key="k3y", self_hostname="node-1")
        conn.send_chunk("t", [pack_entry(1, {"ok": True})])
        assert rx.handshakes == 1 and rx.records() == [{"ok": True}]
        conn.close()
        bad = ForwardConnection("127.0.0.1", rx.port, shared_key="wrong", self_hostname="node-1")
        with pytest.raises(ForwardError, match=r"refused the handshake: shared_key mismatch \(check "
                                               r"fluent_output\.shared_key against the shared_key of "
                                               r"Fluentd's <security> section\)"):
            bad.send_chunk("t", [pack_entry(1, {"ok": False})])
        none = ForwardConnection("127.0.0.1", rx.port, ack_timeout=2)
        with pytest.raises(ForwardError, match=r"requires the shared-key handshake; set fluent_output\.shared_key"):
            none.send_chunk("t", [pack_entry(1, {"ok": False})])
        same = ForwardConnection("127.0.0.1", rx.port, shared_key="k3y", self_hostname="aggregator")
        with pytest.raises(ForwardError, match="self_hostname equals ours"):
            same.send_chunk("t", [pack_entry(1, {"ok": False})])
        assert rx.records() == [{"ok": True}]


def test_helo_carries_an_auth_salt_whenever_security_is_on() -> None:
    # in_forward.rb generate_helo: 'auth' => (@security ? user_auth_salt : ''), user_auth or not.
    with ForwardReceiver(security=Security("k", "fluentd")) as rx, \
            socket.create_connection(("127.0.0.1", rx.port), timeout=10) as s:
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(s.recv(4096))
        helo = next(unpacker)
    assert helo[0] == "HELO" and set(helo[1]) == {"nonce", "auth", "keepalive"}
    assert isinstance(helo[1]["nonce"], bytes) and len(helo[1]["nonce"]) == 16
    assert isinstance(helo[1]["auth"], bytes) and len(helo[1]["auth"]) == 16
    assert helo[1]["keepalive"] is True


def test_shared_key_without_user_auth_is_answered_as_out_forward_does() -> None:
    # The lab's set-up: <security> with a shared key and no user_auth. The HELO's auth salt is not a
    # request for user authentication; the sensor answers with an empty user name and its digest.
    with ForwardReceiver(security=Security("lab-key", "falconet-fluentd")) as rx:
        conn = ForwardConnection("127.0.0.1", rx.port, shared_key="lab-key", self_hostname="node-1")
        conn.send_chunk("falconet.alerts", [pack_entry(1, {"lab": True})])
        conn.close()
        assert rx.handshakes == 1 and rx.records() == [{"lab": True}] and rx.errors == []


def out_forward_ping(helo: list[Any], hostname: str, shared_key: str, username: str = "",
                     password: str = "") -> tuple[list[Any], str]:
    """Fluentd's own client: out_forward/handshake_protocol.rb generate_ping, transcribed."""
    salt = os.urandom(16).hex()                                 # SecureRandom.hex(16)
    nonce, auth = helo[1].get("nonce") or b"", helo[1].get("auth") or b""
    digest = hashlib.sha512(salt.encode() + hostname.encode() + nonce + shared_key.encode()).hexdigest()
    ping: list[Any] = ["PING", hostname, salt, digest]
    if auth:
        ping += [username, hashlib.sha512(auth + username.encode() + password.encode()).hexdigest()]
    else:
        ping += ["", ""]
    return ping, salt


def test_the_receiver_accepts_what_fluentds_out_forward_sends() -> None:
    # The fake is checked against a transcription of the reference client, so it is no stricter
    # than Fluentd where Fluentd talks to itself.
    with ForwardReceiver(security=Security("k", "agg", user_auth=True, users={"u": "p"})) as rx, \
            socket.create_connection(("127.0.0.1", rx.port), timeout=10) as s:
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(s.recv(4096))
        helo = next(unpacker)
        ping, salt = out_forward_ping(helo, "client-host", "k", "u", "p")
        s.sendall(msgpack.packb(ping, use_bin_type=True))
        unpacker.feed(s.recv(4096))
        pong = next(unpacker)
        assert pong[:4] == ["PONG", True, "", "agg"]
        # out_forward's check_pong: sha512_hex(salt + hostname + nonce + shared_key)
        assert pong[4] == hashlib.sha512(salt.encode() + b"agg" + helo[1]["nonce"] + b"k").hexdigest()
        s.sendall(msgpack.packb(["t", 1, {"m": 1}, {"chunk": "abc"}], use_bin_type=True))
        unpacker.feed(s.recv(4096))
        assert next(unpacker) == {"ack": "abc"}


@pytest.mark.parametrize(("ping", "why"), [
    (["PING", "h", "salt", "digest", "", ""], "handshake refused: shared_key mismatch"),
    (["PING", "h", "salt", "digest"], "handshake refused: invalid ping message"),
    (["PING", 7, "salt", "digest", "", ""], "no implicit conversion of int into String"),
    ({"PING": 1}, "handshake refused: invalid ping message"),
])
def test_a_bad_ping_is_refused_and_the_connection_closed(ping: Any, why: str) -> None:
    with ForwardReceiver(security=Security("k", "agg")) as rx, \
            socket.create_connection(("127.0.0.1", rx.port), timeout=10) as s:
        s.recv(4096)                                             # HELO
        s.sendall(msgpack.packb(ping, use_bin_type=True))
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(4096):
                data += chunk
        assert rx.wait_for(lambda r: r.errors, 5)
        assert why in rx.errors[0]
        if why.startswith("handshake refused"):
            assert msgpack.unpackb(data, raw=False)[:2] == ["PONG", False]


def test_json_is_refused_on_a_secured_session() -> None:
    with ForwardReceiver(security=Security("k", "agg")) as rx, \
            socket.create_connection(("127.0.0.1", rx.port), timeout=10) as s:
        s.recv(4096)
        s.sendall(b'["PING", "h", "s", "d", "", ""]')
        assert rx.wait_for(lambda r: r.errors, 5)
        assert "must be msgpack" in rx.errors[0]


def test_handshake_with_user_auth() -> None:
    with ForwardReceiver(security=Security("k", "agg", user_auth=True, users={"sensor": "pw"})) as rx:
        ForwardConnection("127.0.0.1", rx.port, shared_key="k", username="sensor",
                          password="pw").send_chunk("t", [pack_entry(1, {"u": 1})])
        with pytest.raises(ForwardError, match=r"username/password mismatch \(Fluentd's <security> has "
                                               r"user_auth on: set fluent_output\.username and "
                                               r"fluent_output\.password to one of its <user> sections\)"):
            ForwardConnection("127.0.0.1", rx.port, shared_key="k", username="sensor",
                              password="nope").send_chunk("t", [pack_entry(1, {"u": 2})])
        with pytest.raises(ForwardError, match="username/password mismatch"):
            ForwardConnection("127.0.0.1", rx.port, shared_key="k").send_chunk("t", [pack_entry(1, {})])
        assert rx.records() == [{"u": 1}]


def test_in_forward_refuses_user_auth_without_users() -> None:
    with pytest.raises(FluentdConfigError, match="<user> sections required if user_auth enabled"):
        ForwardReceiver(security=Security("k", "agg", user_auth=True))


def test_pong_from_a_server_without_the_key_is_refused() -> None:
    # A server that answers PONG ok but cannot prove it knows the key (a man in the middle).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def fake_server() -> None:
        c, _ = listener.accept()
        c.sendall(msgpack.packb(["HELO", {"nonce": b"n" * 16, "auth": b"", "keepalive": True}], use_bin_type=True))
        c.recv(4096)
        c.sendall(msgpack.packb(["PONG", True, "", "evil", "0" * 128], use_bin_type=True))
        time.sleep(1)
        c.close()

    threading.Thread(target=fake_server, daemon=True).start()
    conn = ForwardConnection("127.0.0.1", listener.getsockname()[1], shared_key="k", self_hostname="me")
    with pytest.raises(ForwardError, match="does not prove it knows the shared key"):
        conn.connect()
    listener.close()


def test_shared_key_digest_is_sha512_of_the_concatenation() -> None:
    assert shared_key_digest(b"salt", "host", b"nonce", "key") == \
        hashlib.sha512(b"salthostnoncekey").hexdigest()


def fluentd_tls(files: TlsFiles, client_cert_auth: bool = False) -> TlsTransport:
    return TlsTransport(cert_path=str(files.server_cert), private_key_path=str(files.server_key),
                        ca_path=str(files.ca) if client_cert_auth else None, client_cert_auth=client_cert_auth)


def test_tls_transport(tls_files: TlsFiles) -> None:
    from sensor.outputs.tls import tls_context

    with ForwardReceiver(transport=fluentd_tls(tls_files, client_cert_auth=True),
                         security=Security("k", "agg")) as rx:
        ctx = tls_context(ca_cert=str(tls_files.ca), client_cert=str(tls_files.client_cert),
                          client_key=str(tls_files.client_key))
        conn = ForwardConnection("127.0.0.1", rx.port, tls=ctx, shared_key="k")
        conn.send_chunk("t", [pack_entry(1, {"tls": True})])
        assert rx.records() == [{"tls": True}]
        # <transport tls> with its default `version TLSv1_2`: min = max = TLS 1.2 (tls.rb).
        assert rx.tls_versions == ["TLSv1.2"]
        conn.close()
        wrong = ForwardConnection("127.0.0.1", rx.port, tls=tls_context(ca_cert=str(tls_files.other_ca)),
                                  shared_key="k")
        with pytest.raises(ForwardError, match="TLS handshake failed"):
            wrong.send_chunk("t", [pack_entry(1, {"tls": False})])
        no_client_cert = ForwardConnection("127.0.0.1", rx.port, tls=tls_context(ca_cert=str(tls_files.ca)),
                                           shared_key="k", connect_timeout=3)
        with pytest.raises(ForwardError):
            no_client_cert.send_chunk("t", [pack_entry(1, {"tls": False})])
        assert rx.records() == [{"tls": True}]


def test_closing_a_tls_connection_ends_the_tls_session(tls_files: TlsFiles) -> None:
    # Without close_notify, Fluentd logs "close socket due to unexpected ssl error: SSL_read:
    # unexpected eof while reading" at every close (server.rb TLSServer#on_readable).
    from sensor.outputs.tls import tls_context

    with ForwardReceiver(transport=fluentd_tls(tls_files), security=Security("k", "agg")) as rx:
        for _ in range(3):
            conn = ForwardConnection("127.0.0.1", rx.port, tls=tls_context(ca_cert=str(tls_files.ca)),
                                     shared_key="k")
            conn.send_chunk("t", [pack_entry(1, {"n": 1})])
            conn.close()
        assert rx.wait_for(lambda r: not r._conns, 5)
        assert rx.errors == [] and len(rx.records()) == 3


def test_the_receiver_sees_a_tls_peer_that_just_goes_away(tls_files: TlsFiles) -> None:
    # The check above can fail: a client that closes the TCP socket under TLS is reported.
    with ForwardReceiver(transport=fluentd_tls(tls_files)) as rx:
        ctx = ssl.create_default_context(cafile=str(tls_files.ca))
        raw = socket.create_connection(("127.0.0.1", rx.port), timeout=10)
        tls = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        tls.sendall(msgpack.packb(["t", 1, {"x": 1}], use_bin_type=True))
        assert rx.wait_for(lambda r: r.received, 5)
        socket.socket.close(tls)         # the fd goes; no close_notify
        assert rx.wait_for(lambda r: r.errors, 5)
        assert "unexpected ssl error" in rx.errors[0] and "EOF" in rx.errors[0]


def test_closing_from_another_thread_cuts_a_send_that_hangs() -> None:
    # A channel aborts a send stuck on a server that never answers; the sending thread fails fast.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    conn = ForwardConnection("127.0.0.1", listener.getsockname()[1], ack_timeout=30)
    failed: list[BaseException] = []

    def send() -> None:
        try:
            conn.send_chunk("t", [pack_entry(1, {"a": 1})])
        except ForwardError as e:
            failed.append(e)

    t = threading.Thread(target=send)
    t.start()
    time.sleep(0.3)
    started = time.monotonic()
    conn.close()
    t.join(5)
    assert not t.is_alive() and failed and time.monotonic() - started < 3
    listener.close()

"""The forward protocol client (sensor/outputs/forward.py) against the in-suite in_forward
(tests/fakes/forward.py), and that receiver against fluent-logger's own sender."""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import threading
import time
from typing import Any

import msgpack
import pytest
from fakes.forward import EventTime, ForwardReceiver
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
    with pytest.raises(ForwardError, match="connection closed by the server before ack"):
        conn.send_chunk("t", entries)
    conn.send_chunk("t", entries)
    assert [r.record for r in rx.received] == [{"i": 1}, {"i": 1}]     # at least once
    assert len(rx.acked) == 1


def test_handshake_with_shared_key() -> None:
    with ForwardReceiver(shared_key="k3y", self_hostname="aggregator") as rx:
        conn = ForwardConnection("127.0.0.1", rx.port, shared_key="k3y", self_hostname="node-1")
        conn.send_chunk("t", [pack_entry(1, {"ok": True})])
        assert rx.handshakes == 1 and rx.records() == [{"ok": True}]
        conn.close()
        bad = ForwardConnection("127.0.0.1", rx.port, shared_key="wrong", self_hostname="node-1")
        with pytest.raises(ForwardError, match="refused the handshake: shared_key mismatch"):
            bad.send_chunk("t", [pack_entry(1, {"ok": False})])
        none = ForwardConnection("127.0.0.1", rx.port, ack_timeout=2)
        with pytest.raises(ForwardError, match=r"requires the shared-key handshake; set fluent_output\.shared_key"):
            none.send_chunk("t", [pack_entry(1, {"ok": False})])
        same = ForwardConnection("127.0.0.1", rx.port, shared_key="k3y", self_hostname="aggregator")
        with pytest.raises(ForwardError, match="self_hostname equals ours"):
            same.send_chunk("t", [pack_entry(1, {"ok": False})])
        assert rx.records() == [{"ok": True}]


def test_handshake_with_user_auth() -> None:
    with ForwardReceiver(shared_key="k", users={"sensor": "pw"}) as rx:
        ForwardConnection("127.0.0.1", rx.port, shared_key="k", username="sensor",
                          password="pw").send_chunk("t", [pack_entry(1, {"u": 1})])
        with pytest.raises(ForwardError, match="username/password mismatch"):
            ForwardConnection("127.0.0.1", rx.port, shared_key="k", username="sensor",
                              password="nope").send_chunk("t", [pack_entry(1, {"u": 2})])
        with pytest.raises(ForwardError, match="requires user authentication"):
            ForwardConnection("127.0.0.1", rx.port, shared_key="k").send_chunk("t", [pack_entry(1, {})])
        assert rx.records() == [{"u": 1}]


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


def test_tls_transport(tls_files: TlsFiles) -> None:
    from sensor.outputs.tls import tls_context

    with ForwardReceiver(tls=tls_files.server_context(require_client_cert=True), shared_key="k") as rx:
        ctx = tls_context(ca_cert=str(tls_files.ca), client_cert=str(tls_files.client_cert),
                          client_key=str(tls_files.client_key))
        conn = ForwardConnection("127.0.0.1", rx.port, tls=ctx, shared_key="k")
        conn.send_chunk("t", [pack_entry(1, {"tls": True})])
        assert rx.records() == [{"tls": True}]
        wrong = ForwardConnection("127.0.0.1", rx.port, tls=tls_context(ca_cert=str(tls_files.other_ca)),
                                  shared_key="k")
        with pytest.raises(ForwardError, match="TLS handshake failed"):
            wrong.send_chunk("t", [pack_entry(1, {"tls": False})])

"""The fluent channel end to end: ECS documents, EventTime, chunks acked, spool, TLS."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from fakes.forward import EventTime, ForwardReceiver, Security, TlsTransport
from fakes.tls import TlsFiles

from sensor.ecs import to_ecs
from sensor.outputs.build import build_outputs

from .conftest import T0, make_alert, output_settings, wait_until


def fluent(tmp_path: Path, port: int, *overrides: str) -> Any:
    return build_outputs(output_settings(tmp_path, "fluent_output.enabled=true", f"fluent_output.port={port}",
                                         "outputs_queue.retry_initial=20ms", "outputs_queue.retry_max=100ms",
                                         *overrides))


def test_ecs_documents_with_event_time_in_acked_chunks(tmp_path: Path) -> None:
    with ForwardReceiver() as rx:
        out = fluent(tmp_path, rx.port, "fluent_output.batch_size=500")
        alerts = [make_alert(i) for i in range(1200)]
        for a in alerts:
            out.submit(a)
        assert out.flush(20)
        out.close()
        assert len(rx.received) == 1200
        first = rx.received[0]
        assert first.tag == "falconet.alerts"
        assert first.mode == "PackedForward"
        assert first.time == EventTime(T0 // 10**9, T0 % 10**9)
        assert first.record == to_ecs(alerts[0])
        assert first.record["event"]["id"] == alerts[0].uuid
        assert all(isinstance(r.time, EventTime) for r in rx.received)
        assert [r.record["event"]["id"] for r in rx.received] == [a.uuid for a in alerts]
        per_chunk = Counter(r.chunk for r in rx.received)
        assert max(per_chunk.values()) <= 500 and set(per_chunk) == set(rx.acked)
        assert out.channels[0].stats()["sent"] == 1200


def test_gzip_and_custom_tag(tmp_path: Path) -> None:
    with ForwardReceiver() as rx:
        out = fluent(tmp_path, rx.port, "fluent_output.compress=gzip", "fluent_output.tag=sec.alerts")
        out.submit(make_alert(1))
        assert out.flush(10)
        out.close()
        assert [(r.tag, r.mode) for r in rx.received] == [("sec.alerts", "CompressedPackedForward")]


def test_spooled_while_fluentd_is_down_then_delivered_in_order(tmp_path: Path) -> None:
    rx = ForwardReceiver().start()
    port = rx.port
    rx.stop()
    out = fluent(tmp_path, port, "fluent_output.batch_size=7")
    alerts = [make_alert(i) for i in range(50)]
    for a in alerts:
        out.submit(a)
    ch = out.channels[0]
    assert wait_until(lambda: ch.stats()["errors"] >= 2)
    assert ch.stats()["pending"] == 50 and ch.stats()["spool_bytes"] > 0
    out.close(0.2)                                    # the sensor stops: the spool keeps them
    rx = ForwardReceiver(port=port).start()
    try:
        out = fluent(tmp_path, port, "fluent_output.batch_size=7")
        assert out.flush(20)
        out.close()
        assert [r.record["event"]["id"] for r in rx.received] == [a.uuid for a in alerts]
        assert list(Counter(r.chunk for r in rx.received).values()) == [7] * 7 + [1]
        assert not list((tmp_path / "state" / "spool" / "fluent").glob("*.seg"))
    finally:
        rx.stop()


def test_an_unacked_chunk_is_sent_again(tmp_path: Path) -> None:
    with ForwardReceiver() as rx:
        rx.cut_before_ack = 2                          # Fluentd takes the chunk, then dies, twice
        out = fluent(tmp_path, rx.port)
        alerts = [make_alert(i) for i in range(10)]
        for a in alerts:
            out.submit(a)
        assert out.flush(20)
        out.close()
        ids = [r.record["event"]["id"] for r in rx.received]
        assert set(ids) == {a.uuid for a in alerts}
        assert len(ids) > 10                           # at least once: the unacked chunks came again
        assert out.channels[0].stats()["errors"] == 2


def test_tls_shared_key_and_client_certificate(tmp_path: Path, tls_files: TlsFiles) -> None:
    tls = TlsTransport(cert_path=str(tls_files.server_cert), private_key_path=str(tls_files.server_key),
                       ca_path=str(tls_files.ca), client_cert_auth=True)
    with ForwardReceiver(transport=tls, security=Security("s3cret", "fluentd-0")) as rx:
        out = fluent(tmp_path, rx.port, "fluent_output.tls.enabled=true",
                     f"fluent_output.tls.ca_cert={tls_files.ca}",
                     f"fluent_output.tls.client_cert={tls_files.client_cert}",
                     f"fluent_output.tls.client_key={tls_files.client_key}", "fluent_output.shared_key=s3cret",
                     "hostname=node-1")
        out.submit(make_alert(3))
        assert out.flush(10)
        out.close()
        assert rx.handshakes == 1
        assert rx.records()[0]["event"]["id"] == make_alert(3).uuid


def test_wrong_shared_key_keeps_alerts_spooled(tmp_path: Path) -> None:
    with ForwardReceiver(security=Security("right", "fluentd")) as rx:
        out = fluent(tmp_path, rx.port, "fluent_output.shared_key=wrong")
        out.submit(make_alert(3))
        ch = out.channels[0]
        assert wait_until(lambda: ch.stats()["errors"] >= 1)
        assert "shared_key mismatch" in ch.stats()["last_error"]
        out.close(0.1)
        assert rx.records() == [] and ch.stats()["pending"] == 1

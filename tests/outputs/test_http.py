"""http: exact bodies to a local server, over TLS and mutual TLS; retries and rejections."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from fakes.tls import TlsFiles

from sensor import __version__
from sensor.errors import ConfigError
from sensor.outputs.build import build_outputs

from .conftest import JSON_5, TEXT_5_ISO, make_alert, output_settings, wait_until
from .http_collector import Collector


@pytest.fixture
def plain() -> Any:
    c = Collector()
    yield c
    c.close()


def post(tmp_path: Path, *overrides: str, alerts: int = 1) -> Any:
    out = build_outputs(output_settings(tmp_path, "http_output.enabled=true", "outputs_queue.retry_initial=10ms",
                                 "outputs_queue.retry_max=50ms", *overrides))
    for i in range(5, 5 + alerts):
        out.submit(make_alert(i))
    return out


def test_json_post_bytes_and_headers(tmp_path: Path, plain: Collector) -> None:
    out = post(tmp_path, f"http_output.url=http://127.0.0.1:{plain.port}/falco?x=1")
    assert out.flush(10)
    out.close()
    [req] = plain.requests
    assert req["path"] == "/falco?x=1"
    assert req["body"] == JSON_5.encode()
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["headers"]["User-Agent"] == f"falconet/{__version__}"


def test_text_format_and_gzip(tmp_path: Path, plain: Collector) -> None:
    out = post(tmp_path, f"http_output.url=http://127.0.0.1:{plain.port}/", "http_output.format=text",
               "time_format_iso_8601=true", "http_output.compress_uploads=true")
    assert out.flush(10)
    out.close()
    [req] = plain.requests
    assert req["headers"]["Content-Encoding"] == "gzip"
    assert req["headers"]["Content-Type"].startswith("text/plain")
    assert gzip.decompress(req["body"]) == TEXT_5_ISO.encode()


def test_server_errors_are_retried_in_order_rejections_counted(tmp_path: Path, plain: Collector) -> None:
    plain.statuses = [503, 500, 200, 400, 429, 200, 200]
    out = post(tmp_path, f"http_output.url=http://127.0.0.1:{plain.port}/", "json_output=true", alerts=4)
    assert out.flush(10)
    out.close()
    bodies = plain.bodies()
    uuids = [b[-14:-2] for b in bodies[:7]]
    # 5 failed twice then went; 6 was rejected (400) for good; 7 waited out a 429; then 8.
    assert uuids == [b"000000000005"] * 3 + [b"000000000006"] + [b"000000000007"] * 2 + [b"000000000008"]
    # The drop is reported through the outputs too, when they close.
    report = json.loads(bodies[7])
    assert report["rule"] == "Falconet internal: alerts dropped" and report["source"] == "internal"
    assert report["output_fields"]["falconet.drops.http.rejected"] == 1
    st = out.channels[0].stats()
    assert st["drops"] == {"rejected": 1} and st["sent"] == 4 and st["errors"] == 3


def test_spool_holds_alerts_while_the_server_is_down(tmp_path: Path) -> None:
    c = Collector()
    port = c.port
    c.close()                                          # nothing listens on the port now
    out = post(tmp_path, f"http_output.url=http://127.0.0.1:{port}/", alerts=3)
    ch = out.channels[0]
    assert ch.spooled
    assert wait_until(lambda: ch.stats()["errors"] >= 2)
    out.close(0.1)
    assert ch.stats()["pending"] == 3 and ch.stats()["drops"] == {}
    spool_dir = tmp_path / "state" / "spool" / "http"
    assert any(spool_dir.glob("*.seg"))


def test_tls_verifies_the_server(tmp_path: Path, tls_files: TlsFiles) -> None:
    c = Collector(tls_files.server_context())
    try:
        out = post(tmp_path, f"http_output.url=https://127.0.0.1:{c.port}/", f"http_output.ca_cert={tls_files.ca}")
        assert out.flush(10)
        out.close()
        assert c.bodies() == [JSON_5.encode()]
        # A CA that did not sign the server: never delivered, the reason is on record.
        out = post(tmp_path, f"http_output.url=https://127.0.0.1:{c.port}/",
                   f"http_output.ca_cert={tls_files.other_ca}", "http_output.spool.enabled=false")
        ch = out.channels[0]
        assert wait_until(lambda: ch.stats()["errors"] >= 1)
        assert "CERTIFICATE_VERIFY_FAILED" in ch.stats()["last_error"]
        out.close(0.1)
        assert len(c.requests) == 1
        # insecure: no verification (testing only)
        out = post(tmp_path, f"http_output.url=https://127.0.0.1:{c.port}/", "http_output.insecure=true",
                   "http_output.spool.enabled=false")
        assert out.flush(10)
        out.close()
        assert len(c.requests) == 2
    finally:
        c.close()


def test_mutual_tls(tmp_path: Path, tls_files: TlsFiles) -> None:
    c = Collector(tls_files.server_context(require_client_cert=True))
    try:
        out = post(tmp_path, f"http_output.url=https://127.0.0.1:{c.port}/", f"http_output.ca_cert={tls_files.ca}",
                   "http_output.mtls=true", f"http_output.client_cert={tls_files.client_cert}",
                   f"http_output.client_key={tls_files.client_key}")
        assert out.flush(10)
        out.close()
        [req] = c.requests
        assert req["body"] == JSON_5.encode()
        assert dict(x[0] for x in req["peer"]["subject"])["commonName"] == "falconet-sensor"
        # Without the client certificate the server refuses the handshake.
        out = post(tmp_path, f"http_output.url=https://127.0.0.1:{c.port}/", f"http_output.ca_cert={tls_files.ca}",
                   "http_output.spool.enabled=false")
        ch = out.channels[0]
        assert wait_until(lambda: ch.stats()["errors"] >= 1)
        out.close(0.1)
        assert len(c.requests) == 1
    finally:
        c.close()


def test_config_errors(tmp_path: Path, tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError, match=r"'http_output\.url' is empty"):
        post(tmp_path)
    with pytest.raises(ConfigError, match="not an http\\(s\\) URL: 'ftp://x'"):
        post(tmp_path, "http_output.url=ftp://x")
    with pytest.raises(ConfigError, match=r"http_output\.mtls is on but http_output\.client_cert is empty"):
        post(tmp_path, "http_output.url=https://x/", "http_output.mtls=true")
    with pytest.raises(ConfigError, match="http_output TLS files"):
        post(tmp_path, "http_output.url=https://x/", f"http_output.ca_cert={tmp_path}/nope.pem")

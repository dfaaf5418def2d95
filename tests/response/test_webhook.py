"""http: the alert JSON POSTed with headers and TLS; transient failures retried, others recorded."""

from __future__ import annotations

import datetime
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sensor.alert import alert_dict
from sensor.response.target import Target
from sensor.response.webhook import HttpPost, shown_url

from .helpers import alert


class Receiver:
    """A local HTTP(S) endpoint answering with the next status from `codes` (then 200)."""

    def __init__(self, codes=(), delay: float = 0.0, tls: ssl.SSLContext | None = None) -> None:
        self.codes = list(codes)
        self.got: list[tuple[dict, dict]] = []
        rec = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                rec.got.append((dict(self.headers.items()), json.loads(body)))
                if delay:
                    threading.Event().wait(delay)
                code = rec.codes.pop(0) if rec.codes else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}/falco"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def post(url: str, dry_run: bool = False, **params):
    full = {"headers": {}, "timeout": 2.0, "retries": 2, "ca_cert": "", "client_cert": "",
            "client_key": "", "insecure_skip_verify": False, **params, "url": url}
    action = HttpPost(full)
    a = alert({"proc.pid": 7, "proc.name": "cat"})
    target = action.resolve(a)
    assert isinstance(target, Target)
    return a, action.execute(a, target, dry_run)


@pytest.fixture
def fast_backoff(monkeypatch):
    monkeypatch.setattr("sensor.response.webhook.BACKOFF_S", 0.01)


def test_posts_the_falcosidekick_json_with_headers():
    r = Receiver()
    try:
        a, out = post(r.url, headers={"Authorization": "Bearer s3cret"})
    finally:
        r.close()
    assert out.result == "done" and "HTTP 200" in out.text
    ((headers, body),) = r.got
    assert body == json.loads(json.dumps(alert_dict(a)))
    assert body["uuid"] == a.uuid
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["Content-Type"] == "application/json"


def test_retries_transient_failures(fast_backoff):
    r = Receiver(codes=[503, 429])
    try:
        _, out = post(r.url)
    finally:
        r.close()
    assert out.result == "done"
    assert len(r.got) == 3


def test_gives_up_after_the_retries(fast_backoff):
    r = Receiver(codes=[500, 502, 503, 504])
    try:
        _, out = post(r.url, retries=1)
    finally:
        r.close()
    assert out.result == "failed"
    assert "after 2 attempt(s): HTTP 502" in out.text
    assert len(r.got) == 2


def test_client_errors_are_not_retried(fast_backoff):
    r = Receiver(codes=[401])
    try:
        _, out = post(r.url)
    finally:
        r.close()
    assert out.result == "failed" and "HTTP 401" in out.text
    assert len(r.got) == 1


def test_timeout_is_a_failure(fast_backoff):
    r = Receiver(delay=1.0)
    try:
        _, out = post(r.url, timeout=0.2, retries=0)
    finally:
        r.close()
    assert out.result == "failed"
    assert "timed out" in out.text


def test_refused_connection_is_a_failure(fast_backoff):
    r = Receiver()
    url = r.url
    r.close()
    _, out = post(url, retries=0)
    assert out.result == "failed" and "refused" in out.text.lower()


def test_dry_run_posts_nothing():
    r = Receiver()
    try:
        _, out = post(r.url, dry_run=True)
    finally:
        r.close()
    assert out.reason == "dry_run" and r.got == []


def test_credentials_never_reach_the_record():
    assert shown_url("https://user:pw@hooks.example/x?y=1") == "https://hooks.example/x?y=1"


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _tls_receiver(tmp_path: Path) -> tuple[Receiver, Path]:
    cert, key = _self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return Receiver(tls=ctx), cert


def test_tls_verified_with_the_given_ca(tmp_path):
    r, cert = _tls_receiver(tmp_path)
    try:
        _, out = post(r.url, ca_cert=str(cert))
    finally:
        r.close()
    assert out.result == "done"
    assert len(r.got) == 1


def test_tls_with_an_unknown_ca_fails_unless_told_not_to_verify(tmp_path, fast_backoff):
    r, _ = _tls_receiver(tmp_path)
    try:
        _, refused = post(r.url, retries=0)
        _, accepted = post(r.url, insecure_skip_verify=True)
    finally:
        r.close()
    assert refused.result == "failed" and "CERTIFICATE_VERIFY_FAILED" in refused.text
    assert accepted.result == "done"


def test_a_redirect_is_not_followed_with_the_authorization_header_and_is_a_failure():
    """Issue 14 finding 13: a 302 to a third party got the Authorization header and the record
    said "done, HTTP 200"."""
    third = Receiver()
    bounce = Receiver()
    bounce_handler = bounce.server.RequestHandlerClass

    def redirect(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(302)
        self.send_header("Location", third.url)
        self.send_header("Content-Length", "0")
        self.end_headers()

    bounce_handler.do_POST = redirect

    def capture(self):                 # urllib follows a 302 to a POST with a GET
        third.got.append((dict(self.headers.items()), {}))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    third.server.RequestHandlerClass.do_GET = capture
    try:
        _, out = post(bounce.url, headers={"Authorization": "Bearer s3cret"}, retries=0)
    finally:
        bounce.close()
        third.close()
    assert third.got == []
    assert (out.result, out.reason) == ("failed", "error")
    assert f"answered HTTP 302 Found, a redirect to {third.url}; not followed" in out.text

"""The webhook's TLS material (sensor/sources/k8s_audit/certs.py): a CA, a server certificate it signs,
reuse and renewal of the self-signed one in state_dir."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from sensor.sources.k8s_audit import certs


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_the_server_certificate_is_signed_by_the_ca_for_the_names_given() -> None:
    b = certs.generate(["audit.example.com", "10.96.0.12", "::1"], days=30)
    ca, cert = load(b.ca_pem), load(b.cert_pem)
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["audit.example.com"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["10.96.0.12", "::1"]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ExtendedKeyUsageOID.SERVER_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    life = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=29) < life <= dt.timedelta(days=30)
    assert b.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_python_tls_accepts_the_pair_and_verifies_it_against_the_ca(tmp_path: Path) -> None:
    paths = certs.write_files(certs.generate(["localhost"]), tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(paths["tls.crt"], paths["tls.key"])
    client = ssl.create_default_context(cafile=str(paths["ca.crt"]))
    assert client.verify_mode == ssl.CERT_REQUIRED and client.check_hostname
    assert (paths["tls.key"].stat().st_mode & 0o777) == 0o600


def test_no_names_no_certificate() -> None:
    with pytest.raises(ValueError, match="at least one host"):
        certs.generate([])


def test_the_self_signed_certificate_is_made_once_and_reused(tmp_path: Path) -> None:
    cert, key, ca, created = certs.ensure_self_signed(tmp_path, ["localhost", "127.0.0.1"])
    assert created and cert.exists() and key.exists() and ca.exists()
    first = cert.read_bytes()
    _, _, _, again = certs.ensure_self_signed(tmp_path, ["127.0.0.1"])
    assert not again and cert.read_bytes() == first


def test_it_is_made_again_for_a_new_name_or_when_it_expires_soon(tmp_path: Path) -> None:
    cert, *_ = certs.ensure_self_signed(tmp_path, ["localhost"])
    first = cert.read_bytes()
    _, _, _, created = certs.ensure_self_signed(tmp_path, ["localhost", "audit.internal"])
    assert created and cert.read_bytes() != first
    certs.write_files(certs.generate(["localhost"], days=10), tmp_path)      # inside the renewal window
    _, _, _, created = certs.ensure_self_signed(tmp_path, ["localhost"])
    assert created
    cert.write_text("not a certificate")
    _, _, _, created = certs.ensure_self_signed(tmp_path, ["localhost"])
    assert created and load(cert.read_bytes())


def test_local_hosts_lists_this_host_and_loopback_once() -> None:
    hosts = certs.local_hosts(["audit.internal", "localhost"], listen_host="0.0.0.0")
    assert hosts[0] == "audit.internal"
    assert {"localhost", "127.0.0.1", "::1"} <= set(hosts)
    assert "0.0.0.0" not in hosts and len(hosts) == len(set(hosts))
    assert certs.local_hosts([], listen_host="10.1.2.3")[0] == "10.1.2.3"


def test_kubeconfig_with_and_without_a_token() -> None:
    b = certs.generate(["localhost"])
    with_token = yaml.safe_load(certs.kubeconfig("https://localhost:9765/k8s-audit", b.ca_pem, "tok"))
    assert with_token["users"][0]["user"] == {"token": "tok"}
    assert with_token["current-context"] == with_token["contexts"][0]["name"]
    ctx = with_token["contexts"][0]["context"]
    assert ctx == {"cluster": with_token["clusters"][0]["name"], "user": with_token["users"][0]["name"]}
    without = yaml.safe_load(certs.kubeconfig("https://localhost:9765/k8s-audit", b.ca_pem))
    assert without["users"][0]["user"] == {}

"""TLS material for the audit webhook: a private CA, a server certificate it signs, the kubeconfig.

kube-apiserver's webhook backend verifies the webhook's certificate against the CA in its kubeconfig
(`clusters[].cluster.certificate-authority-data`). We make a CA, sign one server certificate whose
names cover the URL the API server uses, and throw the CA's key away: nothing else is ever signed
with it, so there is no CA key to protect. `falconet certs` writes the result for a cluster (files
or a Secret); the webhook makes one in state_dir at first start for a single host, with a bearer
token beside it. Every file is written through sensor.securefile (private directory, exclusive
temporary file, exact mode).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sensor import securefile

DEFAULT_DAYS = 825          # the longest validity clients that follow the CA/B rules still accept
RENEW_BEFORE_DAYS = 30


@dataclass(frozen=True, slots=True)
class Bundle:
    """PEM text of the CA certificate, the server certificate and the server's private key."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


def generate(hosts: list[str], days: int = DEFAULT_DAYS, org: str = "Falconet") -> Bundle:
    """A new CA and a server certificate for `hosts` (DNS names and IP addresses) signed by it."""
    if not hosts:
        raise ValueError("at least one host name or IP address is needed for the certificate")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"{org} k8s audit webhook CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                                 x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_sans(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                     content_commitment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Bundle(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
    )


def _sans(hosts: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    seen = set()
    for h in hosts:
        if h in seen:
            continue
        seen.add(h)
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return out


def local_hosts(extra: list[str] | tuple[str, ...] = (), listen_host: str = "") -> list[str]:
    """Names this host answers to, for a self-signed certificate: hostname, FQDN, loopback, extras."""
    hosts = [*extra]
    if listen_host and listen_host not in ("0.0.0.0", "::", ""):
        hosts.append(listen_host)
    hosts += [socket.gethostname(), socket.getfqdn(), "localhost", "127.0.0.1", "::1"]
    return [h for i, h in enumerate(hosts) if h and h not in hosts[:i]]


def write_files(bundle: Bundle, directory: Path) -> dict[str, Path]:
    """Write ca.crt, tls.crt (0644) and tls.key (0600) into `directory`, each atomically, through
    sensor.securefile: the directory must be ours (or root's) and writable by nobody else."""
    paths = {"ca.crt": directory / "ca.crt", "tls.crt": directory / "tls.crt",
             "tls.key": directory / "tls.key"}
    dfd = securefile.open_dir(directory)
    try:
        securefile.write_file(paths["tls.key"], bundle.key_pem, 0o600, dir_fd=dfd)
        securefile.write_file(paths["tls.crt"], bundle.cert_pem, 0o644, dir_fd=dfd)
        securefile.write_file(paths["ca.crt"], bundle.ca_pem, 0o644, dir_fd=dfd)
    finally:
        os.close(dfd)
    return paths


def ensure_self_signed(directory: Path, hosts: list[str]) -> tuple[Path, Path, Path, bool]:
    """The webhook's certificate in `directory`, generated when missing, expiring or not covering
    `hosts`. Returns (cert, key, ca, created). UnsafePathError when the directory or the key could
    have been tampered with by another user."""
    cert_p, key_p, ca_p = directory / "tls.crt", directory / "tls.key", directory / "ca.crt"
    dfd = securefile.open_dir(directory)
    try:
        if (securefile.read_secret(key_p, dir_fd=dfd) is not None and cert_p.exists() and ca_p.exists()
                and _still_good(cert_p, hosts)):
            return cert_p, key_p, ca_p, False
    finally:
        os.close(dfd)
    write_files(generate(hosts), directory)
    return cert_p, key_p, ca_p, True


def new_token() -> str:
    """A fresh bearer token: 256 random bits, URL-safe (it travels in an HTTP header)."""
    return secrets.token_urlsafe(32)


def ensure_token(path: Path) -> tuple[str, bool]:
    """The bearer token kept in `path` (0600, ours), generated there when missing.
    Returns (token, created)."""
    dfd = securefile.open_dir(path.parent)
    try:
        data = securefile.read_secret(path, dir_fd=dfd)
        if data is not None and data.strip():
            return data.decode("ascii", "replace").strip(), False
        token = new_token()
        securefile.write_file(path, token.encode() + b"\n", 0o600, dir_fd=dfd)
        return token, True
    finally:
        os.close(dfd)


def _still_good(cert_path: Path, hosts: list[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, OSError, x509.ExtensionNotFound):
        return False
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < dt.timedelta(days=RENEW_BEFORE_DAYS):
        return False
    have = {str(n) for n in names.get_values_for_type(x509.DNSName)}
    have |= {str(n) for n in names.get_values_for_type(x509.IPAddress)}
    want = {str(ipaddress.ip_address(h)) if _is_ip(h) else h for h in hosts}
    return want <= have


def _is_ip(h: str) -> bool:
    try:
        ipaddress.ip_address(h)
    except ValueError:
        return False
    return True


def kubeconfig(url: str, ca_pem: bytes, token: str | None = None) -> str:
    """The kubeconfig kube-apiserver reads with --audit-webhook-config-file (clientcmd v1 Config)."""
    user: dict[str, str] = {"token": token} if token else {}
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "falconet", "cluster": {
            "server": url,
            "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": "kube-apiserver", "user": user}],
        "contexts": [{"name": "falconet", "context": {"cluster": "falconet", "user": "kube-apiserver"}}],
        "current-context": "falconet",
    }
    return yaml.safe_dump(doc, sort_keys=False)


def secret_manifest(bundle: Bundle, name: str, namespace: str, token: str | None = None) -> str:
    """A kubernetes.io/tls Secret holding tls.crt, tls.key, ca.crt (and the bearer token), for the
    webhook's pods."""
    data = [("tls.crt", bundle.cert_pem), ("tls.key", bundle.key_pem), ("ca.crt", bundle.ca_pem)]
    if token:
        data.append(("token", token.encode()))
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": "falconet",
                                "app.kubernetes.io/component": "k8s-audit-webhook"}},
        "type": "kubernetes.io/tls",
        "data": {k: base64.b64encode(v).decode() for k, v in data},
    }
    return yaml.safe_dump(doc, sort_keys=False)

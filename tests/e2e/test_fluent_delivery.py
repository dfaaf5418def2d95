"""Delivery to Fluentd without loss, end to end: a real `falconet run` (Kubernetes audit log source,
real rules) sends alerts over TLS with the shared-key handshake to the in-suite in_forward
(tests/fakes/forward.py), which is stopped and restarted twice while the sensor itself is SIGKILLed
and started again. Every alert arrives, and the spool is empty at the end. A second test keeps
Fluentd down and checks that the spool grows on disk while the sensor's memory does not. A third
runs the lab's transport as shipped: the sensor with compose/sensor/falconet.yaml against an
in_forward set up from fluent/fluent.conf and fluent/conf.d with the compose file's environment.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgpack
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fakes.forward import EventTime, ForwardReceiver, Security, TlsTransport
from fakes.tls import make_tls_files

from deploy import fluentd_config
from sensor.outputs.spool import DiskSpool

ROOT = Path(__file__).resolve().parents[2]
FALCONET = str(ROOT / ".venv" / "bin" / "falconet")

RULES = """\
- rule: ConfigMap created
  desc: a ConfigMap was created
  condition: ka.verb = create and ka.target.resource = configmaps
  output: ConfigMap created (user=%ka.user.name name=%ka.target.name id=%ka.auditid)
  priority: Notice
  source: k8s_audit
  tags: [k8s]
"""


def audit_line(i: int) -> str:
    return json.dumps({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": f"audit-{i:05d}",
        "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/default/configmaps", "verb": "create",
        "user": {"username": "alice"}, "sourceIPs": ["10.0.0.1"],
        "objectRef": {"resource": "configmaps", "namespace": "default", "name": f"cm-{i}", "apiVersion": "v1"},
        "responseStatus": {"code": 201},
        "requestReceivedTimestamp": "2024-03-01T12:00:00.000000Z",
        "stageTimestamp": f"2024-03-01T12:{i // 6000 % 60:02d}:{i // 100 % 60:02d}.{i % 100:02d}0000Z",
    }) + "\n"


def audit_id(record: dict[str, Any]) -> str:
    return record["falco"]["output_fields"]["ka.auditid"]


def alerts(rx: ForwardReceiver) -> list[Any]:
    """What arrived under the alerts tag (the sensor's own log arrives too, as falconet.log)."""
    return [r for r in rx.received if r.tag == "falconet.alerts"]


class Sensor:
    """`falconet run` as a subprocess."""

    def __init__(self, *args: str) -> None:
        self.args = [FALCONET, "run", *args]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, log: Path, env: dict[str, str] | None = None) -> None:
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        finally:
            self.log.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def spooled_ids(spool_dir: Path) -> set[str]:
    """event.ids of the alerts waiting in a (stopped) sensor's fluent spool."""
    spool = DiskSpool(spool_dir, 1 << 40)
    try:
        ids = set()
        for entry in spool.peek(1 << 30, 0):
            _time, record = msgpack.unpackb(entry, raw=False, ext_hook=lambda c, d: (c, d))
            ids.add(record["event"]["id"])
        return ids
    finally:
        spool.close()


def wait(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_every_alert_arrives_through_fluentd_restarts_and_a_sensor_sigkill(tmp_path: Path) -> None:
    total = 10_000
    tls = make_tls_files(tmp_path / "tls")
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    audit = tmp_path / "audit.log"
    audit.touch()
    state = tmp_path / "state"
    rx = ForwardReceiver(security=Security("fluent-key", "fluentd-aggregator"),
                         transport=TlsTransport(cert_path=str(tls.server_cert), private_key_path=str(tls.server_key),
                                                ca_path=str(tls.ca), client_cert_auth=True)).start()
    sensor_args = (
        "-r", str(rules), "-o", "syscall.enabled=false", "-o", f"k8s_audit.files=[{audit}]",
        "-o", f"state_dir={state}", "-o", "webserver.enabled=false", "-o", "stdout_output.enabled=false",
        "-o", "fluent_output.enabled=true", "-o", f"fluent_output.port={rx.port}",
        "-o", "fluent_output.tls.enabled=true", "-o", f"fluent_output.tls.ca_cert={tls.ca}",
        "-o", f"fluent_output.tls.client_cert={tls.client_cert}",
        "-o", f"fluent_output.tls.client_key={tls.client_key}",
        "-o", "fluent_output.shared_key=fluent-key", "-o", "hostname=node-7",
        "-o", "fluent_output.batch_size=200", "-o", "outputs_queue.retry_initial=50ms",
        "-o", "outputs_queue.retry_max=300ms", "-o", "outputs_queue.shutdown_timeout=60s",
    )
    first, second = Sensor(*sensor_args), Sensor(*sensor_args)
    written = 0

    def writer() -> None:
        nonlocal written
        with open(audit, "a") as f:
            for start in range(0, total, 100):           # ~2,000 events a second
                f.write("".join(audit_line(i) for i in range(start, start + 100)))
                f.flush()
                written = start + 100
                time.sleep(0.05)

    def arrived() -> set[str]:
        return {audit_id(r.record) for r in alerts(rx)}

    feeding = threading.Thread(target=writer, daemon=True)
    try:
        first.start(tmp_path / "sensor-1.log")
        feeding.start()
        wait(lambda: len(alerts(rx)) >= 1000, 60, "the first 1,000 alerts")
        rx.stop()                                        # Fluentd down (1) ...
        time.sleep(0.7)
        rx.start()                                       # ... and back on the same port
        wait(lambda: written >= 5000 and len(arrived()) >= 2500, 60, "half of the events")
        rx.stop()                                        # Fluentd down (2) ...
        spool_dir = state / "spool" / "fluent"
        # A real backlog: alerts produced (fluent spools each on the engine thread) and not
        # received. The spool's file size alone also counts delivered entries not yet compacted.
        wait(lambda: written - len(arrived()) > 1000, 30, "a backlog of alerts in the spool")
        time.sleep(0.5)                                  # the log follower catches up with the writer
        first.signal(signal.SIGKILL)                     # ... and the sensor dies without a chance to flush
        assert first.wait(10) == -signal.SIGKILL
        spooled = spooled_ids(spool_dir)
        second.start(tmp_path / "sensor-2.log")
        time.sleep(1.0)
        rx.start()
        feeding.join(60)
        assert written == total
        wait(lambda: len(arrived()) == total, 120, "every audit event's alert")
        second.signal(signal.SIGTERM)
        assert second.wait(60) == 0, (tmp_path / "sensor-2.log").read_text()
    finally:
        first.kill()
        second.kill()
        rx.stop()

    received = alerts(rx)
    # The sensor's own log came the same way, under its own tag.
    assert any(r.tag == "falconet.log" and r.record["event"]["dataset"] == "falconet.log" for r in rx.received)
    assert rx.errors == []
    assert arrived() == {f"audit-{i:05d}" for i in range(total)}
    ids = [r.record["event"]["id"] for r in received]
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i) for i in ids)
    # What the killed sensor had spooled but not yet delivered arrived after the restart.
    assert len(spooled) > 100 and spooled <= set(ids)
    # A redelivered alert is the same document (same event.id), so Elasticsearch keeps it once.
    by_id: dict[str, dict[str, Any]] = {}
    for r in received:
        assert by_id.setdefault(r.record["event"]["id"], r.record) == r.record
    assert all(r.tag == "falconet.alerts" and isinstance(r.time, EventTime) for r in received)
    assert all(r.mode == "PackedForward" for r in received)
    first_doc = next(r for r in received if audit_id(r.record) == "audit-00000")
    assert first_doc.time == EventTime(1709294400, 0)
    assert first_doc.record["event"]["kind"] == "alert" and first_doc.record["host"]["name"] == "node-7"
    assert first_doc.record["rule"]["name"] == "ConfigMap created"
    assert rx.handshakes >= 3 and rx.connections >= 3
    # Everything was acknowledged: the spool holds nothing.
    assert list((state / "spool" / "fluent").glob("*.seg")) == []
    log = (tmp_path / "sensor-2.log").read_text()
    assert "from an earlier run will be delivered first" in log
    summary = log.strip().splitlines()[-1]
    assert re.fullmatch(r"Events detected: \d+; events processed: \d+; drops: 0 events, 0 alerts; elapsed: .*",
                        summary), summary


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


@pytest.mark.slow
def test_a_long_outage_grows_the_spool_on_disk_not_the_memory(tmp_path: Path) -> None:
    total = 20_000
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    audit = tmp_path / "audit.log"
    audit.write_text("".join(audit_line(i) for i in range(total)))
    state = tmp_path / "state"
    fluent_port, web_port = free_port(), free_port()       # nothing listens on fluent_port yet
    padding = "x" * 2000                                    # ~2.5 KB per alert on the wire
    sensor = Sensor("-r", str(rules), "-o", "syscall.enabled=false", "-o", f"state_dir={state}",
                    "-o", "stdout_output.enabled=false", "-o", "webserver.listen_address=127.0.0.1",
                    "-o", f"webserver.listen_port={web_port}", "-o", "fluent_output.enabled=true",
                    "-o", f"fluent_output.port={fluent_port}", "-o", "outputs_queue.retry_max=200ms",
                    "-o", f"static_fields={{padding: {padding}}}", "-o", "outputs_queue.shutdown_timeout=60s")
    spool_dir = state / "spool" / "fluent"

    def spool_bytes() -> int:
        return sum(p.stat().st_size for p in spool_dir.glob("*.seg"))

    # The audit log is appended after the start so the early memory sample sees a small spool.
    sensor.args += ["-o", f"k8s_audit.files=[{audit}.live]"]
    Path(f"{audit}.live").touch()
    rx = ForwardReceiver(port=fluent_port)
    try:
        sensor.start(tmp_path / "sensor.log")
        with open(f"{audit}.live", "a") as live, open(audit) as src:
            lines = src.readlines()
            live.writelines(lines[:2000])
            live.flush()
            wait(lambda: spool_bytes() > 4_000_000, 60, "the first 2,000 alerts spooled")
            time.sleep(0.5)
            early = rss_kib(sensor.proc.pid)               # type: ignore[union-attr]
            live.writelines(lines[2000:])
        wait(lambda: spool_bytes() > 45_000_000, 120, "all alerts spooled")
        wait(lambda: metric(web_port, 'falconet_output_queue_depth') == total, 30, "the spool depth metric")
        late = rss_kib(sensor.proc.pid)                    # type: ignore[union-attr]
        spooled = spool_bytes()
        assert metric(web_port, "falconet_output_spool_bytes") == spooled
        assert metric(web_port, "falconet_output_queue_oldest_age_seconds") > 0
        assert metric(web_port, "falcosecurity_falco_outputs_queue_num_drops_total") == 0
        # 18,000 more alerts (~50 MB) went to disk; the process grew by less than 8 MiB (about 1.3 MiB
        # when measured: allocator noise, not alerts).
        assert late - early < 8 * 1024, (early, late, spooled)
        rx.start()                                          # Fluentd is back: the spool drains
        wait(lambda: len(alerts(rx)) >= total, 120, "delivery of the spooled alerts")
        sensor.signal(signal.SIGTERM)
        assert sensor.wait(60) == 0
    finally:
        sensor.kill()
        rx.stop()
    assert len({r.record["event"]["id"] for r in alerts(rx)}) == total
    assert list(spool_dir.glob("*.seg")) == []
    assert os.path.exists(spool_dir / "cursor")


# -- the lab's transport, as shipped ----------------------------------------------------------------

COMPOSE = ROOT / "compose" / "docker-compose.yml"
FLUENT_CONF = ROOT / "fluent" / "fluent.conf"


def lab_certificates(certs: Path) -> None:
    """What compose/setup/certs.sh makes with elasticsearch-certutil (RSA 2048, PEM): the lab CA in
    ca/ca.crt and Fluentd's certificate for `fluentd`, `localhost` and 127.0.0.1 in fluentd/."""
    now = datetime.datetime.now(datetime.UTC)

    def cert(subject: str, key: rsa.RSAPrivateKey, issuer: str, signer: rsa.RSAPrivateKey, ca: bool) -> bytes:
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            b = b.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("fluentd"), x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return b.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)

    def pem(key: rsa.RSAPrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())

    ca_key, fluentd_key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    (certs / "ca").mkdir(parents=True)
    (certs / "fluentd").mkdir()
    ca_name = "Elastic Certificate Tool Autogenerated CA"
    (certs / "ca" / "ca.crt").write_bytes(cert(ca_name, ca_key, ca_name, ca_key, ca=True))
    (certs / "fluentd" / "fluentd.crt").write_bytes(cert("fluentd", fluentd_key, ca_name, ca_key, ca=False))
    (certs / "fluentd" / "fluentd.key").write_bytes(pem(fluentd_key))


def compose_service_env(service: str, certs: Path, shared_key: str) -> dict[str, str]:
    """The environment compose/docker-compose.yml gives a service, with compose/.env's shared key and
    the `certs` volume's mount point (/fluentd/certs, /certs) moved to `certs`."""
    env = yaml.safe_load(COMPOSE.read_text())["services"][service]["environment"]
    out = {}
    for k, v in env.items():
        v = re.sub(r"\$\{FLUENT_SHARED_KEY[^}]*\}", shared_key, str(v))
        out[k] = re.sub(r"^/(fluentd/)?certs", str(certs), v)
    return out


def in_forward_as_configured(env: dict[str, str]) -> ForwardReceiver:
    """The fake in_forward set up from the <source> @type forward that fluent/fluent.conf and
    fluent/conf.d make with `env`, on a free loopback port instead of bind/port."""
    root = fluentd_config.parse(FLUENT_CONF, env)
    (source,) = [s for s in root.sections("source") if s.type == "forward"]

    def values(e: fluentd_config.Element) -> dict[str, str | None]:
        return {k: p.value for k, p in e.params.items() if p.value is not fluentd_config.USE_DEFAULT}  # type: ignore[misc]

    assert {e.name for e in source.elements} <= {"security", "transport"}
    security = source.section("security")
    transport = source.section("transport")
    return ForwardReceiver.from_config(
        values(source), security=values(security) if security else None,
        users=[values(u) for u in security.sections("user")] if security else [],
        transport=(transport.arg, values(transport)) if transport else None, port=free_port())


@pytest.mark.slow
def test_the_labs_transport_delivers_every_alert(tmp_path: Path) -> None:
    total = 1000
    certs = tmp_path / "certs"
    lab_certificates(certs)
    shared_key = "lab-shared-key-from-compose-env"
    rx = in_forward_as_configured(compose_service_env("fluentd", certs, shared_key))
    # As the lab has it: TLS verified against the lab CA, a shared key, no user authentication.
    assert rx.transport is not None and not rx.transport.client_cert_auth
    assert rx.security is not None and not rx.security.user_auth
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    audit = tmp_path / "audit.log"
    audit.write_text("".join(audit_line(i) for i in range(total)))
    state = tmp_path / "state"
    lab_yaml = yaml.safe_load((ROOT / "compose" / "sensor" / "falconet.yaml").read_text())
    assert lab_yaml["fluent_output"]["tls"]["ca_cert"] == "/certs/ca/ca.crt"
    sensor_env = compose_service_env("sensor", certs, shared_key)
    sensor = Sensor("-c", str(ROOT / "compose" / "sensor" / "falconet.yaml"), "-r", str(rules),
                    # What differs on this machine: no eBPF, the audit log as the source, the lab
                    # certificate's other name and the CA where this test keeps it.
                    "-o", "syscall.enabled=false", "-o", f"k8s_audit.files=[{audit}]", "-o", f"state_dir={state}",
                    "-o", "webserver.enabled=false", "-o", "stdout_output.enabled=false",
                    "-o", "fluent_output.host=localhost", "-o", f"fluent_output.port={rx.port}",
                    "-o", f"fluent_output.tls.ca_cert={certs}/ca/ca.crt")
    rx.start()
    try:
        sensor.start(tmp_path / "sensor.log", env={**os.environ, **sensor_env})
        wait(lambda: len(alerts(rx)) >= total, 90, f"{total} alerts")
        sensor.signal(signal.SIGTERM)
        assert sensor.wait(60) == 0, (tmp_path / "sensor.log").read_text()
        assert rx.wait_for(lambda r: not r._conns, 10)
    finally:
        sensor.kill()
        rx.stop()
    assert sorted(audit_id(r.record) for r in alerts(rx)) == [f"audit-{i:05d}" for i in range(total)]
    assert rx.handshakes >= 1 and set(rx.tls_versions) == {"TLSv1.2"}
    # No handshake refused, no TLS session left without close_notify, nothing malformed.
    assert rx.errors == []
    assert list((state / "spool" / "fluent").glob("*.seg")) == []


# -- a capture sent through the pipeline again: `falconet replay --outputs` -------------------------


def replay(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return subprocess.run([FALCONET, "replay", str(tmp_path / "capture.jsonl"), "-r", str(rules), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_replay_with_outputs_delivers_a_capture_to_fluentd(tmp_path: Path) -> None:
    total = 300
    (tmp_path / "capture.jsonl").write_text("".join(audit_line(i) for i in range(total)))
    state = tmp_path / "state"
    with ForwardReceiver(security=Security("k", "fluentd")) as rx:
        done = replay(tmp_path, "--outputs", "-o", "stdout_output.enabled=false", "-o", f"state_dir={state}",
                      "-o", "fluent_output.enabled=true", "-o", f"fluent_output.port={rx.port}",
                      "-o", "fluent_output.shared_key=k", "-o", "hostname=replayer")
        assert done.returncode == 0, done.stderr
        assert done.stdout == ""                            # stdout_output is off: nothing printed
    assert sorted(audit_id(r.record) for r in alerts(rx)) == [f"audit-{i:05d}" for i in range(total)]
    assert {r.record["host"]["name"] for r in alerts(rx)} == {"replayer"}
    assert list((state / "spool" / "fluent").glob("*.seg")) == []
    assert re.search(rf"Events detected: {total}; events processed: {total}; drops: 0 events, 0 alerts",
                     done.stderr), done.stderr


def test_replay_refuses_output_overrides_it_would_ignore(tmp_path: Path) -> None:
    (tmp_path / "capture.jsonl").write_text(audit_line(1))
    with ForwardReceiver() as rx:
        for override in (f"fluent_output.port={rx.port}", "fluent_output={enabled: true}",
                         "stdout_output.enabled=false", "outputs_queue.capacity=5"):
            done = replay(tmp_path, "-o", "fluent_output.enabled=true", "-o", override)
            assert done.returncode == 3, done.stderr
            assert done.stderr.strip() == ("falconet: error: -o fluent_output.enabled=true: replay prints the "
                                           "alerts and runs no output (add --outputs to send them through the "
                                           "configured outputs)"), done.stderr
            assert done.stdout == ""
        printed = replay(tmp_path, "--json")             # printing alone still works, as before
        assert printed.returncode == 0 and json.loads(printed.stdout)["rule"] == "ConfigMap created"
    assert rx.received == [] and rx.connections == 0

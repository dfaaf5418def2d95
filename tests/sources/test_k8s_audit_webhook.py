"""The audit webhook (sensor/sources/k8s_audit/webhook.py), driven by real HTTPS requests on 127.0.0.1.

Each test starts its own webhook on a free port with a certificate signed by a test CA, and talks to
it the way kube-apiserver does: POSTing audit Events and EventLists as JSON over TLS.
"""

from __future__ import annotations

import copy
import http.client
import json
import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sensor.errors import ConfigError, UnavailableError
from sensor.sources.k8s_audit import certs as k8s_audit_certs
from sensor.sources.k8s_audit.settings import Limits
from sensor.sources.k8s_audit.webhook import WebhookSource

DATA = Path(__file__).resolve().parent.parent / "data" / "k8s_audit"
EVENTS = [json.loads(line) for line in (DATA / "events.jsonl").read_text().splitlines()]
TOKEN = "s3cr3t-test-token"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("tls")
    paths = k8s_audit_certs.write_files(k8s_audit_certs.generate(["localhost", "127.0.0.1"]), d)
    ctx = ssl.create_default_context(cafile=str(paths["ca.crt"]))
    return {"cert": str(paths["tls.crt"]), "key": str(paths["tls.key"]), "ctx": ctx}


@pytest.fixture
def webhook(tls: dict[str, Any], tmp_path: Path) -> Iterator[Callable[..., WebhookSource]]:
    started: list[WebhookSource] = []

    def start(token: str | None = TOKEN, **limits: Any) -> WebhookSource:
        src = WebhookSource("127.0.0.1", 0, tls_cert=tls["cert"], tls_key=tls["key"], token=token,
                            limits=Limits(**limits), state_dir=tmp_path)
        src.start()
        started.append(src)
        return src

    yield start
    for s in started:
        s.stop()


def post(src: WebhookSource, ctx: ssl.SSLContext, body: Any, *, path: str = "/k8s-audit",
         headers: dict[str, str] | None = None, conn: http.client.HTTPSConnection | None = None,
         auth: bool = True) -> tuple[int, dict[str, Any], http.client.HTTPResponse]:
    """POST a JSON body (bytes are sent as they are) with the webhook's bearer token as
    kube-apiserver does (unless `auth` is false); returns status, decoded answer, response."""
    port = src.address[1]
    c = conn or http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    bearer = {"Authorization": f"Bearer {src.token.decode()}"} if src.token and auth else {}
    c.request("POST", path, body=data, headers={"Content-Type": "application/json", **bearer, **(headers or {})})
    resp = c.getresponse()
    raw = resp.read()
    if conn is None:
        c.close()
    return resp.status, (json.loads(raw) if raw else {}), resp


def drain(src: WebhookSource, n: int, timeout: float = 10.0) -> list[Any]:
    """Poll until `n` events arrived (and briefly after, to catch extras)."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += src.poll(0.1)
    got += src.poll(0.05)
    return got


def event_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items}


def fresh(ev: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(ev)
    out["auditID"] = str(uuid.uuid4())
    return out


def head(src: WebhookSource, *lines: bytes) -> bytes:
    """The head of a POST to /k8s-audit with the bearer token, the JSON type and `lines`."""
    auth = b"Authorization: Bearer %s\r\n" % src.token if src.token else b""
    return (b"POST /k8s-audit HTTP/1.1\r\nHost: localhost\r\n" + auth + b"Content-Type: application/json\r\n"
            + b"".join(line + b"\r\n" for line in lines) + b"\r\n")


def raw_tls(src: WebhookSource, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    sock = socket.create_connection(src.address, timeout=10)
    return ctx.wrap_socket(sock, server_hostname="localhost")


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        pass
    return out


# ---------------------------------------------------------------------------------------------
# What the API server sends
# ---------------------------------------------------------------------------------------------

def test_a_single_event_is_answered_200_and_reaches_the_engine(webhook, tls) -> None:
    src = webhook()
    status, answer, _ = post(src, tls["ctx"], EVENTS[1])
    assert (status, answer) == (200, {"status": "ok", "accepted": 1})
    [ev] = drain(src, 1)
    assert ev.obj == EVENTS[1] and ev.source == "k8s_audit" and ev.num == 1
    assert src.stats()["events"] == 1 and src.stats()["drops"] == 0


def test_the_sample_stream_in_eventlist_batches_arrives_whole_and_in_order(webhook, tls) -> None:
    src = webhook()
    for i in range(0, len(EVENTS), 5):
        status, answer, _ = post(src, tls["ctx"], event_list(EVENTS[i:i + 5]))
        assert status == 200 and answer["accepted"] == len(EVENTS[i:i + 5])
    got = drain(src, len(EVENTS))
    assert [e.obj["auditID"] for e in got] == [e["auditID"] for e in EVENTS]
    assert [e.num for e in got] == list(range(1, len(EVENTS) + 1))
    assert got[0].time_ns < got[-1].time_ns


def test_a_json_array_on_the_underscore_path_and_keep_alive(webhook, tls) -> None:
    src = webhook()
    conn = http.client.HTTPSConnection("localhost", src.address[1], context=tls["ctx"], timeout=10)
    try:
        assert post(src, tls["ctx"], EVENTS[:3], path="/k8s_audit", conn=conn)[0] == 200
        assert post(src, tls["ctx"], EVENTS[3:5], path="/k8s-audit", conn=conn)[0] == 200
    finally:
        conn.close()
    assert len(drain(src, 5)) == 5


def test_a_configured_path_is_served_besides_the_default_ones(tls, tmp_path) -> None:
    src = WebhookSource("127.0.0.1", 0, path="/audit/events", tls_cert=tls["cert"], tls_key=tls["key"],
                        state_dir=tmp_path)
    src.start()
    try:
        assert post(src, tls["ctx"], EVENTS[0], path="/audit/events")[0] == 200
        assert post(src, tls["ctx"], EVENTS[0], path="/audit/events?timeout=30s")[0] == 200
        status, answer, _ = post(src, tls["ctx"], EVENTS[0], path="/other")
        assert status == 404 and "/audit/events" in answer["reason"]
    finally:
        src.stop()


# ---------------------------------------------------------------------------------------------
# What is refused, with what answer
# ---------------------------------------------------------------------------------------------

def test_malformed_json_is_400_with_the_reason_and_queues_nothing(webhook, tls) -> None:
    src = webhook()
    status, answer, _ = post(src, tls["ctx"], b'{"kind": "EventList", "items": [')
    assert status == 400 and answer["reason"].startswith("body is not valid JSON: ")
    status, answer, _ = post(src, tls["ctx"], b"\xff\xfe not utf-8")
    assert status == 400 and "not valid JSON" in answer["reason"]
    assert drain(src, 1, timeout=0.3) == []
    assert src.stats()["bad_requests"] == 2


def test_a_non_audit_object_is_400_with_the_reason(webhook, tls) -> None:
    src = webhook()
    status, answer, _ = post(src, tls["ctx"], {"kind": "Pod", "apiVersion": "v1", "metadata": {}})
    assert status == 400
    assert answer["reason"] == "the body is a 'Pod', not an audit.k8s.io Event or EventList"
    assert drain(src, 1, timeout=0.3) == []


def test_a_malformed_item_is_refused_and_the_rest_of_the_batch_queued(webhook, tls) -> None:
    src = webhook()
    broken = {k: v for k, v in EVENTS[3].items() if k != "stageTimestamp"}
    status, answer, _ = post(src, tls["ctx"], event_list([EVENTS[1], broken, EVENTS[2]]))
    assert status == 400
    assert answer["accepted"] == 2 and answer["rejected"] == 1
    assert answer["reason"] == "items[1] has no stageTimestamp (the event time)"
    assert [e.obj["auditID"] for e in drain(src, 2)] == [EVENTS[1]["auditID"], EVENTS[2]["auditID"]]
    assert src.stats()["drops_invalid"] == 1 and src.stats()["drops"] == 1


def test_a_body_over_max_batch_size_is_413_and_the_connection_closed(webhook, tls) -> None:
    src = webhook(max_batch_size=64 * 1024)
    big = event_list([EVENTS[1]] * 60)            # ~80 KB
    status, answer, resp = post(src, tls["ctx"], big)
    assert status == 413 and "max_batch_size (65536 bytes)" in answer["reason"]
    assert resp.getheader("Connection") == "close"
    assert drain(src, 1, timeout=0.3) == []
    assert post(src, tls["ctx"], EVENTS[1])[0] == 200      # the next request is served


def test_expect_100_continue_over_the_limit_is_refused_before_the_body(webhook, tls) -> None:
    src = webhook(max_batch_size=1024)
    s = raw_tls(src, tls["ctx"])
    s.sendall(head(src, b"Content-Length: 5000000", b"Expect: 100-continue"))
    answer = read_all(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"100 Continue" not in answer


def test_an_event_over_max_event_size_is_413_and_the_others_are_queued(webhook, tls) -> None:
    src = webhook(max_event_size=4096)
    padded = copy.deepcopy(EVENTS[8])
    padded["requestObject"]["data"]["filler"] = "x" * 5000
    status, answer, _ = post(src, tls["ctx"], event_list([EVENTS[0], padded, EVENTS[9]]))
    assert status == 413
    assert answer["accepted"] == 2 and answer["rejected"] == 1
    assert answer["reason"].startswith("items[1] is ") and "over k8s_audit.max_event_size (4096)" in \
        answer["reason"]
    assert [e.obj["auditID"] for e in drain(src, 2)] == [EVENTS[0]["auditID"], EVENTS[9]["auditID"]]
    assert src.stats()["drops_too_large"] == 1


@pytest.mark.parametrize(("headers", "status", "counter"), [
    ({}, 401, "unauthorized"),
    ({"Authorization": "Bearer not-the-token"}, 403, "forbidden"),
    ({"Authorization": "Basic czNjcjN0LXRva2Vu"}, 403, "forbidden"),
    ({"Authorization": "Bearer s3cr3t-token-but-longer"}, 403, "forbidden"),
])
def test_a_missing_or_wrong_bearer_token_is_refused(webhook, tls, headers, status, counter) -> None:
    src = webhook(token="s3cr3t-token")
    got, answer, resp = post(src, tls["ctx"], EVENTS[1], headers=headers, auth=False)
    assert got == status and answer["code"] == status
    if status == 401:
        assert resp.getheader("WWW-Authenticate") == 'Bearer realm="falconet"'
    assert drain(src, 1, timeout=0.3) == []
    assert src.stats()[counter] == 1


def test_the_right_bearer_token_is_accepted(webhook, tls) -> None:
    src = webhook(token="s3cr3t-token")
    assert post(src, tls["ctx"], EVENTS[1], headers={"Authorization": "Bearer s3cr3t-token"}, auth=False)[0] == 200
    assert len(drain(src, 1)) == 1


def test_other_methods_paths_and_content_types(webhook, tls) -> None:
    src = webhook()
    c = http.client.HTTPSConnection("localhost", src.address[1], context=tls["ctx"], timeout=10)
    c.request("GET", "/k8s-audit")
    r = c.getresponse()
    assert r.status == 405 and r.getheader("Allow") == "POST"
    r.read()
    c.request("GET", "/healthz")
    r = c.getresponse()
    assert (r.status, json.loads(r.read())) == (200, {"status": "ok"})
    c.close()
    status, answer, _ = post(src, tls["ctx"], EVENTS[1], headers={"Content-Type": "text/plain"})
    assert status == 415 and "application/json" in answer["reason"]
    assert post(src, tls["ctx"], EVENTS[1], path="/")[0] == 404
    assert post(src, tls["ctx"], EVENTS[1],
                headers={"Content-Type": "application/json; charset=utf-8"})[0] == 200


def test_a_request_without_content_length_is_411(webhook, tls) -> None:
    src = webhook()
    s = raw_tls(src, tls["ctx"])
    s.sendall(head(src))
    answer = read_all(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 411 ")


def test_a_chunked_body_is_read(webhook, tls) -> None:
    src = webhook()
    body = json.dumps(event_list(EVENTS[:4])).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                      for i in range(0, len(body), 1000))
    s = raw_tls(src, tls["ctx"])
    s.sendall(head(src, b"Transfer-Encoding: chunked", b"Connection: close") + chunks + b"0\r\n\r\n")
    answer = read_all(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'{"status":"ok","accepted":4}\n')
    assert len(drain(src, 4)) == 4


# ---------------------------------------------------------------------------------------------
# Clients that misbehave, and many at once
# ---------------------------------------------------------------------------------------------

def timed_post(src: WebhookSource, ctx: ssl.SSLContext, body: Any) -> tuple[int, float]:
    t = time.monotonic()
    status = post(src, ctx, body)[0]
    return status, time.monotonic() - t


def test_a_client_that_never_finishes_its_headers_blocks_nobody_and_is_cut_off(webhook, tls) -> None:
    src = webhook(request_timeout=1.0)
    slow = raw_tls(src, tls["ctx"])
    slow.sendall(b"POST /k8s-audit HTTP/1.1\r\nHost: localhost\r\nContent-")      # ... and nothing more
    status, took = timed_post(src, tls["ctx"], EVENTS[1])
    assert status == 200 and took < 0.9
    t = time.monotonic()
    assert read_all(slow) == b""                                  # the server hung up on it
    assert time.monotonic() - t < 3
    slow.close()
    assert src.stats()["timeouts"] == 1


def test_a_client_that_never_finishes_its_body_blocks_nobody_and_queues_nothing(webhook, tls) -> None:
    src = webhook(request_timeout=1.0)
    slow = raw_tls(src, tls["ctx"])
    body = json.dumps(EVENTS[2]).encode()
    slow.sendall(head(src, b"Content-Length: %d" % len(body)) + body[:100])
    status, took = timed_post(src, tls["ctx"], EVENTS[1])
    assert status == 200 and took < 0.9
    assert read_all(slow) == b""
    slow.close()
    got = drain(src, 2, timeout=0.5)
    assert [e.obj["auditID"] for e in got] == [EVENTS[1]["auditID"]]
    assert src.stats()["timeouts"] == 1 and src.stats()["bad_requests"] == 1


def test_a_client_that_trickles_bytes_is_cut_off_at_the_request_deadline(webhook, tls) -> None:
    src = webhook(request_timeout=1.0)
    slow = raw_tls(src, tls["ctx"])
    started = time.monotonic()
    closed = False
    for b in b"POST /k8s-audit HTTP/1.1\r\nHost: localhost\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaa":
        try:
            slow.sendall(bytes([b]))
        except OSError:
            closed = True
            break
        time.sleep(0.1)                      # each byte well inside any per-read timeout
        if time.monotonic() - started > 4:
            break
    if not closed:
        closed = read_all(slow, timeout=3) == b""
    slow.close()
    assert closed and time.monotonic() - started < 4


def test_a_client_that_never_starts_tls_blocks_nobody(webhook, tls) -> None:
    src = webhook(request_timeout=1.0)
    silent = socket.create_connection(src.address, timeout=10)     # no ClientHello, ever
    status, took = timed_post(src, tls["ctx"], EVENTS[1])
    assert status == 200 and took < 0.9
    assert read_all(silent) == b""
    silent.close()
    assert src.stats()["timeouts"] == 1


def test_idle_keep_alive_connections_are_closed_after_idle_timeout(webhook, tls) -> None:
    src = webhook(request_timeout=5.0, idle_timeout=0.5)
    s = raw_tls(src, tls["ctx"])
    body = json.dumps(EVENTS[1]).encode()
    s.sendall(head(src, b"Content-Length: %d" % len(body)) + body)
    t = time.monotonic()
    answer = read_all(s, timeout=5)
    s.close()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert 0.4 < time.monotonic() - t < 3


def test_many_concurrent_posters_each_event_arrives_exactly_once(webhook, tls) -> None:
    src = webhook(queue_size=100_000)
    threads, per_thread, batch = 12, 8, 5
    sent: list[str] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def poster() -> None:
        conn = http.client.HTTPSConnection("localhost", src.address[1], context=tls["ctx"], timeout=20)
        for i in range(per_thread):
            items = [fresh(EVENTS[(i + j) % len(EVENTS)]) for j in range(batch)]
            status = post(src, tls["ctx"], event_list(items), conn=conn)[0]
            with lock:
                statuses.append(status)
                sent.extend(e["auditID"] for e in items)
        conn.close()

    workers = [threading.Thread(target=poster) for _ in range(threads)]
    for w in workers:
        w.start()
    got: list[Any] = []
    while any(w.is_alive() for w in workers):
        got += src.poll(0.05)
    for w in workers:
        w.join()
    got += drain(src, threads * per_thread * batch - len(got))
    assert statuses == [200] * (threads * per_thread)
    ids = [e.obj["auditID"] for e in got]
    assert len(ids) == threads * per_thread * batch
    assert sorted(ids) == sorted(sent)
    assert [e.num for e in got] == list(range(1, len(got) + 1))


def test_a_full_queue_answers_503_so_the_api_server_retries_and_nothing_is_taken_twice(webhook, tls) -> None:
    src = webhook(queue_size=10)
    first = [fresh(e) for e in EVENTS[:8]]
    second = [fresh(e) for e in EVENTS[8:13]]
    assert post(src, tls["ctx"], event_list(first))[0] == 200
    status, answer, resp = post(src, tls["ctx"], event_list(second))
    assert status == 503 and resp.getheader("Retry-After") == "1"
    assert "event queue full (10 events)" in answer["reason"]
    assert src.stats()["drops_busy"] == 5
    got = drain(src, 8)
    assert post(src, tls["ctx"], event_list(second))[0] == 200    # the retry
    got += drain(src, 5)
    assert [e.obj["auditID"] for e in got] == [e["auditID"] for e in first + second]


def test_connections_over_max_connections_are_closed_and_counted(webhook, tls) -> None:
    src = webhook(max_connections=2, request_timeout=5.0)
    held = [raw_tls(src, tls["ctx"]) for _ in range(2)]
    extra = socket.create_connection(src.address, timeout=5)
    assert read_all(extra, timeout=5) == b""
    extra.close()
    assert src.stats()["refused_connections"] == 1
    for s in held:
        s.close()
    deadline = time.monotonic() + 5
    while len(src.conns) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert post(src, tls["ctx"], EVENTS[1])[0] == 200


# ---------------------------------------------------------------------------------------------
# Certificates, start and stop
# ---------------------------------------------------------------------------------------------

def test_without_a_certificate_or_token_both_are_generated_in_state_dir_with_a_kubeconfig(tmp_path) -> None:
    notices: list[str] = []
    src = WebhookSource("127.0.0.1", 0, state_dir=tmp_path, tls_hosts=["audit.example.internal"],
                        notice=notices.append)
    src.start()
    d = tmp_path / "k8s_audit"
    try:
        ca = d / "ca.crt"
        assert src.ca_path == ca and ca.exists()
        for name in ("tls.key", "token", "webhook-kubeconfig.yaml"):
            assert (d / name).stat().st_mode & 0o777 == 0o600, name
        assert d.stat().st_mode & 0o777 == 0o700
        [text] = notices
        assert f"Give kube-apiserver {d / 'webhook-kubeconfig.yaml'} as --audit-webhook-config-file" in text
        token = (d / "token").read_text().strip()
        assert len(token) >= 40 and token not in text          # the secret is in a file, not the log
        kubeconfig = yaml.safe_load((d / "webhook-kubeconfig.yaml").read_text())
        assert kubeconfig["users"][0]["user"] == {"token": token}
        assert kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]
        ctx = ssl.create_default_context(cafile=str(ca))
        assert post(src, ctx, EVENTS[1], auth=False)[0] == 401          # verified as "localhost"
        assert post(src, ctx, EVENTS[1])[0] == 200
    finally:
        src.stop()
    again = WebhookSource("127.0.0.1", 0, state_dir=tmp_path, tls_hosts=["audit.example.internal"],
                          notice=notices.append)
    again.start()
    again.stop()
    assert len(notices) == 1                  # the same certificate and token are used again, silently
    assert again.token == token.encode()


def test_a_missing_certificate_file_is_a_config_error_naming_it(tmp_path) -> None:
    src = WebhookSource("127.0.0.1", 0, tls_cert=str(tmp_path / "nope.crt"), tls_key=str(tmp_path / "nope.key"),
                        state_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"k8s_audit.webhook.tls_cert: .*nope.crt: no such file"):
        src.start()


def test_a_busy_port_is_unavailable_naming_the_address(webhook, tls, tmp_path) -> None:
    first = webhook()
    port = first.address[1]
    second = WebhookSource("127.0.0.1", port, tls_cert=tls["cert"], tls_key=tls["key"], state_dir=tmp_path)
    with pytest.raises(UnavailableError, match=f"127.0.0.1:{port}"):
        second.start()


def test_events_accepted_but_not_taken_before_stop_are_counted_as_drops(webhook, tls) -> None:
    src = webhook()
    assert post(src, tls["ctx"], event_list(EVENTS[:5]))[0] == 200
    assert len(src.poll(0)) == 5                  # the engine took these (queued before the 200) ...
    assert post(src, tls["ctx"], event_list(EVENTS[5:8]))[0] == 200
    src.stop()                                    # ... but not these three
    assert src.stats()["drops_at_stop"] == 3 and src.stats()["drops"] == 3
    assert src.stats()["events"] == 5


def test_stop_closes_the_port_and_can_be_called_twice(webhook, tls) -> None:
    src = webhook()
    port = src.address[1]
    src.stop()
    src.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


# ---------------------------------------------------------------------------------------------
# Attacks from the security review (issue 14: findings 2, 5, 6, 16; issue 18's start-up warning)
# ---------------------------------------------------------------------------------------------

def budget_settles(src: WebhookSource, timeout: float = 5.0) -> int:
    """The memory the webhook holds once the request threads have finished (they release it just
    after the answer goes out)."""
    deadline = time.monotonic() + timeout
    while src.budget.used and time.monotonic() < deadline:
        time.sleep(0.01)
    return src.budget.used


def webhook_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "falconet.k8s_audit" and r.levelno >= logging.WARNING]


def test_by_default_a_token_is_required_and_an_unauthenticated_post_queues_nothing(tls, tmp_path) -> None:
    src = WebhookSource("127.0.0.1", 0, tls_cert=tls["cert"], tls_key=tls["key"], state_dir=tmp_path,
                        notice=lambda text: None)
    src.start()
    try:
        status, answer, _ = post(src, tls["ctx"], EVENTS[1], auth=False)
        assert status == 401 and "bearer token is required" in answer["reason"]
        assert drain(src, 1, timeout=0.3) == []
        token = (tmp_path / "k8s_audit" / "token").read_text().strip()
        assert src.token == token.encode()
        assert post(src, tls["ctx"], EVENTS[1])[0] == 200
    finally:
        src.stop()


def test_the_configuration_turns_auth_off_only_when_asked_and_never_with_a_token(tmp_path) -> None:
    from sensor import config
    from sensor.sources.k8s_audit.build import build_sources
    from sensor.sources.k8s_audit.settings import K8sAuditSettings

    def hook(*overrides: str) -> WebhookSource:
        cfg = config.load(None, [f"state_dir={tmp_path}", "k8s_audit.webhook.enabled=true", *overrides])
        return build_sources(K8sAuditSettings.from_config(cfg))[0]

    assert hook().require_token and hook().token is None            # generated at start
    assert not hook("k8s_audit.webhook.auth=none").require_token
    with pytest.raises(ConfigError, match=r"token is set while k8s_audit\.webhook\.auth is none"):
        hook("k8s_audit.webhook.auth=none", "k8s_audit.webhook.token=abc")


@pytest.mark.parametrize(("host", "token", "warned"), [
    ("0.0.0.0", None, True), ("127.0.0.1", None, False), ("0.0.0.0", "tok", False)])
def test_listening_on_every_interface_without_a_token_is_warned_about(tls, tmp_path, caplog, host, token,
                                                                      warned) -> None:
    src = WebhookSource(host, 0, tls_cert=tls["cert"], tls_key=tls["key"], state_dir=tmp_path, token=token,
                        require_token=False)
    with caplog.at_level(logging.WARNING, logger="falconet.k8s_audit"):
        src.start()
        src.stop()
    text = "\n".join(r.getMessage() for r in webhook_records(caplog))
    assert ("listening on every interface with no bearer token" in text) == warned, text


def test_the_answer_to_an_unauthenticated_large_post_comes_before_its_body_is_sent(webhook, tls) -> None:
    src = webhook()
    s = raw_tls(src, tls["ctx"])
    s.sendall(b"POST /k8s-audit HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
              b"Content-Length: 12582912\r\n\r\n[{},{},{},")          # 12 MiB announced, 10 bytes sent
    answer = read_all(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 401 ")
    assert budget_settles(src) == 0 and src.stats()["unauthorized"] == 1


def test_a_request_head_over_16_kib_is_431_and_nothing_more_is_read(webhook, tls, caplog) -> None:
    src = webhook()
    s = raw_tls(src, tls["ctx"])
    with caplog.at_level(logging.WARNING, logger="falconet.k8s_audit"):
        s.sendall(b"POST /k8s-audit HTTP/1.1\r\nHost: localhost\r\n" + b"X-Pad: " + b"a" * 17_000 + b"\r\n")
        answer = read_all(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 431 ")
    [record] = webhook_records(caplog)
    assert "431" in record.getMessage() and record.exc_info is None


def test_empty_objects_that_would_take_far_more_memory_than_text_are_refused_undecoded(webhook, tls) -> None:
    src = webhook(memory_limit=16 * 1024 * 1024)
    body = b"[" + b",".join([b"{}"] * 200_000) + b"]"                 # 600 KB: about 30 MB decoded
    status, answer, _ = post(src, tls["ctx"], body)
    assert status == 413 and "over k8s_audit.webhook.memory_limit (16 MiB)" in answer["reason"]
    assert budget_settles(src) == 0
    assert post(src, tls["ctx"], event_list(EVENTS[:3]))[0] == 200     # real batches still fit


def test_while_the_memory_budget_is_held_others_are_told_to_retry(webhook, tls) -> None:
    src = webhook(memory_limit=1024 * 1024, max_batch_size=500 * 1024)
    # A request that has announced 480 KB (960 KB reserved: the body and the estimate's copy) ...
    slow = raw_tls(src, tls["ctx"])
    slow.sendall(head(src, b"Content-Length: 491520") + b"[")
    deadline = time.monotonic() + 5
    while src.budget.used == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    # ... leaves no room for another: 503 with Retry-After, which kube-apiserver retries.
    status, answer, resp = post(src, tls["ctx"], event_list(EVENTS[:6]))
    assert status == 503 and resp.getheader("Retry-After") == "1" and "memory_limit" in answer["reason"]
    slow.close()
    assert budget_settles(src) == 0
    assert post(src, tls["ctx"], event_list(EVENTS[:6]))[0] == 200
    assert src.stats()["busy"] == 1


def test_queued_events_hold_memory_until_the_engine_takes_them(webhook, tls) -> None:
    src = webhook()
    assert post(src, tls["ctx"], event_list(EVENTS[:5]))[0] == 200
    time.sleep(0.1)                               # the request thread releases all but the events' share
    held = src.budget.used
    assert held > sum(len(json.dumps(e)) for e in EVENTS[:5])
    assert len(drain(src, 5)) == 5 and src.budget.used == 0


def test_one_client_cannot_take_every_connection_slot(webhook, tls) -> None:
    src = webhook(max_connections=8, max_connections_per_client=3, request_timeout=30.0)
    silent = []
    for _ in range(5):                           # the attacker's address: 127.0.0.2 (loopback too)
        s = socket.create_connection(src.address, timeout=5, source_address=("127.0.0.2", 0))
        silent.append(ctx_wrap(tls["ctx"], s))
    try:
        assert post(src, tls["ctx"], EVENTS[1])[0] == 200       # another client gets in at once
        assert src.stats()["refused_per_client"] == 2
    finally:
        for s in silent:
            s.close()


def ctx_wrap(ctx: ssl.SSLContext, sock: socket.socket) -> socket.socket:
    """TLS on `sock` when the server lets it in; the bare socket when it was refused at once."""
    try:
        return ctx.wrap_socket(sock, server_hostname="localhost")
    except (OSError, ssl.SSLError):
        return sock


def test_a_silent_tls_connection_is_cut_off_at_the_request_timeout_not_the_idle_timeout(webhook, tls) -> None:
    src = webhook(request_timeout=1.0, idle_timeout=60.0)
    s = raw_tls(src, tls["ctx"])                  # handshake done, no request ever
    t = time.monotonic()
    assert read_all(s, timeout=10) == b""
    s.close()
    assert time.monotonic() - t < 3
    assert src.stats()["timeouts"] == 1


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"kind":"EventList","items":[' + b"[" * 1000 + b"]" * 1000 + b"]}", "nested too deeply"),
    (b'{"kind":"EventList","items":[{"auditID":' + b"7" * 5000 + b"}]}", "an integer of 5000 digits"),
])
def test_deep_nesting_and_huge_integers_are_400_with_one_log_line(webhook, tls, caplog, body, reason) -> None:
    src = webhook()
    with caplog.at_level(logging.DEBUG, logger="falconet"):
        status, answer, _ = post(src, tls["ctx"], body)
    assert status == 400 and reason in answer["reason"]
    [record] = webhook_records(caplog)
    assert reason in record.getMessage() and record.exc_info is None
    assert not [r for r in caplog.records if r.exc_info]


def test_a_content_length_of_superscript_two_is_400_before_authentication(webhook, tls, caplog) -> None:
    src = webhook()
    s = raw_tls(src, tls["ctx"])
    with caplog.at_level(logging.DEBUG, logger="falconet"):
        s.sendall("POST /k8s-audit HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  "Content-Length: ²\r\nExpect: 100-continue\r\n\r\n".encode())
        answer = read_all(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 400 ") and b"is not a number of bytes" in answer
    [record] = webhook_records(caplog)
    assert record.exc_info is None and not [r for r in caplog.records if r.exc_info]
    assert src.stats()["unauthorized"] == 0


def test_a_flood_of_bad_requests_is_logged_a_few_lines_a_second(webhook, tls, caplog) -> None:
    src = webhook()
    conn = http.client.HTTPSConnection("localhost", src.address[1], context=tls["ctx"], timeout=10)
    with caplog.at_level(logging.WARNING, logger="falconet.k8s_audit"):
        for _ in range(40):
            assert post(src, tls["ctx"], b"not json", conn=conn)[0] == 400
    conn.close()
    assert src.stats()["bad_requests"] == 40
    assert len(webhook_records(caplog)) <= 10

"""Automatic response on Kubernetes audit alerts, end to end and without root: `falconet run`
follows an audit log, the bundled "K8s Exec Or Attach Into Pod" rule fires, and the response acts
on the request's pod through tests/fakes/kube_api.py; the records come out beside the alerts."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from conftest import interrupt

from tests.fakes.kube_api import FakeKubeAPI

ROOT = Path(__file__).resolve().parents[2]
FALCONET = str(Path(sys.executable).with_name("falconet"))
RULE = "K8s Exec Or Attach Into Pod"
RECORD_RULE = "Falconet internal: response"


def exec_event(namespace: str, pod: str, audit_id: str) -> dict[str, Any]:
    """kube-apiserver's audit event for `kubectl exec -it POD -- sh` (stage ResponseStarted)."""
    return {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": audit_id,
        "stage": "ResponseStarted",
        "requestURI": f"/api/v1/namespaces/{namespace}/pods/{pod}/exec?command=sh&container=main"
                      "&stdin=true&stdout=true&tty=true",
        "verb": "create",
        "user": {"username": "mallory", "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.12.7"], "userAgent": "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350",
        "objectRef": {"resource": "pods", "namespace": namespace, "name": pod, "apiVersion": "v1",
                      "subresource": "exec"},
        "responseStatus": {"metadata": {}, "code": 101},
        "requestReceivedTimestamp": "2026-03-14T09:27:35.412006Z",
        "stageTimestamp": "2026-03-14T09:27:35.595793Z",
        "annotations": {"authorization.k8s.io/decision": "allow"},
    }


class Run:
    """`falconet run` following one audit log, its stdout parsed as JSON alerts."""

    def __init__(self, tmp_path: Path, audit_log: Path, *overrides: str) -> None:
        argv = [FALCONET, "run", "-M", "60", "-r", str(ROOT / "rules" / "k8s_audit_rules.yaml"),
                "-o", "syscall.enabled=false", "-o", f"k8s_audit.files=[{audit_log}]",
                "-o", "k8s_audit.files_start=beginning", "-o", f"state_dir={tmp_path / 'state'}",
                "-o", "json_output=true", "-o", "response.enabled=true"]
        for o in overrides:
            argv += ["-o", o]
        self.lines: list[dict[str, Any]] = []
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                pass

    def records(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [a for a in self.lines if a.get("rule") == RECORD_RULE]
            if len(got) >= count:
                return got
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        err = self.proc.stderr.read() if self.proc.stderr else ""
        raise AssertionError(f"expected {count} response records; exit={self.proc.returncode} "
                             f"stderr={err[-2000:]} stdout={self.lines[-5:]}")

    def stop(self) -> str:
        interrupt(self.proc)
        return self.proc.stderr.read() if self.proc.stderr else ""


@pytest.fixture
def api():
    with FakeKubeAPI() as fake:
        fake.add_pod("shop", "web-7d4b9c-x2x9z")
        fake.add_pod("kube-system", "coredns-5d78c9869d-abcde")
        yield fake


def action(do: str, **with_: Any) -> str:
    with_.setdefault("audit_rules", [RULE])        # audit alerts are acted on only for named rules
    item = {"name": f"{do}-on-exec", "match": {"rules": [RULE], "sources": ["k8s_audit"]}, "do": do,
            "with": with_}
    return "response.actions[]=" + json.dumps(item)


def write_log(tmp_path: Path, *events: dict[str, Any]) -> Path:
    log = tmp_path / "audit.log"
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    return log


def test_exec_into_a_pod_gets_it_deleted(tmp_path, api):
    log = write_log(tmp_path, exec_event("shop", "web-7d4b9c-x2x9z", "a1"),
                    exec_event("kube-system", "coredns-5d78c9869d-abcde", "a2"))
    run = Run(tmp_path, log, action("k8s_delete_pod", grace_period_seconds=0),
              f"response.kubeconfig={api.kubeconfig(tmp_path / 'kubeconfig')}")
    try:
        records = run.records(2)
    finally:
        run.stop()
    alerts = {a["output_fields"]["ka.target.name"]: a for a in run.lines if a.get("rule") == RULE}
    assert set(alerts) == {"web-7d4b9c-x2x9z", "coredns-5d78c9869d-abcde"}
    by_alert = {r["output_fields"]["response.alert_id"]: r for r in records}
    deleted = by_alert[alerts["web-7d4b9c-x2x9z"]["uuid"]]
    spared = by_alert[alerts["coredns-5d78c9869d-abcde"]["uuid"]]
    assert deleted["output_fields"]["response.outcome"] == "done"
    assert deleted["output_fields"]["response.target"] == "pod shop/web-7d4b9c-x2x9z"
    assert spared["output_fields"]["response.reason"] == "excluded_namespace"
    (call,) = api.calls("DELETE")
    assert call.path == "/api/v1/namespaces/shop/pods/web-7d4b9c-x2x9z"
    assert call.query["gracePeriodSeconds"] == ["0"]
    assert api.state.deleted == [("shop", "web-7d4b9c-x2x9z")]


def test_exec_into_a_pod_gets_it_isolated(tmp_path, api):
    log = write_log(tmp_path, exec_event("shop", "web-7d4b9c-x2x9z", "b1"))
    run = Run(tmp_path, log, action("k8s_isolate_pod"),
              f"response.kubeconfig={api.kubeconfig(tmp_path / 'kubeconfig')}")
    try:
        (rec,) = run.records(1)
    finally:
        run.stop()
    assert rec["output_fields"]["response.outcome"] == "done"
    policy = api.state.policies[("shop", "falconet-quarantine")]
    kubernetes_validate.validate(policy, "1.29.0", strict=True)
    assert api.state.pods[("shop", "web-7d4b9c-x2x9z")]["metadata"]["labels"]["falconet/quarantine"] == "true"


def test_forbidden_is_an_error_record(tmp_path, api):
    api.fail("DELETE", r"/pods/", 403)
    log = write_log(tmp_path, exec_event("shop", "web-7d4b9c-x2x9z", "c1"))
    run = Run(tmp_path, log, action("k8s_delete_pod"),
              f"response.kubeconfig={api.kubeconfig(tmp_path / 'kubeconfig')}")
    try:
        (rec,) = run.records(1)
    finally:
        run.stop()
    assert rec["priority"] == "Error"
    assert rec["output_fields"]["response.outcome"] == "failed"
    assert "HTTP 403" in rec["output"]


def test_invalid_action_is_a_config_error_naming_the_line(tmp_path):
    cfg = tmp_path / "falconet.yaml"
    cfg.write_text("response:\n  enabled: true\n  actions:\n    - name: x\n      match: {}\n"
                   "      do: k8s_quarantine\n")
    proc = subprocess.run([FALCONET, "run", "-c", str(cfg), "-M", "1",
                           "-r", str(ROOT / "rules" / "k8s_audit_rules.yaml"), "-o", "syscall.enabled=false",
                           "-o", f"k8s_audit.files=[{tmp_path / 'none.log'}]",
                           "-o", f"state_dir={tmp_path / 'state'}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert f"{cfg}:6: response action 'x': unknown `do` value 'k8s_quarantine'" in proc.stderr


def test_a_denied_exec_posted_to_the_webhook_never_deletes_the_pod(tmp_path):
    """Issue 14 finding 2, as the review did it: a POST to the audit webhook carrying a denied (403)
    request by mallory for prod/payments-db-0, with a k8s_delete_pod action configured."""
    import http.client
    import socket
    import ssl

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    denied = exec_event("prod", "payments-db-0", "d1")
    denied["responseStatus"] = {"metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403}
    denied["annotations"] = {"authorization.k8s.io/decision": "forbid"}
    empty = tmp_path / "none.log"
    empty.write_text("")
    with FakeKubeAPI() as api:
        api.add_pod("prod", "payments-db-0")
        run = Run(tmp_path, empty, action("k8s_delete_pod"), "k8s_audit.webhook.enabled=true",
                  f"k8s_audit.webhook.listen=127.0.0.1:{port}", "response.dry_run=false",
                  f"response.kubeconfig={api.kubeconfig(tmp_path / 'kubeconfig')}")
        try:
            state = tmp_path / "state" / "k8s_audit"
            deadline = time.monotonic() + 30
            # The sensor writes its token and then its certificate: wait for both.
            while not ((state / "token").exists() and (state / "ca.crt").exists()) and time.monotonic() < deadline:
                time.sleep(0.1)
            ctx = ssl.create_default_context(cafile=str(state / "ca.crt"))

            def post(headers: dict[str, str]) -> int:
                while True:
                    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
                    try:
                        conn.request("POST", "/k8s-audit", body=json.dumps(denied),
                                     headers={"Content-Type": "application/json", **headers})
                        return conn.getresponse().status
                    except ConnectionRefusedError:
                        assert time.monotonic() < deadline
                        time.sleep(0.1)
                    finally:
                        conn.close()

            assert post({}) == 401                                   # the review's POST: no token
            token = (state / "token").read_text().strip()
            assert post({"Authorization": f"Bearer {token}"}) == 200     # even with the token ...
            (rec,) = run.records(1)
        finally:
            run.stop()
        assert rec["output_fields"]["response.reason"] == "failed_request"
        assert "the request by mallory failed (HTTP 403)" in rec["output"]
        assert api.calls("DELETE") == [] and ("prod", "payments-db-0") in api.state.pods

"""Secrets (sensor/credentials.py): kept out of the programs the sensor starts and out of what it
shows (issue 14, finding 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensor.credentials import REDACTED, child_environment, redact, redact_text, redact_url
from sensor.outputs.program import ProgramTransport
from sensor.response.program import RunProgram
from sensor.response.target import Target
from tests.response.helpers import alert

SECRETS = {"FLUENT_SHARED_KEY": "fluent-psk", "FALCONET_PASSWORD": "es-pass", "FALCONET_ES_API_KEY": "k",
           "FALCONET_AUDIT_WEBHOOK_TOKEN": "t", "SLACK_TOKEN": "xoxb", "DB_PASSWORD": "p"}


def test_the_child_environment_keeps_what_programs_need_and_drops_secrets() -> None:
    env = child_environment({"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", **SECRETS})
    assert env == {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8"}


def _env_of(out: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)


def test_response_and_output_programs_do_not_inherit_the_sensors_secrets(tmp_path, monkeypatch) -> None:
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    response_env = tmp_path / "response.env"
    action = RunProgram({"command": f"env > {response_env}", "timeout": 5.0})
    a = alert({"proc.pid": 7})
    target = action.resolve(a)
    assert isinstance(target, Target)
    assert action.execute(a, target, False).result == "done"
    output_env = tmp_path / "output.env"
    transport = ProgramTransport(f"env > {output_env}", keep_alive=False, timeout=5.0)
    transport.send([b'{"rule": "x"}\n'])
    for out in (response_env, output_env):
        env = _env_of(out)
        assert "PATH" in env
        assert not set(SECRETS) & set(env), out.name
        assert not {"fluent-psk", "es-pass"} & set(env.values())


@pytest.mark.parametrize(("url", "shown"), [
    ("https://elastic:s3cret@es.example:9200/x?y=1", f"https://elastic:{REDACTED}@es.example:9200/x?y=1"),
    ("https://tok3n@hooks.example/x", f"https://{REDACTED}@hooks.example/x"),
    ("https://es.example:9200", "https://es.example:9200"),
])
def test_urls_lose_their_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    text = redact_text(f"cannot reach {url}: refused")
    assert "s3cret" not in text and "tok3n" not in text and text.endswith(": refused")


def test_configuration_values_are_redacted_by_name_and_in_urls() -> None:
    value = {"shared_key": "psk", "password": "", "token": None, "host": "fluentd",
             "headers": {"Authorization": "Bearer x", "X-Trace": "1"},
             "url": "https://u:p@example/hook", "items": [{"api_key": "k"}]}
    assert redact(value) == {"shared_key": REDACTED, "password": "", "token": None, "host": "fluentd",
                             "headers": {"Authorization": REDACTED, "X-Trace": "1"},
                             "url": f"https://{REDACTED}@example/hook", "items": [{"api_key": REDACTED}]}
    assert redact("psk", "fluent_output.shared_key") == REDACTED
    assert redact("/etc/tls.key", "k8s_audit.webhook.tls_key") == "/etc/tls.key"


def test_falconet_config_shows_no_secret(tmp_path) -> None:
    import subprocess
    import sys

    cfg = tmp_path / "falconet.yaml"
    cfg.write_text("""
fluent_output: {shared_key: fluent-psk-value}
k8s_audit: {webhook: {token: webhook-token-value}}
webserver: {token: metrics-token-value}
http_output: {url: "https://user:url-password-value@hooks.example/x"}
response:
  actions:
    - name: page
      match: {rules: ["*"]}
      do: http
      with: {url: "https://hooks.example/y", headers: {Authorization: "Bearer header-token-value"}}
""")
    out = subprocess.run([sys.executable, "-c", "from sensor.cli import main; main()", "config", "-c", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for secret in ("fluent-psk-value", "webhook-token-value", "metrics-token-value", "url-password-value",
                   "header-token-value"):
        assert secret not in out.stdout, secret
    assert f"fluent_output.shared_key: {REDACTED}  # " in out.stdout
    assert "hooks.example/y" in out.stdout                 # what is not secret is still shown

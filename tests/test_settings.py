"""sensor/settings.py and the parts' settings modules: values typed and converted once, compared by
value (so a reload rebuilds exactly the parts whose settings changed), and errors that name the key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sensor import config
from sensor.alert import Priority
from sensor.assets import asset_dir
from sensor.errors import ConfigError
from sensor.settings import SensorSettings


def settings_of(tmp_path: Path, text: str, *overrides: str) -> SensorSettings:
    p = tmp_path / "falconet.yaml"
    p.write_text(textwrap.dedent(text))
    return SensorSettings.from_config(config.load(p, [f"state_dir={tmp_path / 'state'}", *overrides]))


def test_values_are_typed_and_converted_once(tmp_path: Path) -> None:
    s = settings_of(tmp_path, """\
        priority: warning
        event_drops: {interval: 1m30s, priority: error}
        outputs_queue: {retry_initial: 250ms, report_interval: 2m}
        fluent_output: {spool: {max_size: 2GiB}, batch_size: 50, compress: gzip}
        http_output: {spool: {dir: /srv/spool/http}}
        k8s_audit: {max_event_size: 64KiB, webhook: {enabled: true, listen: "[::1]:9000", request_timeout: 2s}}
        metrics: {interval: 10ms}
        webserver: {ssl_enabled: true}
        """)
    assert s.rules.min_priority is Priority.WARNING
    assert s.rules.files[:2] == (asset_dir("rules"), asset_dir("rules") / "rules.d")
    assert (s.event_drops.interval, s.event_drops.priority) == (90.0, Priority.ERROR)
    assert (s.outputs.queue.retry_initial, s.outputs.queue.report_interval) == (0.25, 120.0)
    assert s.outputs.fluent.spool.max_size == 2 * 1024**3 and s.outputs.fluent.spool.max_size_text == "2GiB"
    assert s.outputs.fluent.spool.dir == tmp_path / "state" / "spool" / "fluent"
    assert s.outputs.http.spool.dir == Path("/srv/spool/http")
    assert s.outputs.fluent.compress is True
    hook = s.sources.k8s_audit.webhook
    assert hook is not None and (hook.host, hook.port) == ("::1", 9000)
    assert s.sources.k8s_audit.limits.max_event_size == 64 * 1024
    assert s.sources.k8s_audit.limits.request_timeout == 2.0
    assert s.metrics.interval == 1.0                       # snapshots ride the one-second tick
    assert s.webserver.tls_certificate == "/etc/falconet/falconet.pem"


def test_each_channel_declares_its_batch(tmp_path: Path) -> None:
    s = settings_of(tmp_path, "fluent_output: {batch_size: 50}\n")
    assert {c.name: c.batch_size for c in s.outputs.channels()} == {
        "stdout": 100, "file": 100, "program": 100, "http": 100, "syslog": 100, "fluent": 50}


def test_hostname_is_decided_once_for_every_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FALCONET_HOSTNAME", "node-7")
    s = settings_of(tmp_path, "")
    assert s.hostname == s.rules.hostname == s.outputs.hostname == s.response.hostname == "node-7"
    assert s.outputs.fluent.self_hostname == "node-7"
    s = settings_of(tmp_path, "hostname: sensor-a\nfluent_output: {self_hostname: relay}\n")
    assert (s.rules.hostname, s.outputs.fluent.self_hostname) == ("sensor-a", "relay")


def test_where_a_value_was_written_makes_no_difference(tmp_path: Path) -> None:
    one = settings_of(tmp_path, """\
        file_output:
          enabled: true
          filename: /tmp/a.txt
        response:
          actions: [{name: a, match: {rules: [x]}, do: kill_process}]
        """)
    two = settings_of(tmp_path, """\
        # the same values, written elsewhere and otherwise
        response: {actions: [{name: a, match: {rules: [x]}, do: kill_process}]}

        file_output: {filename: /tmp/a.txt, enabled: true}
        """)
    assert one.outputs.file.origins("file_output.filename") != two.outputs.file.origins("file_output.filename")
    assert (one.outputs, one.response, one.sources, one.webserver) == (two.outputs, two.response, two.sources,
                                                                       two.webserver)


@pytest.mark.parametrize(("override", "changed"), [
    ("file_output.format=json", {"outputs"}),
    ("json_output=true", {"outputs"}),                     # rendering is the outputs'
    ("static_fields={env: prod}", {"outputs"}),
    ("hostname=elsewhere", {"outputs", "response", "rules"}),
    ("state_dir=/srv/falconet", {"outputs", "sources"}),     # spools; audit-log positions, certificates
    ("response.dry_run=true", {"response"}),
    ("k8s_audit.files=[/var/log/audit.log]", {"sources"}),
    ("webserver.listen_port=9000", {"webserver"}),
    ("metrics.interval=5m", {"metrics"}),
    ("event_drops.interval=5m", {"event_drops"}),
    ("priority=Error", {"rules"}),
])
def test_a_change_touches_only_the_parts_that_read_it(tmp_path: Path, override: str, changed: set[str]) -> None:
    parts = ("rules", "sources", "outputs", "response", "webserver", "metrics", "event_drops")
    before = SensorSettings.from_config(config.load(None, ["hostname=here"]))
    after = SensorSettings.from_config(config.load(None, ["hostname=here", override]))
    assert {p for p in parts if getattr(before, p) != getattr(after, p)} == changed


def test_a_disabled_webhook_is_not_checked_and_not_compared(tmp_path: Path) -> None:
    s = settings_of(tmp_path, "k8s_audit: {webhook: {listen: nonsense}}\n")
    assert s.sources.k8s_audit.webhook is None
    with pytest.raises(ConfigError, match=r"k8s_audit\.webhook\.listen: 'nonsense' is not host:port"):
        settings_of(tmp_path, "k8s_audit: {webhook: {listen: nonsense, enabled: true}}\n")


@pytest.mark.parametrize(("text", "message"), [
    ("file_output: {enabled: true, filename: ''}\n", r"falconet\.yaml:1: 'file_output\.filename' is empty"),
    ("program_output: {enabled: true}\n",
     r"default: 'program_output\.program' is empty while program_output is enabled"),
    ("http_output: {enabled: true, url: 'https://x/', mtls: true}\n",
     r"falconet\.yaml:1: http_output\.mtls is on but http_output\.client_cert is empty"),
    ("fluent_output: {enabled: true, batch_size: 0}\n",
     r"falconet\.yaml:1: 'fluent_output\.batch_size' must be at least 1"),
    ("webserver: {max_connections: 0}\n", r"webserver\.max_connections: must be greater than 0"),
])
def test_a_value_an_enabled_part_cannot_use_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_of(tmp_path, text)

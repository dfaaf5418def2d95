"""sensor/config.py and `falconet config`: the schema, the file, -o overrides, errors a user can act on."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from sensor import config
from sensor.assets import asset_dir
from sensor.cli import root
from sensor.errors import ConfigError

BUNDLED = Path(config.__file__).resolve().parent / "falconet.yaml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "falconet.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def test_bundled_file_is_generated_from_every_declared_key() -> None:
    # Regenerate with: falconet config --default > sensor/falconet.yaml
    assert BUNDLED.read_text() == config.default_yaml(), \
        "sensor/falconet.yaml is stale: run `falconet config --default > sensor/falconet.yaml`"


def test_bundled_file_documents_and_sets_every_key() -> None:
    keys = config.schema()
    cfg = config.load(BUNDLED)
    for path, key in keys.items():
        assert cfg.origin(path).startswith(str(BUNDLED)), f"{path} is not in the bundled file"
        assert cfg.get(path) == key.default, path
    text = BUNDLED.read_text()
    for key in keys.values():
        assert key.description.split()[0] in text


def test_falco_keys_are_declared() -> None:
    keys = config.schema()
    for k in ("rules_files", "priority", "json_output", "json_include_output_property",
              "json_include_tags_property", "json_include_output_fields_property",
              "json_include_message_property", "time_format_iso_8601", "buffered_outputs",
              "stdout_output.enabled", "file_output.enabled", "file_output.filename", "file_output.keep_alive",
              "program_output.enabled", "program_output.keep_alive", "program_output.program",
              "http_output.enabled", "http_output.url", "http_output.user_agent", "http_output.insecure",
              "http_output.ca_cert", "http_output.ca_path", "http_output.mtls", "http_output.client_cert",
              "http_output.client_key", "http_output.compress_uploads", "syslog_output.enabled",
              "outputs_queue.capacity", "webserver.enabled", "webserver.listen_port",
              "webserver.listen_address", "webserver.k8s_healthz_endpoint", "webserver.ssl_enabled",
              "metrics.enabled", "metrics.interval", "rule_matching", "append_output", "static_fields"):
        assert k in keys, k
    for channel in ("stdout", "file", "program", "http", "syslog", "fluent"):
        assert f"{channel}_output.spool.enabled" in keys


def test_values_and_origins(tmp_path: Path) -> None:
    p = write(tmp_path, """\
        json_output: true
        file_output:
          enabled: true
          filename: /tmp/alerts.json
        """)
    cfg = config.load(p, ["file_output.keep_alive=true"])
    assert cfg.get("json_output") is True
    assert cfg.get("file_output.filename") == "/tmp/alerts.json"
    assert cfg.origin("file_output.filename") == f"{p}:4"
    assert cfg.origin("file_output.keep_alive") == "-o file_output.keep_alive=true"
    assert cfg.origin("stdout_output.enabled") == "default"
    assert cfg.get("file_output") == {**cfg.get("file_output"), "enabled": True, "keep_alive": True}


def test_unknown_key_names_file_line_and_suggests(tmp_path: Path) -> None:
    p = write(tmp_path, """\
        json_output: true
        file_output:
          enabled: true
          filname: x
        """)
    with pytest.raises(ConfigError) as e:
        config.load(p)
    assert str(e.value).startswith(f"{p}:4: unknown configuration key 'file_output.filname'")
    assert "did you mean 'file_output.filename'" in str(e.value)
    assert e.value.exit_code == 3


def test_ill_typed_value_names_key_and_line(tmp_path: Path) -> None:
    p = write(tmp_path, "fluent_output:\n  port: twenty\n")
    with pytest.raises(ConfigError, match=rf"{p}:2: 'fluent_output.port' must be an integer, got str 'twenty'"):
        config.load(p)
    p = write(tmp_path, "json_output: 1\n")
    with pytest.raises(ConfigError, match=r":1: 'json_output' must be true or false"):
        config.load(p)
    p = write(tmp_path, "priority: Loud\n")
    with pytest.raises(ConfigError, match=r"'priority': unknown priority 'Loud'; one of Emergency, .*Debug "
                                          r"\(any case; info for Informational\)"):
        config.load(p)
    p = write(tmp_path, "rules_files: [a, 3]\n")
    with pytest.raises(ConfigError, match=r"'rules_files\[1\]' must be a string, got int 3"):
        config.load(p)


def test_group_given_a_scalar_and_duplicate_keys(tmp_path: Path) -> None:
    p = write(tmp_path, "file_output: yes\n")
    with pytest.raises(ConfigError, match=r":1: 'file_output' is a group of keys and must be a mapping"):
        config.load(p)
    p = write(tmp_path, "json_output: true\nstdout_output: {enabled: false}\njson_output: false\n")
    with pytest.raises(ConfigError, match=r":3: 'json_output' is set twice \(first on line 1; keep one of them\)"):
        config.load(p)


def test_durations_and_sizes_are_checked(tmp_path: Path) -> None:
    assert config.parse_duration("1h30m") == 5400
    assert config.parse_duration("500ms") == 0.5
    assert config.parse_duration(2) == 2.0
    assert config.parse_size("64MiB") == 64 * 1024 * 1024
    assert config.parse_size("1GB") == 10**9
    assert config.parse_size(4096) == 4096
    p = write(tmp_path, "fluent_output:\n  ack_timeout: soon\n")
    with pytest.raises(ConfigError, match=r":2: 'fluent_output.ack_timeout': expected a duration"):
        config.load(p)
    with pytest.raises(ConfigError, match=r"-o fluent_output.spool.max_size=lots: .*expected a size"):
        config.load(None, ["fluent_output.spool.max_size=lots"])
    cfg = config.load(None, ["fluent_output.ack_timeout=90s", "fluent_output.spool.max_size=2GiB"])
    assert cfg.duration("fluent_output.ack_timeout") == 90
    assert cfg.size("fluent_output.spool.max_size") == 2 * 1024**3


def test_overrides_set_append_and_group() -> None:
    cfg = config.load(None, ["rules_files=[/a.yaml]", "rules_files[]=/b.yaml",
                             "fluent_output={enabled: true, port: 1234}", "hostname=on"])
    assert cfg.get("rules_files") == ["/a.yaml", "/b.yaml"]
    assert cfg.get("fluent_output.enabled") is True and cfg.get("fluent_output.port") == 1234
    assert cfg.get("hostname") == "on"          # text for a string key, not YAML's boolean
    with pytest.raises(ConfigError, match=r"-o json_output\[\]=x: 'json_output' is not a list"):
        config.load(None, ["json_output[]=x"])
    with pytest.raises(ConfigError, match=r"-o nope=1: unknown configuration key 'nope'"):
        config.load(None, ["nope=1"])
    with pytest.raises(ConfigError, match=r"-o json_output: expected key=value"):
        config.load(None, ["json_output"])


def test_environment_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUENT_HOST", "fluentd.logging")
    monkeypatch.setenv("FLUENT_PORT", "24225")
    monkeypatch.delenv("FLUENT_TAG", raising=False)
    p = write(tmp_path, """\
        fluent_output:
          host: ${FLUENT_HOST}
          port: ${FLUENT_PORT}
          tag: ${FLUENT_TAG:-falconet.test}
        """)
    cfg = config.load(p)
    assert cfg.get("fluent_output.host") == "fluentd.logging"
    assert cfg.get("fluent_output.port") == 24225
    assert cfg.get("fluent_output.tag") == "falconet.test"


def test_rules_files_resolve_bundled() -> None:
    cfg = config.load(None)
    assert cfg.rules_files()[:2] == [asset_dir("rules"), asset_dir("rules") / "rules.d"]
    assert config.load(None, ["rules_files=['${bundled}/x.yaml']"]).rules_files() == [asset_dir("rules") / "x.yaml"]
    with pytest.raises(ConfigError, match=r"value is not valid YAML \(expected ',' or '\]', but got '\{' at column 3"):
        config.load(None, ["rules_files=[${bundled}/x.yaml]"])


def test_config_file_selection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FALCONET_CONFIG", raising=False)
    if not config.DEFAULT_PATH.exists():
        assert config.default_config_path() == BUNDLED
    p = write(tmp_path, "json_output: true\n")
    monkeypatch.setenv("FALCONET_CONFIG", str(p))
    assert config.load().get("json_output") is True
    monkeypatch.setenv("FALCONET_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match=r"missing\.yaml: no such configuration file"):
        config.load()
    with pytest.raises(ConfigError, match=r"nothere\.yaml: no such configuration file"):
        config.load(tmp_path / "nothere.yaml")


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    p = write(tmp_path, "json_output: true\nfile_output:\n  enabled: [\n")
    with pytest.raises(ConfigError, match=rf"{p}:4: invalid YAML"):
        config.load(p)


def test_hostname_and_state_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FALCONET_HOSTNAME", "node-7")
    assert config.load(None).hostname() == "node-7"
    assert config.load(None, ["hostname=sensor-1"]).hostname() == "sensor-1"
    assert config.load(None, ["state_dir=/srv/f"]).state_path("spool", "fluent") == Path("/srv/f/spool/fluent")


# What reading the configuration must not import: the parts' running code and their heavy libraries.
HEAVY = ("sensor.runtime", "sensor.engine", "sensor.capture", "sensor.metrics", "sensor.webserver",
         "sensor.httpserver", "sensor.outputs.build", "sensor.outputs.dispatch", "sensor.outputs.channel",
         "sensor.outputs.spool", "sensor.outputs.forward", "sensor.outputs.fluent", "sensor.outputs.http",
         "sensor.response.build", "sensor.response.spec", "sensor.response.worker", "sensor.response.kube",
         "sensor.sources.syscall", "sensor.sources.replay", "sensor.sources.k8s_audit.webhook",
         "sensor.sources.k8s_audit.file", "sensor.sources.k8s_audit.decode", "sensor.sources.k8s_audit.certs",
         "prometheus_client", "msgpack", "fluent", "cryptography", "kubernetes", "elasticsearch", "bcc", "lark")


def test_reading_the_configuration_imports_no_part() -> None:
    # A fresh interpreter: this one has imported everything already.
    code = ("import sys\n"
            "from sensor import config\n"
            "from sensor.settings import SensorSettings\n"
            "config.default_yaml()\n"
            "SensorSettings.from_config(config.load(None, ['k8s_audit.webhook.enabled=true']))\n"
            "print('\\n'.join(sorted(sys.modules)))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "FALCONET_CONFIG": str(BUNDLED)})
    assert r.returncode == 0, r.stderr
    loaded = set(r.stdout.split())
    assert "sensor.outputs.settings" in loaded and "sensor.response.settings" in loaded
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == []


# -- falconet config ------------------------------------------------------------------------------


def test_cli_default_prints_the_bundled_file() -> None:
    res = CliRunner().invoke(root, ["config", "--default"])
    assert res.exit_code == 0
    assert res.output == BUNDLED.read_text()
    assert yaml.safe_load(res.output)["fluent_output"]["tag"] == "falconet.alerts"


def test_cli_shows_effective_values_with_origins(tmp_path: Path) -> None:
    p = write(tmp_path, "json_output: true\n")
    res = CliRunner().invoke(root, ["-c", str(p), "config", "-o", "fluent_output.port=1"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert f"json_output: true  # {p}:1" in lines
    assert "fluent_output.port: 1  # -o fluent_output.port=1" in lines
    assert "stdout_output.enabled: true  # default" in lines


def test_cli_list_describes_keys() -> None:
    res = CliRunner().invoke(root, ["config", "--list"])
    assert res.exit_code == 0
    assert "fluent_output.ack_timeout  str  default 60s" in res.output
    assert "rule_matching  str (first|all)  default first" in res.output


# -- Falco's falco.yaml, every problem at once, positions ---------------------------------------------

FALCO_STOCK = Path(__file__).parent / "data" / "falco-0.44.1.yaml"


def test_falcos_stock_falco_yaml_loads_with_zero_errors() -> None:
    cfg = config.load(FALCO_STOCK)
    assert cfg.get("priority") == "Debug"                       # `priority: debug`
    assert cfg.get("rules_files") == ["/etc/falco/falco_rules.yaml", "/etc/falco/falco_rules.local.yaml",
                                      "/etc/falco/rules.d"]
    assert cfg.get("syslog_output.enabled") is True and cfg.get("webserver.listen_port") == 8765
    # syscall_event_drops maps onto event_drops: actions [log, alert] and one message per 30 s.
    assert cfg.get("event_drops.alerts") is True and cfg.get("event_drops.interval") == "30s"
    assert cfg.origin("event_drops.interval") == f"{FALCO_STOCK}:159 (syscall_event_drops.rate)"
    assert cfg.get("outputs_queue.capacity") == 10_000           # Falco's 0 (unbounded) keeps our bound
    warned = "\n".join(cfg.warnings)
    for key in ("config_files", "watch_config_files", "engine.modern_ebpf.buf_size_preset", "log_syslog",
                "output_timeout", "syscall_event_drops.threshold", "metrics.resource_utilization_enabled",
                "falco_libs.snaplen", "http_output.max_consecutive_timeouts"):
        assert f"'{key}'" in warned, key
    assert all(" not used by Falconet: " in w or "outputs_queue.capacity" in w for w in cfg.warnings)
    # What Falconet does anyway is not a warning: the default engine, no plugins loaded, the base set.
    for quiet in ("engine.kind", "load_plugins", "plugins", "base_syscalls", "capture.", "engine.kmod"):
        assert f"'{quiet}" not in warned, quiet
    lines = [int(w.split(":")[1]) for w in cfg.warnings]
    assert lines == sorted(lines)                               # in the file's order


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    p = write(tmp_path, """\
        json_output: maybe
        file_output:
          filname: x
        priority: loud
        engine:
          kind: gpu
        syscall_event_drops:
          actions: [log, page]
        """)
    with pytest.raises(ConfigError) as e:
        config.load(p, ["fluent_output.port=twenty"])
    problems = e.value.problems                                 # type: ignore[attr-defined]
    assert [x.split(": ", 1)[0] for x in problems] == [f"{p}:1", f"{p}:3", f"{p}:4", f"{p}:6", f"{p}:8",
                                                       "-o fluent_output.port=twenty"]
    assert str(e.value) == "\n".join(problems) and e.value.exit_code == 3
    res = CliRunner().invoke(root, ["-c", str(p), "config"])
    assert res.exit_code == 3
    assert res.output.count("falconet: error: ") == 5


def test_priority_in_any_case(tmp_path: Path) -> None:
    for text, name in (("debug", "Debug"), ("warning", "Warning"), ("WARNING", "Warning"), ("info", "Informational"),
                       ("Informational", "Informational")):
        assert config.load(write(tmp_path, f"priority: {text}\n")).get("priority") == name
    assert config.load(None, ["event_drops.priority=error"]).get("event_drops.priority") == "Error"
    assert config.load(None, ["log_level=DEBUG"]).get("log_level") == "debug"


def test_did_you_mean_only_for_a_likely_typo(tmp_path: Path) -> None:
    def hint(text: str) -> str:
        with pytest.raises(ConfigError) as e:
            config.load(write(tmp_path, text))
        return str(e.value)

    assert "did you mean 'file_output.filename'?" in hint("file_output:\n  filname: x\n")
    assert "did you mean 'syscall_event_drops'?" in hint("syscall_event_drop: {}\n")
    assert "did you mean 'json_output'?" in hint("json_ouptut: true\n")
    for far in ("tracing: 1\n", "drops: 1\n", "outputs_channel: 1\n", "kernel: {a: 1}\n"):
        assert "see `falconet config --list` for the keys" in hint(far), far


def test_falco_keys_map_where_falconet_has_the_equivalent(tmp_path: Path) -> None:
    cfg = config.load(None, ["syscall_event_drops.rate=0.1", "syscall_event_drops.actions=[log]",
                             "engine.kind=nodriver", "rule_files=[/r.yaml]", "http_output.ca_bundle=/ca.pem"])
    assert cfg.get("event_drops.interval") == "10s" and cfg.get("event_drops.alerts") is False
    assert cfg.get("syscall.enabled") is False and cfg.get("rules_files") == ["/r.yaml"]
    assert cfg.get("http_output.ca_cert") == "/ca.pem" and not cfg.warnings
    cfg = config.load(None, ["engine.kind=kmod", "load_plugins=[k8saudit, container]",
                             "syscall_event_drops.actions=[alert, exit]"])
    assert cfg.warnings == [
        "-o engine.kind=kmod: Falco key 'engine.kind' is not used by Falconet: it has no kernel module and "
        "always captures with eBPF, as Falco's modern_ebpf does",
        "-o load_plugins=[k8saudit, container]: Falco key 'load_plugins' is not used by Falconet: it loads no "
        "plugins: Kubernetes audit events are a built-in source (k8s_audit.webhook, k8s_audit.files); "
        "container metadata is built in (syscall.container_sockets)",
        "-o syscall_event_drops.actions=[alert, exit]: Falco key 'syscall_event_drops.actions' is not used by "
        "Falconet: its action 'exit' is not implemented: the sensor keeps running and reports the drops (and "
        "logs them)"]
    p = write(tmp_path, "event_drops:\n  interval: 5m\nsyscall_event_drops:\n  rate: 1\n")
    with pytest.raises(ConfigError, match=rf"{p}:2: 'event_drops.interval' is also set by Falco's "
                                          rf"'syscall_event_drops.rate' \({p}:4\); keep one of them"):
        config.load(p)


def test_config_remembers_the_position_of_every_value(tmp_path: Path) -> None:
    p = write(tmp_path, """\
        rules_files:
          - /a.yaml
          - /b.yaml
        static_fields:
          env: prod
        response:
          actions:
            - name: kill-shells
              match:
                rules: [Shell spawned, "Terminal*"]
              do: kill_process
        """)
    cfg = config.load(p, ["rules_files[]=/c.yaml", "append_output[]={extra_output: x}"])
    assert cfg.origin("rules_files") == "-o rules_files[]=/c.yaml"       # what changed the list last
    assert cfg.origin("rules_files[0]") == f"{p}:2"
    assert cfg.origin("rules_files[1]") == f"{p}:3"
    assert cfg.origin("rules_files[2]") == "-o rules_files[]=/c.yaml"
    assert cfg.origin("static_fields.env") == f"{p}:5"
    assert cfg.origin("response.actions[0]") == f"{p}:8"
    assert cfg.origin("response.actions[0].match") == f"{p}:9"
    assert cfg.origin("response.actions[0].match.rules[1]") == f"{p}:10"
    assert cfg.origin("response.actions[0].do") == f"{p}:11"
    assert cfg.origin("response.actions[0].with.signal") == f"{p}:8"   # nearest recorded parent
    assert cfg.origin("append_output[0].extra_output") == "-o append_output[]={extra_output: x}"
    assert cfg.origin("stdout_output.enabled") == "default"


def test_a_replaced_value_forgets_the_positions_inside_the_old_one(tmp_path: Path) -> None:
    p = write(tmp_path, """\
        response:
          actions:
            - name: a
              with: {signal: 9}
            - name: b
        """)
    cfg = config.load(p, ["response.actions=[{name: c}]"])
    assert cfg.origin("response.actions[0].name") == "-o response.actions=[{name: c}]"
    # The file's item 0 had `with`, the override's has none: its line must not answer for it.
    assert cfg.origin("response.actions[0].with.signal") == "-o response.actions=[{name: c}]"
    assert cfg.origin("response.actions[1]") == "-o response.actions=[{name: c}]"


def test_override_replaces_a_list_item_as_falco_does() -> None:
    cfg = config.load(None, ["rules_files=[/a.yaml, /b.yaml]", "rules_files[1]=/x.yaml"])
    assert cfg.get("rules_files") == ["/a.yaml", "/x.yaml"]
    assert cfg.origin("rules_files[1]") == "-o rules_files[1]=/x.yaml"
    with pytest.raises(ConfigError, match=r"'rules_files' has 2 items; \[5\] is past its end \(use \[\] to append\)"):
        config.load(None, ["rules_files=[/a.yaml, /b.yaml]", "rules_files[5]=/x.yaml"])


def test_list_items_of_engine_keys_are_checked_with_their_position(tmp_path: Path) -> None:
    p = write(tmp_path, "append_output:\n  - match: {source: syscall, tag: x}\n    extra_output: y\n"
                        "rules:\n  - enable: {name: x}\n")
    with pytest.raises(ConfigError) as e:
        config.load(p)
    assert e.value.problems == [                                # type: ignore[attr-defined]
        f"{p}:1: 'append_output[0].match' has an unknown key 'tag' (its keys: source, tags, rule)",
        f"{p}:4: 'rules[0].enable' must be {{rule: NAME}} or {{tag: NAME}}"]


def test_cli_config_warns_about_falco_keys_on_stderr() -> None:
    import subprocess
    import sys

    falconet = str(Path(sys.executable).with_name("falconet"))
    res = subprocess.run([falconet, "-c", str(FALCO_STOCK), "config"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert f"priority: Debug  # {FALCO_STOCK}:77" in res.stdout.splitlines()
    assert f"event_drops.interval: 30s  # {FALCO_STOCK}:159 (syscall_event_drops.rate)" in res.stdout.splitlines()
    warned = res.stderr.splitlines()
    assert warned and all(line.startswith(f"falconet: warning: {FALCO_STOCK}:") for line in warned)

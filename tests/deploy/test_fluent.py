"""fluent/: the forwarder's configuration routes what the sensor sends to the data streams and
pipeline that elasticsearch/ defines, keeps every record it cannot deliver, and its image pins
what it installs. Checked with the reader in fluentd_config.py (no Fluentd here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from . import es_assets
from .dockerfile import parse as parse_dockerfile
from .fluentd_config import Element, configure, parse, route, ruby_env_names

ROOT = Path(__file__).resolve().parents[2]
FLUENT = ROOT / "fluent"
CONF = FLUENT / "fluent.conf"
LAB_DOC = ROOT / "docs" / "lab.md"

# Every variable set, to values unlike the defaults, so a setting that ignores its variable shows.
ALL_SET = {
    "FLUENT_LOG_LEVEL": "debug", "FLUENT_BUFFER_DIR": "/data/buf", "FLUENT_FORWARD_BIND": "10.0.0.1",
    "FLUENT_FORWARD_PORT": "24999", "FLUENT_FORWARD_SHARED_KEY": "s3cret",
    "FLUENT_FORWARD_SELF_HOSTNAME": "agg-1", "FLUENT_FORWARD_TLS_CERT": "/tls/crt.pem",
    "FLUENT_FORWARD_TLS_KEY": "/tls/key.pem", "FLUENT_FORWARD_TLS_KEY_PASSPHRASE": "pp",
    "FLUENT_MONITOR_BIND": "127.0.0.1", "FLUENT_MONITOR_PORT": "24999",
    "FLUENT_ES_HOSTS": "https://es1:9201,https://es2:9201", "FLUENT_ES_USER": "writer",
    "FLUENT_ES_PASSWORD": "pw", "FLUENT_ES_CA_FILE": "/ca/ca.pem", "FLUENT_ES_SSL_VERIFY": "false",
    "FLUENT_ES_REQUEST_TIMEOUT": "45s", "FLUENT_ES_ALERTS_DATA_STREAM": "logs-falconet.alerts-prod",
    "FLUENT_ES_ALERTS_PIPELINE": "falconet-alerts-2", "FLUENT_ES_LOG_DATA_STREAM": "logs-falconet.log-prod",
    "FLUENT_FLUSH_INTERVAL": "9s", "FLUENT_FLUSH_THREADS": "4", "FLUENT_CHUNK_LIMIT_SIZE": "4MB",
    "FLUENT_BUFFER_LIMIT_SIZE": "3GB", "FLUENT_RETRY_WAIT": "2s", "FLUENT_RETRY_MAX_INTERVAL": "5m",
}

# Parameters (and sections) of the plugins fluent.conf uses, from their sources: fluentd
# in_forward.rb, plugin_helper/server.rb, in_monitor_agent.rb, out_file.rb,
# out_secondary_file.rb, plugin/output.rb (<buffer>), plugin_helper/inject.rb, and
# fluent-plugin-elasticsearch out_elasticsearch.rb, elasticsearch_tls.rb. A misspelt parameter is
# a warning Fluentd logs and then ignores; here it fails.
COMMON = {"@type", "@id", "@label", "@log_level"}
PARAMS: dict[str, set[str]] = {
    "forward": {"port", "bind", "backlog", "linger_timeout", "blocking_timeout", "resolve_hostname",
                "deny_keepalive", "send_keepalive_packet", "chunk_size_warn_limit", "chunk_size_limit",
                "skip_invalid_event", "source_address_key", "source_hostname_key", "add_tag_prefix"},
    "monitor_agent": {"bind", "port", "tag", "emit_interval", "include_config", "include_retry"},
    "relabel": set(),
    "elasticsearch": {
        "host", "port", "user", "password", "cloud_id", "cloud_auth", "path", "scheme", "hosts",
        "target_index_key", "time_key_format", "time_precision", "include_timestamp", "logstash_format",
        "logstash_prefix", "logstash_prefix_separator", "logstash_dateformat", "utc_index", "type_name",
        "suppress_type_name", "index_name", "id_key", "write_operation", "parent_key", "routing_key",
        "request_timeout", "reload_connections", "reload_on_failure", "retry_tag", "resurrect_after",
        "time_key", "time_key_exclude_timestamp", "ssl_verify", "client_key", "client_cert",
        "client_key_pass", "ca_file", "ssl_version", "ssl_min_version", "ssl_max_version", "remove_keys",
        "remove_keys_on_update", "remove_keys_on_update_key", "flatten_hashes", "flatten_hashes_separator",
        "template_name", "template_file", "template_overwrite", "customize_template", "rollover_index",
        "index_date_pattern", "index_separator", "deflector_alias", "application_name", "templates",
        "max_retry_putting_template", "fail_on_putting_template_retry_exceed",
        "fail_on_detecting_es_version_retry_exceed", "max_retry_get_es_version", "include_tag_key",
        "tag_key", "time_parse_error_tag", "reconnect_on_error", "pipeline", "with_transporter_log",
        "emit_error_for_missing_id", "sniffer_class_name", "selector_class_name", "reload_after",
        "content_type", "include_index_in_url", "http_backend", "http_backend_excon_nonblock",
        "validate_client_version", "prefer_oj_serializer", "unrecoverable_error_types",
        "verify_es_version_at_startup", "default_elasticsearch_version", "log_es_400_reason",
        "custom_headers", "api_key", "suppress_doc_wrap", "ignore_exceptions", "exception_backup",
        "bulk_message_request_threshold", "compression_level", "enable_ilm", "ilm_policy_id",
        "ilm_policy", "ilm_policies", "ilm_policy_overwrite", "truncate_caches_interval",
        "use_legacy_template", "catch_transport_exception_on_retry", "target_index_affinity"},
    "file": {"path", "append", "add_path_suffix", "path_suffix", "compress", "recompress",
             "symlink_path"},
    "secondary_file": {"directory", "basename", "append", "compress"},
}
SECTIONS: dict[str, set[str]] = {
    "forward": {"security", "transport"}, "monitor_agent": set(), "relabel": set(),
    "elasticsearch": {"buffer", "secondary", "metadata"},
    "file": {"buffer", "format", "inject"}, "secondary_file": {"format"},
}
SECTION_PARAMS: dict[str, set[str]] = {
    "security": {"self_hostname", "shared_key", "user_auth", "allow_anonymous_source"},
    "transport": {"version", "min_version", "max_version", "ciphers", "insecure", "ca_path", "cert_path",
                  "private_key_path", "private_key_passphrase", "client_cert_auth", "ca_cert_path",
                  "ca_private_key_path", "ca_private_key_passphrase"},
    "buffer": {"@type", "timekey", "timekey_wait", "timekey_use_utc", "timekey_zone", "chunk_limit_size",
               "chunk_limit_records", "total_limit_size", "queue_limit_length", "chunk_full_threshold",
               "queued_chunks_limit_size", "compress", "flush_at_shutdown", "flush_mode", "flush_interval",
               "flush_thread_count", "flush_thread_interval", "flush_thread_burst_interval",
               "delayed_commit_timeout", "overflow_action", "retry_forever", "retry_timeout",
               "retry_max_times", "retry_secondary_threshold", "retry_type", "retry_wait",
               "retry_exponential_backoff_base", "retry_max_interval", "retry_randomize",
               "disable_chunk_backup", "path", "path_suffix", "file_permission", "dir_permission"},
    "secondary": COMMON | PARAMS["secondary_file"],
    "format": {"@type", "add_newline", "json_parser"},
    "inject": {"hostname_key", "hostname", "worker_id_key", "tag_key", "time_key", "time_type",
               "time_format", "localtime", "utc", "timezone"},
}
ENUMS = {
    "write_operation": {"index", "create", "update", "upsert"},
    "flush_mode": {"default", "lazy", "interval", "immediate"},
    "overflow_action": {"throw_exception", "block", "drop_oldest_chunk"},
    "retry_type": {"exponential_backoff", "periodic"},
    "time_type": {"float", "unixtime", "string", "mixed"},
    "log_level": {"fatal", "error", "warn", "info", "debug", "trace"},
}
BOOLS = {"ssl_verify", "include_timestamp", "verify_es_version_at_startup", "suppress_type_name",
         "emit_error_for_missing_id", "log_es_400_reason", "reload_connections", "reload_on_failure",
         "reconnect_on_error", "flush_at_shutdown", "retry_randomize", "retry_forever", "append",
         "timekey_use_utc", "utc"}
TIMES = {"flush_interval", "retry_wait", "retry_max_interval", "request_timeout", "timekey", "timekey_wait"}
SIZES = {"chunk_limit_size", "total_limit_size"}
INTS = {"port", "time_precision", "default_elasticsearch_version", "flush_thread_count",
        "retry_exponential_backoff_base"}


def conf(env: dict[str, str] | None = None) -> Element:
    return parse(CONF, {} if env is None else env)


def forward_source(root: Element) -> Element:
    sources = [s for s in root.sections("source") if s.type == "forward"]
    assert len(sources) == 1, "fluent.conf needs exactly one forward input"
    return sources[0]


def output_for(tag: str, env: dict[str, str] | None = None) -> Element:
    root = conf(env)
    r = route(root, tag, forward_source(root).get("@label"))
    assert r.output is not None, f"tag {tag} is routed nowhere (Fluentd would drop it)"
    return r.output


@pytest.mark.parametrize("env", [{}, ALL_SET], ids=["defaults", "all-variables-set"])
def test_every_directive_and_parameter_is_one_the_plugins_know(env: dict[str, str]) -> None:
    root = conf(env)
    assert {e.name for e in root.elements} <= {"system", "source", "label", "match", "filter"}
    problems = []
    for e in root.walk():
        if e.name in ("source", "match", "filter"):
            known = PARAMS.get(e.type or "")
            if known is None:
                problems.append(f"{e.where}: plugin @type {e.type!r} is not one this check knows")
                continue
            problems += [f"{p.file}:{p.line}: {e.type} has no parameter {k!r}"
                         for k, p in e.params.items() if k not in known | COMMON]
            problems += [f"{s.where}: {e.type} has no <{s.name}> section"
                         for s in e.elements if s.name not in SECTIONS[e.type or ""]]
        elif e.name in SECTION_PARAMS:
            problems += [f"{p.file}:{p.line}: <{e.name}> has no parameter {k!r}"
                         for k, p in e.params.items() if k not in SECTION_PARAMS[e.name]]
        for k, p in e.params.items():
            v = p.value
            if not isinstance(v, str):
                continue
            if k in ENUMS and v not in ENUMS[k]:
                problems.append(f"{p.file}:{p.line}: {k} {v!r} is not one of {sorted(ENUMS[k])}")
            if k in BOOLS and v not in ("true", "false", "yes", "no"):
                problems.append(f"{p.file}:{p.line}: {k} {v!r} is not a boolean")
            if k in TIMES and not re.fullmatch(r"\d+(\.\d+)?[smhd]?", v):
                problems.append(f"{p.file}:{p.line}: {k} {v!r} is not a Fluentd time")
            if k in SIZES and not re.fullmatch(r"\d+(\.\d+)?([kmgt]b?)?", v, re.IGNORECASE):
                problems.append(f"{p.file}:{p.line}: {k} {v!r} is not a Fluentd size")
            if k in INTS and not v.isdigit():
                problems.append(f"{p.file}:{p.line}: {k} {v!r} is not an integer")
    assert problems == []


def test_labels_are_defined_once_and_used_and_plugin_ids_are_unique() -> None:
    root = conf()
    names = [e.arg for e in root.sections("label")]
    assert len(names) == len(set(names))
    used = {e.get("@label") for e in root.walk() if e.get("@label")}
    assert used <= set(names), f"labels used but not defined: {used - set(names)}"
    assert set(names) - {"@ERROR"} <= used, f"labels nothing sends to: {set(names) - used}"
    ids = [e.get("@id") for e in root.walk() if e.get("@id")]
    assert len(ids) == len(set(ids)), f"duplicate @id: {ids}"


def test_the_forward_input_listens_where_the_sensor_sends() -> None:
    from sensor import config

    sensor_port = config.schema()["fluent_output.port"].default
    src = forward_source(conf())
    assert int(src.get("port") or 0) == es_assets.FORWARD_PORT == sensor_port
    assert src.get("bind") == "0.0.0.0"
    assert forward_source(conf({"FLUENT_FORWARD_PORT": "25000"})).get("port") == "25000"


def test_alerts_go_to_the_alerts_data_stream_through_the_pipeline_with_event_id_as_id() -> None:
    from sensor import config

    sensor_tag = config.schema()["fluent_output.tag"].default
    assert sensor_tag == es_assets.ALERTS_TAG
    out = output_for(sensor_tag)
    assert out.type == "elasticsearch"
    assert out.get("index_name") == es_assets.ALERTS_DATA_STREAM
    assert out.get("pipeline") == es_assets.ALERTS_PIPELINE
    assert out.get("write_operation") == "create"      # the only op a data stream takes
    assert out.get("id_key") == "$.event.id"           # record accessor: record["event"]["id"]
    assert out.get("emit_error_for_missing_id") == "true"
    assert out.get("include_timestamp") == "true"


def test_the_id_key_reads_the_uuid_the_sensor_puts_in_its_ecs_documents() -> None:
    from sensor import ecs
    from sensor.alert import Alert

    alert = Alert(rule="Test rule", priority="Warning", source="syscall", time_ns=1_700_000_000_123_456_789,
                  output="test output", output_fields={"proc.name": "cat"}, tags=("test",),
                  hostname="h")
    doc = ecs.to_ecs(alert)
    path = output_for(es_assets.ALERTS_TAG).get("id_key")
    assert path is not None and path.startswith("$.")
    node = doc
    for part in path[2:].split("."):
        node = node[part]
    assert node == alert.uuid


def test_the_sensor_log_goes_to_the_log_data_stream_with_its_event_id_as_document_id() -> None:
    # The sensor gives each log record an event.id so that a re-sent chunk is recognisable; an id
    # made in Fluentd (elasticsearch_genid) would turn the same record sent twice into two documents.
    import logging

    from sensor.outputs.fluentlog import FluentLogHandler
    from sensor.outputs.forward import ForwardConnection

    root = conf()
    r = route(root, es_assets.LOG_TAG, forward_source(root).get("@label"))
    out = r.output
    assert out is not None and out.type == "elasticsearch"
    assert out.get("index_name") == es_assets.LOG_DATA_STREAM
    assert out.get("write_operation") == "create"
    assert out.get("emit_error_for_missing_id") == "true"
    assert r.filters == []
    handler = FluentLogHandler(ForwardConnection("127.0.0.1", 1), es_assets.LOG_TAG, "node-1")
    try:
        doc = handler.document(logging.LogRecord("falconet", logging.INFO, "x.py", 1, "hello", None, None))
    finally:
        handler.close(0.1)
    path = out.get("id_key")
    assert path == "$.event.id"
    node = doc
    for part in path[2:].split("."):
        node = node[part]
    assert node == doc["event"]["id"] and len(node) == 36


def test_fluentd_would_start_with_this_configuration() -> None:
    # Labels in the order Fluentd sets them up: no plugin may name @ERROR before it exists.
    for env in ({}, ALL_SET):
        labels = configure(conf(env))
        assert labels[-1] == "@ERROR" and set(labels) == {e.arg for e in conf(env).sections("label")}


def test_data_stream_and_pipeline_names_agree_with_elasticsearch_assets() -> None:
    assert es_assets.pipelines() and es_assets.index_templates(), "elasticsearch/ lost its pipelines or templates"
    alerts = output_for(es_assets.ALERTS_TAG)
    pipeline = alerts.get("pipeline")
    assert pipeline in es_assets.pipelines(), \
        f"Fluentd sends alerts through pipeline {pipeline!r}; elasticsearch/ingest_pipelines/ has " \
        f"{sorted(es_assets.pipelines())}"
    for tag in (es_assets.ALERTS_TAG, es_assets.LOG_TAG):
        index = output_for(tag).get("index_name") or ""
        tpl = es_assets.template_for(index)
        if tpl is None and tag == es_assets.LOG_TAG:
            continue  # Elasticsearch's built-in logs-*-* template covers the sensor's log
        assert tpl is not None, f"no index template in elasticsearch/index_templates/ matches {index}"
        assert "data_stream" in tpl.body, f"template {tpl.name} for {index} does not make a data stream"
        if tag == es_assets.ALERTS_TAG:
            default = tpl.settings.get("index.default_pipeline")
            assert default in (None, pipeline), \
                f"template {tpl.name} runs {default!r} by default, Fluentd asks for {pipeline!r}"


def test_a_tag_nobody_expects_and_what_elasticsearch_rejects_end_in_the_rejected_file() -> None:
    out = output_for("something.else")
    assert out.type == "file"
    assert (out.get("path") or "").startswith("/fluentd/buffer/rejected/")
    root = conf()
    # What the Elasticsearch outputs hand to @ERROR (a 400, a missing event.id) lands there too.
    for tag in ("something.else", es_assets.ALERTS_TAG, es_assets.LOG_TAG):
        r = route(root, tag, "@ERROR")
        assert r.output is out or (r.output is not None and r.output.get("@id") == out.get("@id"))
    buf = out.section("buffer")
    assert buf is not None and buf.get("overflow_action") == "block" and buf.get("retry_forever") == "true"


def test_elasticsearch_outputs_buffer_on_disk_and_retry_forever() -> None:
    paths = []
    for tag in (es_assets.ALERTS_TAG, es_assets.LOG_TAG):
        out = output_for(tag, ALL_SET)
        buf = out.section("buffer")
        assert buf is not None and buf.type == "file"
        assert "tag" in buf.arg.split(",")   # the plugin refuses a buffer without tag or _index
        assert (buf.get("path") or "").startswith("/data/buf/")
        assert buf.get("retry_forever") == "true"
        assert buf.get("retry_type") == "exponential_backoff"
        assert buf.get("overflow_action") == "block"
        assert (buf.get("flush_interval"), buf.get("total_limit_size"), buf.get("retry_max_interval")) == \
            ("9s", "3GB", "5m")
        secondary = out.section("secondary")
        assert secondary is not None and secondary.type == "secondary_file"
        assert (secondary.get("directory") or "").startswith("/data/buf/")
        # A 429 must stay retryable: es_rejected_execution_exception is not "unrecoverable".
        assert "es_rejected_execution_exception" not in (out.get("unrecoverable_error_types") or "")
        paths.append(buf.get("path"))
    assert len(set(paths)) == len(paths), "two outputs must not share a buffer directory"


def test_connection_settings_follow_the_environment() -> None:
    out = output_for(es_assets.ALERTS_TAG, ALL_SET)
    assert (out.get("hosts"), out.get("user"), out.get("password"), out.get("ca_file"),
            out.get("ssl_verify"), out.get("index_name"), out.get("pipeline")) == \
        ("https://es1:9201,https://es2:9201", "writer", "pw", "/ca/ca.pem", "false",
         "logs-falconet.alerts-prod", "falconet-alerts-2")
    assert output_for(es_assets.LOG_TAG, ALL_SET).get("index_name") == "logs-falconet.log-prod"
    # No password: the plugin refuses to start ("password must be present if user is present")
    # rather than run with an empty one.
    assert output_for(es_assets.ALERTS_TAG, {}).params["password"].value is None


def test_shared_key_and_tls_are_on_exactly_when_their_variables_are_set() -> None:
    plain = forward_source(conf())
    assert plain.section("security") is None and plain.section("transport") is None
    secured = forward_source(conf(ALL_SET))
    sec = secured.section("security")
    assert sec is not None and sec.get("shared_key") == "s3cret" and sec.get("self_hostname") == "agg-1"
    tls = secured.section("transport")
    assert tls is not None and tls.arg == "tls"
    assert (tls.get("cert_path"), tls.get("private_key_path")) == ("/tls/crt.pem", "/tls/key.pem")
    only_key = forward_source(conf({"FLUENT_FORWARD_SHARED_KEY": "k"}))
    assert only_key.section("security") is not None and only_key.section("transport") is None


def test_every_variable_is_exercised_here_and_documented_in_docs_lab() -> None:
    names = set()
    for path in [CONF, *sorted((FLUENT / "conf.d").glob("*.conf"))]:
        names |= ruby_env_names(path.read_text(encoding="utf-8"))
    assert names == set(ALL_SET), "ALL_SET must set every variable fluent/ reads"
    doc = LAB_DOC.read_text(encoding="utf-8")
    missing = sorted(n for n in names if f"`{n}`" not in doc)
    assert missing == [], f"docs/lab.md does not document {missing}"


def test_every_conf_d_file_is_used() -> None:
    used: set[str] = set()
    for env in ({}, ALL_SET):
        for e in conf(env).walk():
            used |= {p.file for p in e.params.values()}
    texts = {p.name for p in (FLUENT / "conf.d").glob("*.conf")}
    off_files = {"forward-security-off.conf", "forward-tls-off.conf"}  # comments only
    assert texts - off_files <= {Path(f).name for f in used}


def test_the_image_pins_fluentd_and_the_plugin_and_ships_the_configuration() -> None:
    ins = parse_dockerfile(FLUENT / "Dockerfile")
    froms = [i for i in ins if i.keyword == "FROM"]
    assert len(froms) == 1
    assert re.fullmatch(r"fluent/fluentd:v\d+\.\d+\.\d+-debian-\d+\.\d+", froms[0].positional()[0])
    args = dict(i.text.split("=", 1) for i in ins if i.keyword == "ARG" and "=" in i.text)
    assert re.fullmatch(r"8\.\d+\.\d+", args["ES_GEM_VERSION"]), "the ES 8 cluster needs an 8.x Ruby client"
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["ES_PLUGIN_VERSION"])
    run = " ".join(i.text for i in ins if i.keyword == "RUN")
    assert 'gem install --no-document elasticsearch -v "$ES_GEM_VERSION"' in run
    assert 'fluent-plugin-elasticsearch -v "$ES_PLUGIN_VERSION"' in run
    # Every COPY source exists in the build context, and fluent.conf's includes resolve in the image.
    copied = {}
    for i in ins:
        if i.keyword == "COPY":
            *srcs, dest = i.positional()
            for src in srcs:
                assert (FLUENT / src).exists(), f"fluent/Dockerfile:{i.line}: COPY {src}: no such file"
                copied[src.rstrip("/")] = dest
    assert copied["fluent.conf"] == "/fluentd/etc/fluent.conf"
    assert copied["conf.d"].rstrip("/") == "/fluentd/etc/conf.d"
    assert [i.text for i in ins if i.keyword == "USER"][-1] == "fluent"


def _secret_file(spec: dict, container: dict, path: str) -> tuple[str, str]:
    """(Secret name, key) of the file `path` a container sees through a secret volume; fails otherwise."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    for m in container["volumeMounts"]:
        if path.startswith(m["mountPath"].rstrip("/") + "/") and "secret" in volumes[m["name"]]:
            secret = volumes[m["name"]]["secret"]
            name = path[len(m["mountPath"].rstrip("/")) + 1:]
            items = {i["path"]: i["key"] for i in secret.get("items", [])} or {name: name}
            assert name in items, f"{path}: the Secret {secret['secretName']} volume does not hold {name}"
            return secret["secretName"], items[name]
    raise AssertionError(f"{path} is not a file of a Secret mounted in {container['name']}")


def test_the_cluster_sends_alerts_to_fluentd_with_tls_verified_against_its_ca() -> None:
    # Security review (issue 14) finding 19: a shared key alone authenticates, it does not encrypt.
    from .deploy_files import k8s_object

    sts = k8s_object("StatefulSet", "falconet-fluentd")["spec"]["template"]["spec"]
    (fluentd,) = sts["containers"]
    env = dict(k8s_object("ConfigMap", "falconet-fluentd")["data"])
    env |= {e["name"]: e.get("value", "stand-in") for e in fluentd.get("env", [])}
    tls = forward_source(conf(env)).section("transport")
    assert tls is not None and tls.arg == "tls", "the aggregator's forward input does not speak TLS"
    cert = _secret_file(sts, fluentd, tls.get("cert_path") or "")
    key = _secret_file(sts, fluentd, tls.get("private_key_path") or "")
    assert cert[0] == key[0] and (cert[1], key[1]) == ("tls.crt", "tls.key")
    svc = k8s_object("Service", "falconet-fluentd")
    server_name = f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc"
    sensor_yaml = yaml.safe_load(k8s_object("ConfigMap", "falconet-config")["data"]["falconet.yaml"])
    out = sensor_yaml["fluent_output"]
    assert out["host"] == server_name and out["tls"]["enabled"] is True
    assert out["tls"].get("verify", True) is True and out.get("shared_key")
    # Every workload that loads this falconet.yaml has the CA of that same Secret, and only the CA.
    for kind, name in (("DaemonSet", "falconet-sensor"), ("Deployment", "falconet-audit-webhook")):
        spec = k8s_object(kind, name)["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        assert _secret_file(spec, c, out["tls"]["ca_cert"]) == (cert[0], "ca.crt"), f"{kind} {name}"
        volumes = [v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == cert[0]]
        assert [i["key"] for v in volumes for i in v["secret"]["items"]] == ["ca.crt"], \
            f"{kind} {name} must not mount the aggregator's private key"

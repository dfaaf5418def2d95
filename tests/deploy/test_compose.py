"""compose/: the EFK lab. Checked without a Docker engine: the Compose specification's schema, then
what the schema cannot see (files, start order, health, ports, versions, memory)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from . import es_assets
from .deploy_files import (
    COMPOSE_DIR,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    ROOT,
    compose,
    compose_variables,
    env_file,
    load_sensor_config,
    service_env,
)
from .fluentd_config import parse as parse_fluent
from .fluentd_config import route

SHARED_TOOLS = ROOT.parent / "shared" / "tools"
ONE_SHOT = {"certs", "setup", "provision", "event-generator"}
# The start order docs/lab.md describes: service -> {dependency: condition}.
EXPECTED_ORDER = {
    "certs": {},
    "elasticsearch": {"certs": "service_completed_successfully"},
    "setup": {"elasticsearch": "service_healthy"},
    "kibana": {"elasticsearch": "service_healthy", "setup": "service_completed_successfully"},
    "fluentd": {"setup": "service_completed_successfully"},
    "provision": {"elasticsearch": "service_healthy", "kibana": "service_healthy",
                  "setup": "service_completed_successfully"},
    "sensor": {"fluentd": "service_healthy", "provision": "service_completed_successfully"},
    "event-generator": {"sensor": "service_healthy"},
}
# tracefs and the cgroup hierarchy for capture, the runtime's socket for container names. BTF comes
# with the container's own /sys and the image carries its kernel headers (tests/e2e runs the image
# with exactly these: test_containers_sensor_image.py).
SENSOR_HOST_MOUNTS = {"/sys/kernel/tracing", "/sys/fs/cgroup", "/var/run/docker.sock"}


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def mounts(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(source, target, mode) of every short-syntax volume entry."""
    out = []
    for v in service.get("volumes", []):
        assert isinstance(v, str), "volumes use the short syntax here"
        parts = v.split(":")
        out.append((parts[0], parts[1], parts[2] if len(parts) > 2 else "rw"))
    return out


def fluentd_conf_for(service: dict[str, Any]) -> Any:
    return parse_fluent(ROOT / "fluent" / "fluent.conf", service_env(service))


def sensor_config() -> Any:
    svc = services()["sensor"]
    (src, _, _), = [m for m in mounts(svc) if m[1] == "/etc/falconet/falconet.yaml"]
    return load_sensor_config(COMPOSE_DIR / src, service_env(svc))


def test_compose_file_passes_the_compose_specification_validator() -> None:
    tool = SHARED_TOOLS / "compose_validate.py"
    if not tool.exists():
        from conftest import STRICT

        if STRICT:
            pytest.fail(f"{tool} is missing: ../shared must be beside the checkout")
        pytest.skip(f"{tool} not present")
    proc = subprocess.run([sys.executable, str(tool), str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE),
                           "--json"], capture_output=True, text=True, timeout=60)
    report = json.loads(proc.stdout)
    issues = [i for f in report for i in f["issues"]]
    assert issues == [], json.dumps(issues, indent=1)
    assert proc.returncode == 0, proc.stderr


def test_every_variable_without_a_default_is_in_env_example() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", text))
    example = env_file()
    assert required <= set(example), f"compose/.env.example lacks {required - set(example)}"
    assert compose_variables() <= set(example), \
        f"compose/.env.example does not show {compose_variables() - set(example)}"
    # Without compose/.env, compose refuses to start rather than run with empty passwords.
    with pytest.raises(KeyError, match="_PASSWORD is not set"):
        compose({})


def test_build_contexts_and_mounted_files_exist() -> None:
    for name, svc in services().items():
        build = svc.get("build")
        if build is not None:
            ctx = COMPOSE_DIR / (build if isinstance(build, str) else build["context"])
            name_in_ctx = build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile"
            dockerfile = ctx / name_in_ctx
            assert dockerfile.is_file(), f"service {name}: no {dockerfile}"
        for src, target, _ in mounts(svc):
            if src.startswith("."):
                assert (COMPOSE_DIR / src).exists(), \
                    f"service {name}: {src} (mounted at {target}) does not exist"


def test_shell_scripts_parse() -> None:
    bash = shutil.which("bash")
    assert bash is not None
    for script in sorted((COMPOSE_DIR / "setup").glob("*.sh")):
        proc = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"


def test_start_order_and_conditions() -> None:
    svcs = services()
    actual = {name: {dep: spec["condition"] for dep, spec in (svc.get("depends_on") or {}).items()}
              for name, svc in svcs.items()}
    assert actual == EXPECTED_ORDER
    for name, deps in actual.items():
        for dep, cond in deps.items():
            if cond == "service_healthy":
                assert "healthcheck" in svcs[dep], \
                    f"{name} waits for {dep} to be healthy; it has no healthcheck"
            if cond == "service_completed_successfully":
                assert dep in ONE_SHOT, f"{name} waits for {dep} to finish, but {dep} runs for good"
    # The sensor starts only after the pipeline exists (provision) and Fluentd is up.
    seen: set[str] = set()

    def closure(n: str) -> set[str]:
        for d in actual[n]:
            if d not in seen:
                seen.add(d)
                closure(d)
        return seen
    assert {"provision", "fluentd", "elasticsearch", "setup", "certs", "kibana"} <= closure("sensor")


def test_long_running_services_have_healthchecks_and_one_shots_do_not_restart() -> None:
    for name, svc in services().items():
        if name in ONE_SHOT:
            assert svc.get("restart") == "no", f"one-shot {name} must not restart"
        else:
            hc = svc.get("healthcheck")
            assert hc and hc.get("test") and not hc.get("disable"), f"{name} has no healthcheck"
            assert svc.get("restart") == "unless-stopped"


def test_images_are_pinned_and_elasticsearch_matches_kibana() -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    tags = {}
    for name, svc in services().items():
        image = svc["image"]
        repo, sep, tag = image.rpartition(":")
        assert sep and "/" not in tag, f"{name}: image {image} has no tag"
        assert tag != "latest" and re.fullmatch(r"\d+\.\d+\.\d+", tag), \
            f"{name}: {image} is not an exact version"
        tags[repo] = tag
        if "build" in svc:
            assert repo.startswith("falconet/") and tag == version, \
                f"{name}: a locally built image is tagged with the project version {version}"
    assert tags["docker.elastic.co/elasticsearch/elasticsearch"] == tags["docker.elastic.co/kibana/kibana"]


def _bytes(size: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)b?", size.lower())
    assert m, f"not a size: {size}"
    return int(float(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2)])


def test_memory_limits_fit_an_8gb_laptop() -> None:
    svcs = services()
    total = 0
    for name, svc in svcs.items():
        assert "mem_limit" in svc, f"{name} has no memory limit"
        if name not in ONE_SHOT:
            total += _bytes(str(svc["mem_limit"]))
    assert total <= 5 * 1024**3, f"long-running services may use {total / 1024**3:.1f} GiB"
    heap = re.search(r"-Xmx(\S+)", service_env(svcs["elasticsearch"])["ES_JAVA_OPTS"])
    assert heap and _bytes(heap.group(1)) * 2 <= _bytes(str(svcs["elasticsearch"]["mem_limit"]))


def test_ports_are_published_on_loopback_only() -> None:
    for name, svc in services().items():
        for p in svc.get("ports", []):
            assert isinstance(p, dict) and p.get("host_ip") == "127.0.0.1", f"{name}: {p}"


def test_sensor_reaches_fluentd_where_fluentd_listens() -> None:
    svcs = services()
    cfg = sensor_config()
    assert cfg.get("fluent_output.enabled") is True
    assert cfg.get("fluent_output.host") in svcs
    fluentd = svcs[cfg.get("fluent_output.host")]
    forward = next(s for s in fluentd_conf_for(fluentd).sections("source") if s.type == "forward")
    assert int(forward.get("port") or 0) == cfg.get("fluent_output.port") == es_assets.FORWARD_PORT
    assert int(forward.get("port") or 0) in {p["target"] for p in fluentd["ports"]}
    assert cfg.get("fluent_output.tag") == es_assets.ALERTS_TAG
    # Both ends agree on the shared key and on TLS.
    sec = forward.section("security")
    assert sec is not None and sec.get("shared_key") == cfg.get("fluent_output.shared_key") != ""
    tls = forward.section("transport")
    assert (tls is not None and tls.arg == "tls") is cfg.get("fluent_output.tls.enabled") is True
    ca_src = {t: s for s, t, _ in mounts(svcs["sensor"])}
    assert cfg.get("fluent_output.tls.ca_cert").startswith("/certs/") and ca_src["/certs"] == "certs"


def test_fluentd_writes_to_elasticsearch_with_the_user_setup_creates() -> None:
    svcs = services()
    conf = fluentd_conf_for(svcs["fluentd"])
    label = next(s for s in conf.sections("source") if s.type == "forward").get("@label")
    users_sh = (COMPOSE_DIR / "setup" / "users.sh").read_text(encoding="utf-8")
    role_patterns = re.findall(r'"names":\[([^\]]*)\]', users_sh)
    assert role_patterns, "users.sh defines no index privileges"
    patterns = [p.strip().strip('"') for p in role_patterns[0].split(",")]
    for tag in (es_assets.ALERTS_TAG, es_assets.LOG_TAG):
        out = route(conf, tag, label).output
        assert out is not None
        for url in (out.get("hosts") or "").split(","):
            u = urlsplit(url)
            assert (u.scheme, u.hostname, u.port) == ("https", "elasticsearch", 9200)
        assert out.get("user") == "falconet_fluentd" and "PUT /_security/user/falconet_fluentd" in users_sh
        assert out.get("password"), "Fluentd gets FLUENTD_ES_PASSWORD"
        assert any(fnmatchcase(out.get("index_name") or "", p) for p in patterns), \
            f"the falconet_fluentd role does not cover {out.get('index_name')}"
        assert out.get("ca_file", "").startswith("/fluentd/certs/")
    assert ("certs", "/fluentd/certs", "ro") in mounts(svcs["fluentd"])
    assert "9200" in {str(p["target"]) for p in svcs["elasticsearch"]["ports"]}


def test_kibana_and_provision_talk_to_the_right_services() -> None:
    svcs = services()
    kib = service_env(svcs["kibana"])
    u = urlsplit(kib["ELASTICSEARCH_HOSTS"])
    assert (u.scheme, u.hostname, u.port) == ("https", "elasticsearch", 9200)
    assert kib["ELASTICSEARCH_USERNAME"] == "kibana_system"
    prov = service_env(svcs["provision"])
    es, kb = urlsplit(prov["FALCONET_ES_URL"]), urlsplit(prov["FALCONET_KIBANA_URL"])
    assert (es.scheme, es.hostname, es.port) == ("https", "elasticsearch", 9200)
    assert (kb.hostname, kb.port) == ("kibana", 5601)
    assert 5601 in {p["target"] for p in svcs["kibana"]["ports"]}
    assert prov["FALCONET_PASSWORD"] == service_env(svcs["elasticsearch"])["ELASTIC_PASSWORD"]
    cmd = svcs["provision"]["command"]
    assert cmd[0] == "provision" and cmd[cmd.index("--ca-cert") + 1].startswith("/certs/")


def test_certificates_name_the_hosts_clients_connect_to() -> None:
    certs_sh = (COMPOSE_DIR / "setup" / "certs.sh").read_text(encoding="utf-8")
    instances = dict(re.findall(r"- name: (\S+)\n\s+dns: \[([^\]]*)\]", certs_sh))
    assert "elasticsearch" in instances["elasticsearch"] and "fluentd" in instances["fluentd"]
    es_env = service_env(services()["elasticsearch"])
    assert es_env["xpack.security.http.ssl.certificate"] == "certs/elasticsearch/elasticsearch.crt"
    fl_env = service_env(services()["fluentd"])
    assert fl_env["FLUENT_FORWARD_TLS_CERT"] == "/fluentd/certs/fluentd/fluentd.crt"


def test_sensor_sees_the_host_with_exactly_the_listed_capabilities() -> None:
    svc = services()["sensor"]
    assert svc.get("privileged") is not True
    assert svc["pid"] == "host"
    assert svc["cap_drop"] == ["ALL"]
    assert set(svc["cap_add"]) <= {"BPF", "PERFMON", "SYS_RESOURCE", "SYS_PTRACE", "KILL"}
    assert {"BPF", "PERFMON", "SYS_RESOURCE", "SYS_PTRACE"} <= set(svc["cap_add"])
    # KILL exactly when response is on (DESIGN.md §6 Capture).
    assert ("KILL" in svc["cap_add"]) is sensor_config().get("response.enabled")
    host = {(s, t, mode) for s, t, mode in mounts(svc) if s.startswith("/")}
    assert {s for s, _, _ in host} == SENSOR_HOST_MOUNTS
    assert all(s == t and mode == "ro" for s, t, mode in host), "host paths are mounted read-only, in place"
    assert svc.get("read_only") is True


def test_sensor_configuration_loads_and_its_response_actions_are_valid() -> None:
    cfg = sensor_config()
    assert cfg.get("fluent_output.shared_key") == env_file()["FLUENT_SHARED_KEY"]
    from sensor.response import spec
    from sensor.response.settings import ResponseSettings

    response = ResponseSettings.from_config(cfg)
    actions = spec.parse_actions(response)
    assert actions and all(a.do in spec.ACTIONS for a in actions)
    assert response.dry_run is True, "the lab arms response only when asked (docs/lab.md)"
    svc = services()["sensor"]
    rules_mount = [t for s, t, _ in mounts(svc) if s == "./sensor/rules.d"]
    assert rules_mount and Path(rules_mount[0]) in cfg.rules_files()


def test_sensor_healthcheck_asks_the_sensor_webserver() -> None:
    from sensor import config

    defaults = {path: k.default for path, k in config.schema().items()}
    cfg = sensor_config()
    assert cfg.get("webserver.enabled") is True
    url = f"http://127.0.0.1:{cfg.get('webserver.listen_port')}{cfg.get('webserver.k8s_healthz_endpoint')}"
    assert defaults["webserver.listen_port"] == cfg.get("webserver.listen_port")
    assert url in " ".join(services()["sensor"]["healthcheck"]["test"])


def test_local_rules_load_after_the_bundled_rules() -> None:
    from sensor import engine
    from sensor.assets import asset_dir

    local = sorted((COMPOSE_DIR / "sensor" / "rules.d").glob("*.yaml"))
    assert local, "compose/sensor/rules.d/ is mounted as /etc/falconet/rules.d"
    bundled = engine.load_rules([str(asset_dir("rules"))])
    with_local = engine.load_rules([str(asset_dir("rules")), *map(str, local)])
    assert len(with_local.rules) >= len(bundled.rules)


def test_the_event_generator_has_what_the_actions_need_and_runs_only_when_asked() -> None:
    from sensor.generate.host import LAB_COMMAND

    svc = services()["event-generator"]
    assert svc["profiles"] == ["demo"], "`docker compose up` does not start it"
    assert svc["command"][0] == "generate" and svc["image"] == services()["sensor"]["image"]
    assert svc["user"] == "0" and svc["pid"] == "host" and svc["cgroup"] == "host"
    assert svc["cap_drop"] == ["ALL"]
    # cgroups and namespaces (SYS_ADMIN), a listener on port 22; nothing more.
    assert set(svc["cap_add"]) == {"SYS_ADMIN", "NET_BIND_SERVICE"}
    assert svc.get("privileged") is not True and svc.get("read_only") is False
    assert ("/sys/fs/cgroup", "/sys/fs/cgroup", "rw") in mounts(svc)
    assert f"#   {LAB_COMMAND}" in COMPOSE_FILE.read_text(encoding="utf-8")
    lab = (ROOT / "docs" / "lab.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for doc in (lab, readme):
        commands = set(re.findall(r"docker compose [^`\n]*generat[^`\n]*", doc))
        assert commands == {LAB_COMMAND}, commands

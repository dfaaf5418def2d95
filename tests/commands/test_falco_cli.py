"""Falco's documented invocations, run as a user runs them: `falconet [falco flags]` does what
`falco [flags]` does (falco 0.44.1's userspace/falco/app/options.cpp lists the flags), flags whose
meaning Falconet does not implement say so in one line, and every error is one line with the exit
code sensor/status.py documents.

The runs here use the Kubernetes audit-log source (no root, no eBPF); tests/e2e/test_live_cli.py
runs the same with live syscall capture."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FALCONET = str(Path(sys.executable).with_name("falconet"))
AUDIT_RULES = ROOT / "rules" / "k8s_audit_rules.yaml"
AUDIT_LOG = ROOT / "tests" / "data" / "k8s_audit" / "events.jsonl"
FALCO_STOCK = ROOT / "tests" / "data" / "falco-0.44.1.yaml"
RULES = """\
- rule: Shell spawned
  desc: a shell ran
  condition: evt.type = execve and proc.name = bash
  output: shell (user=%user.name)
  priority: Notice
  tags: [shell, process]
- rule: Passwd read
  desc: passwd was read
  condition: evt.type = openat and fd.name = /etc/passwd
  output: passwd read by %proc.name
  priority: WARNING
  tags: [filesystem]
"""


def falconet(*args: str, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FALCONET_CONFIG", "FALCONET_DEBUG")}
    return subprocess.run([FALCONET, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          **kw)  # type: ignore[call-overload]


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    p = tmp_path / "rules.yaml"
    p.write_text(RULES)
    return p


def audit_run(tmp_path: Path, *args: str) -> list[str]:
    """The flags of a sensor run on the sample audit log, without syscall capture or webserver."""
    return ["-r", str(AUDIT_RULES), "-o", "syscall.enabled=false", "-o", f"k8s_audit.files=[{AUDIT_LOG}]",
            "-o", f"state_dir={tmp_path / 'state'}", "-o", "webserver.enabled=false", *args]


# -- falconet [flags] runs the sensor --------------------------------------------------------------


def test_root_flags_run_the_sensor_as_falco_does(tmp_path: Path) -> None:
    # falco -r FILE -M N -o json_output=true: runs, prints JSON alerts, stops N s after attaching.
    started = time.monotonic()
    res = falconet(*audit_run(tmp_path, "-M", "2", "-o", "json_output=true"))
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - started >= 2
    alerts = [json.loads(line) for line in res.stdout.splitlines()]
    assert alerts and {a["source"] for a in alerts} == {"k8s_audit"}
    assert "K8s Privileged Pod Created" in {a["rule"] for a in alerts}
    err = res.stderr.splitlines()
    assert any(line.endswith(f"Falconet initialized with configuration file: {ROOT}/sensor/falconet.yaml "
                             f"and 5 -o overrides") for line in err), res.stderr
    assert any("Falconet version: " in line for line in err)
    from sensor.engine import load_rules

    loaded = load_rules([AUDIT_RULES])
    i = next(i for i, line in enumerate(err) if line.endswith("Loading rules from:"))
    assert err[i + 1].endswith(f"   {AUDIT_RULES} | {len(loaded.all_rules)} rules, {len(loaded.rules)} enabled")
    assert any(line.endswith("Enabled event sources: k8s_audit") for line in err)
    assert err[-1].startswith(f"Events detected: {len(alerts)}; events processed: 29;")


def test_run_is_the_long_form_and_v_prints_falcos_summary(tmp_path: Path) -> None:
    res = falconet("run", *audit_run(tmp_path, "-M", "1", "-v", "-o", "json_output=true"))
    assert res.returncode == 0, res.stderr
    alerts = [json.loads(line) for line in res.stdout.splitlines()]
    err = res.stderr.splitlines()
    start = err.index(f"Events detected: {len(alerts)}")
    assert err[start + 1] == "Rule counts by severity:"
    by_rule = {a["rule"]: sum(x["rule"] == a["rule"] for x in alerts) for a in alerts}
    by_priority: dict[str, int] = {}
    for a in alerts:
        by_priority[a["priority"].upper()] = by_priority.get(a["priority"].upper(), 0) + 1
    severity = err[start + 2:start + 2 + len(by_priority)]
    assert {line.split(":")[0].strip(): int(line.split(":")[1]) for line in severity} == by_priority
    assert err[start + 2 + len(by_priority)] == "Triggered rules by rule name:"
    rules_part = err[start + 3 + len(by_priority):start + 3 + len(by_priority) + len(by_rule)]
    assert {line.rsplit(":", 1)[0].strip(): int(line.rsplit(":", 1)[1]) for line in rules_part} == by_rule


def test_p_appends_to_every_rules_output_and_P_writes_the_pid(tmp_path: Path) -> None:
    pidfile = tmp_path / "falconet.pid"
    proc = subprocess.Popen([FALCONET, *audit_run(tmp_path, "-M", "3", "-p", "verb=%ka.verb", "-P", str(pidfile))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pidfile.read_text() == f"{proc.pid}\n"
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert not pidfile.exists()                       # removed at exit
    assert out and all(" verb=" in line for line in out.splitlines())
    assert "-p/--print is deprecated in Falco; use -o append_output instead" in err


def test_disable_and_enable_source(tmp_path: Path, rules: Path) -> None:
    res = falconet(*audit_run(tmp_path, "--dry-run", "-r", str(rules), "-o", "syscall.enabled=true",
                              "--disable-source", "syscall"))
    assert res.returncode == 0, res.stderr
    assert f"Sources: k8s_audit file {AUDIT_LOG}" in res.stdout.splitlines()
    res = falconet("--dry-run", "-r", str(rules), "--enable-source", "syscall", "-o", f"k8s_audit.files=[{AUDIT_LOG}]")
    assert res.returncode == 0, res.stderr
    assert "Sources: syscall (eBPF)" in res.stdout.splitlines()
    res = falconet("--dry-run", "--disable-source", "syscall", "--enable-source", "k8s_audit")
    assert res.returncode == 2
    assert res.stderr == ("falconet: error: --enable-source and --disable-source cannot be mixed (as in Falco) "
                          "(see `falconet --help`)\n")
    res = falconet("--dry-run", "-r", str(rules), "--disable-source", "syscall")
    assert res.returncode == 3 and res.stderr.startswith("falconet: error: no event source is enabled")


def test_dry_run_says_what_would_run_and_U_unbuffers(rules: Path) -> None:
    res = falconet("--dry-run", "-r", str(rules), "-U", "-o", "buffered_outputs=true")
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert f"Rules file: {rules}" in out and "Sources: syscall (eBPF)" in out
    assert "Buffered outputs: false (-o buffered_outputs=false)" in out     # -U wins, as in Falco
    res = falconet("--dry-run", "-r", str(rules))
    assert "Buffered outputs: false (" in res.stdout and "-o buffered_outputs" not in res.stdout


# -- Falco's falco.yaml ------------------------------------------------------------------------------


def test_falcos_stock_falco_yaml_runs_with_warnings_and_no_errors(tmp_path: Path, rules: Path) -> None:
    log = tmp_path / "log.sock"
    syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    syslog.bind(str(log))                          # Falco's stock file enables syslog_output
    try:
        res = falconet("-c", str(FALCO_STOCK), "-r", str(rules), "--dry-run", "-o", f"syslog_output.address={log}")
    finally:
        syslog.close()
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if line.startswith("falconet: warning: ")]
    assert warnings and not [line for line in res.stderr.splitlines() if "error" in line]
    assert (f"falconet: warning: {FALCO_STOCK}:8: Falco key 'watch_config_files' is not used by Falconet: it "
            f"does not watch its files; SIGHUP (systemctl reload falconet) reloads configuration and rules") in warnings
    assert "Output syslog: in-memory queue of 10000 alerts" in res.stdout.splitlines()


def test_every_problem_of_a_file_at_once_from_the_command_line(tmp_path: Path) -> None:
    cfg = tmp_path / "falco.yaml"
    cfg.write_text("priority: loud\nfile_output:\n  filname: x\nsyscall_event_drop: {}\njson_output: maybe\n")
    res = falconet("-c", str(cfg), "--dry-run")
    assert res.returncode == 3
    assert res.stderr.splitlines() == [
        f"falconet: error: {cfg}:1: 'priority': unknown priority 'loud'; one of Emergency, Alert, Critical, "
        f"Error, Warning, Notice, Informational, Debug (any case; info for Informational)",
        f"falconet: error: {cfg}:3: unknown configuration key 'file_output.filname' (did you mean "
        f"'file_output.filename'?)",
        f"falconet: error: {cfg}:4: unknown configuration key 'syscall_event_drop' (did you mean "
        f"'syscall_event_drops'?)",
        f"falconet: error: {cfg}:5: 'json_output' must be true or false, got str 'maybe'"]


# -- a selection that selects nothing ----------------------------------------------------------------


def test_a_tag_or_name_that_selects_nothing_is_an_error_naming_it(rules: Path) -> None:
    res = falconet("--dry-run", "-r", str(rules), "-t", "nosuchtag")
    assert res.returncode == 3
    assert res.stderr == ("falconet: error: -t nosuchtag: no loaded rule has this tag (the loaded rules' tags: "
                          "filesystem, process, shell)\n")
    res = falconet("run", "--dry-run", "-r", str(rules), "-D", "No such rule")
    assert res.returncode == 3
    assert res.stderr == ("falconet: error: -D No such rule: no loaded rule's name contains or matches it "
                          "(2 rules loaded; `falconet -L` lists them)\n")


def test_a_selection_that_leaves_an_enabled_source_without_rules_is_an_error(rules: Path, tmp_path: Path) -> None:
    res = falconet("--dry-run", "-r", str(rules), "-T", "shell", "-T", "filesystem")
    assert res.returncode == 3
    assert res.stderr == ("falconet: error: the syscall source is enabled but -T shell and -T filesystem leave(s) "
                          "none of its 2 rules enabled; select some of its rules, or turn the source off "
                          "(--disable-source syscall)\n")
    res = falconet("--dry-run", "-r", str(rules), "-o", "priority=error")
    assert res.returncode == 3 and "but priority: Error (-o priority=error) leave(s) none" in res.stderr
    res = falconet("--dry-run", "-r", str(rules), "-o", f"k8s_audit.files=[{AUDIT_LOG}]")
    assert res.returncode == 3
    assert res.stderr == ("falconet: error: the k8s_audit source is enabled but no loaded rule file has a "
                          "k8s_audit rule; load rules for it, or turn the source off (--disable-source k8s_audit)\n")


# -- start-up checks of the output channels ------------------------------------------------------------


@pytest.mark.parametrize(("setting", "says"), [
    (["file_output.enabled=true", "file_output.filename=/nonexistent-dir/events.txt"],
     "file_output: 'file_output.filename' /nonexistent-dir/events.txt (-o file_output.filename=/nonexistent-dir/"
     "events.txt): the directory /nonexistent-dir does not exist (create it, or set file_output.filename to a "
     "file in an existing directory)"),
    (["program_output.enabled=true", "program_output.program=jq . | no-such-notifier --to ops"],
     "program_output: 'program_output.program' (-o program_output.program=jq . | no-such-notifier --to ops) "
     "runs no-such-notifier, which is not on PATH (install it, or fix program_output.program)"),
    (["syslog_output.enabled=true", "syslog_output.address=/nonexistent-dir/log"],
     "syslog_output: 'syslog_output.address' /nonexistent-dir/log (-o syslog_output.address=/nonexistent-dir/log) "
     "does not exist: no syslog daemon here (start a syslog daemon (rsyslog, or systemd-journald's /dev/log), "
     "mount its socket, or set syslog_output.enabled=false)"),
])
def test_dry_run_fails_for_an_output_that_cannot_deliver(rules: Path, setting: list[str], says: str) -> None:
    args = [a for s in setting for a in ("-o", s)]
    res = falconet("--dry-run", "-r", str(rules), *args)
    assert res.returncode == 4
    assert res.stderr == f"falconet: error: {says}\n"


# -- Falco's informational flags ------------------------------------------------------------------


def test_L_l_list_V_and_version(rules: Path, tmp_path: Path) -> None:
    res = falconet("-r", str(rules), "-L")
    assert res.returncode == 0
    assert [line.split()[0:2] for line in res.stdout.splitlines()[2:]] == [["Shell", "spawned"], ["Passwd", "read"]]
    res = falconet("-r", str(rules), "-l", "Passwd read")
    assert res.returncode == 0 and "Description: passwd was read" in res.stdout
    res = falconet("--list", "syscall", "-N")
    names = res.stdout.splitlines()
    assert res.returncode == 0 and "proc.name" in names and all(" " not in n for n in names)
    res = falconet("--list", "k8s_audit")
    assert res.returncode == 0 and "ka.verb" in res.stdout
    res = falconet("-V", str(rules))
    assert res.returncode == 0 and res.stdout.startswith(f"{rules}: Ok")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- rule: x\n  desc: x\n  condition: proc.name =\n  output: x\n  priority: Notice\n")
    res = falconet("-V", str(bad), "-o", "json_output=true")
    assert res.returncode == 1
    assert json.loads(res.stdout)["falco_load_results"][0]["errors"][0]["code"] == "LOAD_ERR_COMPILE_CONDITION"
    res = falconet("--version")
    assert res.returncode == 0 and res.stdout.startswith("Falconet version: ")


def test_support_page_size_config_schema_and_list_events(tmp_path: Path, rules: Path) -> None:
    cfg = tmp_path / "falconet.yaml"
    cfg.write_text("fluent_output:\n  shared_key: s3cret\n  password: hunter2\n")
    res = falconet("--support", "-c", str(cfg), "-r", str(rules))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert set(doc) >= {"version", "engine_info", "system_info", "cmdline", "config", "rules_files"}
    assert doc["rules_files"] == [{"name": str(rules), "variants": [{"content": RULES}]}]
    assert doc["system_info"]["sysname"] == "Linux"
    assert doc["config"]["fluent_output"]["shared_key"] == "<redacted>" and "hunter2" not in res.stdout
    res = falconet("--page-size")
    assert res.stdout == f"Your system page size is: {os.sysconf('SC_PAGE_SIZE')} bytes.\n"
    schema = json.loads(falconet("--config-schema").stdout)
    assert schema["properties"]["file_output"]["properties"]["filename"]["type"] == "string"
    assert schema["properties"]["priority"]["enum"][-1] == "Debug"
    res = falconet("--list-events")
    assert res.returncode == 0 and any(line.split()[0] == "execve" for line in res.stdout.splitlines()[1:])


@pytest.mark.parametrize(("flag", "says"), [
    (["-A"], "-A: Falco 0.41 replaced -A with base_syscalls.all, which Falconet does not implement"),
    (["-S", "128"], "-S/--snaplen: Falco 0.41 replaced -S with falco_libs.snaplen"),
    (["-i"], "-i: Falconet ignores no syscall by default"),
    (["-e", "x.scap"], "-e: Falco 0.38 replaced -e with engine.kind=replay; run `falconet replay FILE`"),
    (["--list-plugins"], "--list-plugins: Falconet loads no plugins"),
    (["--plugin-info", "k8saudit"], "--plugin-info: Falconet loads no plugins"),
    (["--rule-schema"], "--rule-schema: Falconet has no rule JSON schema"),
    (["--gvisor-config", "x"], "-g/--gvisor-config: Falco 0.44 removed gVisor support"),
    (["run", "-A"], "-A: Falco 0.41 replaced -A"),
])
def test_falco_flags_falconet_does_not_implement_say_so_in_one_line(flag: list[str], says: str) -> None:
    res = falconet(*flag)
    assert res.returncode == 2
    assert res.stderr.startswith(f"falconet: error: {says}") and res.stderr.count("\n") == 1
    assert "No such option" not in res.stderr and res.stdout == ""


def test_a_run_flag_with_another_command_is_refused() -> None:
    res = falconet("-M", "5", "rules", "list")
    assert res.returncode == 2
    assert res.stderr == ("falconet: error: -M is a flag for running the sensor, not for `rules`: use "
                          "`falconet -M ...` or `falconet run -M ...` (see `falconet --help`)\n")


def test_no_arguments_prints_the_help() -> None:
    res = falconet()
    assert res.returncode == 0 and res.stdout.startswith("Usage: falconet [OPTIONS] [COMMAND]")


# -- Unix manners ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [["config"], ["--list"], ["config", "--list"]])
def test_a_closed_pipe_ends_quietly(args: list[str]) -> None:
    # A pipe of one page, smaller than any of these outputs: the command is still writing when the
    # reader goes away, whatever the machine's speed (a 64 KiB pipe could take it all first).
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    proc = subprocess.Popen([FALCONET, *args], stdout=write_end, stderr=subprocess.PIPE)
    os.close(write_end)
    assert proc.stderr is not None
    assert os.read(read_end, 100)         # `| head -c 100`
    os.close(read_end)
    err = proc.stderr.read()
    assert proc.wait(60) == 141           # 128 + SIGPIPE, as a Unix tool
    assert err == b""


def test_errors_never_show_a_traceback(tmp_path: Path) -> None:
    res = falconet("capture", "-w", "/nonexistent/x.jsonl")
    assert res.returncode == 4
    assert res.stderr == ("falconet: error: capture -w /nonexistent/x.jsonl: the directory /nonexistent does not "
                          "exist; create it or write elsewhere\n")
    res = falconet("replay", str(tmp_path / "missing.jsonl"), "-r", str(AUDIT_RULES))
    assert res.returncode == 4
    assert res.stderr == (f"falconet: error: {tmp_path}/missing.jsonl: cannot open: No such file or directory "
                          f"(give a recording of `falconet capture -w FILE` or an audit log)\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_capture_to_a_directory_without_permission(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    os.chmod(tmp_path, 0o755)
    res = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", FALCONET, "capture",
                          "-w", str(locked / "x.jsonl")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 4
    assert res.stderr == (f"falconet: error: capture -w {locked}/x.jsonl: permission denied; write to a directory "
                          f"this user can write\n")

"""`falconet -V/-L/-l/--list`, `rules validate|list|describe`, `fields` and `replay` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, compat_file

BUNDLED = ROOT / "rules" / "falconet_rules.yaml"


def falconet(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FALCONET_CONFIG"}
    return subprocess.run([sys.executable, "-m", "sensor.cli", *args], capture_output=True, text=True,
                          input=stdin, cwd=cwd or ROOT, env=env, timeout=120)


BAD = """\
- rule: Broken
  desc: d
  condition: evt.type = execve and proc.name in (a,)
  output: o
  priority: Warning
- macro: unused
  condition: proc.name = x
"""


def test_validate_ok_and_official_files() -> None:
    files = [str(compat_file(n)) for n in ("falco_rules.yaml", "falco-incubating_rules.yaml",
                                           "falco-sandbox_rules.yaml")]
    r = falconet("rules", "validate", "-r", files[0], "-r", files[1], "-r", files[2])
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{files[0]}: Ok" in r.stdout
    r = falconet("-V", str(compat_file("k8s_audit_rules.yaml")))
    assert r.returncode == 0 and ": Ok" in r.stdout


def test_validate_errors_exit_1_with_file_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    r = falconet("-V", str(bad))
    assert r.returncode == 1
    assert f"{bad}: Invalid" in r.stdout
    assert f"{bad}:3:52" in r.stdout and "LOAD_ERR_COMPILE_CONDITION" in r.stdout


def test_validate_json_is_falcos_shape(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    r = falconet("rules", "validate", "--json", str(bad))
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    (res,) = doc["falco_load_results"]
    assert res["name"] == str(bad) and res["successful"] is False
    (err,) = res["errors"]
    assert set(err) == {"code", "codedesc", "context", "message"}
    assert err["code"] == "LOAD_ERR_COMPILE_CONDITION" and err["codedesc"] == "Error compiling condition"
    locs = err["context"]["locations"]
    assert locs[0]["item_type"] == "rule" and locs[0]["item_name"] == "Broken"
    assert locs[0]["position"] == {"column": 3, "line": 1, "name": str(bad), "offset": 2}
    assert locs[1]["position"]["line"] == 3
    assert "proc.name in (a,)" in err["context"]["snippet"]
    assert r.stdout == json.dumps(doc, sort_keys=True) + "\n"
    ok = falconet("-o", "json_output=true", "-V", str(BUNDLED))
    assert json.loads(ok.stdout)["falco_load_results"][0]["successful"] is True


def test_validate_warnings_are_reported_but_exit_0(tmp_path: Path) -> None:
    p = tmp_path / "w.yaml"
    p.write_text("- macro: unused\n  condition: proc.name = x\n")
    r = falconet("-V", str(p))
    assert r.returncode == 0 and "Ok, with warnings" in r.stdout and "LOAD_UNUSED_MACRO" in r.stdout


def test_list_and_describe() -> None:
    r = falconet("-r", str(BUNDLED), "-L")
    assert r.returncode == 0
    assert "Shell spawned in container" in r.stdout and "Sensitive file read" in r.stdout
    r = falconet("-r", str(BUNDLED), "-l", "Sensitive file read")
    assert r.returncode == 0
    assert "Priority: Warning" in r.stdout and "Event types: open, openat, openat2" in r.stdout
    r = falconet("rules", "describe", "-r", str(BUNDLED), "--json", "Kernel module loaded")
    d = json.loads(r.stdout)
    assert d["info"]["name"] == "Kernel module loaded" and d["details"]["events"] == ["finit_module", "init_module"]
    assert falconet("-r", str(BUNDLED), "-l", "No such rule").returncode == 1


def test_validate_with_describe_adds_falco_describe_results() -> None:
    r = falconet("-o", "json_output=true", "-L", "-V", str(BUNDLED))
    doc = json.loads(r.stdout)
    names = [x["info"]["name"] for x in doc["falco_describe_results"]["rules"]]
    assert "Write below system directory" in names


def test_fields_listing() -> None:
    r = falconet("--list", "syscall")
    assert r.returncode == 0 and "proc.aname[N]" in r.stdout and "fd.name" in r.stdout
    assert "ka.verb" not in r.stdout
    r = falconet("fields", "--json")
    names = {f["name"] for c in json.loads(r.stdout) for f in c["fields"]}
    assert {"proc.name", "fd.sip", "evt.type"} <= names
    assert falconet("--list", "nosuchsource").returncode == 2


SHADOW = {"source": "syscall", "fields": {
    "evt.type": "openat", "evt.dir": "<", "evt.res": "SUCCESS", "evt.is_open_read": True,
    "fd.name": "/etc/shadow", "fd.directory": "/etc", "fd.typechar": "f", "fd.num": 3, "proc.name": "cat",
    "proc.cmdline": "cat /etc/shadow", "proc.pname": "bash", "proc.pid": 4242, "user.name": "root",
    "user.uid": 0, "container.id": "host", "evt.rawtime": 1700000000123456789}}


def test_replay_prints_alerts(tmp_path: Path) -> None:
    f = tmp_path / "cap.jsonl"
    f.write_text(json.dumps(SHADOW) + "\n" + json.dumps({**SHADOW, "fields": {**SHADOW["fields"],
                                                                              "fd.name": "/etc/hosts"}}) + "\n")
    r = falconet("replay", str(f), "-r", str(BUNDLED), "--json")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1
    a = json.loads(lines[0])
    assert a["rule"] == "Sensitive file read" and a["time"] == "2023-11-14T22:13:20.123456789Z"
    assert a["output_fields"]["fd.name"] == "/etc/shadow" and a["output_fields"]["proc.pid"] == 4242
    assert "events processed: 2" in r.stderr
    text = falconet("replay", str(f), "-r", str(BUNDLED))
    assert ": Warning Sensitive file opened for reading by an untrusted program (file=/etc/shadow" in text.stdout


def test_replay_adds_static_fields_without_replacing_the_rules_own(tmp_path: Path) -> None:
    f = tmp_path / "cap.jsonl"
    f.write_text(json.dumps(SHADOW) + "\n")
    r = falconet("replay", str(f), "-r", str(BUNDLED), "--json",
                 "-o", "static_fields={env: prod, proc.pid: 1}")
    assert r.returncode == 0, r.stderr
    fields = json.loads(r.stdout)["output_fields"]
    assert fields["env"] == "prod" and fields["proc.pid"] == 4242


def test_replay_from_stdin_and_selection(tmp_path: Path) -> None:
    r = falconet("replay", "-", "-r", str(BUNDLED), "-D", "Sensitive*", stdin=json.dumps(SHADOW) + "\n")
    assert r.returncode == 0 and r.stdout == ""


def test_replay_bad_line_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps(SHADOW) + "\n{not json\n")
    r = falconet("replay", str(f), "-r", str(BUNDLED))
    assert r.returncode != 0
    assert f"{f}:2: not valid JSON: Expecting property name" in r.stderr
    f.write_text('{"hello": 1}\n')
    r = falconet("replay", str(f), "-r", str(BUNDLED))
    assert f"{f}:1: expected a recorded event" in r.stderr


@pytest.mark.parametrize(("line", "why"), [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"source": "syscall", "fields": {"proc.pid": ' + "9" * 5000 + "}}", "an integer of 5000 digits (more than 4300)"),
    ('{"source": "syscall", "fields": {"proc.pid": NaN}}', "NaN is not a JSON value"),
])
def test_replay_refuses_hostile_json_in_one_line(tmp_path: Path, line: str, why: str) -> None:
    f = tmp_path / "hostile.jsonl"
    f.write_text(line + "\n")
    r = falconet("replay", str(f), "-r", str(BUNDLED))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"falconet: error: {f}:1: not valid JSON here: {why}"


def test_replay_rules_error_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    f = tmp_path / "cap.jsonl"
    f.write_text(json.dumps(SHADOW) + "\n")
    r = falconet("replay", str(f), "-r", str(bad))
    assert r.returncode == 1 and f"{bad}:3:52" in r.stderr


def test_help_imports_nothing_heavy() -> None:
    code = ("import sys; from sensor.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "mods = ('lark', 'bcc', 'elasticsearch', 'kubernetes', 'prometheus_client')\n"
            "heavy = [m for m in mods if m in sys.modules]\n"
            "print(heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["rules", "--help"], ["replay", "--help"]])
def test_basic_invocations(args: list[str]) -> None:
    r = falconet(*args)
    assert r.returncode == 0 and r.stdout


def test_default_configuration_loads_the_bundled_rules() -> None:
    r = falconet("-L")
    assert r.returncode == 0, r.stderr
    assert "Shell spawned in container" in r.stdout and "Sensitive file read" in r.stdout


# -- rules are data (issue 14, findings 1 and 18) ------------------------------------------------

def _peak_rss_mb(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the CLI in a child that reports its own peak resident memory (MiB) on stderr's last line.

    VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across execve, so a child forked from
    a big pytest process would report the parent's pages."""
    code = ("import re, sys\nfrom sensor.cli import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit as e:\n    rc = e.code\n"
            "hwm = int(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1))\n"
            "print(hwm // 1024, file=sys.stderr)\n"
            "sys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    return r, float(r.stderr.splitlines()[-1])


def test_a_rules_file_cannot_run_python_through_a_field_argument(tmp_path: Path) -> None:
    out = tmp_path / "pwned"
    arg = f"X]@ or __import__('os').system('id > {out}') or @proc.env[X"
    rules = tmp_path / "attack.yaml"
    rules.write_text(f"- rule: attack\n  desc: d\n  condition: |-\n    evt.type = openat and proc.env[\"{arg}\"] = yy\n"
                     "  output: o\n  priority: Warning\n"
                     "- rule: at\n  desc: d\n  condition: ka.uri.param[a@b] = x\n  output: o\n"
                     "  priority: Warning\n  source: k8s_audit\n")
    r = falconet("-V", str(rules))
    assert r.returncode == 0 and f"{rules}: Ok" in r.stdout     # a legal (if odd) field argument
    events = tmp_path / "events.jsonl"
    audit = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request", "auditID": "1",
             "stage": "ResponseComplete", "requestURI": "/api/v1/pods?a@b=x", "verb": "get",
             "user": {"username": "u"}, "objectRef": {"resource": "pods"},
             "stageTimestamp": "2024-01-01T00:00:00.000000Z"}
    events.write_text(json.dumps({"source": "syscall", "fields": {"evt.type": "openat", "proc.name": "cat"}})
                      + "\n" + json.dumps({"source": "syscall", "fields": {"evt.type": "openat",
                                                                           f"proc.env[{arg}]": "yy"}})
                      + "\n" + json.dumps(audit) + "\n")
    r = falconet("replay", str(events), "-r", str(rules), "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["rule"] for line in r.stdout.splitlines()] == ["attack", "at"]
    assert "Traceback" not in r.stderr and not out.exists()


def test_a_deep_macro_chain_is_one_clear_error_in_bounded_memory(tmp_path: Path) -> None:
    rules = tmp_path / "deep.yaml"
    rules.write_text("- macro: m0\n  condition: proc.name = a\n"
                     + "".join(f"- macro: m{i}\n  condition: not (m{i - 1} and proc.pid = {i})\n"
                               for i in range(1, 3000))
                     + "- rule: r\n  desc: d\n  condition: evt.type = execve and m2999\n  output: o\n"
                       "  priority: Warning\n")
    r, peak = _peak_rss_mb("rules", "validate", "--json", str(rules))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    (res,) = json.loads(r.stdout)["falco_load_results"]
    (err,) = res["errors"]
    assert err["code"] == "LOAD_ERR_COMPILE_CONDITION"
    assert "nests more than 100 levels deep" in err["message"] and "\n" not in err["message"]
    assert err["context"]["locations"][0]["item_name"] == "r"
    assert peak < 200, f"{peak} MiB"


def test_a_five_megabyte_string_loads_in_bounded_memory(tmp_path: Path) -> None:
    rules = tmp_path / "huge.yaml"
    rules.write_text(f'- rule: r\n  desc: d\n  condition: evt.type = openat and proc.name = "{"x" * 5_000_000}"\n'
                     "  output: o\n  priority: Warning\n")
    r, peak = _peak_rss_mb("-V", str(rules))
    assert r.returncode == 0 and f"{rules}: Ok" in r.stdout
    assert peak < 250, f"{peak} MiB"        # 1.2 GB before the lexer stopped backtracking per character


def test_schema_warnings_do_not_fail_validation(tmp_path: Path) -> None:
    rules = tmp_path / "capture.yaml"
    rules.write_text("- rule: r\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: Warning\n"
                     "  capture: 'yes'\n")
    r = falconet("-V", str(rules))
    assert r.returncode == 0 and f"{rules}: Ok" in r.stdout
    assert f"schema warning: {rules}:6:12: rule 'r': value of 'capture' must be a boolean" in r.stdout
    r = falconet("rules", "validate", "--json", str(rules))
    (res,) = json.loads(r.stdout)["falco_load_results"]
    assert res["successful"] is True and res["schema_valid"] is False and len(res["schema_warnings"]) == 1

"""Evaluation semantics, operator by operator and type by type, against Falco's: a table of
(condition, event fields, expected). Every case runs three ways: through compile_filter (value()
accessors), and through a loaded ruleset for recorded and for structured events."""

from __future__ import annotations

from typing import Any

import pytest

from sensor.engine import compile_filter
from sensor.engine.compiler import CompileError
from sensor.engine.loader import load_rules
from sensor.event import RecordedEvent

BASE: dict[str, Any] = {"evt.type": "openat"}

CASES: list[tuple[str, dict[str, Any], bool]] = [
    # strings
    ("proc.name = bash", {"proc.name": "bash"}, True),
    ("proc.name = bash", {"proc.name": "sh"}, False),
    ("proc.name == bash", {"proc.name": "bash"}, True),
    ("proc.name != bash", {"proc.name": "sh"}, True),
    ("proc.name != bash", {"proc.name": "bash"}, False),
    ("proc.name = Bash", {"proc.name": "bash"}, False),
    ("proc.name contains as", {"proc.name": "bash"}, True),
    ("proc.name contains AS", {"proc.name": "bash"}, False),
    ("proc.name icontains AS", {"proc.name": "bash"}, True),
    ("proc.name startswith ba", {"proc.name": "bash"}, True),
    ("proc.name startswith sh", {"proc.name": "bash"}, False),
    ("proc.name endswith sh", {"proc.name": "bash"}, True),
    ("proc.name endswith ba", {"proc.name": "bash"}, False),
    ("proc.name bcontains 6173", {"proc.name": "bash"}, True),
    ("proc.name bcontains 7a7a", {"proc.name": "bash"}, False),
    ("proc.name bstartswith 6261", {"proc.name": "bash"}, True),
    ("proc.name bstartswith 6173", {"proc.name": "bash"}, False),
    ("proc.name in (sh, bash)", {"proc.name": "bash"}, True),
    ("proc.name in (sh, zsh)", {"proc.name": "bash"}, False),
    ("proc.name in ()", {"proc.name": "bash"}, False),
    ("proc.name intersects (sh, bash)", {"proc.name": "bash"}, True),
    ("proc.name exists", {"proc.name": "bash"}, True),
    ("proc.name exists", {}, False),
    # glob: fnmatch without FNM_PATHNAME ('*' crosses '/'), iglob ignores case
    ("fd.name glob /etc/*", {"fd.name": "/etc/ssh/sshd_config"}, True),
    ("fd.name glob /etc/?asswd", {"fd.name": "/etc/passwd"}, True),
    ("fd.name glob /etc/[a-p]asswd", {"fd.name": "/etc/passwd"}, True),
    ("fd.name glob /etc/[!p]asswd", {"fd.name": "/etc/passwd"}, False),
    ("fd.name glob /etc/*", {"fd.name": "/usr/etc/x"}, False),
    ("fd.name glob /ETC/*", {"fd.name": "/etc/x"}, False),
    ("fd.name iglob /ETC/*", {"fd.name": "/etc/x"}, True),
    ("fd.name glob /tmp/\\*", {"fd.name": "/tmp/*"}, True),
    ("fd.name glob /tmp/\\*", {"fd.name": "/tmp/a"}, False),
    # regex is a full match
    ("proc.name regex ba.h", {"proc.name": "bash"}, True),
    ("proc.name regex as", {"proc.name": "bash"}, False),
    ("proc.name regex '.*as.*'", {"proc.name": "bash"}, True),
    ("proc.name regex '(ba|z)sh'", {"proc.name": "zsh"}, True),
    # pmatch: whole path components
    ("fd.name pmatch (/etc)", {"fd.name": "/etc"}, True),
    ("fd.name pmatch (/etc)", {"fd.name": "/etc/passwd"}, True),
    ("fd.name pmatch (/etc)", {"fd.name": "/etcetera"}, False),
    ("fd.name pmatch (/etc/)", {"fd.name": "/etc/passwd"}, True),
    ("fd.name pmatch (/usr/bin, /etc)", {"fd.name": "/usr/bin/ls"}, True),
    ("fd.name pmatch (/usr/bin, /etc)", {"fd.name": "/usr/lib/x"}, False),
    # numbers
    ("proc.pid = 42", {"proc.pid": 42}, True),
    ("proc.pid = 0x2a", {"proc.pid": 42}, True),
    ("proc.pid != 42", {"proc.pid": 42}, False),
    ("proc.pid < 43", {"proc.pid": 42}, True),
    ("proc.pid <= 42", {"proc.pid": 42}, True),
    ("proc.pid > 42", {"proc.pid": 42}, False),
    ("proc.pid >= 42", {"proc.pid": 42}, True),
    ("proc.pid > -1", {"proc.pid": 0}, True),
    ("proc.pid in (1, 42, 7)", {"proc.pid": 42}, True),
    ("proc.pid in (1, 7)", {"proc.pid": 42}, False),
    ("fd.rport in (80, 443)", {"fd.rport": 443}, True),
    ("user.loginuid = -1", {"user.loginuid": -1}, True),
    # booleans
    ("evt.is_open_read = true", {"evt.is_open_read": True}, True),
    ("evt.is_open_read = true", {"evt.is_open_read": False}, False),
    ("evt.is_open_read = false", {"evt.is_open_read": False}, True),
    ("evt.is_open_read != true", {"evt.is_open_read": False}, True),
    # addresses and networks
    ("fd.sip = 10.0.0.1", {"fd.sip": "10.0.0.1"}, True),
    ("fd.sip = 10.0.0.2", {"fd.sip": "10.0.0.1"}, False),
    ("fd.sip in (10.0.0.1, 10.0.0.2)", {"fd.sip": "10.0.0.2"}, True),
    ("fd.sip = ::1", {"fd.sip": "::1"}, True),
    ("fd.snet = 10.0.0.0/8", {"fd.snet": "10.1.2.3"}, True),
    ("fd.snet = 10.0.0.0/8", {"fd.snet": "11.1.2.3"}, False),
    ("fd.snet != 10.0.0.0/8", {"fd.snet": "11.1.2.3"}, True),
    ("fd.snet in (192.168.0.0/16, 10.0.0.0/8)", {"fd.snet": "10.9.9.9"}, True),
    ("fd.snet in (\"192.168.0.0/16\", \"172.16.0.0/12\")", {"fd.snet": "172.20.0.1"}, True),
    ("fd.snet = fd00::/8", {"fd.snet": "fd00::1"}, True),
    ("fd.snet = 10.0.0.0/8", {"fd.snet": "fd00::1"}, False),
    # a field with no value: every comparison false, != included; not flips that
    ("proc.name = bash", {}, False),
    ("proc.name != bash", {}, False),
    ("not proc.name = bash", {}, True),
    ("proc.name in (bash)", {}, False),
    ("proc.name contains a", {}, False),
    ("proc.pid > 0", {}, False),
    ("proc.pid < 0", {}, False),
    ("fd.snet = 10.0.0.0/8", {}, False),
    ("proc.name = val(proc.pname)", {"proc.name": "bash"}, False),
    ("proc.name != val(proc.pname)", {"proc.name": "bash"}, False),
    # boolean logic
    ("proc.name = bash and proc.pid = 1", {"proc.name": "bash", "proc.pid": 1}, True),
    ("proc.name = bash and proc.pid = 2", {"proc.name": "bash", "proc.pid": 1}, False),
    ("proc.name = sh or proc.pid = 1", {"proc.name": "bash", "proc.pid": 1}, True),
    ("not proc.name = sh", {"proc.name": "bash"}, True),
    ("not (proc.name = bash or proc.pid = 2)", {"proc.name": "bash", "proc.pid": 1}, False),
    ("proc.name = sh or proc.name = zsh and proc.pid = 1", {"proc.name": "sh", "proc.pid": 2}, True),
    ("(proc.name = sh or proc.name = zsh) and proc.pid = 1", {"proc.name": "sh", "proc.pid": 2}, False),
    # val() and transformers
    ("proc.name = val(proc.pname)", {"proc.name": "bash", "proc.pname": "bash"}, True),
    ("proc.name = val(proc.pname)", {"proc.name": "bash", "proc.pname": "sh"}, False),
    ("proc.name != val(proc.pname)", {"proc.name": "bash", "proc.pname": "sh"}, True),
    ("proc.pid > val(proc.ppid)", {"proc.pid": 10, "proc.ppid": 1}, True),
    ("tolower(proc.name) = bash", {"proc.name": "BaSh"}, True),
    ("toupper(proc.name) = BASH", {"proc.name": "bash"}, True),
    ("basename(fd.name) = passwd", {"fd.name": "/etc/passwd"}, True),
    ("basename(fd.name) = etc", {"fd.name": "/etc/passwd"}, False),
    ("b64(proc.name) = bash", {"proc.name": "YmFzaA=="}, True),
    ("b64(proc.name) = bash", {"proc.name": "not base64!"}, False),
    ("len(proc.name) = 4", {"proc.name": "bash"}, True),
    ("len(proc.name) > 4", {"proc.name": "bash"}, False),
    ("tolower(toupper(proc.name)) = bash", {"proc.name": "bAsH"}, True),
    ("tolower(proc.name) = tolower(proc.pname)", {"proc.name": "BASH", "proc.pname": "bash"}, True),
    ("tolower(proc.name) in (bash, sh)", {"proc.name": "SH"}, True),
    # proc.aname: an index, or (no index) any ancestor
    ("proc.aname[1] = bash", {"proc.aname[1]": "bash"}, True),
    ("proc.aname[2] = sshd", {"proc.aname": ["bash", "sshd", "systemd"]}, True),
    ("proc.aname[3] = sshd", {"proc.aname": ["bash", "sshd", "systemd"]}, False),
    ("proc.aname = sshd", {"proc.aname": ["bash", "sshd", "systemd"]}, True),
    ("proc.aname = nginx", {"proc.aname": ["bash", "sshd", "systemd"]}, False),
    ("proc.aname in (nginx, sshd)", {"proc.aname": ["bash", "sshd", "systemd"]}, True),
    ("proc.aname startswith ssh", {"proc.aname": ["bash", "sshd"]}, True),
    ("proc.aname != bash", {"proc.aname": ["bash", "sshd"]}, True),
    ("len(proc.aname) = 2", {"proc.aname": ["bash", "sshd"]}, False),
    # evt.arg by name, with the dot or in brackets
    ("evt.arg.flags contains O_TRUNC", {"evt.arg.flags": "O_WRONLY|O_TRUNC"}, True),
    ("evt.arg[flags] contains O_TRUNC", {"evt.arg.flags": "O_WRONLY|O_TRUNC"}, True),
    ("evt.arg.flags contains O_CREAT", {"evt.arg.flags": "O_WRONLY|O_TRUNC"}, False),
    # list modifiers (libs 0.25): anyof = any item, allof = every item, oneof = exactly one item
    ("proc.name = oneof (cat, nginx)", {"proc.name": "nginx"}, True),
    ("proc.name = oneof (cat, nginx)", {"proc.name": "ls"}, False),
    ("proc.name = oneof (cat, cat)", {"proc.name": "cat"}, False),
    ("proc.name = anyof (cat, cat)", {"proc.name": "cat"}, True),
    ("proc.name = oneof ()", {"proc.name": "cat"}, False),
    ("proc.name != allof (a, b)", {"proc.name": "cat"}, True),
    ("proc.name != allof (a, b)", {"proc.name": "a"}, False),
    ("proc.name != anyof (a, b)", {"proc.name": "a"}, True),
    ("proc.name != oneof (a, b)", {"proc.name": "a"}, True),
    ("proc.name != oneof (a, b)", {"proc.name": "c"}, False),
    ("fd.name startswith anyof (/proc/, /sys/)", {"fd.name": "/sys/kernel"}, True),
    ("fd.name startswith anyof (/proc/, /sys/)", {"fd.name": "/etc/passwd"}, False),
    ("fd.name contains allof (etc, pass)", {"fd.name": "/etc/passwd"}, True),
    ("fd.name contains oneof (etc, pass)", {"fd.name": "/etc/passwd"}, False),
    ("fd.name contains oneof (etc, shadow)", {"fd.name": "/etc/passwd"}, True),
    ("fd.name glob anyof ('/etc/*', '/usr/*')", {"fd.name": "/usr/bin/x"}, True),
    ("proc.name regex allof ('c.*', '.*t')", {"proc.name": "cat"}, True),
    ("proc.name icontains anyof (AT, zz)", {"proc.name": "cat"}, True),
    ("proc.name = anyof (cat)", {}, False),
    ("proc.pid = oneof (1, 2)", {"proc.pid": 2}, True),
    # multi-value transformers
    ('join(",", (proc.name, proc.pname)) = "cat,bash"', {"proc.name": "cat", "proc.pname": "bash"}, True),
    ('join(",", (proc.name, proc.pname)) = cat', {"proc.name": "cat"}, True),
    ('join(",", (proc.name, proc.pname)) exists', {}, False),
    ('tolower(join(-, (proc.name, proc.pname))) = cat-bash', {"proc.name": "CAT", "proc.pname": "Bash"}, True),
    ('len(join(" ", (proc.name, proc.pname))) = 8', {"proc.name": "cat", "proc.pname": "bash"}, True),
    ('concat(proc.name, ":", proc.pid) = "cat:42"', {"proc.name": "cat", "proc.pid": 42}, True),
    ('concat(proc.name, ":", proc.pid) exists', {"proc.name": "cat"}, False),
    ('basename(concat("/usr/bin/", proc.name)) = cat', {"proc.name": "cat"}, True),
    ('getopt(proc.args, "nt:") intersects (n)', {"proc.args": "-l -t 5 -n host"}, True),
    ('getopt(proc.args, "nt:") intersects (n)', {"proc.args": "-t -n host"}, False),
    ('getopt(proc.args, "nt:") in (n, t)', {"proc.args": "-nt5 x"}, True),
    ('getopt(proc.args, "e:") exists', {"proc.args": "-x a -- -e"}, False),
    ("val(proc.name) = val(proc.pname)", {"proc.name": "sh", "proc.pname": "sh"}, True),
    ("val(proc.name) = cat", {"proc.name": "cat"}, True),
]


@pytest.mark.parametrize(("cond", "fields", "expected"), CASES, ids=[f"{c} | {f}" for c, f, _ in CASES])
def test_compile_filter(cond: str, fields: dict[str, Any], expected: bool) -> None:
    fn = compile_filter(cond, "syscall")
    assert fn(RecordedEvent("syscall", {**BASE, **fields})) is expected


def _rule_file(tmp_path: Any, cond: str) -> Any:
    p = tmp_path / "r.yaml"
    p.write_text(f"- rule: R\n  desc: d\n  condition: evt.type = openat and ({cond})\n"
                 "  output: out\n  priority: Warning\n")
    return p


@pytest.mark.parametrize(("cond", "fields", "expected"), CASES[::3], ids=[c for c, _, _ in CASES[::3]])
def test_ruleset_recorded(tmp_path: Any, cond: str, fields: dict[str, Any], expected: bool) -> None:
    rs = load_rules([_rule_file(tmp_path, cond)])
    alerts = rs.process(RecordedEvent("syscall", {**BASE, **fields}))
    assert bool(alerts) is expected


@pytest.mark.parametrize(("cond", "err"), [
    ("proc.pid contains 1", "operator 'contains' is not supported"),
    ("proc.pid startswith 1", "not supported"),
    ("evt.is_open_read glob x", "not supported"),
    ("proc.pid = abc", "not a valid number"),
    ("evt.is_open_read = maybe", "not a valid boolean"),
    ("fd.sip = 300.1.1.1", "not a valid IP address"),
    ("fd.snet = 10.0.0.0/99", "not a valid IP network"),
    ("proc.nope = 1", "nonexistent field proc.nope"),
    ("proc.aname[x] = 1", "numeric index"),
    ("proc.name[1] = x", "does not accept an argument"),
    ("evt.arg = x", "requires an argument"),
    ("tolower(proc.pid) = 1", "not supported on fields of type"),
    ("proc.name regex '('", "invalid regular expression"),
    ("proc.name bcontains xyz", "hex string"),
    ("undefined_macro", "Undefined macro"),
])
def test_compile_errors(cond: str, err: str) -> None:
    with pytest.raises(CompileError, match=err):
        compile_filter(cond, "syscall")


@pytest.mark.parametrize(("cond", "expected"), [
    ("fd.ip = 10.0.0.5", True), ("fd.ip = 10.0.0.9", False),
    ("fd.ip != 10.0.0.5", False),            # one side equal: != is false, as in Falco
    ("fd.ip != 10.0.0.9", True),
    ("fd.net = 10.0.0.0/8", True), ("fd.net != 10.0.0.0/8", False), ("fd.net != 192.168.0.0/16", True),
])
def test_either_side_fields(cond: str, expected: bool) -> None:
    fn = compile_filter(cond, "syscall")
    ev = RecordedEvent("syscall", {"evt.type": "connect", "fd.ip": ["172.16.0.1", "10.0.0.5"],
                                   "fd.net": ["172.16.0.1", "10.0.0.5"]})
    assert fn(ev) is expected

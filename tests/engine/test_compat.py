"""Falco's official rule files (../shared/compat/) load unchanged: zero errors, every rule compiled."""

from __future__ import annotations

from conftest import compat_file

from sensor.engine import load_rules
from sensor.engine.fields import resolve


def test_stable_incubating_sandbox_load_in_order() -> None:
    files = [compat_file("falco_rules.yaml"), compat_file("falco-incubating_rules.yaml"),
             compat_file("falco-sandbox_rules.yaml")]
    rs = load_rules(files, rule_matching="all")
    # Counts from compat/README.md: 25 + 31 + 37 syscall rules.
    assert len(rs.all_rules) == 93
    assert all(r.source == "syscall" for r in rs.all_rules)
    assert [e for e in rs.warnings if e.code.startswith("LOAD_ERR")] == []


def test_stable_alone() -> None:
    rs = load_rules([compat_file("falco_rules.yaml")])
    assert len(rs.all_rules) == 25
    assert all(r.enabled for r in rs.all_rules)
    types = rs.event_types("syscall")
    assert types is not None and {"execve", "openat", "connect"} <= types


def test_k8s_audit_rules_load_alone() -> None:
    rs = load_rules([compat_file("k8s_audit_rules.yaml")])
    assert len(rs.all_rules) == 48
    assert {r.source for r in rs.all_rules} == {"k8s_audit"}


def test_every_output_field_resolves() -> None:
    files = [compat_file(n) for n in ("falco_rules.yaml", "falco-incubating_rules.yaml", "falco-sandbox_rules.yaml")]
    rs = load_rules(files)
    for r in rs.all_rules:
        for f in r.out.fields:
            assert resolve(r.source, f.field) is not None

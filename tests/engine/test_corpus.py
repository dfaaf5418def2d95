"""Old and third-party-style rule files load as Falco 0.44.1 loads them, and their rules fire on
replayed events: each corpus/NAME.yaml with its NAME.events.jsonl, checked against expected.json
through the CLI a user runs (`rules validate --json`, `replay --json`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CORPUS = Path(__file__).parent / "corpus"
EXPECTED = json.loads((CORPUS / "expected.json").read_text())


def falconet(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FALCONET_CONFIG"}
    return subprocess.run([sys.executable, "-m", "sensor.cli", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_loads_like_falco_and_its_rules_fire(name: str) -> None:
    want = EXPECTED[name]
    rules = CORPUS / name
    r = falconet("rules", "validate", "--json", str(rules))
    assert r.returncode == (0 if want["successful"] else 1), r.stderr
    (res,) = json.loads(r.stdout)["falco_load_results"]
    assert res["successful"] is want["successful"]
    assert [e["code"] for e in res["errors"]] == want["errors"]
    assert sorted(w["code"] for w in res["warnings"]) == sorted(want["warnings"])
    for d in res["errors"] + res["warnings"]:
        assert d["context"]["locations"][0]["position"]["line"] > 0
    events = CORPUS / name.replace(".yaml", ".events.jsonl")
    r = falconet("replay", str(events), "-r", str(rules), "--json")
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["rule"] for line in r.stdout.splitlines()] == want["alerts"]
    assert "Traceback" not in r.stderr

"""DESIGN.md §2's import rules, checked with an ast scan, and the wheel carrying every asset."""

from __future__ import annotations

import ast
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT

PKG = ROOT / "sensor"
STDLIB = set(sys.stdlib_module_names)


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _imported_names(path: Path, module: str) -> set[str]:
    return {a.name for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module == module for a in node.names}


def modules(sub: str) -> list[Path]:
    base = PKG / sub
    return sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]


def _allowed(name: str, allowed: tuple[str, ...]) -> bool:
    top = name.split(".")[0]
    return top in STDLIB or top == "__future__" or any(name == a or name.startswith(a + ".") for a in allowed)


@pytest.mark.parametrize(("part", "allowed"), [
    # sensor.syscalls: the one syscall table, which the capture and the engine's fields share.
    ("engine", ("sensor.engine", "sensor.event", "sensor.alert", "sensor.errors", "sensor.syscalls", "sensor",
                "lark", "yaml")),
    # bcc only in the short-lived child that compiles the program (sensor/capture/compile.py).
    ("capture", ("sensor.capture", "sensor.event", "sensor.syscalls", "bcc")),
    ("syscalls", ()),
])
def test_import_rules(part: str, allowed: tuple[str, ...]) -> None:
    bad = {}
    for f in modules(part):
        wrong = sorted(n for n in imports(f) if not _allowed(n, allowed))
        # `from sensor import X` inside the engine may only name the version constants.
        if part == "engine":
            tree = ast.parse(f.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module == "sensor":
                    wrong += [a.name for a in node.names if a.name not in ("ENGINE_VERSION", "ENGINE_VERSION_LEGACY",
                                                                           "__version__")]
        if wrong:
            bad[str(f.relative_to(ROOT))] = wrong
    assert bad == {}


def test_only_sources_syscall_imports_capture() -> None:
    users = [str(f.relative_to(ROOT)) for f in PKG.rglob("*.py")
             if not f.is_relative_to(PKG / "capture")
             and any(n == "sensor.capture" or n.startswith("sensor.capture.") for n in imports(f))]
    assert users in ([], ["sensor/sources/syscall.py"])


@pytest.mark.parametrize("part", ["outputs", "response"])
def test_outputs_and_response_import_neither_capture_nor_sources(part: str) -> None:
    for f in modules(part):
        for n in imports(f):
            assert not n.startswith(("sensor.capture", "sensor.sources")), f"{f}: {n}"


def test_alert_imports_only_the_standard_library() -> None:
    assert {n for n in imports(PKG / "alert.py") if not _allowed(n, ())} == set()


@pytest.mark.parametrize("path", ["outputs", "response", "ecs.py", "metrics.py"])
def test_alert_consumers_do_not_import_the_engine(path: str) -> None:
    """The alert and its renderings live in sensor/alert.py; outputs, response, ECS and metrics use
    the engine only for response's `match.condition` (compile_filter)."""
    bad = {}
    for f in modules(path):
        names = {n for n in imports(f) if n == "sensor.engine" or n.startswith("sensor.engine.")}
        if names == {"sensor.engine"} and _imported_names(f, "sensor.engine") == {"compile_filter"}:
            continue
        if names:
            bad[str(f.relative_to(ROOT))] = sorted(names)
    assert bad == {}


def test_nothing_imports_commands_or_cli() -> None:
    for f in PKG.rglob("*.py"):
        if f.is_relative_to(PKG / "commands") or f.name == "cli.py":
            continue
        for n in imports(f):
            assert not n.startswith(("sensor.commands", "sensor.cli")), f"{f}: {n}"


@pytest.mark.slow
def test_wheel_carries_assets_and_runs_from_elsewhere(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("falconet-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "sensor/_assets/rules/falconet_rules.yaml" in names
    assert "sensor/engine/grammar.lark" in names
    assert any(n.startswith("sensor/_assets/elasticsearch/") for n in names)
    assert any(n.startswith("sensor/_assets/kibana/") for n in names)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    # -S: no site-packages, so not the editable checkout; dependencies from this venv by path, Falconet only
    # from the installed wheel, run from an unrelated directory.
    deps = sysconfig.get_paths()["purelib"]
    env = {"PYTHONPATH": f"{target}:{deps}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    code = "import sensor, sys; print(sensor.__file__); from sensor.cli import main; sys.exit(main())"
    r = subprocess.run([sys.executable, "-S", "-c", code, "-L"], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert str(target) in r.stdout.splitlines()[0]
    assert "Sensitive file read" in r.stdout
    # The bundled rules' tests ship beside them and pass from the installed wheel too.
    tests = target / "sensor" / "_assets" / "rules" / "tests"
    r = subprocess.run([sys.executable, "-S", "-c", code, "rules", "test", str(tests)], capture_output=True,
                       text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.splitlines()[-1].endswith(" passed, 0 failed"), r.stdout[-2000:]

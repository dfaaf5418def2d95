"""The sensor image (Dockerfile, .dockerignore at the repository root): Debian bookworm, Debian's bcc,
Falconet installed from the checkout into a venv linked to bcc as scripts/setup.sh does, and
Debian's generic kernel headers, so the host gives it nothing but what the kernel exposes.

tests/e2e/test_containers_sensor_image.py builds it with podman and runs it."""

from __future__ import annotations

import re
import tomllib

from .deploy_files import ROOT
from .dockerfile import Instruction, arg_defaults, expand, ignore_patterns, is_ignored
from .dockerfile import parse as parse_dockerfile


def instructions() -> list[Instruction]:
    return parse_dockerfile(ROOT / "Dockerfile")


def run_text() -> str:
    return " ".join(i.text for i in instructions() if i.keyword == "RUN")


def test_base_is_a_build_argument_defaulting_to_a_pinned_debian_bookworm() -> None:
    froms = [i for i in instructions() if i.keyword == "FROM"]
    assert len(froms) == 1
    # A build where no registry answers passes another Debian 12 root filesystem as BASE_IMAGE.
    assert froms[0].positional()[0] == "${BASE_IMAGE}"
    first = instructions()[0]
    assert first.keyword == "ARG" and first.text.startswith("BASE_IMAGE="), "ARG before FROM, to be usable in it"
    image = expand(froms[0].positional()[0], arg_defaults(instructions()))
    assert re.fullmatch(r"debian:12\.\d+(-slim)?", image), f"{image}: Debian 12 (bookworm) with an exact tag"


def test_the_image_carries_debians_generic_kernel_headers_for_bcc() -> None:
    run = run_text()
    # The headers package of the build's architecture, unpacked (installing it pulls a compiler).
    assert 'apt-cache depends "linux-headers-$arch"' in run and "apt-get download" in run
    assert "dpkg-deb -x" in run
    env = " ".join(i.text for i in instructions() if i.keyword == "ENV")
    source = re.search(r"BCC_KERNEL_SOURCE=(\S+)", env)
    assert source is not None, "bcc is told where the headers are"
    assert f"{source.group(1)}/" in run and "include/linux/kconfig.h" in run, "the build checks the tree it made"
    assert "/lib/modules" not in run


def test_bcc_comes_from_debian_and_the_venv_links_it_as_setup_sh_does() -> None:
    run = run_text()
    assert re.search(r"apt-get install [^&]*\bpython3-bpfcc\b", run)
    assert "python3 -m venv /opt/falconet" in run
    # The same link scripts/setup.sh makes: Debian's bcc package into the venv's site-packages.
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    link = re.search(r"ln -sfn (/usr/lib/python3/dist-packages/bcc) \"\$site/bcc\"", setup)
    assert link is not None
    assert f'ln -sfn {link.group(1)} "$site/bcc"' in run
    assert 'sysconfig.get_paths()["purelib"]' in run and 'sysconfig.get_paths()["purelib"]' in setup
    # The build proves the link works and the CLI starts.
    assert "import bcc" in run and "falconet --version" in run


def test_falconet_is_installed_from_the_checkout_and_is_the_entrypoint() -> None:
    run = run_text()
    assert re.search(r"/opt/falconet/bin/python -m pip install [^&]*/src\b", run)
    entry = [i for i in instructions() if i.keyword == "ENTRYPOINT"]
    assert [e.args for e in entry] == [["falconet"]]
    cmd = [i for i in instructions() if i.keyword == "CMD"]
    assert cmd[-1].args == ["run"]
    env = " ".join(i.text for i in instructions() if i.keyword == "ENV")
    assert "PATH=/opt/falconet/bin:$PATH" in env


def test_everything_the_build_copies_exists_and_is_in_the_build_context() -> None:
    patterns = ignore_patterns(ROOT / ".dockerignore")
    copied = set()
    for i in instructions():
        if i.keyword in ("COPY", "ADD"):
            *srcs, _dest = i.positional()
            for src in srcs:
                assert (ROOT / src).exists(), f"Dockerfile:{i.line}: {src} does not exist"
                assert not is_ignored(src, patterns), f"Dockerfile:{i.line}: .dockerignore excludes {src}"
                copied.add(src.rstrip("/"))
    # The wheel force-includes these trees; a build without one of them fails.
    hatch = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", "README.md", *hatch.get("packages", []), *hatch.get("force-include", {})}
    assert needed <= copied, f"the Dockerfile does not copy {needed - copied}"


def test_dockerignore_keeps_the_venv_git_and_tests_out_of_the_context() -> None:
    patterns = ignore_patterns(ROOT / ".dockerignore")
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "compose/.env",
                 "sensor/__pycache__/cli.cpython-311.pyc"):
        assert is_ignored(path, patterns), path
    for path in ("sensor/cli.py", "rules/k8s_audit_rules.yaml", "pyproject.toml", "fluent/fluent.conf"):
        assert not is_ignored(path, patterns), path

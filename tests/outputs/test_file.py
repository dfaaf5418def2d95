"""file: exact bytes in a real file, keep_alive both ways, reopen after rotation (SIGUSR1)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from sensor.errors import ConfigError
from sensor.outputs.build import build_outputs

from .conftest import JSON_5, TEXT_5_ISO, make_alert, output_settings, wait_until


@pytest.mark.parametrize("keep_alive", ["true", "false"])
def test_appends_json_lines(tmp_path: Path, keep_alive: str) -> None:
    path = tmp_path / "alerts.jsonl"
    path.write_text("earlier line\n")
    out = build_outputs(output_settings(tmp_path, "file_output.enabled=true", f"file_output.filename={path}",
                                        "file_output.format=json", f"file_output.keep_alive={keep_alive}"))
    out.submit(make_alert(5))
    out.submit(make_alert(6))
    assert out.flush(10)
    out.close()
    lines = path.read_bytes().splitlines()
    assert lines[0] == b"earlier line"
    assert lines[1] == JSON_5.encode()
    assert b'"uuid":"00000000-0000-4000-8000-000000000006"' in lines[2]
    assert len(lines) == 3


def test_format_follows_json_output_unless_set(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    out = build_outputs(output_settings(tmp_path, "file_output.enabled=true", f"file_output.filename={path}",
                                        "time_format_iso_8601=true"))
    out.submit(make_alert(5))
    out.flush(10)
    out.close()
    assert path.read_bytes() == (TEXT_5_ISO + "\n").encode()
    path2 = tmp_path / "b.txt"
    out = build_outputs(output_settings(tmp_path, "file_output.enabled=true", f"file_output.filename={path2}",
                                        "json_output=true", "file_output.format=text", "time_format_iso_8601=true"))
    out.submit(make_alert(5))
    out.flush(10)
    out.close()
    assert path2.read_bytes() == (TEXT_5_ISO + "\n").encode()


def test_reopen_after_logrotate_on_sigusr1(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    out = build_outputs(output_settings(tmp_path, "file_output.enabled=true", f"file_output.filename={path}",
                                        "file_output.keep_alive=true", "json_output=true"))
    old = signal.signal(signal.SIGUSR1, lambda *_: out.reopen())
    try:
        out.submit(make_alert(1))
        assert out.flush(10)
        path.rename(tmp_path / "alerts.jsonl.1")         # logrotate moves the file away
        out.submit(make_alert(2))                         # still written to the open (moved) file
        assert out.flush(10)
        os.kill(os.getpid(), signal.SIGUSR1)
        out.submit(make_alert(3))
        assert out.flush(10)
        assert wait_until(lambda: path.exists())
    finally:
        signal.signal(signal.SIGUSR1, old)
        out.close()
    rotated = (tmp_path / "alerts.jsonl.1").read_text().splitlines()
    assert [line.count("-000000000001") + line.count("-000000000002") for line in rotated] == [1, 1]
    assert "-000000000003" in path.read_text() and len(path.read_text().splitlines()) == 1


def test_unwritable_file_is_retried_until_it_works(tmp_path: Path) -> None:
    # The directory is there at start-up (the start-up check wants it) and goes away afterwards.
    path = tmp_path / "gone-dir" / "alerts.txt"
    path.parent.mkdir()
    out = build_outputs(output_settings(tmp_path, "file_output.enabled=true", f"file_output.filename={path}",
                                        "outputs_queue.retry_initial=10ms", "outputs_queue.retry_max=20ms"))
    path.parent.rmdir()
    out.submit(make_alert(5))
    ch = out.channels[0]
    assert wait_until(lambda: ch.stats()["errors"] >= 2)
    assert "No such file or directory" in ch.stats()["last_error"]
    path.parent.mkdir()
    assert out.flush(10)
    out.close()
    assert len(path.read_text().splitlines()) == 1
    assert ch.stats()["drops"] == {}


def test_empty_filename_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'file_output\.filename' is empty"):
        build_outputs(output_settings(tmp_path, "file_output.enabled=true", "file_output.filename="))


# -- hardening (finding 8): the file's name must not be a way to write as root elsewhere -------------

def _deliver_one(tmp_path: Path, path: Path) -> tuple[bool, str]:
    out = build_outputs(output_settings(tmp_path, "file_output.enabled=true", f"file_output.filename={path}",
                                        "outputs_queue.retry_initial=10ms", "outputs_queue.retry_max=20ms"))
    out.submit(make_alert(5))
    ch = out.channels[0]
    ok = out.flush(0.5)
    last = str(ch.stats().get("last_error", ""))
    out.close(timeout=0.5)
    return ok, last


def test_a_new_file_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "alerts.txt"
    assert _deliver_one(tmp_path, path)[0]
    assert (path.stat().st_mode & 0o777) == 0o600


def test_a_symbolic_link_is_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "crontab"
    victim.write_text("# root's file\n")
    link = tmp_path / "alerts.txt"
    link.symlink_to(victim)
    ok, error = _deliver_one(tmp_path, link)
    assert not ok and "refused: it is a symbolic link" in error
    assert victim.read_text() == "# root's file\n"


def test_a_world_writable_directory_is_refused_when_the_channel_is_built(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(ConfigError, match=r"file_output.filename.* is refused: its directory .*shared is "
                                          r"writable by every user"):
        build_outputs(output_settings(tmp_path, "file_output.enabled=true", f"file_output.filename={shared / 'a.txt'}"))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a file owned by another user")
def test_a_file_another_user_owns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "alerts.txt"
    path.write_text("")
    os.chown(path, 65534, 65534)
    ok, error = _deliver_one(tmp_path, path)
    assert not ok and "refused: it is owned by uid 65534" in error
    assert path.read_text() == ""

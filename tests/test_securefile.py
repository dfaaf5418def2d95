"""sensor/securefile.py: the one policy for private directories and secret files (hardening
finding 11), used by the spool, the certificates, the webhook token and the audit-log positions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sensor import securefile
from sensor.securefile import UnsafePathError

NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0 and os.environ.get("FALCONET_STRICT") != "1",
                                reason="needs root to hand files to another user")


def test_a_new_directory_is_private_and_a_file_is_written_whole_with_its_mode(tmp_path: Path) -> None:
    d = tmp_path / "state" / "certs"
    securefile.write_file(d / "tls.key", b"secret", 0o600)
    assert (d.stat().st_mode & 0o777) == 0o700
    assert (d / "tls.key").read_bytes() == b"secret" and ((d / "tls.key").stat().st_mode & 0o777) == 0o600
    assert [p.name for p in d.iterdir()] == ["tls.key"]          # no temporary file left behind
    assert securefile.read_secret(d / "tls.key") == b"secret"


def test_a_link_planted_at_the_name_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("root's\n")
    d = tmp_path / "certs"
    d.mkdir(mode=0o700)
    (d / "token").symlink_to(victim)
    securefile.write_file(d / "token", b"t0k3n")
    assert victim.read_text() == "root's\n" and not (d / "token").is_symlink()


def test_a_directory_another_user_owns_or_may_write_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(UnsafePathError, match=rf"{theirs} belongs to nobody \(uid {NOBODY}\)"):
        securefile.write_file(theirs / "tls.key", b"x")
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(UnsafePathError, match=r"is writable by others \(mode 0777\)"):
        securefile.open_dir(open_dir)


def test_a_parent_another_user_owns_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(UnsafePathError, match=rf"its parent {theirs} belongs to nobody"):
        securefile.open_dir(theirs / "mine")
    assert not (theirs / "mine").exists()            # nothing was made there first


def test_a_secret_others_may_read_or_planted_by_another_user_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "s"
    securefile.write_file(d / "token", b"x")
    (d / "token").chmod(0o644)
    with pytest.raises(UnsafePathError, match=r"may be read or written by others \(mode 0644\)"):
        securefile.read_secret(d / "token")
    (d / "token").chmod(0o600)
    os.chown(d / "token", NOBODY, NOBODY)
    with pytest.raises(UnsafePathError, match="it may have been planted"):
        securefile.read_secret(d / "token")
    assert securefile.read_secret(d / "absent") is None

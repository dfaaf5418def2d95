"""sensor/capture/render.py: arguments rendered as Falco renders them."""

from __future__ import annotations

import os
import socket
import struct

from sensor.capture import render


def test_open_flags_in_falcos_order_each_bit_once() -> None:
    assert render.open_flags(os.O_RDONLY | os.O_CLOEXEC) == "O_RDONLY|O_CLOEXEC"
    assert render.open_flags(os.O_RDWR | os.O_CREAT | os.O_TRUNC) == "O_TRUNC|O_CREAT|O_RDWR"
    assert render.open_flags(os.O_WRONLY | os.O_APPEND) == "O_APPEND|O_WRONLY"
    assert render.open_flags(os.O_RDONLY | os.O_DIRECTORY) == "O_DIRECTORY|O_RDONLY"
    tmpfile = render.open_flags(os.O_RDWR | os.O_TMPFILE)
    assert "O_TMPFILE" in tmpfile and "O_DIRECTORY" not in tmpfile


def test_open_flags_as_falcos_ppm_bits() -> None:
    assert render.open_flags_to_ppm(os.O_RDONLY) == render.PPM_O_RDONLY
    assert render.open_flags_to_ppm(os.O_RDWR) == render.PPM_O_RDWR
    assert render.open_flags_to_ppm(os.O_WRONLY | os.O_CREAT) == render.PPM_O_WRONLY | render.PPM_O_CREAT


def test_modes_ptrace_clone_and_errno() -> None:
    assert render.mode_flags(0o4755).split("|") == [
        "S_IXOTH", "S_IROTH", "S_IXGRP", "S_IRGRP", "S_IXUSR", "S_IWUSR", "S_IRUSR", "S_ISUID"]
    assert render.mode_flags(0) == "0"
    assert render.PTRACE_REQUESTS[16] == "PTRACE_ATTACH" and render.PTRACE_REQUESTS[0x4206] == "PTRACE_SEIZE"
    assert render.clone_flags(0x20000000 | 0x10000000) == "CLONE_NEWPID|CLONE_NEWUSER"
    assert render.errno_name(-2) == "ENOENT" and render.errno_name(3) == "SUCCESS"
    assert render.capabilities(0b101) == "CAP_CHOWN|CAP_DAC_READ_SEARCH"


def test_socket_addresses() -> None:
    v4 = struct.pack("<H", socket.AF_INET) + struct.pack(">H", 443) + socket.inet_aton("10.1.2.3") + b"\0" * 8
    assert render.sockaddr(v4) == (socket.AF_INET, "10.1.2.3", 443)
    v6 = (struct.pack("<H", socket.AF_INET6) + struct.pack(">H", 22) + b"\0" * 4
          + socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1") + b"\0" * 4)
    assert render.sockaddr(v6) == (socket.AF_INET6, "127.0.0.1", 22)
    unix = struct.pack("<H", socket.AF_UNIX) + b"/run/docker.sock\0"
    assert render.sockaddr(unix) == (socket.AF_UNIX, "/run/docker.sock", None)
    abstract = struct.pack("<H", socket.AF_UNIX) + b"\0hidden"
    assert render.sockaddr(abstract)[1] == "@hidden"
    assert render.sockaddr(b"\x02") == (0, None, None)
    assert render.s32(0xFFFFFF9C) == -100

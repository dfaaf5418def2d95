"""The short-lived child that compiles, loads and attaches the probe (`python -m sensor.capture.compile`).

It is the only process that imports bcc (and so LLVM). It reads one JSON request from the Unix
socket whose fd number is its argument, builds the program, fills the spec and config maps,
attaches every tracepoint, and answers with one JSON line followed by the file descriptors of the
maps and attachments (SCM_RIGHTS). Then it exits without running bcc's cleanup, which would
disable the very perf events the parent now holds.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import traceback
from importlib import resources
from typing import Any

from sensor.capture import layout, offsets
from sensor.capture.btf import BTF, BTFError

# Maps the parent needs, in the order their fds are sent.
MAPS = ("events", "counters", "config", "specs", "known_fds", "kterms", "comm_sets", "host_cgroups", "path_trie",
        "path_first2", "dfa", "net_trie", "port_sets", "flooders",
        # the stages' program array: the kernel empties it when the last fd to it closes, so the
        # sensor holds one
        "stages")
STAGES = ("stage_facts", "stage_record", "stage_dir")       # probe.bpf.c STAGE_* order


def program_text() -> str:
    """The final BPF C program: record structs from layout.py, then probe.bpf.c."""
    probe = resources.files("sensor.capture").joinpath("probe.bpf.c").read_text()
    return layout.c_structs() + probe


def build_cflags(extra: dict[str, int], raw_nrs: list[int] = ()) -> list[str]:  # type: ignore[assignment]
    """-D macros: BTF offsets of this kernel, the sizes the parent chose, and the test for the
    syscall numbers the raw sys_enter hook serves."""
    macros: dict[str, object] = dict(offsets.macros(BTF.vmlinux()))
    macros.update(extra)
    macros["RAW_NR_TEST(nr)"] = "(" + (" || ".join(f"(nr) == {n}" for n in raw_nrs) or "0") + ")"
    return [f"-D{k}={v}" for k, v in sorted(macros.items())]


def _send(sock: socket.socket, reply: dict[str, Any], fds: list[int]) -> None:
    data = (json.dumps(reply) + "\n").encode()
    header = struct.pack("<I", len(data))
    if fds:
        socket.send_fds(sock, [header + data], fds)
    else:
        sock.sendall(header + data)


def _run(req: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
    text = program_text()
    cflags = build_cflags(req["macros"], req.get("raw_nrs", []))
    if req.get("print_only"):
        return {"ok": True, "text": text, "cflags": cflags}, []
    from bcc import BPF  # the only import of bcc in the project

    b = BPF(text=text, cflags=cflags)
    tables = {name: b.get_table(name) for name in MAPS}
    config = tables["config"]
    for idx, value in req["config"].items():
        config[config.Key(int(idx))] = config.Leaf(value)
    specs = tables["specs"]
    for nr, row in req["specs"]:
        specs[specs.Key(nr)] = specs.Leaf.from_buffer_copy(bytes.fromhex(row))
    stages = tables["stages"]
    for i, name in enumerate(STAGES):
        stages[stages.Key(i)] = stages.Leaf(b.load_func(name, BPF.TRACEPOINT).fd)

    attached: list[str] = []
    failed: dict[str, str] = {}
    fds: list[int] = [tables[name].map_fd for name in MAPS]

    def attach(kind: str, tp: str, fn: str) -> None:
        try:
            if kind == "tp":
                b.attach_tracepoint(tp=tp, fn_name=fn)
                fds.append(b.tracepoint_fds[tp.encode()])
            else:
                b.attach_raw_tracepoint(tp=tp, fn_name=fn)
                fds.append(b.raw_tracepoint_fds[tp.encode()])
            attached.append(tp)
        except Exception as e:  # one missing tracepoint must not hide the others
            failed[tp] = str(e)

    attach("raw", "sched_process_fork", "on_fork")
    attach("raw", "sched_process_exec", "on_exec")
    attach("tp", "sched:sched_process_exit", "on_exit_proc")
    for tp, fn in req["tracepoints"]:
        attach("tp", f"syscalls:sys_exit_{tp}", fn)
    if req.get("raw_nrs"):
        attach("raw", "sys_enter", "raw_sys_enter")
    reply = {"ok": True, "maps": list(MAPS), "attached": attached, "failed": failed,
             "text": text if req.get("print") else None, "cflags": cflags}
    return reply, fds


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[0]))
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            return 2
        buf += chunk
    try:
        reply, fds = _run(json.loads(buf))
    except BTFError as e:
        reply, fds = {"ok": False, "error": str(e), "kind": "btf"}, []
    except Exception as e:
        reply, fds = {"ok": False, "error": f"{type(e).__name__}: {e}", "kind": "compile",
                      "trace": traceback.format_exc(limit=3)}, []
    _send(sock, reply, fds)
    sock.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Live syscall capture with eBPF: kernel records in, `sensor.event.SyscallEvent`s out.

Only sensor/sources/syscall.py imports this package; it imports nothing of Falconet but
sensor.event (and bcc, in the compile child only).

- probe.bpf.c    the BPF program: one enter and one exit program for every syscall tracepoint,
                 driven by a per-syscall spec table; sched fork/exec/exit for process state;
                 in-kernel filters (own pid, closes of unknown fds, opens no rule can match)
- layout.py      the record layouts, declared once: C structs (size-checked) and decoders
- syscalls.py    every syscall: number, tracepoint, what the kernel reads, Falco's parameters
- btf.py         kernel struct offsets from the running kernel's BTF
- offsets.py     the offsets the probe needs, as -D macros
- compile.py     the short-lived child that compiles, loads and attaches with bcc
- loader.py      starts that child and receives the map and attachment fds (SCM_RIGHTS)
- bpfsys.py      the bpf(2) map commands the sensor needs without bcc
- ring.py        the ring buffer read through mmap, in batches
- argcode.py     Falco's argument rendering, one generated function per syscall
- render.py      Falco's names for flags, modes, requests, addresses
- decoder.py     records -> state changes and events
- procstate.py   the process table: /proc at start, then fork/exec/exit
- containers.py  container id from the cgroup path; name/image/privileged from the runtime API
- session.py     all of the above as one Capture: start, poll, stats, stop
"""

"""Live syscall capture with eBPF: kernel records in, `sensor.event.SyscallEvent`s out.

Only sensor/sources/syscall.py imports this package; it imports nothing of Falconet but
sensor.event and the shared syscall table sensor.syscalls (and bcc, in the compile child only).

- probe.bpf.c    the BPF program: one program on the sys_exit tracepoint of each syscall the
                 rules or the state need, driven by a per-syscall spec table (arguments from the
                 saved registers, so no enter program); sched fork/exec/exit for process state;
                 in-kernel filters (own pid, closes of unknown fds, events no rule can match)
- layout.py      the record layouts, declared once: C structs (size-checked) and decoders
- syscalls.py    the probe's row for each syscall of sensor/syscalls.py; the base set
- kfilter.py     the engine's kernel-filter description (sensor/engine/kernel_filter.py) as the
                 probe's maps: terms, name sets, path tries and automaton, network tries, ports
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
- accounts.py    user and group names (user.name, group.name) from the passwd and group files
- containers.py  container id from the cgroup path; name/image/privileged from the runtime API
- session.py     all of the above as one Capture: start, poll, stats, stop
"""

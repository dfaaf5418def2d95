"""The kernel struct offsets probe.bpf.c reads, resolved from BTF into `-D` macros."""

from __future__ import annotations

from pathlib import Path

from sensor.capture.btf import BTF

# macro -> (struct, member path). Every OFF_* the probe uses is listed here and nowhere else.
MEMBERS: dict[str, tuple[str, str]] = {
    "OFF_TASK_REAL_PARENT": ("task_struct", "real_parent"),
    "OFF_TASK_TGID": ("task_struct", "tgid"),
    "OFF_TASK_PID": ("task_struct", "pid"),
    "OFF_TASK_LOGINUID": ("task_struct", "loginuid.val"),
    "OFF_TASK_START_BOOTTIME": ("task_struct", "start_boottime"),
    "OFF_TASK_MM": ("task_struct", "mm"),
    "OFF_TASK_SIGNAL": ("task_struct", "signal"),
    "OFF_TASK_CRED": ("task_struct", "cred"),
    "OFF_TASK_THREAD_PID": ("task_struct", "thread_pid"),
    "OFF_TASK_FILES": ("task_struct", "files"),
    "OFF_TASK_EXIT_CODE": ("task_struct", "exit_code"),
    "OFF_TASK_GROUP_LEADER": ("task_struct", "group_leader"),
    "OFF_TASK_COMM": ("task_struct", "comm"),
    "OFF_MM_ARG_START": ("mm_struct", "arg_start"),
    "OFF_MM_ARG_END": ("mm_struct", "arg_end"),
    "OFF_MM_ENV_START": ("mm_struct", "env_start"),
    "OFF_MM_ENV_END": ("mm_struct", "env_end"),
    "OFF_SIGNAL_TTY": ("signal_struct", "tty"),
    "OFF_SIGNAL_PIDS": ("signal_struct", "pids"),
    "OFF_TTY_INDEX": ("tty_struct", "index"),
    "OFF_TTY_DRIVER": ("tty_struct", "driver"),
    "OFF_DRIVER_MAJOR": ("tty_driver", "major"),
    "OFF_DRIVER_MINOR_START": ("tty_driver", "minor_start"),
    "OFF_PID_LEVEL": ("pid", "level"),
    "OFF_PID_NUMBERS": ("pid", "numbers"),
    "OFF_CRED_EUID": ("cred", "euid.val"),
    "OFF_CRED_EGID": ("cred", "egid.val"),
    "OFF_CRED_CAP_INHERITABLE": ("cred", "cap_inheritable"),
    "OFF_CRED_CAP_PERMITTED": ("cred", "cap_permitted"),
    "OFF_CRED_CAP_EFFECTIVE": ("cred", "cap_effective"),
    "OFF_FILES_FDT": ("files_struct", "fdt"),
    "OFF_FILES_FD_ARRAY": ("files_struct", "fd_array"),
    "OFF_FDT_FD": ("fdtable", "fd"),
    "OFF_FDT_MAX_FDS": ("fdtable", "max_fds"),
    "OFF_FILE_PRIVATE": ("file", "private_data"),
    "OFF_FILE_DENTRY": ("file", "f_path.dentry"),
    "OFF_FILE_INODE": ("file", "f_inode"),
    "OFF_FILE_MODE": ("file", "f_mode"),
    "OFF_DENTRY_NAME": ("dentry", "d_name.name"),
    "OFF_DENTRY_NAME_LEN": ("dentry", "d_name.len"),
    "OFF_DENTRY_PARENT": ("dentry", "d_parent"),
    "OFF_FILE_MNT": ("file", "f_path.mnt"),
    "OFF_VFSMOUNT_ROOT": ("vfsmount", "mnt_root"),
    "OFF_MOUNT_MNT": ("mount", "mnt"),
    "OFF_MOUNT_PARENT": ("mount", "mnt_parent"),
    "OFF_MOUNT_MOUNTPOINT": ("mount", "mnt_mountpoint"),
    "OFF_INODE_INO": ("inode", "i_ino"),
    "OFF_INODE_MODE": ("inode", "i_mode"),
    "OFF_INODE_SB": ("inode", "i_sb"),
    "OFF_SB_DEV": ("super_block", "s_dev"),
    "OFF_SB_MAGIC": ("super_block", "s_magic"),
    "OFF_SOCKET_SK": ("socket", "sk"),
    "OFF_SK_FAMILY": ("sock", "__sk_common.skc_family"),
    "OFF_SK_NUM": ("sock", "__sk_common.skc_num"),
    "OFF_SK_DPORT": ("sock", "__sk_common.skc_dport"),
    "OFF_SK_DADDR": ("sock", "__sk_common.skc_daddr"),
    "OFF_SK_RCV_SADDR": ("sock", "__sk_common.skc_rcv_saddr"),
    "OFF_SK_V6_DADDR": ("sock", "__sk_common.skc_v6_daddr"),
    "OFF_SK_V6_RCV_SADDR": ("sock", "__sk_common.skc_v6_rcv_saddr"),
    "OFF_SK_STATE": ("sock", "__sk_common.skc_state"),
    "OFF_SK_TYPE": ("sock", "sk_type"),
    "OFF_SK_PROTOCOL": ("sock", "sk_protocol"),
    "OFF_TASK_CGROUPS": ("task_struct", "cgroups"),
    "OFF_CSS_SET_DFL_CGRP": ("css_set", "dfl_cgrp"),
    "OFF_CGROUP_KN": ("cgroup", "kn"),
    "OFF_KN_NAME": ("kernfs_node", "name"),
    "OFF_BPRM_FILENAME": ("linux_binprm", "filename"),
    # the saved user registers: the syscall's arguments (x86_64: di, si, dx, r10, r8, r9)
    "OFF_REGS_DI": ("pt_regs", "di"),
    "OFF_REGS_SI": ("pt_regs", "si"),
    "OFF_REGS_DX": ("pt_regs", "dx"),
    "OFF_REGS_R10": ("pt_regs", "r10"),
    "OFF_REGS_R8": ("pt_regs", "r8"),
    "OFF_REGS_R9": ("pt_regs", "r9"),
    "OFF_BPRM_FILE": ("linux_binprm", "file"),
}

_TRACEFS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))


def tracefs() -> Path | None:
    """The tracefs mount, or None."""
    for p in _TRACEFS:
        if (p / "events").is_dir():
            return p
    return None


def tracepoint_field_offset(category: str, event: str, field: str) -> int:
    """Offset of a tracepoint's field from its format file, or -1 when it has no such field."""
    root = tracefs()
    if root is None:
        return -1
    try:
        text = (root / "events" / category / event / "format").read_text()
    except OSError:
        return -1
    for line in text.splitlines():
        if f" {field};" in line and "offset:" in line:
            return int(line.split("offset:")[1].split(";")[0])
    return -1


def macros(btf: BTF) -> dict[str, int]:
    """Every OFF_* macro the probe needs, plus sizes and enum values, from this kernel's BTF."""
    out = {name: btf.offset(struct, member) for name, (struct, member) in MEMBERS.items()}
    # kernfs_node.parent became __parent in 6.15
    out["OFF_KN_PARENT"] = btf.offset("kernfs_node", "__parent" if btf.has_member("kernfs_node", "__parent")
                                      else "parent")
    out["SIZEOF_UPID"] = btf.size("upid")
    out["PIDTYPE_PGID"] = btf.enum_value("pid_type", "PIDTYPE_PGID")
    out["PIDTYPE_SID"] = btf.enum_value("pid_type", "PIDTYPE_SID")
    out["EXIT_GROUP_DEAD_OFF"] = tracepoint_field_offset("sched", "sched_process_exit", "group_dead")
    out.update(_inode_times(btf))
    out["OFF_OVL_UPPER"] = _overlay_upper(btf)
    return out


def _inode_times(btf: BTF) -> dict[str, int]:
    """Where an inode keeps its ctime and mtime: split second/nanosecond members since 6.11, a
    struct timespec64 (`__i_ctime`, then `i_ctime`) before."""
    out = {}
    for what in ("ctime", "mtime"):
        if btf.has_member("inode", f"i_{what}_sec"):
            out[f"OFF_INODE_{what.upper()}_SEC"] = btf.offset("inode", f"i_{what}_sec")
            out[f"OFF_INODE_{what.upper()}_NSEC"] = btf.offset("inode", f"i_{what}_nsec")
            continue
        for member in (f"__i_{what}", f"i_{what}"):
            if btf.has_member("inode", member):
                out[f"OFF_INODE_{what.upper()}_SEC"] = btf.offset("inode", f"{member}.tv_sec")
                out[f"OFF_INODE_{what.upper()}_NSEC"] = btf.offset("inode", f"{member}.tv_nsec")
                break
        else:
            out[f"OFF_INODE_{what.upper()}_SEC"] = out[f"OFF_INODE_{what.upper()}_NSEC"] = -1
    return out


def _overlay_upper(btf: BTF) -> int:
    """Offset of an overlayfs inode's upper dentry from its VFS inode: the exe is in the upper
    layer when that dentry is set (how Falco's driver reads proc.is_exe_upper_layer). overlayfs
    keeps the VFS inode inside its own struct ovl_inode; -1 when this kernel's BTF lacks it."""
    for source in (btf, _module_btf("overlay")):
        if source is not None and source.has_member("ovl_inode", "__upperdentry"):
            return source.offset("ovl_inode", "__upperdentry") - source.offset("ovl_inode", "vfs_inode")
    return -1


def _module_btf(name: str) -> BTF | None:
    path = Path("/sys/kernel/btf") / name
    if not path.exists():
        return None
    try:
        return BTF(path.read_bytes(), str(path))
    except Exception:      # split BTF of a module needs the base's types; give up, not crash
        return None

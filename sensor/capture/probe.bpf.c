// Falconet's syscall probe, compiled by bcc in a short-lived child (sensor/capture/compile.py).
//
// Kernel structs are never read at header offsets: every member offset (OFF_*) comes from the
// running kernel's BTF as a -D macro (sensor/capture/offsets.py). The record structs and their
// size checks are prepended from sensor/capture/layout.py.
//
// One program serves every syscall: attached to the sys_exit_* tracepoint of each syscall the
// rules need (all share one layout: nr at +8, ret at +16). The arguments come from the task's
// saved user registers (bpf_task_pt_regs; member offsets from BTF), which a syscall leaves as
// they were, so no enter hook is needed: one tracepoint per syscall instead of two, and no
// per-thread table between them. What each syscall needs (which arguments are strings, where its
// socket address is, whether it creates or closes an fd) is a row of the `specs` map, filled from
// sensor/capture/syscalls.py. Strings are read at exit, when the kernel has faulted them in.
// Syscalls that have no tracepoint on this kernel go through raw sys_enter, filtered by the same
// spec table (see raw_sys_enter).
//
// The installed headers' struct layouts are wrong for this kernel (DESIGN.md §6), so no member is
// ever read by name. Through the BTF-typed pointers of bpf_get_current_task_btf() and
// bpf_task_pt_regs() the probe reads only at BTF offsets (pointer + OFF_*), as direct loads the
// verifier checks against the running kernel's BTF; elsewhere with bpf_probe_read_kernel.

#define MAX_STR 4096            // one path (PATH_MAX)
#define MAX_SMALL 256           // third string slot (mount's fs type)
#define MAX_ADDR 128            // a sockaddr, open_how, or msghdr's name
#define MAX_ARGS 4096           // argv of an exec
#define MAX_ENV 4096            // environment of an exec
#define MAX_EXE 256             // the executable's dentry name
#define MAX_CGNAME 256          // one cgroup directory name
#define NR_MAX 512

#define CFG_SELF_TGID 0         // the sensor: its own syscalls are never captured
#define CFG_OPEN_FILTER 1       // 1: drop opens whose path no rule can match (open_filter map)
#define CFG_MAX 8

#define C_DROPS 0               // the ring buffer had no room: record lost (per CPU)
#define C_STR_FAULTS 1          // a string argument could not be read
#define C_REGS_FAULTS 2         // the saved registers could not be read: record lost
#define C_RECORDS 3             // records written
#define C_FILTERED 4            // records dropped on purpose by an in-kernel filter
#define C_MAX 8

#define ADDR_NONE 0
#define ADDR_LEN_VALUE 1        // addr = args[addr], length = args[addrlen]
#define ADDR_LEN_PTR 2          // addr = args[addr], length = *(int *)args[addrlen] (filled at exit)
#define ADDR_MSGHDR 3           // args[addr] is a struct user_msghdr; name at +0, namelen at +8
#define ADDR_FIXED 4            // read `addrlen` bytes at args[addr] (open_how, clone_args)

#define FD_NONE 0
#define FD_ARG0 1
#define FD_RES 2

struct spec {
    u8 enabled;
    u8 str[3];                  // argument index read as a string into slot 0..2, 0xFF for none
    u8 addr;                    // argument index of the address, 0xFF for none
    u8 addrlen;                 // argument index of its length (or the byte count for ADDR_FIXED)
    u8 addrmode;
    u8 sockfd;                  // FD_*: read the socket tuple of this fd
    u8 filefd;                  // FD_*: read inode/dev/f_mode of this fd
    u8 creates_fd;              // remember (tgid, res) in known_fds
    u8 closes_fd;               // emit only when (tgid, args[0]) is in known_fds
    u8 open_filter;             // str[0] is an open path; flags at args[flags_arg]
    u8 flags_arg;
    u8 raw;                     // no tracepoint here: served by the raw sys_enter hook
    u8 str_if_failed;           // read the strings only when the call failed (execve: on success
                                // the old address space, and the string, are gone)
    u8 pad;
};

struct lpm_key {
    u32 prefixlen;
    u8 path[MAX_PREFIX];
};

// Variable-length tails. The verifier needs every write offset bounded, so after each string the
// running offset is masked (0x1FFF, then 0x3FFF) and the tails are sized for mask + largest read.
#define TAIL_MASK1 0x1FFF
#define TAIL_MASK2 0x3FFF

// v & mask, computed where the verifier sees it. The empty asm hides v's range from the compiler,
// which would otherwise drop a mask it can prove redundant, leaving the verifier (which cannot
// follow the compiler's reasoning) with an unbounded value.
#define BOUND(v, mask) ({ u32 __b = (u32)(v); asm volatile("" : "+r"(__b)); __b & (mask); })

struct syscall_buf {
    struct rec_syscall rec;
    u8 tail[TAIL_MASK2 + 1 + MAX_SMALL];
};

struct exec_buf {
    struct rec_exec rec;
    u8 tail[TAIL_MASK2 + 1 + MAX_ENV];
};

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_PERCPU_ARRAY(counters, u64, C_MAX);
BPF_ARRAY(config, u64, CFG_MAX);
BPF_ARRAY(specs, struct spec, NR_MAX);
BPF_TABLE("lru_hash", u64, u8, known_fds, KNOWN_FDS_MAX);
BPF_LPM_TRIE(open_filter, struct lpm_key, u8, OPEN_FILTER_MAX);
// The trie's answer, coarsened to a path's first two characters after the '/': indexed by the
// first, one bit per second character and access class. A clear bit means no trie entry can
// match, and costs an inlined array lookup where the trie walk costs a helper call.
struct first2 {
    u64 bits[4][4];             // [flags & O_ACCMODE][second character / 64]
};
BPF_ARRAY(open_first2, struct first2, 256);
BPF_PERCPU_ARRAY(sc_scratch, struct syscall_buf, 1);
BPF_PERCPU_ARRAY(ex_scratch, struct exec_buf, 1);
BPF_PERCPU_ARRAY(key_scratch, struct lpm_key, 1);

static __always_inline void count(u32 which) {
    u64 *v = counters.lookup(&which);
    if (v)
        *v += 1;
}

static __always_inline u64 cfg(u32 which) {
    u64 *v = config.lookup(&which);
    return v ? *v : 0;
}

// Kernel memory at BTF offsets. A failed read leaves 0, which the decoder treats as unknown.
static __always_inline u64 kread_u64(const void *base, u32 off) {
    u64 v = 0;
    if (base)
        bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + off);
    return v;
}

static __always_inline u32 kread_u32(const void *base, u32 off) {
    u32 v = 0;
    if (base)
        bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + off);
    return v;
}

static __always_inline u16 kread_u16(const void *base, u32 off) {
    u16 v = 0;
    if (base)
        bpf_probe_read_kernel(&v, sizeof(v), (const char *)base + off);
    return v;
}

static __always_inline void *kread_ptr(const void *base, u32 off) {
    return (void *)kread_u64(base, off);
}

static __always_inline void fill_header(void *hdr_, u16 kind, u16 nr) {
    struct rec_syscall *h = hdr_;       // the header is the same leading fields in every record
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u64 uid_gid = bpf_get_current_uid_gid();
    h->kind = kind;
    h->nr = nr;
    h->tid = (u32)pid_tgid;
    h->tgid = pid_tgid >> 32;
    h->uid = (u32)uid_gid;
    h->gid = uid_gid >> 32;
    h->cpu = bpf_get_smp_processor_id();
    h->ts = bpf_ktime_get_boot_ns();
    h->cgroup = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&h->comm, sizeof(h->comm));
}

// Never wake the reader: it drains the ring on a short timer, in batches, so a busy producer
// pays no wake-up per record (measured on a tight open loop: 3.03x with wake-ups, 1.74x without).
static __always_inline int submit(void *data, u64 size) {
    if (events.ringbuf_output(data, size, BPF_RB_NO_WAKEUP) < 0) {
        count(C_DROPS);
        return -1;
    }
    count(C_RECORDS);
    return 0;
}

// The current task's fd table when `fd` is inside it, else NULL; its files_struct in *files.
// Direct loads through the BTF-typed task pointer at BTF offsets (the verifier checks each
// against the running kernel's BTF).
static __always_inline char *fd_table(s64 fd, char **files) {
    if (fd < 0)
        return 0;
    char *task = (char *)bpf_get_current_task_btf();
    *files = *(char **)(task + OFF_TASK_FILES);
    if (!*files)
        return 0;
    char *fdt = *(char **)(*files + OFF_FILES_FDT);
    if (!fdt || (u64)fd >= *(u32 *)(fdt + OFF_FDT_MAX_FDS))
        return 0;
    return fdt;
}

// The struct file in slot `fd` of fd table `fdt`, or NULL. bpf_probe_read_kernel, about 80 ns
// a call, only where the type is lost (fdt->fd is a pointer to pointers: a scalar).
static __always_inline void *fdt_file(char *fdt, s64 fd) {
    void **fdarray = *(void ***)(fdt + OFF_FDT_FD);
    void *file = 0;
    if (fdarray)
        bpf_probe_read_kernel(&file, sizeof(file), &fdarray[fd]);
    return file;
}

// The struct file behind fd `fd` of the current task, or NULL.
static __always_inline void *fd_file(s64 fd) {
    char *files;
    char *fdt = fd_table(fd, &files);
    return fdt ? fdt_file(fdt, fd) : 0;
}

// The type bits of the inode behind fd `fd` (the current task's), or 0. While a process has
// at most 64 descriptors the kernel keeps them in files_struct.fd_array; that slot is picked by
// a six-level branch on the fd's bits, so every load has a constant BTF offset and the verifier
// lets the chain fd_array[fd]->f_inode->i_mode be direct loads, where fd_file() and two more
// reads would pay three bpf_probe_read_kernel calls.
#define FDA(i) (*(char **)(files + OFF_FILES_FD_ARRAY + (i) * 8))
#define FDA2(i) ((fd & 1) ? FDA((i) + 1) : FDA(i))
#define FDA4(i) ((fd & 2) ? FDA2((i) + 2) : FDA2(i))
#define FDA8(i) ((fd & 4) ? FDA4((i) + 4) : FDA4(i))
#define FDA16(i) ((fd & 8) ? FDA8((i) + 8) : FDA8(i))
#define FDA32(i) ((fd & 16) ? FDA16((i) + 16) : FDA16(i))
#define FDA64() ((fd & 32) ? FDA32(32) : FDA32(0))
static __always_inline u16 fd_imode(s64 fd) {
    char *files;
    char *fdt = fd_table(fd, &files);
    if (!fdt)
        return 0;
    if (*(u32 *)(fdt + OFF_FDT_MAX_FDS) > 64)     // the table has grown out of files_struct
        return kread_u16(kread_ptr(fdt_file(fdt, fd), OFF_FILE_INODE), OFF_INODE_MODE);
    char *file = FDA64();
    if (!file)
        return 0;
    char *inode = *(char **)(file + OFF_FILE_INODE);
    if (!inode)
        return 0;
    return *(u16 *)(inode + OFF_INODE_MODE);
}

static __always_inline void fill_file(struct rec_syscall *r, void *file) {
    void *inode = kread_ptr(file, OFF_FILE_INODE);
    if (!inode)
        return;
    r->fmode = kread_u32(file, OFF_FILE_MODE);
    r->ino = kread_u64(inode, OFF_INODE_INO);
    r->imode = kread_u16(inode, OFF_INODE_MODE);
    void *sb = kread_ptr(inode, OFF_INODE_SB);
    r->dev = kread_u32(sb, OFF_SB_DEV);
    r->xflags |= X_HAVE_FILE;
}

static __always_inline void fill_sock(struct rec_syscall *r, void *file) {
    void *inode = kread_ptr(file, OFF_FILE_INODE);
    u16 imode = kread_u16(inode, OFF_INODE_MODE);
    if ((imode & 0170000) != 0140000)           // not a socket
        return;
    void *sock = kread_ptr(file, OFF_FILE_PRIVATE);
    void *sk = kread_ptr(sock, OFF_SOCKET_SK);
    if (!sk)
        return;
    u16 family = kread_u16(sk, OFF_SK_FAMILY);
    r->sk_family = family;
    r->sk_type = kread_u16(sk, OFF_SK_TYPE);
    r->sk_proto = kread_u16(sk, OFF_SK_PROTOCOL);
    r->lport = kread_u16(sk, OFF_SK_NUM);                    // host order
    r->rport = __builtin_bswap16(kread_u16(sk, OFF_SK_DPORT));   // network order in the kernel
    if (family == 2) {                                        // AF_INET
        bpf_probe_read_kernel(r->laddr_raw, 4, (char *)sk + OFF_SK_RCV_SADDR);
        bpf_probe_read_kernel(r->raddr_raw, 4, (char *)sk + OFF_SK_DADDR);
    } else if (family == 10) {                                // AF_INET6
        bpf_probe_read_kernel(r->laddr_raw, 16, (char *)sk + OFF_SK_V6_RCV_SADDR);
        bpf_probe_read_kernel(r->raddr_raw, 16, (char *)sk + OFF_SK_V6_DADDR);
    }
    r->xflags |= X_HAVE_SOCK;
}

static __always_inline int self_or_ignored(u32 tgid) {
    return tgid == (u32)cfg(CFG_SELF_TGID);
}

// The six argument registers as the task entered the syscall (x86_64: di, si, dx, r10, r8, r9):
// direct loads through the BTF-typed pt_regs pointer, at BTF offsets.
static __always_inline int saved_args(u64 *a) {
    char *regs = (char *)bpf_task_pt_regs((struct task_struct *)bpf_get_current_task_btf());
    if (!regs)
        return -1;
    a[0] = *(u64 *)(regs + OFF_REGS_DI);
    a[1] = *(u64 *)(regs + OFF_REGS_SI);
    a[2] = *(u64 *)(regs + OFF_REGS_DX);
    a[3] = *(u64 *)(regs + OFF_REGS_R10);
    a[4] = *(u64 *)(regs + OFF_REGS_R8);
    a[5] = *(u64 *)(regs + OFF_REGS_R9);
    return 0;
}

// Is there any reason to send this open? The path is read straight into the open_filter trie's
// key. An open is dropped only when the path is absolute and lexically normal (no "." or ".."
// component, no "//", no trailing '/'), so that the path the process passed is the path a rule
// sees, and the trie (whose value holds the access classes some rule wants) does not want it.
// Directories are always sent: they become cwds and dirfds that later relative paths resolve
// against.
static __always_inline int open_wanted(const u64 *args, const struct spec *sp, s64 ret) {
    u32 zero = 0;
    struct lpm_key *k = key_scratch.lookup(&zero);
    if (!k)
        return 1;
    long n = bpf_probe_read_user_str(k->path, MAX_PREFIX, (void *)args[sp->str[0] & 7]);
    // n counts the NUL; the loop below looks up to three bytes past a '/', so paths of at most
    // MAX_PREFIX - 4 characters are judged here.
    if (n < 2 || n > MAX_PREFIX - 3 || k->path[0] != '/')
        return 1;                       // unreadable, relative, or too long to decide here
    u64 flags = args[sp->flags_arg & 7];
    if (sp->addrmode == ADDR_FIXED) {          // openat2: flags live in struct open_how
        flags = 0;
        bpf_probe_read_user(&flags, sizeof(flags), (void *)args[sp->addr & 7]);
    }
    if (flags & 0200000)                       // O_DIRECTORY
        return 1;
    // The key includes the NUL so that an exact name (prefixlen covering its NUL) matches only
    // itself, while a directory prefix ("/etc/") matches everything below it.
    u32 c1 = k->path[1];
    u32 c2 = k->path[2];
    struct first2 *f2 = open_first2.lookup(&c1);
    if (!f2 || ((f2->bits[flags & 3][(c2 >> 6) & 3] >> (c2 & 63)) & 1)) {
        k->prefixlen = n * 8;
        u8 *classes = open_filter.lookup(k);
        if (classes && ((*classes >> (flags & 3)) & 1))
            return 1;
    }
    // Not wanted as written; dropped only if written is how the rules will see it. The loop
    // stops at the NUL, so its cost follows the path's length.
    u8 *p = k->path;
#pragma unroll
    for (int i = 0; i < MAX_PREFIX - 4; i++) {
        if (p[i] == 0)
            break;
        if (p[i] != '/')
            continue;
        u8 c1 = p[i + 1];
        if (c1 == '/' || (c1 == 0 && i > 0))           // "//", or a trailing '/'
            return 1;
        if (c1 == '.') {
            u8 c2 = p[i + 2];
            if (c2 == '/' || c2 == 0 || (c2 == '.' && (p[i + 3] == '/' || p[i + 3] == 0)))
                return 1;
        }
    }
    // Only a successful read-only open can be of a directory (writing one fails with EISDIR).
    if (ret < 0 || (flags & 3) || (flags & 0100))      // O_ACCMODE, O_CREAT
        return 0;
    return (fd_imode(ret) & 0170000) == 0040000;
}

static __always_inline int on_exit(u32 nr, s64 ret, const u64 *in_args) {
    if (nr >= NR_MAX)
        return 0;
    struct spec *sp = specs.lookup(&nr);
    if (!sp || !sp->enabled)
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tgid = pid_tgid >> 32;
    if (self_or_ignored(tgid))
        return 0;
    u64 args[8] = {};               // 6 used; 8 so that an index masked with 7 stays inside
    if (in_args) {
#pragma unroll
        for (int i = 0; i < 6; i++)
            args[i] = in_args[i];
    } else if (saved_args(args) < 0) {
        count(C_REGS_FAULTS);
        return 0;
    }
    if (sp->closes_fd) {
        // Closing an fd nobody was told about changes no state anyone has.
        u64 key = ((u64)tgid << 32) | (u32)args[0];
        if (!known_fds.lookup(&key)) {
            count(C_FILTERED);
            return 0;
        }
        if (ret == 0)
            known_fds.delete(&key);
    }
    u32 zero = 0;
    struct syscall_buf *b = sc_scratch.lookup(&zero);
    if (!b)
        return 0;
    struct rec_syscall *r = &b->rec;

    // The open filter first, before anything is spent on the record: filtered opens are the hot
    // path of a busy host.
    if (sp->open_filter && sp->flags_arg < 6 && sp->str[0] < 6 && cfg(CFG_OPEN_FILTER)
        && !open_wanted(args, sp, ret)) {
        count(C_FILTERED);
        return 0;
    }
    u32 xflags = 0;
    u32 off = 0;
    u8 idx = sp->str[0];
    if (sp->str_if_failed && ret >= 0)
        idx = 0xFF;
    if (idx < 6) {
        long n = bpf_probe_read_user_str(&b->tail[0], MAX_STR, (void *)args[idx & 7]);
        if (n < 0) {
            n = 0;
            xflags |= X_STR_FAULT;
            count(C_STR_FAULTS);
        }
        if (n > MAX_STR)
            n = MAX_STR;
        off = n;
    }

    fill_header(r, K_SYSCALL, nr);
    r->res = ret;
    r->a0 = args[0];
    r->a1 = args[1];
    r->a2 = args[2];
    r->a3 = args[3];
    r->a4 = args[4];
    r->a5 = args[5];
    r->l0 = off;
    r->l1 = r->l2 = r->laddr = 0;
    r->xflags = xflags;
    r->fmode = 0;
    r->sk_family = r->sk_type = r->sk_proto = 0;
    r->lport = r->rport = 0;
    r->ino = 0;
    r->dev = r->imode = 0;
    __builtin_memset(r->laddr_raw, 0, 16);
    __builtin_memset(r->raddr_raw, 0, 16);
    if (sp->filefd != FD_NONE) {
        void *file = fd_file(sp->filefd == FD_RES ? ret : (s64)(int)args[0]);
        if (file)
            fill_file(r, file);
    }

    idx = sp->str[1];
    if (idx < 6) {
        off = BOUND(off, TAIL_MASK1);
        long n = bpf_probe_read_user_str(&b->tail[off], MAX_STR, (void *)args[idx & 7]);
        if (n < 0) {
            n = 0;
            r->xflags |= X_STR_FAULT;
            count(C_STR_FAULTS);
        }
        if (n > MAX_STR)
            n = MAX_STR;
        r->l1 = n;
        off += n;
    }
    idx = sp->str[2];
    if (idx < 6) {
        off = BOUND(off, TAIL_MASK2);
        long n = bpf_probe_read_user_str(&b->tail[off], MAX_SMALL, (void *)args[idx & 7]);
        if (n < 0) {
            n = 0;
            r->xflags |= X_STR_FAULT;
            count(C_STR_FAULTS);
        }
        if (n > MAX_SMALL)
            n = MAX_SMALL;
        r->l2 = n;
        off += n;
    }
    if (sp->addrmode != ADDR_NONE && sp->addr < 6) {
        off = BOUND(off, TAIL_MASK2);
        void *uaddr = (void *)args[sp->addr & 7];
        s64 alen = 0;
        if (sp->addrmode == ADDR_LEN_VALUE) {
            alen = args[sp->addrlen & 7];
        } else if (sp->addrmode == ADDR_LEN_PTR) {
            int l = 0;
            if (args[sp->addrlen & 7])
                bpf_probe_read_user(&l, sizeof(l), (void *)args[sp->addrlen & 7]);
            alen = l;
        } else if (sp->addrmode == ADDR_MSGHDR) {
            void *name = 0;
            int l = 0;
            if (uaddr) {
                bpf_probe_read_user(&name, sizeof(name), uaddr);
                bpf_probe_read_user(&l, sizeof(l), (char *)uaddr + 8);
            }
            uaddr = name;
            alen = l;
        } else if (sp->addrmode == ADDR_FIXED) {
            alen = sp->addrlen;
        }
        if (uaddr && alen > 0) {
            if (alen > MAX_ADDR)
                alen = MAX_ADDR;
            if (bpf_probe_read_user(&b->tail[off], alen & (MAX_ADDR - 1 + MAX_ADDR), uaddr) == 0) {
                r->laddr = alen;
                off += alen;
            }
        }
    }
    if (sp->sockfd != FD_NONE) {
        void *file = fd_file(sp->sockfd == FD_RES ? ret : (s64)(int)args[0]);
        if (file)
            fill_sock(r, file);
    }
    u32 size = sizeof(struct rec_syscall) + BOUND(off, TAIL_MASK2);
    int ok = submit(b, size) == 0;
    if (ok && sp->creates_fd && ret >= 0) {
        u64 key = ((u64)tgid << 32) | (u32)ret;
        u8 one = 1;
        known_fds.update(&key, &one);
    }
    return 0;
}

// close (attached only when a rule names it): nearly always of a descriptor nobody was told
// about (its open was filtered). That test comes first and needs only the fd; the sensor's own
// closes fail it too, since its own opens are never sent.
int sys_exit_closes_fd(void *ctx) {
    char *regs = (char *)bpf_task_pt_regs((struct task_struct *)bpf_get_current_task_btf());
    if (!regs)
        return 0;
    u64 key = (bpf_get_current_pid_tgid() & 0xFFFFFFFF00000000ULL) | (u32)*(u64 *)(regs + OFF_REGS_DI);
    if (!known_fds.lookup(&key)) {
        count(C_FILTERED);
        return 0;
    }
    return on_exit(*(int *)(ctx + 8), *(long *)(ctx + 16), 0);
}

// Every other sys_exit_* tracepoint the rules need. Only constant offsets into the context are
// allowed.
int sys_exit(void *ctx) {
    u32 nr = *(int *)(ctx + 8);
    s64 ret = *(long *)(ctx + 16);
    return on_exit(nr, ret, 0);
}

// Syscalls the table knows but this kernel has no tracepoint for are the ones it was built without
// (COND_SYSCALL stubs: init_module without CONFIG_MODULES, ...): they always return -ENOSYS. They
// are served by the raw sys_enter hook, which emits the finished event at once; its context holds
// the registers.
#define ENOSYS 38
// It runs for every syscall, so the test is a compare against the numbers wanted (RAW_NR_TEST,
// written by the loader), not a map lookup.
int raw_sys_enter(struct bpf_raw_tracepoint_args *ctx) {
    u32 nr = ctx->args[1];
    if (!(RAW_NR_TEST(nr)))
        return 0;
    const char *regs = (const char *)ctx->args[0];
    u64 a[6] = {};
    bpf_probe_read_kernel(&a[0], 8, regs + OFF_REGS_DI);
    bpf_probe_read_kernel(&a[1], 8, regs + OFF_REGS_SI);
    bpf_probe_read_kernel(&a[2], 8, regs + OFF_REGS_DX);
    bpf_probe_read_kernel(&a[3], 8, regs + OFF_REGS_R10);
    bpf_probe_read_kernel(&a[4], 8, regs + OFF_REGS_R8);
    bpf_probe_read_kernel(&a[5], 8, regs + OFF_REGS_R9);
    return on_exit(nr, -ENOSYS, a);
}

// A new process (not a thread): raw tracepoint, so the child task is at hand.
int on_fork(struct bpf_raw_tracepoint_args *ctx) {
    void *parent = (void *)ctx->args[0];
    void *child = (void *)ctx->args[1];
    u32 child_tgid = kread_u32(child, OFF_TASK_TGID);
    if (child_tgid == kread_u32(parent, OFF_TASK_TGID))
        return 0;                                   // CLONE_THREAD
    if (self_or_ignored(kread_u32(parent, OFF_TASK_TGID)))
        return 0;
    struct rec_fork r = {};
    fill_header(&r, K_FORK, 0);
    r.child_tid = kread_u32(child, OFF_TASK_PID);
    r.child_tgid = child_tgid;
    void *rp = kread_ptr(child, OFF_TASK_REAL_PARENT);
    r.child_ppid = kread_u32(rp, OFF_TASK_TGID);
    void *pid = kread_ptr(child, OFF_TASK_THREAD_PID);
    u32 level = kread_u32(pid, OFF_PID_LEVEL) & 31;
    r.child_vpid = kread_u32(pid, OFF_PID_NUMBERS + level * SIZEOF_UPID);
    r.child_start = kread_u64(child, OFF_TASK_START_BOOTTIME);
    submit(&r, sizeof(r));
    return 0;
}

static __always_inline u32 pid_nr_level(void *pid, u32 level) {
    return kread_u32(pid, OFF_PID_NUMBERS + (level & 31) * SIZEOF_UPID);
}

// A successful exec: everything about the new program, read from the kernel while it is certain.
int on_exec(struct bpf_raw_tracepoint_args *ctx) {
    void *task = (void *)ctx->args[0];
    void *bprm = (void *)ctx->args[2];
    u32 tgid = kread_u32(task, OFF_TASK_TGID);
    if (self_or_ignored(tgid))
        return 0;
    u32 zero = 0;
    struct exec_buf *b = ex_scratch.lookup(&zero);
    if (!b)
        return 0;
    struct rec_exec *r = &b->rec;
    fill_header(r, K_EXEC, 0);
    r->old_pid = (u32)ctx->args[1];
    r->xflags = 0;
    void *rp = kread_ptr(task, OFF_TASK_REAL_PARENT);
    r->ppid = kread_u32(rp, OFF_TASK_TGID);
    void *pid = kread_ptr(task, OFF_TASK_THREAD_PID);
    u32 level = kread_u32(pid, OFF_PID_LEVEL);
    r->vpid = pid_nr_level(pid, level);
    void *signal = kread_ptr(task, OFF_TASK_SIGNAL);
    void *sidp = kread_ptr(signal, OFF_SIGNAL_PIDS + PIDTYPE_SID * 8);
    void *pgidp = kread_ptr(signal, OFF_SIGNAL_PIDS + PIDTYPE_PGID * 8);
    r->sid = pid_nr_level(sidp, 0);
    r->vpgid = pid_nr_level(pgidp, level);
    r->loginuid = kread_u32(task, OFF_TASK_LOGINUID);
    r->tty = 0;
    void *tty = kread_ptr(signal, OFF_SIGNAL_TTY);
    if (tty) {
        void *driver = kread_ptr(tty, OFF_TTY_DRIVER);
        u32 major = kread_u32(driver, OFF_DRIVER_MAJOR);
        u32 minor = kread_u32(driver, OFF_DRIVER_MINOR_START) + kread_u32(tty, OFF_TTY_INDEX);
        // new_encode_dev(), as /proc/<pid>/stat prints tty_nr
        r->tty = (minor & 0xff) | (major << 8) | ((minor & ~0xffu) << 12);
    }
    void *cred = kread_ptr(task, OFF_TASK_CRED);
    r->euid = kread_u32(cred, OFF_CRED_EUID);
    r->egid = kread_u32(cred, OFF_CRED_EGID);
    r->cap_inh = kread_u64(cred, OFF_CRED_CAP_INHERITABLE);
    r->cap_perm = kread_u64(cred, OFF_CRED_CAP_PERMITTED);
    r->cap_eff = kread_u64(cred, OFF_CRED_CAP_EFFECTIVE);
    r->start = kread_u64(task, OFF_TASK_START_BOOTTIME);

    u32 off = 0;
    const char *filename = kread_ptr(bprm, OFF_BPRM_FILENAME);
    long n = bpf_probe_read_kernel_str(&b->tail[0], MAX_STR, filename);
    if (n < 0)
        n = 0;
    if (n > MAX_STR)
        n = MAX_STR;
    r->l_filename = n;
    off = n;

    void *mm = kread_ptr(task, OFF_TASK_MM);
    u64 arg_start = kread_u64(mm, OFF_MM_ARG_START);
    u64 arg_end = kread_u64(mm, OFF_MM_ARG_END);
    u64 alen = arg_end > arg_start ? arg_end - arg_start : 0;
    if (alen > MAX_ARGS) {
        alen = MAX_ARGS;
        r->xflags |= X_EXE_TRUNC;
    }
    off = BOUND(off, TAIL_MASK1);
    if (alen && bpf_probe_read_user(&b->tail[off], alen & (2 * MAX_ARGS - 1), (void *)arg_start) == 0) {
        r->l_args = alen;
        off += alen;
    } else {
        r->l_args = 0;
    }
    u64 env_start = kread_u64(mm, OFF_MM_ENV_START);
    u64 env_end = kread_u64(mm, OFF_MM_ENV_END);
    u64 elen = env_end > env_start ? env_end - env_start : 0;
    if (elen > MAX_ENV) {
        elen = MAX_ENV;
        r->xflags |= X_EXE_TRUNC;
    }
    off = BOUND(off, TAIL_MASK2);
    if (elen && bpf_probe_read_user(&b->tail[off], elen & (2 * MAX_ENV - 1), (void *)env_start) == 0) {
        r->l_env = elen;
        off += elen;
    } else {
        r->l_env = 0;
    }
    void *file = kread_ptr(bprm, OFF_BPRM_FILE);
    void *dentry = kread_ptr(file, OFF_FILE_DENTRY);
    const char *dname = kread_ptr(dentry, OFF_DENTRY_NAME);
    void *inode = kread_ptr(file, OFF_FILE_INODE);
    r->exe_ino = kread_u64(inode, OFF_INODE_INO);
    off = BOUND(off, TAIL_MASK2);
    n = 0;
    if (dname)
        n = bpf_probe_read_kernel_str(&b->tail[off], MAX_EXE, dname);
    if (n < 0)
        n = 0;
    if (n > MAX_EXE)
        n = MAX_EXE;
    r->l_exe = n;
    if (n > 6) {
        u8 *d = &b->tail[off];
        if (d[0] == 'm' && d[1] == 'e' && d[2] == 'm' && d[3] == 'f' && d[4] == 'd' && d[5] == ':')
            r->xflags |= X_EXE_MEMFD;
    }
    off += n;
    void *cgrp = kread_ptr(kread_ptr(task, OFF_TASK_CGROUPS), OFF_CSS_SET_DFL_CGRP);
    void *kn = kread_ptr(cgrp, OFF_CGROUP_KN);
    r->l_cg_parent = r->l_cg_leaf = 0;
    off = BOUND(off, TAIL_MASK2);
    const char *pname = kread_ptr(kread_ptr(kn, OFF_KN_PARENT), OFF_KN_NAME);
    n = pname ? bpf_probe_read_kernel_str(&b->tail[off], MAX_CGNAME, pname) : 0;
    if (n > 0 && n <= MAX_CGNAME) {
        r->l_cg_parent = n;
        off += n;
    }
    off = BOUND(off, TAIL_MASK2);
    const char *lname = kread_ptr(kn, OFF_KN_NAME);
    n = lname ? bpf_probe_read_kernel_str(&b->tail[off], MAX_CGNAME, lname) : 0;
    if (n > 0 && n <= MAX_CGNAME) {
        r->l_cg_leaf = n;
        off += n;
    }
    u32 size = sizeof(struct rec_exec) + BOUND(off, TAIL_MASK2);
    submit(b, size);
    return 0;
}

// The last thread of a process is gone.
int on_exit_proc(void *ctx) {
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tid = (u32)pid_tgid;
#if EXIT_GROUP_DEAD_OFF >= 0
    u8 group_dead = *(u8 *)(ctx + EXIT_GROUP_DEAD_OFF);
#else
    u8 group_dead = tid == (pid_tgid >> 32);    // older kernels: the leader's exit stands for it
#endif
    if (!group_dead)
        return 0;
    if (self_or_ignored(pid_tgid >> 32))
        return 0;
    struct rec_exit r = {};
    fill_header(&r, K_EXIT, 0);
    void *task = (void *)bpf_get_current_task();
    r.exit_code = kread_u32(task, OFF_TASK_EXIT_CODE);
    submit(&r, sizeof(r));
    return 0;
}

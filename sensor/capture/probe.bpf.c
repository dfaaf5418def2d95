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
#define MAX_DIR 1024            // the kernel's path of a directory fd
#define DIR_DEPTH 48            // components walked for it
#define NR_MAX 512
#define KF_MAX_TERMS 64         // terms of one syscall

#define CFG_SELF_TGID 0         // the sensor: its own syscalls are never captured
#define CFG_KFILTER 1           // 1: drop events no kernel-filter term matches (spec.kf_mode)
#define CFG_PRESSURE 2          // bytes pending in the ring above which budgets apply
#define CFG_STATE_LIMIT 3       // bytes pending above which state-only records are dropped
#define CFG_PROC_BUDGET 4       // records one process may add per window under pressure
#define CFG_CG_BUDGET 5         // records one cgroup may add per window under pressure
#define CFG_WINDOW_NS 6
#define CFG_CONSUMED 8           // the ring's consumer position, as the reader last published it
#define CFG_MAX 16

#define C_DROPS 0               // the ring buffer had no room: record lost (per CPU)
#define C_STR_FAULTS 1          // a string argument could not be read
#define C_REGS_FAULTS 2         // the saved registers could not be read: record lost
#define C_RECORDS 3             // records written
#define C_FILTERED 4            // records no rule could match, dropped on purpose
#define C_STATE_DROPS 5         // state-only records dropped: the ring was three quarters full
#define C_THROTTLED 6           // records of a process or cgroup over its budget, dropped
#define C_STATE_RECORDS 7       // records written for state only (no rule could match them)
#define C_TAIL_FAULTS 8         // a tail call between the stages failed: record lost
#define C_MAX 16

#define ADDR_NONE 0
#define ADDR_LEN_VALUE 1        // addr = args[addr], length = args[addrlen]
#define ADDR_LEN_PTR 2          // addr = args[addr], length = *(int *)args[addrlen] (filled at exit)
#define ADDR_MSGHDR 3           // args[addr] is a struct user_msghdr; name at +0, namelen at +8
#define ADDR_FIXED 4            // read `addrlen` bytes at args[addr] (open_how, clone_args)

#define FD_NONE 0
#define FD_ARG0 1
#define FD_RES 2

#define OVERLAYFS_SUPER_MAGIC 0x794c7630

// A path as the key of the path tries: a path is judged in the kernel only when it fits whole.
struct path_key {
    u32 prefixlen;
    u8 path[MAX_PREFIX];
};

// An address as the key of the network trie: family (4 or 6) then the address.
struct net_key {
    u32 prefixlen;
    u8 fam;
    u8 addr[16];
    u8 pad[3];
};

struct comm_key {
    char comm[16];
};

// The patterns that paths are searched for (contains, ends with) as one Aho-Corasick automaton:
// the state after each character, and the path sets a pattern ending in a state belongs to.
struct dfa_row {
    u16 next[256];
    u64 any;                    // sets whose "contains" pattern ends here
    u64 end;                    // sets whose "ends with" pattern ends here
};

// The trie's answer, coarsened to a path's first two characters after the '/': indexed by the
// first, one bit per second character. A clear bit means no trie entry can match, and costs an
// inlined array lookup where the trie walk costs a helper call.
struct first2 {
    u64 bits[4];
};

// Per process or cgroup: records added in the current window while the ring was under pressure.
struct budget {
    u64 window;
    u32 count;
    u32 pad;
};

// A process whose records were dropped for being over its budget (read by user space).
struct flooder {
    u64 dropped;
    u64 cgroup;
    u32 uid;
    u32 pad;
    char comm[16];
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
    u8 tail[TAIL_MASK2 + 1 + MAX_DIR];
};

struct exec_buf {
    struct rec_exec rec;
    u8 tail[TAIL_MASK2 + 1 + MAX_ENV];
};

// What the kernel filter learnt about the event being judged; each part filled at most once.
struct kf_facts {
    u32 ftype;                  // FT_* bit, 0 when unknown
    u32 l4;                     // L4_* bit, 0 when unknown
    u32 euid;
    u64 comm_bits;
    u64 pbits[2];               // path sets the string in slot 0/1 matches
    u8 pknown[2];               // the string was read whole (its facts are known)
    u8 pnormal[2];              // ... and is absolute and lexically normal (as rules see it)
    u8 is_host;
    u8 host_known;              // is_host was looked up
    u8 net_known;               // the fd is an IPv4/IPv6 socket: addresses and ports known
    u64 lbits, rbits;
    u16 lport, rport;
    u32 laddr;                  // bytes of socket address read into the record's tail
    // Kept here, in map memory, rather than in registers: the verifier tracks a register's exact
    // value on every path, and a mask built bit by bit over the terms would make it explore each
    // combination of bits as a different state.
    u64 alive;                  // terms that passed the tests so far
    u32 costly;                 // the tests they still need
    u32 dfa;                    // bit per string slot: some alive term's path set has automaton parts
};

BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
BPF_PERCPU_ARRAY(counters, u64, C_MAX);
BPF_ARRAY(config, u64, CFG_MAX);
BPF_ARRAY(specs, struct spec, NR_MAX);
BPF_TABLE("lru_hash", u64, u8, known_fds, KNOWN_FDS_MAX);
BPF_ARRAY(kterms, struct kterm, KF_TERMS_MAX);
BPF_HASH(comm_sets, struct comm_key, u64, COMM_MAX);
BPF_HASH(host_cgroups, u64, u8, HOST_CGROUPS_MAX);
BPF_LPM_TRIE(path_trie, struct path_key, u64, PATH_TRIE_MAX);
BPF_ARRAY(path_first2, struct first2, 256);
BPF_ARRAY(dfa, struct dfa_row, DFA_STATES);
BPF_LPM_TRIE(net_trie, struct net_key, u64, NET_MAX);
BPF_ARRAY(port_sets, u64, PORT_SETS * 1024);
BPF_TABLE("lru_hash", u32, struct budget, proc_budget, 16384);
BPF_TABLE("lru_hash", u64, struct budget, cg_budget, 4096);
BPF_HASH(flooders, u32, struct flooder, 1024);
BPF_PERCPU_ARRAY(sc_scratch, struct syscall_buf, 1);
BPF_PERCPU_ARRAY(ex_scratch, struct exec_buf, 1);
BPF_PERCPU_ARRAY(key_scratch, struct path_key, 2);
BPF_PERCPU_ARRAY(facts_scratch, struct kf_facts, 1);

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
    char *task = (char *)bpf_get_current_task_btf();
    char *cred = *(char **)(task + OFF_TASK_CRED);
    h->kind = kind;
    h->nr = nr;
    h->tid = (u32)pid_tgid;
    h->tgid = pid_tgid >> 32;
    h->uid = (u32)uid_gid;
    h->gid = uid_gid >> 32;
    u32 euid = (u32)uid_gid, egid = uid_gid >> 32;
    if (cred) {
        euid = *(u32 *)(cred + OFF_CRED_EUID);
        egid = *(u32 *)(cred + OFF_CRED_EGID);
    }
    h->euid = euid;
    h->egid = egid;
    h->cpu = bpf_get_smp_processor_id();
    h->ts = bpf_ktime_get_boot_ns();
    h->cgroup = bpf_get_current_cgroup_id();
    // proc.name is the process's name: the thread group leader's comm, which a thread that named
    // itself (pthread_setname_np) does not change.
    if ((u32)pid_tgid == (u32)(pid_tgid >> 32)) {
        bpf_get_current_comm(&h->comm, sizeof(h->comm));
    } else {
        char *leader = *(char **)(task + OFF_TASK_GROUP_LEADER);
        if (!leader || bpf_probe_read_kernel(&h->comm, sizeof(h->comm), leader + OFF_TASK_COMM) < 0)
            bpf_get_current_comm(&h->comm, sizeof(h->comm));
    }
}

// The ring's producer position as this program computes it (bcc 0.26 has no ringbuf_query):
// each record takes its size plus an 8-byte header, rounded up to 8. With the consumer position
// the reader publishes (CFG_CONSUMED) it says how full the ring is, for the budgets.
BPF_ARRAY(ring_produced, u64, 1);

// Never wake the reader: it drains the ring on a short timer, in batches, so a busy producer
// pays no wake-up per record (measured on a tight open loop: 3.03x with wake-ups, 1.74x without).
static __always_inline int submit(void *data, u64 size) {
    if (events.ringbuf_output(data, size, BPF_RB_NO_WAKEUP) < 0) {
        count(C_DROPS);
        return -1;
    }
    count(C_RECORDS);
    u32 zero = 0;
    u64 *produced = ring_produced.lookup(&zero);
    if (produced)
        __sync_fetch_and_add(produced, (size + 8 + 7) & ~7ULL);
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
    r->sk_state = kread_u16(sk, OFF_SK_STATE) & 0xFF;
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

// ---------------------------------------------------------------------------------------------
// The kernel filter. For each syscall, user space derived from the rules a disjunction of terms
// (kterms[spec.kf_first ..]), each a conjunction of tests on what the probe can read: the result,
// open flags, the euid, the process name, whether the cgroup is a host one, the fd's type and
// protocol, its addresses and ports, and the paths. An event no term matches is dropped unless
// the state needs it. A fact the probe could not read passes every test on it, and a fact is only
// called known when user space will compute the same value from the record (decoder.py).
// Cheap tests run first for every term; the costly facts (the fd, the socket, the paths) are read
// once, and only when a term survived the cheap tests and needs them.
// ---------------------------------------------------------------------------------------------

// The tests that need nothing but the event itself, the euid (two loads) and whether the cgroup
// is a host one (one lookup, made when a term first asks), run for every term in the entry
// program; the others in STAGE_FACTS, cheapest fact first.
#define KC_CHEAP (KC_RES | KC_ACC | KC_FLAGS | KC_UID | KC_CONTAINER)
#define KC_PATHS (KC_PATH0 | KC_RAW0 | KC_PATH1 | KC_RAW1)
#define KC_WHO (KC_COMM_IN | KC_COMM_OUT)
#define KC_FD (KC_FTYPE | KC_L4 | KC_LNET | KC_RNET | KC_LPORT | KC_RPORT)

// Is the path (n bytes with its NUL, starting with '/') lexically normal: no "." or ".."
// component, no "//", no trailing '/'? Only then is the path as written the path rules see.
static __always_inline int path_normal(const u8 *p) {
    for (int i = 0; i < MAX_PREFIX - 3; i++) {
        if (p[i] == 0)
            return 1;
        if (p[i] != '/')
            continue;
        u8 c1 = p[i + 1];
        if (c1 == '/' || (c1 == 0 && i > 0))           // "//", or a trailing '/'
            return 0;
        if (c1 == '.') {
            u8 c2 = p[i + 2];
            if (c2 == '/' || c2 == 0 || (c2 == '.' && (p[i + 3] == '/' || p[i + 3] == 0)))
                return 0;
        }
    }
    return 0;                                          // too long to tell: not judged
}

// The path sets a string matches: by the trie (exact names, prefixes) and by the automaton
// (contains, ends with). `n` counts the NUL.
static __always_inline u64 path_sets(struct path_key *k, long n, int dfa_too) {
    u64 bits = 0;
    u32 c1 = k->path[1];
    u32 c2 = k->path[2];
    struct first2 *f2 = n >= 3 ? path_first2.lookup(&c1) : 0;
    if (!f2 || ((f2->bits[(c2 >> 6) & 3] >> (c2 & 63)) & 1)) {
        k->prefixlen = n * 8;
        u64 *v = path_trie.lookup(k);
        if (v)
            bits |= *v;
    }
    if (!dfa_too)
        return bits;
    u32 state = 0;
    for (int i = 0; i < MAX_PREFIX - 1; i++) {
        if (i >= n - 1)
            break;
        struct dfa_row *row = dfa.lookup(&state);
        if (!row)
            return bits;
        bits |= row->any;
        state = row->next[k->path[i]] & (DFA_STATES - 1);
    }
    struct dfa_row *row = dfa.lookup(&state);
    if (row)
        bits |= row->any | row->end;
    return bits;
}

static __always_inline void kf_path(struct kf_facts *f, const u32 slot, const struct spec *sp, const u64 *args,
                                    int dfa_too) {
    u32 key = slot;                                     // the map key lives on the stack; `slot` stays a constant
    struct path_key *k = key_scratch.lookup(&key);
    u8 a = sp->str[slot & 1];
    if (!k || a >= 6)
        return;
    long n = bpf_probe_read_user_str(k->path, MAX_PREFIX, (void *)args[a & 7]);
    if (n < 1 || n >= MAX_PREFIX)
        return;                                         // unreadable or too long: not judged
    f->pknown[slot & 1] = 1;
    f->pnormal[slot & 1] = k->path[0] == '/' && path_normal(k->path);
    f->pbits[slot & 1] = path_sets(k, n, dfa_too);
}

static __always_inline u32 l4_class(u32 family, u32 stype, u32 proto) {
    if (family != 2 && family != 10)
        return family == 1 ? L4_NA : 0;
    if (proto == 6)
        return L4_TCP;
    if (proto == 17)
        return L4_UDP;
    if (proto == 1 || proto == 58)
        return L4_ICMP;
    if (proto == 255)
        return L4_RAW;
    if (proto == 0 || proto > 255) {
        if (stype == 1)
            return L4_TCP;
        if (stype == 2)
            return L4_UDP;
        if (stype == 3)
            return L4_RAW;
    }
    return L4_NA;
}

static __always_inline u32 family_class(u32 family) {
    return family == 2 ? FT_IPV4 : family == 10 ? FT_IPV6 : family == 1 ? FT_UNIX : 0;
}

// The net sets an address is in; an IPv4-mapped IPv6 address counts as the IPv4 address, as
// user space prints it.
static __always_inline u64 net_sets(const u8 *a, u32 family) {
    struct net_key k = {};
    if (family == 10 && !(a[0] | a[1] | a[2] | a[3] | a[4] | a[5] | a[6] | a[7] | a[8] | a[9])
        && a[10] == 0xff && a[11] == 0xff) {
        k.prefixlen = 8 + 32;
        k.fam = 4;
        k.addr[0] = a[12];
        k.addr[1] = a[13];
        k.addr[2] = a[14];
        k.addr[3] = a[15];
    } else if (family == 2) {
        k.prefixlen = 8 + 32;
        k.fam = 4;
        __builtin_memcpy(k.addr, a, 4);
    } else {
        k.prefixlen = 8 + 128;
        k.fam = 6;
        __builtin_memcpy(k.addr, a, 16);
    }
    u64 *v = net_trie.lookup(&k);
    return v ? *v : 0;
}

// The sockaddr at the start of the tail, if the record read one: its address and port, for an
// unconnected socket whose peer is the address given (as decoder.py takes it).
static __always_inline int sockaddr_peer(const u8 *sa, u32 len, u8 *addr, u16 *port) {
    u16 fam = sa[0] | (sa[1] << 8);
    if (fam == 2 && len >= 8) {
        *port = (sa[2] << 8) | sa[3];
        __builtin_memcpy(addr, sa + 4, 4);
        return 2;
    }
    if (fam == 10 && len >= 24) {
        *port = (sa[2] << 8) | sa[3];
        __builtin_memcpy(addr, sa + 8, 16);
        return 10;
    }
    return 0;
}

// The socket address argument into the front of the tail (the record keeps it there).
static __always_inline u32 read_addr(struct syscall_buf *b, const struct spec *sp, const u64 *args) {
    if (sp->addrmode == ADDR_NONE || sp->addr >= 6)
        return 0;
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
    if (!uaddr || alen <= 0)
        return 0;
    if (alen > MAX_ADDR)
        alen = MAX_ADDR;
    if (bpf_probe_read_user(&b->tail[0], alen & (MAX_ADDR - 1 + MAX_ADDR), uaddr) != 0)
        return 0;
    return alen;
}

// The fd's socket (or, for socket(), its arguments): type, protocol, addresses, ports.
static __always_inline void kf_sock(struct kf_facts *f, struct syscall_buf *b, const struct spec *sp,
                                    const u64 *args, s64 ret) {
    struct rec_syscall *r = &b->rec;
    if (sp->sock_args) {
        if (ret >= 0) {
            f->ftype = family_class(args[0] & 0xFFFF);
            f->l4 = l4_class(args[0] & 0xFFFF, args[1] & 0xF, args[2]);
        }
        return;
    }
    s64 fd = sp->sockfd == FD_RES ? ret : (s64)(int)args[0];
    if (!(r->xflags & X_HAVE_SOCK)) {
        void *file = fd_file(fd);
        if (file)
            fill_sock(r, file);
    }
    if (!(r->xflags & X_HAVE_SOCK))
        return;
    u32 family = r->sk_family;
    f->ftype = family_class(family);
    f->l4 = l4_class(family, r->sk_type, r->sk_proto);
    if (family != 2 && family != 10)
        return;
    f->lbits = net_sets(r->laddr_raw, family);
    f->lport = r->lport;
    u16 rport = r->rport;
    u8 peer[16] = {};
    u32 pfam = family;
    __builtin_memcpy(peer, r->raddr_raw, 16);
    if (rport == 0) {
        if (f->laddr == 0)
            f->laddr = read_addr(b, sp, args);
        u16 p = 0;
        u32 got = f->laddr ? sockaddr_peer(b->tail, f->laddr, peer, &p) : 0;
        if (got) {
            pfam = got;
            rport = p;
        }
    }
    f->rbits = net_sets(peer, pfam);
    f->rport = rport;
    f->net_known = 1;
}

// The fd's type as user space will call it, where the kernel can tell.
static __always_inline void kf_ftype(struct kf_facts *f, struct syscall_buf *b, const struct spec *sp,
                                     const u64 *args, s64 ret) {
    struct rec_syscall *r = &b->rec;
    if (sp->open) {
        if (ret < 0) {
            f->ftype = FT_FILE;
            return;
        }
        u16 m = fd_imode(ret) & 0170000;
        f->ftype = m == 0040000 ? FT_DIR : m == 0010000 ? FT_PIPE : m == 0140000 ? FT_UNIX : FT_FILE;
        return;
    }
    if (sp->sock_args || sp->sockfd != FD_NONE) {
        kf_sock(f, b, sp, args, ret);
        return;
    }
    if (sp->filefd == FD_ARG0) {                       // the dup family: the old fd's file
        void *file = fd_file((s64)(int)args[0]);
        if (file) {
            fill_file(r, file);
            fill_sock(r, file);
        }
        if (r->xflags & X_HAVE_SOCK)
            f->ftype = family_class(r->sk_family);
        else if (r->xflags & X_HAVE_FILE)
            f->ftype = FT_NONSOCK;
    }
}

static __always_inline u32 current_euid(void) {
    char *task = (char *)bpf_get_current_task_btf();
    char *cred = *(char **)(task + OFF_TASK_CRED);
    u32 euid = (u32)bpf_get_current_uid_gid();
    if (cred)
        euid = *(u32 *)(cred + OFF_CRED_EUID);
    return euid;
}

static __always_inline u64 comm_bits(void) {
    struct comm_key k = {};
    u64 pid_tgid = bpf_get_current_pid_tgid();
    if ((u32)pid_tgid == (u32)(pid_tgid >> 32)) {
        bpf_get_current_comm(&k.comm, sizeof(k.comm));
    } else {
        char *task = (char *)bpf_get_current_task_btf();
        char *leader = *(char **)(task + OFF_TASK_GROUP_LEADER);
        if (!leader || bpf_probe_read_kernel(&k.comm, sizeof(k.comm), leader + OFF_TASK_COMM) < 0)
            bpf_get_current_comm(&k.comm, sizeof(k.comm));
    }
    u64 *v = comm_sets.lookup(&k);
    return v ? *v : 0;
}

static __always_inline int in_ranges(s64 v, s64 lo0, s64 hi0, s64 lo1, s64 hi1) {
    return (v >= lo0 && v <= hi0) || (v >= lo1 && v <= hi1);
}

static __always_inline int port_in(u16 set, u16 port) {
    u32 idx = ((u32)(set - 1) & (PORT_SETS - 1)) * 1024 + (port >> 6);
    u64 *w = port_sets.lookup(&idx);
    return w && ((*w >> (port & 63)) & 1);
}

// Does some term want the event on its cheap tests alone? 1: yes; 0: no term can; -1: some term
// passed its cheap tests and needs the others (f->alive says which, f->costly what).
static __always_inline int kf_cheap(const struct spec *sp, s64 ret, u64 flags, struct kf_facts *f) {
    u32 keep = f->laddr;
    __builtin_memset(f, 0, sizeof(*f));
    f->laddr = keep;
    if (sp->kf_needs & KC_UID)
        f->euid = current_euid();
    // the terms this event's class (result sign, access mode) leaves: the others cost nothing
    const u64 *masks = &sp->kf_mask0;
    u64 mask = masks[((ret < 0) << 2 | (flags & 3)) & 7];
    for (int i = 0; i < KF_MAX_TERMS; i++) {
        if (i >= sp->kf_count)
            break;
        if (!((mask >> i) & 1))
            continue;
        u32 idx = sp->kf_first + i;
        struct kterm *t = kterms.lookup(&idx);
        if (!t)
            return 1;
        u32 c = t->checks;
        if ((c & KC_RES) && !in_ranges(ret, t->res_lo0, t->res_hi0, t->res_lo1, t->res_hi1))
            continue;
        if ((c & KC_ACC) && !((t->acc >> (flags & 3)) & 1))
            continue;
        if ((c & KC_FLAGS) && ((flags & t->fl_all) != t->fl_all || (flags & t->fl_none)))
            continue;
        if ((c & KC_UID) && !in_ranges(f->euid, t->uid_lo0, t->uid_hi0, t->uid_lo1, t->uid_hi1))
            continue;
        if (c & KC_CONTAINER) {
            if (!f->host_known) {
                u64 cg = bpf_get_current_cgroup_id();
                f->is_host = host_cgroups.lookup(&cg) != 0;
                f->host_known = 1;
            }
            if (f->is_host)
                continue;
        }
        if (!(c & ~KC_CHEAP))
            return 1;                                   // nothing else to test
        f->alive |= 1ULL << (i & 63);
        f->costly |= c;
        f->dfa |= t->dfa;
    }
    return f->alive ? -1 : 0;
}

// Does term t pass the tests of class `which`, on the facts read so far?
static __always_inline int term_passes(const struct kterm *t, const struct kf_facts *f, u32 which) {
    u32 c = t->checks & which;
    if ((c & KC_CONTAINER) && f->is_host)
        return 0;
    if ((c & KC_COMM_IN) && !(f->comm_bits & t->comm_in))
        return 0;
    if ((c & KC_COMM_OUT) && (f->comm_bits & t->comm_out))
        return 0;
    if ((c & KC_FTYPE) && f->ftype && !(t->ftype & f->ftype))
        return 0;
    if ((c & KC_L4) && f->l4 && !(t->l4 & f->l4))
        return 0;
    if (f->net_known) {
        if ((c & KC_LNET) && ((t->lnet_in && !(f->lbits & t->lnet_in)) || (f->lbits & t->lnet_out)))
            return 0;
        if ((c & KC_RNET) && ((t->rnet_in && !(f->rbits & t->rnet_in)) || (f->rbits & t->rnet_out)))
            return 0;
        if ((c & KC_LPORT) && !port_in(t->lport, f->lport))
            return 0;
        if ((c & KC_RPORT) && !port_in(t->rport, f->rport))
            return 0;
    }
    if (f->pknown[0]) {
        if ((c & KC_RAW0) && !(f->pbits[0] & t->raw0))
            return 0;
        if ((c & KC_PATH0) && f->pnormal[0] && !(f->pbits[0] & t->path0))
            return 0;
    }
    if (f->pknown[1]) {
        if ((c & KC_RAW1) && !(f->pbits[1] & t->raw1))
            return 0;
        if ((c & KC_PATH1) && f->pnormal[1] && !(f->pbits[1] & t->path1))
            return 0;
    }
    return 1;
}

// Drop from f->alive the terms that fail the tests of class `which`; f->costly becomes what the
// survivors still need.
static __always_inline void kf_prune(const struct spec *sp, struct kf_facts *f, u32 which) {
    f->costly = 0;
    for (int i = 0; i < KF_MAX_TERMS; i++) {
        if (i >= sp->kf_count)
            break;
        if (!((f->alive >> (i & 63)) & 1))
            continue;
        u32 idx = sp->kf_first + i;
        struct kterm *t = kterms.lookup(&idx);
        if (!t)
            continue;
        if (!term_passes(t, f, which)) {
            f->alive &= ~(1ULL << (i & 63));
            continue;
        }
        f->costly |= t->checks;
    }
}

// The costly facts, cheapest first, pruning the terms after each: the paths (already read for
// most of the events that get here), the process's name and cgroup, then the fd and its socket.
// 1: some term passes every test.
static __always_inline int kf_costly(const struct spec *sp, const u64 *args, s64 ret, struct syscall_buf *b,
                                     struct kf_facts *f) {
    if (f->costly & KC_PATHS) {
        if (f->costly & (KC_PATH0 | KC_RAW0))
            kf_path(f, 0, sp, args, f->dfa & 1);
        if (f->costly & (KC_PATH1 | KC_RAW1))
            kf_path(f, 1, sp, args, f->dfa & 2);
        kf_prune(sp, f, KC_PATHS);
        if (!f->alive)
            return 0;
    }
    if (f->costly & KC_WHO) {
        f->comm_bits = comm_bits();
        kf_prune(sp, f, KC_WHO);
        if (!f->alive)
            return 0;
    }
    if (f->costly & KC_FD) {
        kf_ftype(f, b, sp, args, ret);
        kf_prune(sp, f, KC_FD);
    }
    return f->alive != 0;
}

// The open flags the caller passed (openat2: in its struct open_how).
static __always_inline u64 open_flags(const struct spec *sp, const u64 *args) {
    if (!sp->open)
        return 0;
    if (sp->addrmode == ADDR_FIXED) {
        u64 flags = 0;
        bpf_probe_read_user(&flags, sizeof(flags), (void *)args[sp->addr & 7]);
        return flags;
    }
    return sp->flags_arg < 6 ? args[sp->flags_arg & 7] : 0;
}

// ---------------------------------------------------------------------------------------------
// Budgets: one process or cgroup must not fill the ring. While the ring holds less than
// CFG_PRESSURE bytes nothing is counted; above it, each process and each cgroup may add
// CFG_PROC_BUDGET / CFG_CG_BUDGET records per window, and what is over is dropped, counted, and
// its process remembered in `flooders` for user space to name. Records sent only for the state
// stop at CFG_STATE_LIMIT, so the rest of the ring is kept for records rules may match.
// ---------------------------------------------------------------------------------------------

static __always_inline int over_budget(struct budget *bu, u64 now, u64 window, u64 limit) {
    if (now - bu->window > window) {
        bu->window = now;
        bu->count = 0;
    }
    bu->count += 1;
    return bu->count > limit;
}

static __always_inline void note_flooder(u32 tgid, u64 cg) {
    struct flooder *fl = flooders.lookup(&tgid);
    if (fl) {
        __sync_fetch_and_add(&fl->dropped, 1);
        return;
    }
    struct flooder n = {};
    n.dropped = 1;
    n.cgroup = cg;
    n.uid = (u32)bpf_get_current_uid_gid();
    bpf_get_current_comm(&n.comm, sizeof(n.comm));
    flooders.update(&tgid, &n);
}

static __always_inline int admit(u8 kclass) {
    u32 zero = 0;
    u64 *produced = ring_produced.lookup(&zero);
    u64 consumed = cfg(CFG_CONSUMED);
    u64 pending = produced && *produced > consumed ? *produced - consumed : 0;
    u64 pressure = cfg(CFG_PRESSURE);
    if (!pressure || pending <= pressure)
        return 1;
    if (kclass == KCLASS_STATE && pending > cfg(CFG_STATE_LIMIT)) {
        count(C_STATE_DROPS);
        return 0;
    }
    u64 now = bpf_ktime_get_ns();
    u64 window = cfg(CFG_WINDOW_NS);
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    u64 cg = bpf_get_current_cgroup_id();
    struct budget fresh = {};
    fresh.window = now;
    struct budget *bp = proc_budget.lookup(&tgid);
    if (!bp) {
        proc_budget.update(&tgid, &fresh);
        bp = proc_budget.lookup(&tgid);
    }
    struct budget *bc = cg_budget.lookup(&cg);
    if (!bc) {
        cg_budget.update(&cg, &fresh);
        bc = cg_budget.lookup(&cg);
    }
    if ((bp && over_budget(bp, now, window, cfg(CFG_PROC_BUDGET)))
        || (bc && over_budget(bc, now, window, cfg(CFG_CG_BUDGET)))) {
        count(C_THROTTLED);
        note_flooder(tgid, cg);
        return 0;
    }
    return 1;
}

// ---------------------------------------------------------------------------------------------
// An event passes three programs joined by tail calls, each verified on its own: the verifier
// would otherwise walk the whole record-building code once for every way the filter can end.
//   sys_exit        the saved arguments, the close filter, the kernel filter's cheap tests
//                                                               -> STAGE_FACTS, STAGE_RECORD or dropped
//   stage_facts     the kernel filter's other tests             -> STAGE_RECORD or dropped
//   stage_record    the budgets, then the record into the ring  -> STAGE_DIR when it has a directory fd
//   stage_dir       the path of that directory, then into the ring
// They share the event through per-CPU scratch maps (a tail call stays on its CPU).
// ---------------------------------------------------------------------------------------------

#define STAGE_FACTS 0
#define STAGE_RECORD 1
#define STAGE_DIR 2
BPF_PROG_ARRAY(stages, 3);

struct event_state {
    u64 args[8];                // 6 used; 8 so that an index masked with 7 stays inside
    s64 ret;
    u64 flags;                  // open flags, for opens
    u32 nr;
    u8 kclass;
    u8 pad[3];
    u32 off;                    // the record's tail so far (STAGE_DIR appends to it)
    s32 dirfd;                  // the directory fd whose path STAGE_DIR appends
};
BPF_PERCPU_ARRAY(ev_scratch, struct event_state, 1);

// The start of every event: the record's kernel-read parts cleared, the event saved for the
// next stage. NULL when the event goes no further.
static __always_inline struct event_state *begin(u32 nr, s64 ret, const u64 *in_args, struct spec **spp) {
    if (nr >= NR_MAX)
        return 0;
    struct spec *sp = specs.lookup(&nr);
    if (!sp || !sp->enabled)
        return 0;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tgid = pid_tgid >> 32;
    if (self_or_ignored(tgid))
        return 0;
    u32 zero = 0;
    struct event_state *es = ev_scratch.lookup(&zero);
    struct syscall_buf *b = sc_scratch.lookup(&zero);
    struct kf_facts *facts = facts_scratch.lookup(&zero);
    if (!es || !b || !facts)
        return 0;
    u64 *args = es->args;
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
    es->ret = ret;
    es->nr = nr;
    es->kclass = KCLASS_RULE;
    es->flags = open_flags(sp, args);
    struct rec_syscall *r = &b->rec;
    r->xflags = 0;
    r->fmode = 0;
    r->sk_family = r->sk_type = r->sk_proto = 0;
    r->lport = r->rport = 0;
    r->sk_state = 0;
    r->ino = 0;
    r->dev = r->imode = 0;
    __builtin_memset(r->laddr_raw, 0, 16);
    __builtin_memset(r->raddr_raw, 0, 16);
    facts->laddr = 0;
    *spp = sp;
    return es;
}

// No term wants the event: it goes on only when the state needs it.
static __always_inline int unwanted(void *ctx, struct event_state *es, const struct spec *sp) {
    if (!sp->state) {
        count(C_FILTERED);
        return 0;
    }
    es->kclass = KCLASS_STATE;
    stages.call(ctx, STAGE_RECORD);
    count(C_TAIL_FAULTS);
    return 0;
}

static __always_inline int on_exit(void *ctx, u32 nr, s64 ret) {
    struct spec *sp = 0;
    struct event_state *es = begin(nr, ret, 0, &sp);
    if (!es || !sp)
        return 0;
    // The kernel filter first, before anything is spent on the record: filtered events are the
    // hot path of a busy host. Most events stop at the cheap tests, without a tail call.
    if (sp->kf_mode == KF_TERMS && cfg(CFG_KFILTER)) {
        u32 zero = 0;
        struct kf_facts *f = facts_scratch.lookup(&zero);
        if (f) {
            int cheap = kf_cheap(sp, ret, es->flags, f);
            if (cheap == 0)
                return unwanted(ctx, es, sp);
            if (cheap < 0)
                stages.call(ctx, STAGE_FACTS);
        }
    }
    stages.call(ctx, STAGE_RECORD);
    count(C_TAIL_FAULTS);                               // only reached when a tail call failed
    return 0;
}

// Shared by the stages: the event, its record buffer, its facts and its syscall's spec.
struct stage {
    struct event_state *es;
    struct syscall_buf *b;
    struct kf_facts *f;
    struct spec *sp;
};

static __always_inline int stage_begin(struct stage *st) {
    u32 zero = 0;
    st->es = ev_scratch.lookup(&zero);
    st->b = sc_scratch.lookup(&zero);
    st->f = facts_scratch.lookup(&zero);
    if (!st->es || !st->b || !st->f)
        return -1;
    u32 nr = st->es->nr;
    st->sp = specs.lookup(&nr);
    return st->sp ? 0 : -1;
}

int stage_facts(void *ctx) {
    struct stage st;
    if (stage_begin(&st) < 0)
        return 0;
    if (!kf_costly(st.sp, st.es->args, st.es->ret, st.b, st.f))
        return unwanted(ctx, st.es, st.sp);
    stages.call(ctx, STAGE_RECORD);
    count(C_TAIL_FAULTS);
    return 0;
}

// The record goes into the ring; the kernel remembers the fds it created, for close's filter.
static __always_inline int finish(struct event_state *es, struct syscall_buf *b, const struct spec *sp, u32 off) {
    u32 size = sizeof(struct rec_syscall) + BOUND(off, TAIL_MASK2);
    int ok = submit(b, size) == 0;
    if (ok && es->kclass == KCLASS_STATE)
        count(C_STATE_RECORDS);
    if (ok && sp->creates_fd && es->ret >= 0) {
        u64 key = (bpf_get_current_pid_tgid() & 0xFFFFFFFF00000000ULL) | (u32)es->ret;
        u8 one = 1;
        known_fds.update(&key, &one);
    }
    return 0;
}

// The record: the fixed part, then the socket address, the strings; then the path of the
// directory a relative path is relative to (STAGE_DIR), when there is one. `can_tail`: 0 in the
// raw sys_enter program, which cannot tail-call the tracepoint stages.
static __always_inline int record(void *ctx, struct event_state *es, struct syscall_buf *b, const struct spec *sp,
                                  int can_tail) {
    u32 zero = 0;
    struct kf_facts *facts = facts_scratch.lookup(&zero);
    if (!facts)
        return 0;
    u8 kclass = es->kclass;
    if (!admit(kclass))
        return 0;
    struct rec_syscall *r = &b->rec;
    const u64 *args = es->args;
    s64 ret = es->ret;
    u32 nr = es->nr;
    u64 pid_tgid = bpf_get_current_pid_tgid();
    u32 tgid = pid_tgid >> 32;
    u32 laddr = facts->laddr;
    if (laddr == 0)
        laddr = read_addr(b, sp, args);
    u32 off = BOUND(laddr, 0xFF);
    u32 xflags = r->xflags;
    u8 idx = sp->str[0];
    if (sp->str_if_failed && ret >= 0)
        idx = 0xFF;
    r->l0 = 0;
    if (idx < 6) {
        long n = bpf_probe_read_user_str(&b->tail[off], MAX_STR, (void *)args[idx & 7]);
        if (n < 0) {
            n = 0;
            xflags |= X_STR_FAULT;
            count(C_STR_FAULTS);
        }
        if (n > MAX_STR)
            n = MAX_STR;
        r->l0 = n;
        off += n;
    }
    fill_header(r, K_SYSCALL, nr);
    r->res = ret;
    r->a0 = args[0];
    r->a1 = args[1];
    r->a2 = args[2];
    r->a3 = args[3];
    r->a4 = args[4];
    r->a5 = args[5];
    r->l1 = r->l2 = 0;
    r->laddr = laddr;
    r->l_dir = 0;
    r->kclass = kclass;
    r->pad0 = 0;
    r->xflags = xflags;
    if (sp->filefd != FD_NONE && !(r->xflags & X_HAVE_FILE)) {
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
    if ((sp->sockfd != FD_NONE || sp->filefd == FD_ARG0) && !(r->xflags & X_HAVE_SOCK)) {
        void *file = fd_file(sp->sockfd == FD_RES ? ret : (s64)(int)args[0]);
        if (file)
            fill_sock(r, file);
    }
    // The directory a relative path resolves against (openat's dirfd), or the directory an fd
    // names (fchdir, and any fd of a directory): its path from the kernel, so that user space
    // needs no open of it and no table entry that may have gone stale.
    s32 dirfd = -1;
    if (sp->fd_path || (sp->filefd == FD_ARG0 && (r->imode & 0170000) == 0040000))
        dirfd = (s32)args[0];
    else if (sp->dirfd0 < 6 && r->l0 > 1 && b->tail[BOUND(laddr, 0xFF)] != '/')
        dirfd = (s32)args[sp->dirfd0 & 7];
    if (can_tail && dirfd >= 0) {
        es->off = off;
        es->dirfd = dirfd;
        stages.call(ctx, STAGE_DIR);
    }
    return finish(es, b, sp, off);
}

struct dir_scratch {
    u8 buf[2 * MAX_DIR];
    // The walk's position, kept in map memory: the verifier then sees an unknown value at every
    // step instead of one exact value per path, and the 48 steps verify as one.
    u32 pos;
    u32 pad;
};
BPF_PERCPU_ARRAY(dir_scratch, struct dir_scratch, 1);

// The path of a dentry, up to the root of the task's mount namespace (crossing mounts), built
// backwards in d->buf. Returns where it starts, or MAX_DIR when it could not be read whole (too
// deep, too long).
static __always_inline u32 path_of(char *dentry, char *vfsmnt, struct dir_scratch *d) {
    if (!dentry || !vfsmnt)
        return MAX_DIR;
    char *mnt = vfsmnt - OFF_MOUNT_MNT;
    d->pos = MAX_DIR;
    for (int i = 0; i < DIR_DEPTH; i++) {
        if (dentry == kread_ptr(vfsmnt, OFF_VFSMOUNT_ROOT)) {
            char *parent = kread_ptr(mnt, OFF_MOUNT_PARENT);
            if (!parent || parent == mnt) {             // the namespace's root mount: done
                if (d->pos == MAX_DIR) {
                    d->pos = MAX_DIR - 1;
                    d->buf[MAX_DIR - 1] = '/';
                }
                return d->pos;
            }
            dentry = kread_ptr(mnt, OFF_MOUNT_MOUNTPOINT);
            mnt = parent;
            vfsmnt = mnt + OFF_MOUNT_MNT;
            continue;
        }
        char *up = kread_ptr(dentry, OFF_DENTRY_PARENT);
        if (!up)
            return MAX_DIR;
        u32 len = kread_u32(dentry, OFF_DENTRY_NAME_LEN);
        u32 pos = d->pos;
        if (len == 0 || len > 255 || len + 1 > pos)
            return MAX_DIR;
        pos -= len;
        if (bpf_probe_read_kernel(&d->buf[pos & (MAX_DIR - 1)], BOUND(len, 0xFF),
                                  kread_ptr(dentry, OFF_DENTRY_NAME)) < 0)
            return MAX_DIR;
        pos -= 1;
        d->buf[pos & (MAX_DIR - 1)] = '/';
        d->pos = pos;
        if (up == dentry)                               // the root of a filesystem that is no mount
            return pos;                                 // root (an internal one: memfd, pipes)
        dentry = up;
    }
    return MAX_DIR;
}

// The path of the file open as fd `fd` of the current task.
static __always_inline u32 dir_path(s64 fd, struct dir_scratch *d) {
    void *file = fd_file(fd);
    if (!file)
        return MAX_DIR;
    return path_of(kread_ptr(file, OFF_FILE_DENTRY), kread_ptr(file, OFF_FILE_MNT), d);
}

int stage_dir(void *ctx) {
    struct stage st;
    if (stage_begin(&st) < 0)
        return 0;
    u32 zero = 0;
    struct dir_scratch *d = dir_scratch.lookup(&zero);
    u32 off = st.es->off;
    if (d) {
        u32 pos = dir_path(st.es->dirfd, d);
        if (pos < MAX_DIR) {
            u32 n = MAX_DIR - pos;
            off = BOUND(off, TAIL_MASK2);
            if (bpf_probe_read_kernel(&st.b->tail[off], BOUND(n, MAX_DIR - 1), &d->buf[pos & (MAX_DIR - 1)]) == 0) {
                st.b->tail[BOUND(off + n, TAIL_MASK2)] = 0;
                st.b->rec.l_dir = n + 1;
                off += n + 1;
            }
        }
    }
    return finish(st.es, st.b, st.sp, off);
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
    return on_exit(ctx, *(int *)(ctx + 8), *(long *)(ctx + 16));
}

// Every other sys_exit_* tracepoint the rules need. Only constant offsets into the context are
// allowed.
int sys_exit(void *ctx) {
    u32 nr = *(int *)(ctx + 8);
    s64 ret = *(long *)(ctx + 16);
    return on_exit(ctx, nr, ret);
}

int stage_record(void *ctx) {
    struct stage st;
    if (stage_begin(&st) < 0)
        return 0;
    return record(ctx, st.es, st.b, st.sp, 1);
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
    // A raw tracepoint cannot tail-call the tracepoint stages: the record is made here, unfiltered
    // (these calls are rare and can only fail).
    struct spec *sp = 0;
    struct event_state *es = begin(nr, -ENOSYS, a, &sp);
    u32 zero = 0;
    struct syscall_buf *b = sc_scratch.lookup(&zero);
    if (!es || !sp || !b)
        return 0;
    return record(ctx, es, b, sp, 0);
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
    if (admit(KCLASS_STATE))
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
    r->exe_ctime = r->exe_mtime = 0;
#if OFF_INODE_CTIME_SEC >= 0
    // The top bits of a nanosecond field are flags on kernels with multigrain timestamps (6.13+:
    // I_CTIME_QUERIED); nanoseconds need 30 bits.
    r->exe_ctime = kread_u64(inode, OFF_INODE_CTIME_SEC) * 1000000000ULL
                   + (kread_u32(inode, OFF_INODE_CTIME_NSEC) & 0x3FFFFFFF);
    r->exe_mtime = kread_u64(inode, OFF_INODE_MTIME_SEC) * 1000000000ULL
                   + (kread_u32(inode, OFF_INODE_MTIME_NSEC) & 0x3FFFFFFF);
#endif
    // proc.is_exe_upper_layer as Falco's driver reads it: the exe's inode is an overlayfs inode
    // whose upper dentry is set (the file was written in the container, not taken from the image).
    if (kread_u64(kread_ptr(inode, OFF_INODE_SB), OFF_SB_MAGIC) == OVERLAYFS_SUPER_MAGIC) {
        r->xflags |= X_EXE_OVERLAY;
#if OFF_OVL_UPPER >= 0
        if (kread_ptr(inode, OFF_OVL_UPPER))
            r->xflags |= X_EXE_UPPER;
#endif
    }
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
    // proc.exepath as Falco's driver reports it: the executable's own path (symlinks resolved),
    // read from its dentries
    r->l_exepath = 0;
    struct dir_scratch *d = dir_scratch.lookup(&zero);
    if (d) {
        u32 pos = path_of(kread_ptr(file, OFF_FILE_DENTRY), kread_ptr(file, OFF_FILE_MNT), d);
        if (pos < MAX_DIR) {
            u32 n = MAX_DIR - pos;
            off = BOUND(off, TAIL_MASK2);
            if (bpf_probe_read_kernel(&b->tail[off], BOUND(n, MAX_DIR - 1), &d->buf[pos & (MAX_DIR - 1)]) == 0) {
                b->tail[BOUND(off + n, TAIL_MASK2)] = 0;
                r->l_exepath = n + 1;
                off += n + 1;
            }
        }
    }
    u32 size = sizeof(struct rec_exec) + BOUND(off, TAIL_MASK2);
    if (admit(KCLASS_RULE))
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

"""The fd.* field class: the file descriptor the event acts on or creates (`event.fd`).

Sockets follow Falco's client/server model: `cip`/`cport` is the connecting side, `sip`/`sport` the
accepting side, whichever end this process is; `lip`/`rip`/`lport`/`rport` (local/remote) follow
from `Fd.local_is_server` and have no value while that is unknown. `fd.net`, `fd.cnet`, ... return
the address (type IPNET): the compiler tests it against the network in the condition. `fd.ip`,
`fd.port` and `fd.net` match either end, so they return the list of both.

Like Falco, an fd-related event that has no fd (a failed open, a failed connect) still answers
fd.name, fd.directory and fd.nameraw from the path or tuple in its arguments, fd.typechar from its
type, and fd.num with -1.

The `*.name` DNS fields (fd.sip.name, ...) never have a value: Falconet does not resolve names.
"""

from __future__ import annotations

import os

from sensor.engine.fields.base import Field, FieldClass
from sensor.event import Fd, SyscallEvent
from sensor.syscalls import FD_EVENT, INFO

TYPECHARS = {"file": "f", "directory": "d", "ipv4": "4", "ipv6": "6", "unix": "u", "pipe": "p",
             "event": "e", "signalfd": "s", "eventpoll": "l", "inotify": "i", "timerfd": "t",
             "netlink": "n", "bpf": "b", "userfaultfd": "u", "io_uring": "r", "memfd": "m"}
_IP_TYPES = frozenset({"ipv4", "ipv6"})
_PATH_TYPES = frozenset({"file", "directory"})
_NO_INFO = ("", 0)

# fd.typechar of an fd-creating event that has no fd (Falco: by the event type; accept and socket
# report IPv4 whatever the family, as Falco does).
_CREATOR_TYPECHAR = {"open": "f", "openat": "f", "openat2": "f", "creat": "f", "socket": "4",
                     "accept": "4", "accept4": "4", "pipe": "p", "pipe2": "p", "eventfd": "e",
                     "eventfd2": "e", "signalfd": "s", "signalfd4": "s", "timerfd_create": "t",
                     "inotify_init": "i", "inotify_init1": "i"}
_PATH_CREATORS = frozenset({"open", "openat", "openat2", "creat"})
_TUPLE_CREATORS = frozenset({"accept", "accept4", "connect"})


def typechar(fd_type: str) -> str:
    """Falco's one-letter fd type ('f' file, '4' IPv4 socket, ...; 'o' for unknown)."""
    return TYPECHARS.get(fd_type, "o")


def _is_fd_event(ev: SyscallEvent) -> bool:
    return ev.fd is not None or bool(INFO.get(ev.type, _NO_INFO)[1] & FD_EVENT)


def _creator_name(ev: SyscallEvent, raw: bool = False) -> str | None:
    # What Falco's extract_fdname_from_creator answers for an fd event with no fd.
    if ev.dir == ">":
        return None
    t = ev.type
    if t in _PATH_CREATORS:
        v = ev.rawargs.get("name") if raw else None
        if not isinstance(v, str):
            v = ev.args.get("name")
    elif t == "open_by_handle_at":
        v = ev.args.get("path")
    elif t in _TUPLE_CREATORS:
        v = ev.args.get("tuple")
    else:
        return ""
    return v if isinstance(v, str) else None


def _tuple_text(fd: Fd) -> str | None:
    # Falco's connection tuple: client ip:port -> server ip:port.
    if fd.cip is None or fd.sip is None:
        return None
    return f"{fd.cip}:{fd.cport}->{fd.sip}:{fd.sport}"


def directory_of(path: str) -> str:
    """Falco's fd.directory of a file path: everything before the last '/' ('/' for top level)."""
    pos = path.rfind("/")
    if pos > 0:
        return path[:pos] if pos < len(path) - 1 else path
    return "/"


def _fd_name(ev: SyscallEvent) -> str | None:
    fd = ev.fd
    if fd is None or (ev.type == "connect" and ev.res is not None and ev.res < 0):
        return _creator_name(ev) if _is_fd_event(ev) else None
    if not fd.name and fd.type in _IP_TYPES:
        return _tuple_text(fd) or fd.name
    return fd.name


# --- extractors ------------------------------------------------------------------------------

def _num(ev: SyscallEvent, arg: str | None) -> int | None:
    fd = ev.fd
    if fd is not None:
        return fd.num
    return -1 if INFO.get(ev.type, _NO_INFO)[1] & FD_EVENT else None


def _type(ev: SyscallEvent, arg: str | None) -> str | None:
    fd = ev.fd
    return fd.type if fd is not None else None


def _typechar(ev: SyscallEvent, arg: str | None) -> str | None:
    fd = ev.fd
    if fd is not None:
        return TYPECHARS.get(fd.type, "o")
    if INFO.get(ev.type, _NO_INFO)[1] & FD_EVENT:
        return _CREATOR_TYPECHAR.get(ev.type, "o")
    return None


def _name(ev: SyscallEvent, arg: str | None) -> str | None:
    return _fd_name(ev)


def _directory(ev: SyscallEvent, arg: str | None) -> str | None:
    fd = ev.fd
    if fd is None:
        name = _creator_name(ev) if _is_fd_event(ev) else None
        return directory_of(name) if name is not None else None
    if fd.type == "file":
        return directory_of(fd.name)
    if fd.type == "directory":
        return fd.name
    return None


def _filename(ev: SyscallEvent, arg: str | None) -> str | None:
    fd = ev.fd
    if fd is None or fd.type != "file":
        return None
    name = fd.name
    pos = name.rfind("/")
    if pos < 0:
        return "/"
    return name[pos + 1:] if pos < len(name) - 1 else name


def _nameraw(ev: SyscallEvent, arg: str | None) -> str | None:
    fd = ev.fd
    if fd is None:
        return _creator_name(ev, raw=True) if _is_fd_event(ev) else None
    if fd.nameraw is not None:
        return fd.nameraw
    return fd.name if fd.type in _PATH_TYPES else None


def _ip_fd(ev: SyscallEvent) -> Fd | None:
    fd = ev.fd
    return fd if fd is not None and fd.type in _IP_TYPES else None


def _cip(ev: SyscallEvent, arg: str | None) -> str | None:
    fd = _ip_fd(ev)
    return fd.cip if fd is not None else None


def _sip(ev: SyscallEvent, arg: str | None) -> str | None:
    fd = _ip_fd(ev)
    return fd.sip if fd is not None else None


def _cport(ev: SyscallEvent, arg: str | None) -> int | None:
    fd = _ip_fd(ev)
    return fd.cport if fd is not None else None


def _sport(ev: SyscallEvent, arg: str | None) -> int | None:
    fd = _ip_fd(ev)
    return fd.sport if fd is not None else None


def _lip(ev: SyscallEvent, arg: str | None) -> str | None:
    fd = _ip_fd(ev)
    if fd is None or fd.local_is_server is None:
        return None
    return fd.sip if fd.local_is_server else fd.cip


def _rip(ev: SyscallEvent, arg: str | None) -> str | None:
    fd = _ip_fd(ev)
    if fd is None or fd.local_is_server is None:
        return None
    return fd.cip if fd.local_is_server else fd.sip


def _lport(ev: SyscallEvent, arg: str | None) -> int | None:
    fd = _ip_fd(ev)
    if fd is None or fd.local_is_server is None:
        return None
    return fd.sport if fd.local_is_server else fd.cport


def _rport(ev: SyscallEvent, arg: str | None) -> int | None:
    fd = _ip_fd(ev)
    if fd is None or fd.local_is_server is None:
        return None
    return fd.cport if fd.local_is_server else fd.sport


def _ips(ev: SyscallEvent, arg: str | None) -> list[str] | None:
    fd = _ip_fd(ev)
    if fd is None:
        return None
    out = [ip for ip in (fd.cip, fd.sip) if ip is not None]
    return out or None


def _ports(ev: SyscallEvent, arg: str | None) -> list[int] | None:
    fd = _ip_fd(ev)
    if fd is None:
        return None
    out = [p for p in (fd.cport, fd.sport) if p is not None]
    return out or None


def _no_dns(ev: SyscallEvent, arg: str | None) -> None:
    return None


def _l4proto(ev: SyscallEvent, arg: str | None) -> str | None:
    # Falco answers the text "<NA>" (not "no value") for an fd whose protocol is not known.
    fd = ev.fd
    if fd is None:
        return None
    return fd.l4proto or "<NA>"


def _sockfamily(ev: SyscallEvent, arg: str | None) -> str | None:
    fd = ev.fd
    if fd is None:
        return None
    if fd.sockfamily:
        return fd.sockfamily
    if fd.type in _IP_TYPES:
        return "ip"
    return "unix" if fd.type == "unix" else None


def _is_server(ev: SyscallEvent, arg: str | None) -> bool | None:
    fd = ev.fd
    if fd is None:
        return None
    return fd.local_is_server if fd.type in _IP_TYPES else False


def _connected(ev: SyscallEvent, arg: str | None) -> bool | None:
    fd = ev.fd
    return fd.connected if fd is not None else None


def _name_changed(ev: SyscallEvent, arg: str | None) -> bool | None:
    fd = ev.fd
    return fd.name_changed if fd is not None else None


def _uid(ev: SyscallEvent, arg: str | None) -> str | None:
    num = _num(ev, None)
    return None if num is None else f"{ev.tid}{num}"


def _container_prefix(ev: SyscallEvent) -> str:
    cid = ev.proc.container.id
    return "" if cid == "host" else cid      # Falco's container id is empty on the host


def _containername(ev: SyscallEvent, arg: str | None) -> str | None:
    name = _fd_name(ev)
    return None if name is None else f"{_container_prefix(ev)}:{name}"


def _containerdirectory(ev: SyscallEvent, arg: str | None) -> str | None:
    d = _directory(ev, None)
    return None if d is None else f"{_container_prefix(ev)}:{d}"


def _dev(ev: SyscallEvent, arg: str | None) -> int | None:
    fd = ev.fd
    return fd.dev if fd is not None else None


def _dev_major(ev: SyscallEvent, arg: str | None) -> int | None:
    fd = ev.fd
    if fd is None or fd.dev is None:
        return None
    return os.major(fd.dev)


def _dev_minor(ev: SyscallEvent, arg: str | None) -> int | None:
    fd = ev.fd
    if fd is None or fd.dev is None:
        return None
    return os.minor(fd.dev)


def _ino(ev: SyscallEvent, arg: str | None) -> int | None:
    fd = ev.fd
    return fd.ino if fd is not None else None


def _types(ev: SyscallEvent, arg: str | None) -> list[str] | None:
    if not _is_fd_event(ev):
        return None
    fds = ev.proc.fds
    if arg is not None:
        fd = fds.get(int(arg)) if arg.isdigit() else None
        return [fd.type] if fd is not None else None
    return list(dict.fromkeys(fd.type for fd in fds.values())) or None


def _open_fd_numbers(ev: SyscallEvent) -> list[str]:
    return [str(n) for n in ev.proc.fds] if _is_fd_event(ev) else []


# Which arguments `falconet capture` records for the fields that take one (see record.py).
RECORD_ARGS = {"fd.types": _open_fd_numbers}

_DNS = " Falconet does not resolve names, so this field never has a value."

CLASS = FieldClass("fd", "syscall",
                   "The file descriptor the event acts on or creates: file, socket, pipe, ...", (
    Field("fd.num", "INT64", "Number of the file descriptor; -1 for an fd event that has none "
          "(e.g. a failed open).", _num),
    Field("fd.type", "CHARBUF",
          "Type of the fd: file, directory, ipv4, ipv6, unix, pipe, event, signalfd, eventpoll, "
          "inotify, timerfd, netlink, memfd, bpf, userfaultfd or io_uring.", _type),
    Field("fd.typechar", "CHARBUF",
          "Type of the fd as one character: f file, d directory, 4 IPv4 socket, 6 IPv6 socket, u unix "
          "socket, p pipe, e eventfd, s signalfd, l eventpoll, i inotify, t timerfd, n netlink, b bpf, "
          "r io_uring, m memfd, o other.", _typechar),
    Field("fd.name", "CHARBUF",
          "Full name of the fd: a file's absolute path, a socket's connection tuple "
          "(client_ip:port->server_ip:port), a unix socket's path.", _name),
    Field("fd.directory", "CHARBUF", "For files, the directory that contains the file.", _directory),
    Field("fd.filename", "CHARBUF", "For files, the file name without its directory.", _filename),
    Field("fd.nameraw", "CHARBUF",
          "For files, the path as the process passed it, before it was made absolute.", _nameraw),
    Field("fd.ip", "IPADDR", "Client and server IP addresses of the socket; matches either.", _ips,
          multi=True),
    Field("fd.cip", "IPADDR", "IP address of the client (connecting) end.", _cip),
    Field("fd.sip", "IPADDR", "IP address of the server (accepting) end.", _sip),
    Field("fd.lip", "IPADDR", "IP address of this process's end of the connection.", _lip),
    Field("fd.rip", "IPADDR", "IP address of the other end of the connection.", _rip),
    Field("fd.port", "PORT", "Client and server ports of the socket; matches either.", _ports, multi=True),
    Field("fd.cport", "PORT", "Port of the client end (TCP/UDP).", _cport),
    Field("fd.sport", "PORT", "Port of the server end (TCP/UDP).", _sport),
    Field("fd.lport", "PORT", "Port of this process's end (TCP/UDP).", _lport),
    Field("fd.rport", "PORT", "Port of the other end (TCP/UDP).", _rport),
    Field("fd.net", "IPNET", "Client and server addresses, for network tests ('10.0.0.0/8'); matches "
          "either.", _ips, multi=True),
    Field("fd.cnet", "IPNET", "Client address, for network tests.", _cip),
    Field("fd.snet", "IPNET", "Server address, for network tests.", _sip),
    Field("fd.lnet", "IPNET", "Local address, for network tests.", _lip),
    Field("fd.rnet", "IPNET", "Remote address, for network tests.", _rip),
    Field("fd.cip.name", "CHARBUF", "Domain name of the client address." + _DNS, _no_dns),
    Field("fd.sip.name", "CHARBUF", "Domain name of the server address." + _DNS, _no_dns),
    Field("fd.lip.name", "CHARBUF", "Domain name of the local address." + _DNS, _no_dns),
    Field("fd.rip.name", "CHARBUF", "Domain name of the remote address." + _DNS, _no_dns),
    Field("fd.l4proto", "CHARBUF",
          "Transport protocol of a socket: tcp, udp, icmp or raw; '<NA>' for fds without one.", _l4proto),
    Field("fd.sockfamily", "CHARBUF", "Socket family: 'ip' or 'unix'.", _sockfamily),
    Field("fd.is_server", "BOOL", "True when this process is the server end of the connection.", _is_server),
    Field("fd.connected", "BOOL", "True when the socket is connected.", _connected),
    Field("fd.name_changed", "BOOL",
          "True when this event changed the fd's name (e.g. a UDP socket sending to a new peer).",
          _name_changed),
    Field("fd.uid", "CHARBUF", "Thread id followed by the fd number: an id for the fd.", _uid),
    Field("fd.containername", "CHARBUF", "Container id, ':' and fd.name.", _containername),
    Field("fd.containerdirectory", "CHARBUF", "Container id, ':' and fd.directory.", _containerdirectory),
    Field("fd.dev", "INT32", "Device number (major/minor) of the device holding the file.", _dev),
    Field("fd.dev.major", "INT32", "Major number of the device holding the file.", _dev_major),
    Field("fd.dev.minor", "INT32", "Minor number of the device holding the file.", _dev_minor),
    Field("fd.ino", "INT64", "Inode number of the file.", _ino),
    Field("fd.types", "CHARBUF",
          "The distinct types of the process's open fds; fd.types[N] is the type of fd N, as a "
          "one-item list.", _types, arg="index", is_list=True),
))

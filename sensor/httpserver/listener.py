"""A listener for the sensor's HTTP servers: connection slots, deadlines, one thread per connection.

The accept loop only accepts: the TLS handshake (when there is TLS) and everything after it run on
the connection's own thread, so a client that stalls cannot hold up the others. Slots are limited
twice, in all (`max_connections`) and per client address (`per_client`), so one client cannot
take every slot. One reaper thread enforces deadlines: a new connection must complete its TLS
handshake and its first request within `request_timeout` of being accepted; the server sets later
deadlines itself (`deadline()`), e.g. `idle_timeout` between two requests on a keep-alive
connection.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable

log = logging.getLogger("falconet")


class _Conn:
    __slots__ = ("client", "deadline", "sock")

    def __init__(self, sock: socket.socket, client: str, deadline: float) -> None:
        self.sock = sock
        self.client = client
        self.deadline = deadline


class Connections:
    """Open connections, their client addresses and deadlines; a reaper thread shuts down the ones
    past due.

    Shutting a socket down (not closing it) wakes the thread blocked reading it. Every change and
    the shutdown itself happen under one lock, and a connection leaves the table before its socket
    is closed, so the reaper never touches a descriptor number that was reused.
    """

    def __init__(self, limit: int, per_client: int, on_timeout: Callable[[], None]) -> None:
        self.limit = limit
        self.per_client = per_client
        self._on_timeout = on_timeout
        self._lock = threading.Lock()
        self._conns: dict[int, _Conn] = {}
        self._by_client: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, sock: socket.socket, client: str, deadline: float) -> str | None:
        """Take a slot for `sock`; None when taken, else why not ("total" or "client")."""
        with self._lock:
            if len(self._conns) >= self.limit:
                return "total"
            if self._by_client.get(client, 0) >= self.per_client:
                return "client"
            self._conns[id(sock)] = _Conn(sock, client, deadline)
            self._by_client[client] = self._by_client.get(client, 0) + 1
            return None

    def rebind(self, old: socket.socket, new: socket.socket) -> None:
        """The connection's socket is now `new` (the TLS socket that took over `old`'s descriptor)."""
        with self._lock:
            conn = self._conns.pop(id(old), None)
            if conn is not None:
                conn.sock = new
                self._conns[id(new)] = conn

    def set_deadline(self, sock: socket.socket, deadline: float) -> None:
        with self._lock:
            conn = self._conns.get(id(sock))
            if conn is not None:
                conn.deadline = deadline

    def remove(self, sock: socket.socket) -> None:
        with self._lock:
            conn = self._conns.pop(id(sock), None)
            if conn is not None:
                left = self._by_client[conn.client] - 1
                if left:
                    self._by_client[conn.client] = left
                else:
                    del self._by_client[conn.client]

    def __len__(self) -> int:
        return len(self._conns)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._reap, name="k8s-audit-reaper", daemon=True)
        self._thread.start()

    def _reap(self) -> None:
        while not self._stop.wait(0.1):
            now = time.monotonic()
            with self._lock:
                for conn in self._conns.values():
                    if conn.deadline <= now:
                        conn.deadline = float("inf")     # once is enough
                        # counted first: whoever sees the connection end then sees the count
                        self._on_timeout()
                        _shutdown(conn.sock)

    def close_all(self) -> None:
        self._stop.set()
        with self._lock:
            for conn in self._conns.values():
                _shutdown(conn.sock)
        if self._thread is not None:
            self._thread.join(timeout=2)


def _shutdown(sock: socket.socket) -> None:
    try:
        # The plain socket's shutdown, also for an SSLSocket: it only wakes the reader.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


Serve = Callable[[socket.socket, str], None]


class Listener:
    """Accepts connections on (host, port) and hands each, after its TLS handshake when `context`
    is given, to `serve(sock, client_address)` on a thread of its own. `count(name)` is told about
    refused slots (refused_connections, refused_per_client), TLS errors and timeouts."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext | None, *, serve: Serve,
                 count: Callable[[str], None], max_connections: int, per_client: int,
                 request_timeout: float, name: str = "http") -> None:
        self.context = context
        self.serve = serve
        self.count = count
        self.name = name
        self.request_timeout = request_timeout
        self.conns = Connections(max_connections, per_client, lambda: count("timeouts"))
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
            self.sock.listen(128)
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(0.2)        # the accept loop looks at the stop flag this often
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.conns.start()
        self._thread = threading.Thread(target=self._accept_loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.sock.close()
        self.conns.close_all()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, addr = self.sock.accept()
            except TimeoutError:
                continue
            except OSError as e:
                if self._stop.is_set():
                    return
                # EMFILE and friends: say so once per burst and give the system a moment.
                log.warning("%s: cannot accept a connection: %s", self.name, e.strerror or e)
                time.sleep(0.1)
                continue
            client = str(addr[0])
            refused = self.conns.add(sock, client, time.monotonic() + self.request_timeout)
            if refused is not None:
                self.count("refused_connections" if refused == "total" else "refused_per_client")
                with contextlib.suppress(OSError):
                    sock.close()
                continue
            sock.settimeout(None)
            threading.Thread(target=self._connection, args=(sock, client), name=f"{self.name}-conn",
                             daemon=True).start()

    def _connection(self, sock: socket.socket, client: str) -> None:
        if self.context is None:
            try:
                self.serve(sock, client)
            except OSError:
                pass          # the client went away or the reaper cut it off (counted there)
            except Exception:  # a bug must cost one connection, not the thread's traceback in the log
                log.exception("%s: error serving %s", self.name, client)
            finally:
                self.conns.remove(sock)
                with contextlib.suppress(OSError):
                    sock.close()
            return
        try:
            # wrap_socket takes over the descriptor; hand the new socket to the reaper before the
            # handshake, so a client that never sends its hello is cut off like any other.
            tls = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except OSError:
            self.conns.remove(sock)
            sock.close()
            return
        self.conns.rebind(sock, tls)
        try:
            try:
                tls.do_handshake()
            except (OSError, ValueError) as e:
                self.count("tls_errors")
                log.debug("%s: TLS handshake with %s failed: %s", self.name, client, e)
                return
            self.serve(tls, client)
        except OSError:
            pass              # the client went away or the reaper cut it off (counted there)
        except Exception:     # a bug must cost one connection, not the thread's traceback in the log
            log.exception("%s: error serving %s", self.name, client)
        finally:
            self.conns.remove(tls)
            with contextlib.suppress(OSError):
                tls.close()

    def deadline(self, sock: socket.socket, seconds: float) -> None:
        self.conns.set_deadline(sock, time.monotonic() + seconds)


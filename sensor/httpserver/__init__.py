"""The sensor's small HTTP servers' common ground: the audit webhook and the health/metrics server.

  http1.py      one HTTP/1.1 request head read within 16 KiB, its body framed strictly; answers
  listener.py   accepting connections: slots in all and per client address, deadlines enforced by
                a reaper thread, the TLS handshake on each connection's own thread

Both servers face whoever can reach their port, so both read requests the same careful way.
"""

"""Client TLS settings shared by the http and fluent channels."""

from __future__ import annotations

import ssl


def tls_context(*, insecure: bool = False, ca_cert: str = "", ca_path: str = "", client_cert: str = "",
                client_key: str = "") -> ssl.SSLContext:
    """A client TLS context: the system CAs or `ca_cert`/`ca_path`; a client certificate for mTLS.

    `insecure` skips verifying the server (its certificate and its name).
    """
    ctx = ssl.create_default_context(cafile=ca_cert or None, capath=ca_path or None)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client_cert:
        ctx.load_cert_chain(client_cert, client_key or None)
    return ctx

"""HTTP over a unix socket, for the Docker plugin's client and the doctor's probe."""

from __future__ import annotations

import http.client
import socket


class UnixHTTPConnection(http.client.HTTPConnection):
    """An ``http.client`` connection to a unix socket instead of a TCP address.

    ``host`` only fills the Host header; Docker's plugin client sends
    ``plugin.moby.localhost``.
    """

    def __init__(self, path: str, timeout: float, host: str = "localhost") -> None:
        super().__init__(host, timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock

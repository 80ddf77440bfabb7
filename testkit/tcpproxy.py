"""A TCP forwarder that can hold traffic, to catch a transfer in the middle (tests only).

Put it between a client and a server (an emulator's S3 remote and the S3 server); while
``paused`` no byte moves in either direction, so the transfer stays in progress for as long
as a test needs to look at it, restart something, or abort it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from testkit.processes import free_port


class TcpProxy:
    """``bytes_per_second`` makes it a slow link too (each direction), so a transfer stays in flight."""

    def __init__(
        self, target_port: int, target_host: str = "127.0.0.1", bytes_per_second: int | None = None
    ) -> None:
        self.target = (target_host, target_port)
        self.bytes_per_second = bytes_per_second
        self.port = free_port()
        self._open = threading.Event()
        self._open.set()
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        #: bytes from the server still allowed through before traffic is held (None: no limit)
        self._budget: int | None = None
        #: bytes of answers (server to client) forwarded so far
        self.answered = 0
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        threading.Thread(target=self._accept, name="tcpproxy", daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pause(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        with self._lock:
            self._budget = None
        self._open.set()

    def pause_after(self, server_bytes: int) -> None:
        """Let ``server_bytes`` more bytes of answers through, then hold everything (as ``pause``)."""
        with self._lock:
            self._budget = server_bytes

    def cut(self) -> None:
        """Drop every open connection and what it still holds (a network cut); new ones may come."""
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self._stop.set()
        self._open.set()
        with contextlib.suppress(OSError):
            self._server.close()
        with self._lock:
            for s in self._socks:
                with contextlib.suppress(OSError):
                    s.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            for a, b, answers in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pipe, args=(a, b, answers), daemon=True).start()

    def _spend(self, n: int) -> None:
        with self._lock:
            self.answered += n
            if self._budget is None:
                return
            self._budget -= n
            if self._budget < 0:
                self._open.clear()

    def _pipe(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        src.settimeout(None)
        try:
            while not self._stop.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if answers:
                    self._spend(len(data))
                if self.bytes_per_second:
                    time.sleep(len(data) / self.bytes_per_second)
                self._open.wait()
                if src.fileno() < 0 or dst.fileno() < 0:
                    break  # cut while held: the data is dropped
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

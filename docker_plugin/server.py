"""The unix socket Docker talks to, and the threaded WSGI server behind it.

The socket is bound first, before anything contacts LINSTOR, so Docker finds the plugin
at once (a managed plugin is disabled if its socket is late). Under systemd socket
activation (``LISTEN_PID`` is this process, ``LISTEN_FDS`` >= 1) the socket handed over
as fd 3 is used instead, and systemd queues Docker's connections while the service
restarts. waitress serves with several threads, so a slow Create never stalls
``docker volume ls``. SIGTERM and SIGINT end the loop cleanly: requests in flight finish
(up to a grace period), and a socket file this process created is removed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

from waitress import wasyncore
from waitress.server import create_server

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3
DEFAULT_THREADS = 8
SOCKET_MODE = 0o660
POLL_SECONDS = 0.25  # how soon a stop signal is noticed


class SocketInUse(RuntimeError):
    """Another process already answers on the socket path."""


@dataclass
class ListenSocket:
    sock: socket.socket
    path: str | None  # the file this process created (and removes at exit); None when inherited


def systemd_socket(env: Mapping[str, str] = os.environ) -> socket.socket | None:
    """The first socket passed by systemd socket activation, or None."""
    try:
        listen_pid = int(env.get("LISTEN_PID", ""))
        listen_fds = int(env.get("LISTEN_FDS", ""))
    except ValueError:
        return None
    if listen_pid != os.getpid() or listen_fds < 1:
        return None
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)  # not inherited by children
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    sock.setblocking(False)
    return sock


def _answering(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def bind_unix_socket(path: str, mode: int = SOCKET_MODE, backlog: int = 128) -> socket.socket:
    """Bind and listen on ``path`` (mode 0660, owned by root when run as root).

    A stale socket file from a crashed run is replaced; a live one is refused, so two
    plugins never fight over one driver name.
    """
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise SocketInUse(f"{path} exists and is not a socket; remove it or choose another --socket")
        if _answering(path):
            raise SocketInUse(f"another process is already serving on {path}")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # never world-accessible, not even between bind and chmod
    try:
        sock.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, mode)
    if os.geteuid() == 0:
        os.chown(path, 0, 0)
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def open_listen_socket(path: str, env: Mapping[str, str] = os.environ) -> ListenSocket:
    inherited = systemd_socket(env)
    if inherited is not None:
        log.info("using the socket passed by systemd (socket activation)")
        return ListenSocket(inherited, None)
    return ListenSocket(bind_unix_socket(path), path)


def serve(app: Any, listen: ListenSocket, threads: int = DEFAULT_THREADS) -> None:
    """Serve until SIGTERM/SIGINT; then stop accepting, let requests finish, clean up.

    The signal handler only records the signal: raising from it could interrupt the main
    thread while it holds a lock (logging's, say) and hang the shutdown. The loop below
    polls in short rounds and looks at the record between rounds.
    """
    sock_map: dict[int, Any] = {}
    server = create_server(app, map=sock_map, sockets=[listen.sock], threads=threads, channel_timeout=300)
    received: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not received:
            wasyncore.loop(timeout=POLL_SECONDS, map=sock_map, use_poll=True, count=1)
        log.info("stopping on %s", signal.Signals(received[0]).name)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.task_dispatcher.shutdown(cancel_pending=False, timeout=10)
        with contextlib.suppress(OSError):
            wasyncore.close_all(sock_map)
        if listen.path is not None:
            try:
                if os.path.exists(listen.path):
                    os.unlink(listen.path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    log.warning("could not remove %s: %s", listen.path, exc)

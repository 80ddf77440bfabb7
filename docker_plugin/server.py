"""The unix socket Docker talks to, and the threaded WSGI server behind it.

The socket is bound first, before anything contacts LINSTOR, so Docker finds the plugin
at once (a managed plugin is disabled if its socket is late). Under systemd socket
activation (``LISTEN_PID`` is this process, ``LISTEN_FDS`` >= 1) the socket handed over
as fd 3 is used instead, and systemd queues Docker's connections while the service
restarts. waitress serves with several threads, so a slow Create never stalls
``docker volume ls``. SIGTERM and SIGINT end the loop cleanly: requests in flight finish
(up to a grace period), and a socket file this process created is removed.

Docker's requests are small, so bodies are bounded: a larger one is refused with an
``Err`` sentence as soon as its headers arrive, never read. And a few connections are
always kept free for Docker: when open connections near the limit, the connections
without a request in progress (idle ones, or ones still trickling in their headers) are
closed, least recently active first, so idle clients can no longer lock Docker out.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import socket
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server
from waitress.task import ErrorTask
from waitress.utilities import RequestEntityTooLarge, RequestHeaderFieldsTooLarge

from docker_plugin.app import CONTENT_TYPE, MAX_BODY_BYTES, too_large_message
from docker_plugin.dirs import make_dirs

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3
DEFAULT_THREADS = 8
SOCKET_MODE = 0o660
POLL_SECONDS = 0.25  # how soon a stop signal is noticed
MAX_HEADER_BYTES = 32 * 1024
CONNECTION_LIMIT = 200
FREE_CONNECTIONS = 16  # kept free for Docker by closing idle connections
IDLE_SECONDS = 1.0  # a connection younger than this is never closed as idle
CHANNEL_TIMEOUT = 120  # waitress closes connections idle this long anyway


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


class _JsonErrorTask(ErrorTask):
    """waitress's answer to a request it refuses (too large, malformed), as Docker's ``Err``."""

    def execute(self) -> None:
        error = self.request.error
        if isinstance(error, RequestEntityTooLarge):
            message = too_large_message()
        elif isinstance(error, RequestHeaderFieldsTooLarge):
            message = f"the request headers are larger than {MAX_HEADER_BYTES // 1024} KiB and were not read"
        else:
            message = f"malformed HTTP request: {error.body}"
        body = (json.dumps({"Err": message}) + "\n").encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", CONTENT_TYPE))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _PluginChannel(HTTPChannel):
    error_task_class = _JsonErrorTask


def free_connections(
    server: BaseWSGIServer, limit: int = CONNECTION_LIMIT, reserve: int = FREE_CONNECTIONS
) -> int:
    """Close idle connections until ``reserve`` of ``limit`` are free; returns how many were closed.

    A connection with a request queued or running is never closed, nor one opened in the
    last second (Docker's request may still be on its way).
    """
    channels = list(server.active_channels.values())
    excess = len(channels) - (limit - reserve)
    if excess <= 0:
        return 0
    now = time.time()
    idle = [
        ch
        for ch in channels
        if not ch.requests and not ch.will_close and now - ch.creation_time >= IDLE_SECONDS
    ]
    idle.sort(key=lambda ch: ch.last_activity)
    for channel in idle[:excess]:
        channel.will_close = True  # closed by the loop's next write pass, as waitress's own timeout does
    if idle:
        log.warning(
            "closing %d idle connection(s) to keep connections free for Docker (%d open)",
            min(excess, len(idle)),
            len(channels),
        )
    return min(excess, len(idle))


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
    make_dirs(directory, 0o755)
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
    server = create_server(
        app,
        map=sock_map,
        sockets=[listen.sock],
        threads=threads,
        connection_limit=CONNECTION_LIMIT,
        channel_timeout=CHANNEL_TIMEOUT,
        max_request_body_size=MAX_BODY_BYTES + 1,  # waitress refuses a body of this size or more
        max_request_header_size=MAX_HEADER_BYTES,
    )
    servers = [s for s in list(sock_map.values()) if isinstance(s, BaseWSGIServer)]
    for each in servers:
        each.channel_class = _PluginChannel
    received: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not received:
            wasyncore.loop(timeout=POLL_SECONDS, map=sock_map, use_poll=True, count=1)
            for each in servers:
                free_connections(each)
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

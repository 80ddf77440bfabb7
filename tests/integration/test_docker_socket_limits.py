"""The plugin's socket under abuse: idle connections and oversized bodies, over real sockets.

Every answer is awaited with a socket timeout, so a plugin that stops answering fails
the test instead of hanging it; nothing here measures speed.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from docker_plugin.app import MAX_BODY_BYTES
from tests.dockerd import PluginProcess
from tests.integration.test_docker_plugin import ok

ANSWER_TIMEOUT = 30.0  # far below waitress's old 300 s channel timeout, far above any real answer


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[PluginProcess]:
    # These calls never reach LINSTOR: a controller nobody answers on is enough.
    proc = PluginProcess(tmp_path / "p", "http://127.0.0.1:9", "node-a", extra_args=("--release-delay", "0"))
    proc.start()
    yield proc
    proc.stop()


def _connect(plugin: PluginProcess) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(ANSWER_TIMEOUT)
    sock.connect(str(plugin.socket_path))
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict[str, object]]:
    """Read one response until the server closes the connection; (status, JSON body)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break  # closed with our unread bytes pending: what came before is the answer
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    return status, json.loads(body)


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    """The server may refuse and close before the rest is sent: that is the point."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


def test_idle_connections_leave_room_for_docker(plugin: PluginProcess) -> None:
    idle = []
    try:
        for i in range(260):  # more than waitress's limit: idle ones must give way
            sock = _connect(plugin)
            if i % 5 == 0:  # some send half a request and stop
                sock.sendall(b"POST /VolumeDriver.List HTTP/1.1\r\nHost: x\r\n")
            idle.append(sock)
        client = plugin.client(timeout=ANSWER_TIMEOUT)
        assert ok(client.call("VolumeDriver.Capabilities", {}))["Capabilities"] == {"Scope": "global"}
        # a second call on a fresh connection, as Docker makes them, is answered as well
        assert ok(client.call("VolumeDriver.Path", {"Name": "v"}))["Mountpoint"] == ""
    finally:
        for sock in idle:
            sock.close()
    assert "closing" in plugin.log_tail(20000) and "idle connection" in plugin.log_tail(20000)


def test_a_huge_content_length_is_refused_without_reading_the_body(plugin: PluginProcess) -> None:
    sock = _connect(plugin)
    try:
        sock.sendall(
            b"POST /VolumeDriver.Create HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n"
            b'{"Name": "big", "Opts": {"pad": "'
        )  # and not one byte more: the answer must come without the rest of the gigabyte
        status, body = _answer(sock)
    finally:
        sock.close()
    assert status == 413
    assert f"larger than {MAX_BODY_BYTES // 1024} KiB" in str(body["Err"]) and "not read" in str(body["Err"])
    assert ok(plugin.client(timeout=ANSWER_TIMEOUT).call("VolumeDriver.Capabilities", {}))


def test_a_chunked_body_over_the_bound_is_refused(plugin: PluginProcess) -> None:
    sock = _connect(plugin)
    try:
        sock.sendall(b"POST /VolumeDriver.Create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 8192
        for _ in range(MAX_BODY_BYTES // len(chunk) + 1):  # just over the bound, then wait
            _send_quietly(sock, b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status, body = _answer(sock)
    finally:
        sock.close()
    assert status == 413 and "not read" in str(body["Err"])


def test_bodies_within_the_bound_are_read(plugin: PluginProcess) -> None:
    client = plugin.client(timeout=ANSWER_TIMEOUT)
    padded = json.dumps({"Pad": "x" * (MAX_BODY_BYTES - 100)}).encode()
    assert len(padded) <= MAX_BODY_BYTES
    status, _, raw = client.raw("/VolumeDriver.Capabilities", padded)
    assert status == 200 and json.loads(raw)["Capabilities"] == {"Scope": "global"}
    status, _, raw = client.raw("/VolumeDriver.Capabilities", b" " * (MAX_BODY_BYTES + 1))
    assert status == 413 and "not read" in json.loads(raw)["Err"]


def test_the_client_reads_the_refusal_of_a_body_the_plugin_stopped_reading(plugin: PluginProcess) -> None:
    # Far more than the socket buffers hold: the plugin answers and closes while the client
    # is still sending, and the client reads that answer as Docker's does.
    status, _, raw = plugin.client(timeout=ANSWER_TIMEOUT).raw(
        "/VolumeDriver.Create", b'{"Name": "big", "Opts": {"pad": "' + b"x" * (16 * 1024 * 1024) + b'"}}'
    )
    assert status == 413 and "not read" in json.loads(raw)["Err"]

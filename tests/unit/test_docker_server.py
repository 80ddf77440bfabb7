"""The plugin's socket: permissions, stale files, refusal to steal a live socket, systemd hand-over."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from docker_plugin.app import decode_body
from docker_plugin.driver import rfc3339, validate_name
from docker_plugin.errors import RequestError
from docker_plugin.server import SocketInUse, bind_unix_socket, systemd_socket
from plugin import errors


def _short_dir(tmp_path: Path) -> Path:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp paths can be long.
    return tmp_path if len(str(tmp_path)) < 80 else Path(os.path.realpath("/tmp"))


def test_socket_is_bound_with_mode_0660(tmp_path: Path) -> None:
    path = str(_short_dir(tmp_path) / f"p{os.getpid()}a.sock")
    sock = bind_unix_socket(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == 0o660
        if os.geteuid() == 0:
            assert os.stat(path).st_uid == 0 and os.stat(path).st_gid == 0
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)
        client.close()
    finally:
        sock.close()
        os.unlink(path)


def test_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = str(_short_dir(tmp_path) / f"p{os.getpid()}b.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # file remains, nobody listens
    sock = bind_unix_socket(path)
    sock.close()
    os.unlink(path)


def test_live_socket_is_not_stolen(tmp_path: Path) -> None:
    path = str(_short_dir(tmp_path) / f"p{os.getpid()}c.sock")
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen(1)
    try:
        with pytest.raises(SocketInUse, match="already serving"):
            bind_unix_socket(path)
        assert os.path.exists(path)
    finally:
        live.close()
        os.unlink(path)


def test_regular_file_at_socket_path_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not-a-socket"
    path.write_text("data")
    with pytest.raises(SocketInUse, match="not a socket"):
        bind_unix_socket(str(path))
    assert path.read_text() == "data"


def test_systemd_socket_only_for_this_pid() -> None:
    assert systemd_socket({}) is None
    assert systemd_socket({"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "1"}) is None
    assert systemd_socket({"LISTEN_PID": "x", "LISTEN_FDS": "1"}) is None
    assert systemd_socket({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "0"}) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", {}),
        (b"\n", {}),
        (b"null\n", {}),
        (b'{"Name": "v1", "Opts": null}\n', {"Name": "v1", "Opts": None}),
    ],
)
def test_bodies_decode_whatever_docker_sends(raw: bytes, expected: dict[str, object]) -> None:
    assert decode_body(raw) == expected


@pytest.mark.parametrize("raw", [b"{broken", b"[1, 2]", b'"text"'])
def test_bad_bodies_are_request_errors(raw: bytes) -> None:
    with pytest.raises(RequestError):
        decode_body(raw)


def test_volume_names_any_text_but_not_empty() -> None:
    anon = "3f" * 32
    assert validate_name(anon) == anon
    assert validate_name("my.volume-1") == "my.volume-1"
    for bad in ("", None, 5, "x" * 2000, "a\x00b"):
        with pytest.raises(errors.InvalidArgument):
            validate_name(bad)


def test_created_at_is_rfc3339_with_zone() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    assert rfc3339(datetime(2024, 5, 1, 12, 30, 5, 123, tzinfo=UTC)) == "2024-05-01T12:30:05Z"
    assert (
        rfc3339(datetime(2024, 5, 1, 14, 30, 5, tzinfo=timezone(timedelta(hours=2))))
        == "2024-05-01T12:30:05Z"
    )
    assert rfc3339(datetime(2024, 5, 1, 12, 30, 5)) == "2024-05-01T12:30:05Z"
    assert rfc3339(datetime(999, 1, 2, 3, 4, 5, 999999, tzinfo=UTC)) == "0999-01-02T03:04:05Z"
    assert rfc3339(None) is None
    start = datetime(2000, 1, 1, tzinfo=UTC)
    for step in range(0, 40 * 365 * 86400, 7_777_777):  # the same text as the strftime it replaces
        when = start + timedelta(seconds=step, microseconds=step % 1_000_000)
        assert rfc3339(when) == when.strftime("%Y-%m-%dT%H:%M:%SZ")

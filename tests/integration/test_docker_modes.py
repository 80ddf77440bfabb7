"""What the plugin creates on the host has fixed modes, whatever the umask it starts with."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dockerd import PluginProcess
from tests.integration.test_docker_plugin import LOCAL, _unmount_below, ok


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def base() -> Iterator[Path]:
    # short: the socket path must fit AF_UNIX's 107 bytes
    path = Path(tempfile.mkdtemp(prefix="dvm", dir="/tmp"))
    yield path
    _unmount_below(path)
    shutil.rmtree(path, ignore_errors=True)


def _plugin(emulator, base: Path) -> PluginProcess:  # type: ignore[no-untyped-def]
    proc = PluginProcess(base / "p", emulator.url, LOCAL, extra_args=("--release-delay", "0"))
    proc.socket_path = base / "run" / "plugins" / "linstor.sock"
    proc.bind_path = str(proc.socket_path)
    proc.mount_root = base / "lib" / "vols" / "linstor"
    proc.state_file = base / "state" / "sub" / "mounts.json"
    return proc


def _start_with_umask_0(proc: PluginProcess) -> None:
    proc.start(preexec_fn=lambda: os.umask(0))


def test_socket_mount_root_and_state_ignore_a_umask_of_0(emulator, base: Path) -> None:  # type: ignore[no-untyped-def]
    proc = _plugin(emulator, base)
    _start_with_umask_0(proc)
    try:
        assert _mode(proc.socket_path) == 0o660
        assert _mode(base / "run") == _mode(base / "run" / "plugins") == 0o755
        assert _mode(proc.mount_root) == 0o700
        assert _mode(base / "lib") == _mode(base / "lib" / "vols") == 0o755
        assert _mode(base / "state") == 0o755 and _mode(base / "state" / "sub") == 0o700
        assert _mode(proc.state_file) == 0o600

        c = proc.client()
        ok(c.call("VolumeDriver.Create", {"Name": "m", "Opts": {"size": "64M", "nodes": LOCAL}}))
        data = Path(ok(c.call("VolumeDriver.Mount", {"Name": "m", "ID": "A"}))["Mountpoint"])
        assert _mode(data) == 0o755
        assert _mode(proc.state_file) == 0o600
        ok(c.call("VolumeDriver.Unmount", {"Name": "m", "ID": "A"}))
    finally:
        assert proc.stop() == 0


def test_an_existing_mount_root_others_may_write_is_tightened(emulator, base: Path) -> None:  # type: ignore[no-untyped-def]
    proc = _plugin(emulator, base)
    proc.mount_root.mkdir(parents=True)
    proc.mount_root.chmod(0o777)
    _start_with_umask_0(proc)
    assert proc.stop() == 0
    assert _mode(proc.mount_root) == 0o700

    proc.mount_root.chmod(0o710)  # what dockerd gives a managed plugin's propagatedMount
    _start_with_umask_0(proc)
    assert proc.stop() == 0
    assert _mode(proc.mount_root) == 0o710

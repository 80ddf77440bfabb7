"""Mount counts that outlive their containers, and detaches that outlive a controller outage.

Real plugin processes on their unix sockets, the emulator with real loop devices, real
mounts. A "container" here is what the kernel sees of one: a process in its own mount
namespace holding a bind of ``<staging>/data``, made with ``unshare --mount``. Docker's
re-sent Mount (its client retries after a connection error, so a Mount whose answer a
crash lost arrives twice) is the same Mount sent twice with one ID.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testkit.waiting import wait_until
from tests.dockerd import PluginProcess
from tests.integration.test_docker_plugin import LOCAL, _mounted, _unmount_below, _wait_detached, failed, ok
from tests.processes import terminate


class FakeContainer:
    """A process in a private mount namespace binding a volume's ``data`` directory, as runc does."""

    def __init__(self, data_path: str, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        script = f"mount --bind '{data_path}' '{target}' && echo ready && exec sleep 600"
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", self.proc.stderr.read() if self.proc.stderr else line

    def exit(self) -> None:
        """The container ends: its mount namespace, and the bind in it, go away."""
        terminate(self.proc, 10)


@pytest.fixture
def containers(tmp_path: Path) -> Iterator[Callable[[str], FakeContainer]]:
    started: list[FakeContainer] = []

    def start(data_path: str) -> FakeContainer:
        container = FakeContainer(data_path, tmp_path / f"ctr{len(started)}")
        started.append(container)
        return container

    yield start
    for container in started:
        container.exit()


@pytest.fixture
def start_plugin(emulator, tmp_path: Path) -> Iterator[Callable[..., PluginProcess]]:  # type: ignore[no-untyped-def]
    started: list[PluginProcess] = []

    def start(*extra: str, name: str = "p") -> PluginProcess:
        args = ("--release-delay", "0", *extra)
        proc = PluginProcess(tmp_path / name, emulator.url, LOCAL, extra_args=args)
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
        _unmount_below(proc.mount_root)


def _state(plugin: PluginProcess) -> dict[str, dict]:  # type: ignore[type-arg]
    return {v["name"]: v for v in json.loads(plugin.state_file.read_text())["volumes"]}


def _released_lines(plugin: PluginProcess) -> list[dict]:  # type: ignore[type-arg]
    lines = [json.loads(x) for x in plugin.log_tail(200_000).splitlines() if x.startswith("{")]
    return [e for e in lines if e.get("event") == "stale_mounts_released"]


def _wait(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    wait_until(condition, timeout=timeout, interval=0.1, what="the plugin's state to empty")


def _mount_twice(plugin: PluginProcess, name: str, nodes: str = LOCAL) -> str:
    """Create and Mount one ID twice, as after a Mount whose answer a crash lost."""
    c = plugin.client()
    ok(c.call("VolumeDriver.Create", {"Name": name, "Opts": {"size": "64M", "nodes": nodes}}))
    path = ok(c.call("VolumeDriver.Mount", {"Name": name, "ID": "X"}))["Mountpoint"]
    assert ok(c.call("VolumeDriver.Mount", {"Name": name, "ID": "X"}))["Mountpoint"] == path
    assert _state(plugin)[name]["holders"] == {"X": 2}
    return str(path)


def test_a_resent_mount_is_released_by_unmount_once_the_container_is_gone(start_plugin, containers) -> None:  # type: ignore[no-untyped-def]
    plugin = start_plugin("--stale-grace", "0")
    c = plugin.client()
    path = _mount_twice(plugin, "twice")
    container = containers(path)

    ok(c.call("VolumeDriver.Unmount", {"Name": "twice", "ID": "X"}))
    assert _mounted(Path(path).parent)  # the container still binds it: the count is real
    assert "in use on this node" in failed(c.call("VolumeDriver.Remove", {"Name": "twice"}))
    assert _released_lines(plugin) == []

    ok(c.call("VolumeDriver.Mount", {"Name": "twice", "ID": "Y"}))
    container.exit()
    ok(c.call("VolumeDriver.Unmount", {"Name": "twice", "ID": "Y"}))  # X's extra count is stale now
    assert not _mounted(Path(path).parent)
    assert _state(plugin) == {}
    (line,) = _released_lines(plugin)
    assert line["volume"] == "twice" and line["ids"] == ["X"] and line["counts"] == {"X": 1}
    assert line["trigger"] == "Unmount"
    ok(c.call("VolumeDriver.Remove", {"Name": "twice"}))


def test_remove_releases_stale_counts_but_not_a_volume_in_use(start_plugin, containers) -> None:  # type: ignore[no-untyped-def]
    plugin = start_plugin()  # the default grace: Unmount leaves young counts alone, Remove does not
    c = plugin.client()
    path = _mount_twice(plugin, "held")
    ok(c.call("VolumeDriver.Unmount", {"Name": "held", "ID": "X"}))
    assert _mounted(Path(path).parent) and _state(plugin)["held"]["holders"] == {"X": 1}

    # a process with a file open on the volume keeps it, even with no bind anywhere
    busy = subprocess.Popen(["sleep", "600"], cwd=path)
    try:
        assert "in use on this node" in failed(c.call("VolumeDriver.Remove", {"Name": "held"}))
    finally:
        terminate(busy, 10)
    # and so does a container
    container = containers(path)
    assert "in use on this node" in failed(c.call("VolumeDriver.Remove", {"Name": "held"}))
    assert _mounted(Path(path).parent)
    container.exit()

    ok(c.call("VolumeDriver.Remove", {"Name": "held"}))  # Docker removes only volumes no container uses
    assert not _mounted(Path(path).parent)
    assert "held" not in [v["Name"] for v in ok(c.call("VolumeDriver.List", {}))["Volumes"]]
    (line,) = _released_lines(plugin)
    assert line["volume"] == "held" and line["ids"] == ["X"] and line["trigger"] == "Remove"


def test_stale_counts_are_released_at_start(start_plugin) -> None:  # type: ignore[no-untyped-def]
    plugin = start_plugin("--stale-grace", "0", "--check-interval", "0")
    path = _mount_twice(plugin, "crashed", nodes="node-b")  # attached diskless for the mount
    plugin.kill()
    plugin.start()
    _wait(lambda: _state(plugin) == {})  # released and detached, then forgotten
    assert not _mounted(Path(path).parent)
    _wait_detached(plugin.client(), "crashed")
    (line,) = _released_lines(plugin)
    assert line["volume"] == "crashed" and line["counts"] == {"X": 2} and line["trigger"] == "start"


def test_the_background_check_releases_counts_of_vanished_containers(start_plugin, containers) -> None:  # type: ignore[no-untyped-def]
    plugin = start_plugin("--stale-grace", "0", "--check-interval", "0.3")
    c = plugin.client()
    ok(c.call("VolumeDriver.Create", {"Name": "lost", "Opts": {"size": "64M", "nodes": LOCAL}}))
    path = ok(c.call("VolumeDriver.Mount", {"Name": "lost", "ID": "A"}))["Mountpoint"]
    container = containers(path)
    ok(c.call("VolumeDriver.Mount", {"Name": "lost", "ID": "B"}))
    ok(c.call("VolumeDriver.Unmount", {"Name": "lost", "ID": "B"}))
    assert _mounted(Path(path).parent)  # A's container is alive
    container.exit()  # and its Unmount never comes (dockerd restarted meanwhile, say)
    _wait(lambda: _state(plugin) == {})
    assert not _mounted(Path(path).parent)
    (line,) = _released_lines(plugin)
    assert line["volume"] == "lost" and line["ids"] == ["A"]


def test_unmount_during_an_outage_detaches_once_the_controller_is_back(start_plugin, emulator) -> None:  # type: ignore[no-untyped-def]
    plugin = start_plugin("--check-interval", "0.3")
    c = plugin.client()
    ok(c.call("VolumeDriver.Create", {"Name": "remote", "Opts": {"size": "64M", "nodes": "node-b"}}))
    path = ok(c.call("VolumeDriver.Mount", {"Name": "remote", "ID": "A"}))["Mountpoint"]
    emulator.stop()
    try:
        ok(c.call("VolumeDriver.Unmount", {"Name": "remote", "ID": "A"}))
        assert not _mounted(Path(path).parent)
        record = _state(plugin)["remote"]
        assert record["detach_pending"] is True and record["holders"] == {}
        assert ok(c.call("VolumeDriver.Path", {"Name": "remote"}))["Mountpoint"] == ""
    finally:
        emulator.start()
    _wait_detached(c, "remote")
    _wait(lambda: _state(plugin) == {})


def test_a_pending_detach_survives_a_crash(start_plugin, emulator) -> None:  # type: ignore[no-untyped-def]
    plugin = start_plugin("--check-interval", "0")
    c = plugin.client()
    ok(c.call("VolumeDriver.Create", {"Name": "remote2", "Opts": {"size": "64M", "nodes": "node-b"}}))
    ok(c.call("VolumeDriver.Mount", {"Name": "remote2", "ID": "A"}))
    emulator.stop()
    try:
        ok(c.call("VolumeDriver.Unmount", {"Name": "remote2", "ID": "A"}))
        plugin.kill()
    finally:
        emulator.start()
    plugin.start()
    c = plugin.client()
    _wait_detached(c, "remote2")
    _wait(lambda: _state(plugin) == {})
    # and the volume mounts again normally
    ok(c.call("VolumeDriver.Mount", {"Name": "remote2", "ID": "B"}))
    ok(c.call("VolumeDriver.Unmount", {"Name": "remote2", "ID": "B"}))
    _wait_detached(c, "remote2")


def test_a_mount_during_a_pending_detach_uses_the_volume_again(start_plugin, emulator) -> None:  # type: ignore[no-untyped-def]
    plugin = start_plugin("--check-interval", "0")
    c = plugin.client()
    ok(c.call("VolumeDriver.Create", {"Name": "again", "Opts": {"size": "64M", "nodes": "node-b"}}))
    path = ok(c.call("VolumeDriver.Mount", {"Name": "again", "ID": "A"}))["Mountpoint"]
    Path(path, "f").write_text("kept")
    emulator.stop()
    try:
        ok(c.call("VolumeDriver.Unmount", {"Name": "again", "ID": "A"}))
    finally:
        emulator.start()
    assert _state(plugin)["again"]["detach_pending"] is True
    assert ok(c.call("VolumeDriver.Mount", {"Name": "again", "ID": "B"}))["Mountpoint"] == path
    assert Path(path, "f").read_text() == "kept"
    record = _state(plugin)["again"]
    assert record["detach_pending"] is False and record["attached"] is True
    ok(c.call("VolumeDriver.Unmount", {"Name": "again", "ID": "B"}))
    _wait_detached(c, "again")  # the attach is still undone at the end
    assert os.listdir(plugin.mount_root) == []

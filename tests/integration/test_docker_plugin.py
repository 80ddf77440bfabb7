"""The Docker volume plugin over its real unix socket, backed by the LINSTOR emulator.

Every request goes through ``docker_plugin.client.PluginClient``, which speaks like
Docker (POST, JSON plus newline, no Content-Type), to a ``python -m docker_plugin``
process; volumes are real loop devices, formatted and mounted for real.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
import requests

from plugin.config import Config
from plugin.linstor.client import LinstorClient
from plugin.params.csi import parse_csi_parameters
from plugin.volumes.service import VolumeService
from testkit.emulator import EmulatorProcess, reset_and_stop
from testkit.waiting import wait_until
from tests.conftest import free_port
from tests.dockerd import PluginProcess
from tests.processes import terminate

LOCAL = socket.gethostname().split(".")[0] or "localhost"


def _mounted(path: str | Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def _mount_id(path: str | Path) -> str | None:
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4] == target:
                return fields[0]
    return None


@contextlib.contextmanager
def _in_use(path: str) -> Iterator[None]:
    """A process working in the volume, as a container's would: a bare Mount count is not a use."""
    user = subprocess.Popen(["sleep", "600"], cwd=path)
    try:
        yield
    finally:
        terminate(user, 10)


def _wait_unmounted(path: str | Path, timeout: float = 15.0) -> None:
    wait_until(lambda: not _mounted(path), timeout=timeout, interval=0.1, what=f"{path} unmounted")


def _wait_detached(c, name: str, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    """Release runs in the background: wait until this node's diskless resource is gone."""
    wait_until(
        lambda: (
            LOCAL not in ok(c.call("VolumeDriver.Get", {"Name": name}))["Volume"]["Status"]["diskless_nodes"]
        ),
        timeout=timeout,
        interval=0.1,
        what=f"{name} detached from {LOCAL}",
    )


def _unmount_below(root: Path) -> None:
    """Clean-up after a failed test: release mounts this test's plugin left under its root."""
    prefix = os.path.realpath(root) + "/"
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f if line.split()[4].startswith(prefix)]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


@contextlib.contextmanager
def plugin_releasing_at_once(emulator_url: str, base: Path) -> Iterator[PluginProcess]:
    """The plugin on the host, with its release delay off; stopped and its mounts undone after.

    Releasing at once lets every test see the effect of its last Unmount right away; the
    default delay has its own test.
    """
    proc = PluginProcess(base, emulator_url, LOCAL, extra_args=("--release-delay", "0"))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        _unmount_below(proc.mount_root)


@pytest.fixture
def plugin(emulator, tmp_path: Path) -> Iterator[PluginProcess]:  # type: ignore[no-untyped-def]
    with plugin_releasing_at_once(emulator.url, tmp_path / "p") as proc:
        yield proc


def ok(answer: dict) -> dict:  # type: ignore[type-arg]
    assert answer["_status"] == 200, answer
    assert answer["Err"] == "", answer
    return answer


def failed(answer: dict) -> str:  # type: ignore[type-arg]
    assert answer["_status"] == 200, answer
    assert answer["Err"], answer
    assert "Traceback" not in answer["Err"]
    return str(answer["Err"])


def names(client) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(v["Name"] for v in ok(client.call("VolumeDriver.List", {}))["Volumes"])


def test_handshake_capabilities_and_health(plugin: PluginProcess) -> None:
    c = plugin.client()
    assert ok(c.call("Plugin.Activate"))["Implements"] == ["VolumeDriver"]  # empty body, as Docker sends
    assert ok(c.call("VolumeDriver.Capabilities", {}))["Capabilities"] == {"Scope": "global"}
    health = c.health()
    assert health["_status"] == 200 and health["status"] == "ok"
    assert health["linstor_reachable"] is True
    assert health["node"] == LOCAL


def test_socket_mode_and_owner(plugin: PluginProcess) -> None:
    st = os.stat(plugin.socket_path)
    assert st.st_mode & 0o777 == 0o660
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_create_get_list_with_any_name(plugin: PluginProcess) -> None:
    c = plugin.client()
    anonymous = "9f" * 32  # Docker's anonymous volumes: 64 hex characters, leading digit
    assert "Err" in failed_get(c, "web.data")  # Get before Create reports not-found
    ok(c.call("VolumeDriver.Create", {"Name": "web.data", "Opts": {"size": "64M"}}))
    ok(c.call("VolumeDriver.Create", {"Name": anonymous, "Opts": None}))  # implicit: defaults apply
    ok(c.call("VolumeDriver.Create", {"Name": "Web.Data", "Opts": {}}))  # another volume for Docker
    assert set(names(c)) >= {"web.data", anonymous, "Web.Data"}

    got = ok(c.call("VolumeDriver.Get", {"Name": "web.data"}))["Volume"]
    assert got["Name"] == "web.data"
    assert "Mountpoint" not in got  # not mounted on this node
    created = datetime.fromisoformat(got["CreatedAt"].replace("Z", "+00:00"))
    assert created.tzinfo is not None
    status = got["Status"]
    assert status["size_bytes"] >= 64 * 1024 * 1024
    assert status["fs"] == "ext4"
    assert status["diskful_nodes"], status
    assert status["mounted_on_this_node"] is False

    anon = ok(c.call("VolumeDriver.Get", {"Name": anonymous}))["Volume"]
    assert anon["Name"] == anonymous
    assert anon["Status"]["size_bytes"] >= 100 * 1024 * 1024  # the default size applied to Opts: null
    assert len(anon["Status"]["diskful_nodes"]) == 2  # default replicas


def failed_get(c, name: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    answer = c.call("VolumeDriver.Get", {"Name": name})
    assert "does not exist" in failed(answer)
    return answer


def test_create_is_idempotent_and_conflicts_are_explained(plugin: PluginProcess) -> None:
    c = plugin.client()
    body = {"Name": "same", "Opts": {"size": "64M", "replicas": "1"}}
    ok(c.call("VolumeDriver.Create", body))
    ok(c.call("VolumeDriver.Create", body))  # Docker may retry
    err = failed(c.call("VolumeDriver.Create", {"Name": "same", "Opts": {"size": "128M", "replicas": "1"}}))
    assert "same" in err and "remove it first or use another name" in err
    assert names(c).count("same") == 1


def test_create_converges_when_the_read_after_spawn_fails(plugin: PluginProcess, emulator) -> None:  # type: ignore[no-untyped-def]
    """LINSTOR made the volume, the read that follows failed: Create looks again and succeeds;
    when the read keeps failing, the sentence says the volume exists, and the retry succeeds."""
    c = plugin.client()
    body = {"Name": "readback", "Opts": {"size": "16M"}}
    rule = {"method": "GET", "path_regex": "^/v1/view/resources", "status": 500, "ret_code": 999, "count": 1}
    assert emulator.control("errors", rule).ok
    ok(c.call("VolumeDriver.Create", body))
    assert requests.get(f"{emulator.url}/_emu/faults", timeout=10).json()["errors"] == []  # it was met
    ok(c.call("VolumeDriver.Create", body))  # the identical retry
    assert names(c).count("readback") == 1

    again = {"Name": "readback2", "Opts": {"size": "16M"}}
    assert emulator.control("errors", {**rule, "count": -1}).ok
    try:
        err = failed(c.call("VolumeDriver.Create", again))
    finally:
        requests.delete(f"{emulator.url}/_emu/errors", timeout=10).raise_for_status()
    assert "readback2" in err and "was created" in err and "retry" in err, err
    ok(c.call("VolumeDriver.Create", again))
    assert names(c).count("readback2") == 1
    ok(c.call("VolumeDriver.Remove", {"Name": "readback"}))
    ok(c.call("VolumeDriver.Remove", {"Name": "readback2"}))


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        ({"sise": "1G"}, 'unknown option "sise"'),
        ({"size": "lots"}, "size"),
        ({"size": "1M", "fs": "xfs"}, "needs a volume of at least 300MiB"),
        ({"fs": "ntfs"}, "fs"),
        ({"replicas": "zero"}, "replicas"),
    ],
)
def test_bad_options_are_refused_and_change_nothing(plugin: PluginProcess, opts: dict, expected: str) -> None:  # type: ignore[type-arg]
    c = plugin.client()
    before = names(c)
    err = failed(c.call("VolumeDriver.Create", {"Name": "bad", "Opts": opts}))
    assert expected in err
    assert names(c) == before


def test_malformed_requests_get_clear_errors(plugin: PluginProcess) -> None:
    c = plugin.client()
    status, _, body = c.raw("/VolumeDriver.Create", b"{not json")
    assert status == 200 and "not valid JSON" in json.loads(body)["Err"]
    assert "Name" in failed(c.call("VolumeDriver.Create", {"Opts": {}}))
    assert "Name" in failed(c.call("VolumeDriver.Mount", {"Name": "", "ID": "x"}))
    assert "ID must be a string" in failed(c.call("VolumeDriver.Mount", {"Name": "v", "ID": 5}))
    assert "Opts must be an object" in failed(c.call("VolumeDriver.Create", {"Name": "v", "Opts": "size=1G"}))
    # with an explicit JSON content type too
    status, _, body = c.raw(
        "/VolumeDriver.Get", b'{"Name": "nope"}', headers={"Content-Type": "application/json"}
    )
    assert "does not exist" in json.loads(body)["Err"]
    status, _, body = c.raw("/VolumeDriver.Snapshot", b"{}")
    assert status == 404 and "unknown call" in json.loads(body)["Err"]
    assert names(c) == []


def test_mount_counts_per_id_and_last_unmount_releases(plugin: PluginProcess) -> None:
    c = plugin.client()
    ok(c.call("VolumeDriver.Create", {"Name": "counted", "Opts": {"size": "64M", "nodes": LOCAL}}))
    assert ok(c.call("VolumeDriver.Path", {"Name": "counted"}))["Mountpoint"] == ""

    path = ok(c.call("VolumeDriver.Mount", {"Name": "counted", "ID": "A"}))["Mountpoint"]
    staging = Path(path).parent
    assert path.endswith("/data") and staging.parent == plugin.mount_root
    assert _mounted(staging) and Path(path).is_dir()
    assert "lost+found" in os.listdir(staging)
    Path(path, "hello.txt").write_text("kept")

    assert ok(c.call("VolumeDriver.Mount", {"Name": "counted", "ID": "A"}))["Mountpoint"] == path  # docker cp
    assert ok(c.call("VolumeDriver.Mount", {"Name": "counted", "ID": "B"}))["Mountpoint"] == path
    assert ok(c.call("VolumeDriver.Path", {"Name": "counted"}))["Mountpoint"] == path
    got = ok(c.call("VolumeDriver.Get", {"Name": "counted"}))["Volume"]
    assert got["Mountpoint"] == path and got["Status"]["mounts_on_this_node"] == 3
    listed = {v["Name"]: v for v in ok(c.call("VolumeDriver.List", {}))["Volumes"]}
    assert listed["counted"]["Mountpoint"] == path

    for mount_id in ("A", "B"):
        ok(c.call("VolumeDriver.Unmount", {"Name": "counted", "ID": mount_id}))
        assert _mounted(staging)
    ok(c.call("VolumeDriver.Unmount", {"Name": "counted", "ID": "A"}))
    assert not _mounted(staging) and not staging.exists()
    assert ok(c.call("VolumeDriver.Path", {"Name": "counted"}))["Mountpoint"] == ""
    ok(c.call("VolumeDriver.Unmount", {"Name": "counted", "ID": "A"}))  # repeated: still fine
    ok(c.call("VolumeDriver.Unmount", {"Name": "never-created", "ID": "Z"}))

    # the data is still there on the next mount, and nothing was formatted
    path = ok(c.call("VolumeDriver.Mount", {"Name": "counted", "ID": "C"}))["Mountpoint"]
    assert Path(path, "hello.txt").read_text() == "kept"
    ok(c.call("VolumeDriver.Unmount", {"Name": "counted", "ID": "C"}))


def test_btrfs_volume_is_formatted_by_its_first_mount_and_kept_after(plugin: PluginProcess) -> None:
    """LINSTOR refuses FileSystem/Type=btrfs, so the node makes the filesystem on the blank device."""
    c = plugin.client()
    ok(
        c.call(
            "VolumeDriver.Create", {"Name": "butter", "Opts": {"size": "120M", "fs": "btrfs", "nodes": LOCAL}}
        )
    )
    assert ok(c.call("VolumeDriver.Get", {"Name": "butter"}))["Volume"]["Status"]["fs"] == "btrfs"
    path = ok(c.call("VolumeDriver.Mount", {"Name": "butter", "ID": "A"}))["Mountpoint"]
    staging = os.path.realpath(Path(path).parent)
    with open("/proc/self/mountinfo") as f:
        assert [line.split(" - ")[1].split()[0] for line in f if line.split()[4] == staging] == ["btrfs"]
    Path(path, "f").write_text("kept")
    ok(c.call("VolumeDriver.Unmount", {"Name": "butter", "ID": "A"}))
    path = ok(c.call("VolumeDriver.Mount", {"Name": "butter", "ID": "B"}))["Mountpoint"]
    assert Path(path, "f").read_text() == "kept"  # not formatted again
    ok(c.call("VolumeDriver.Unmount", {"Name": "butter", "ID": "B"}))


def test_mount_of_missing_volume_fails_cleanly(plugin: PluginProcess) -> None:
    c = plugin.client()
    answer = c.call("VolumeDriver.Mount", {"Name": "ghost", "ID": "A"})
    assert "ghost does not exist" in failed(answer)
    assert answer["Mountpoint"] == ""
    assert not (plugin.mount_root / "ghost").exists()


def test_remote_replica_is_attached_diskless_and_detached_after(plugin: PluginProcess) -> None:
    c = plugin.client()
    ok(c.call("VolumeDriver.Create", {"Name": "remote", "Opts": {"size": "64M", "nodes": "node-b"}}))
    status = ok(c.call("VolumeDriver.Get", {"Name": "remote"}))["Volume"]["Status"]
    assert status["diskful_nodes"] == ["node-b"] and LOCAL not in status["diskless_nodes"]

    path = ok(c.call("VolumeDriver.Mount", {"Name": "remote", "ID": "A"}))["Mountpoint"]
    Path(path, "f").write_text("x")
    status = ok(c.call("VolumeDriver.Get", {"Name": "remote"}))["Volume"]["Status"]
    assert LOCAL in status["diskless_nodes"]
    # in_use_on is LINSTOR's view: the satellite reports the open a moment after the mount.
    wait_until(
        lambda: (
            ok(c.call("VolumeDriver.Get", {"Name": "remote"}))["Volume"]["Status"]["in_use_on"] == [LOCAL]
        ),
        timeout=30,
        interval=0.1,
        what="the report of the open",
    )

    ok(c.call("VolumeDriver.Unmount", {"Name": "remote", "ID": "A"}))
    status = ok(c.call("VolumeDriver.Get", {"Name": "remote"}))["Volume"]["Status"]
    assert LOCAL not in status["diskless_nodes"] and status["diskful_nodes"] == ["node-b"]


def test_remove_refuses_while_mounted_and_missing_is_fine(plugin: PluginProcess) -> None:
    c = plugin.client()
    ok(c.call("VolumeDriver.Create", {"Name": "busy", "Opts": {"size": "64M", "nodes": LOCAL}}))
    path = ok(c.call("VolumeDriver.Mount", {"Name": "busy", "ID": "A"}))["Mountpoint"]
    with _in_use(path):
        err = failed(c.call("VolumeDriver.Remove", {"Name": "busy"}))
    assert f"in use on this node ({LOCAL})" in err and "stop the containers" in err
    assert "busy" in names(c)
    ok(c.call("VolumeDriver.Unmount", {"Name": "busy", "ID": "A"}))
    ok(c.call("VolumeDriver.Remove", {"Name": "busy"}))
    assert "busy" not in names(c)
    ok(c.call("VolumeDriver.Remove", {"Name": "busy"}))  # already gone: success
    failed_get(c, "busy")


def test_remove_refuses_a_volume_in_use_on_another_node(plugin: PluginProcess, emulator) -> None:  # type: ignore[no-untyped-def]
    c = plugin.client()
    ok(c.call("VolumeDriver.Create", {"Name": "elsewhere", "Opts": {"size": "64M", "nodes": "node-b"}}))
    resource = ok(c.call("VolumeDriver.Get", {"Name": "elsewhere"}))["Volume"]["Status"]["resource"]
    answer = emulator.control(f"resources/{resource}/node-b/in_use", {"in_use": True})
    assert answer.status_code == 200, answer.text
    err = failed(c.call("VolumeDriver.Remove", {"Name": "elsewhere"}))
    assert "volume elsewhere is in use on node-b" in err
    assert "elsewhere" in names(c)
    # one writer at a time: this node may not mount it either, and nothing is left attached
    answer = c.call("VolumeDriver.Mount", {"Name": "elsewhere", "ID": "A"})
    assert "in use on node-b" in failed(answer) and answer["Mountpoint"] == ""
    status = ok(c.call("VolumeDriver.Get", {"Name": "elsewhere"}))["Volume"]["Status"]
    assert LOCAL not in status["diskless_nodes"]


def test_restart_keeps_mount_counts(plugin: PluginProcess) -> None:
    c = plugin.client()
    ok(c.call("VolumeDriver.Create", {"Name": "durable", "Opts": {"size": "64M", "nodes": "node-b"}}))
    path = ok(c.call("VolumeDriver.Mount", {"Name": "durable", "ID": "A"}))["Mountpoint"]
    ok(c.call("VolumeDriver.Mount", {"Name": "durable", "ID": "B"}))
    staging = Path(path).parent

    plugin.kill()  # a crash: no clean-up at all
    assert _mounted(staging)
    plugin.start()
    c = plugin.client()
    assert ok(c.call("VolumeDriver.Path", {"Name": "durable"}))["Mountpoint"] == path
    ok(c.call("VolumeDriver.Unmount", {"Name": "durable", "ID": "A"}))
    assert _mounted(staging)  # B still holds it

    assert plugin.stop() == 0  # a clean stop keeps the mount too
    assert _mounted(staging)
    plugin.start()
    c = plugin.client()
    ok(c.call("VolumeDriver.Unmount", {"Name": "durable", "ID": "B"}))
    assert not _mounted(staging)
    status = ok(c.call("VolumeDriver.Get", {"Name": "durable"}))["Volume"]["Status"]
    assert LOCAL not in status["diskless_nodes"]  # the diskless attach was undone after the restart


def test_lost_state_file_adopts_the_mount(plugin: PluginProcess) -> None:
    c = plugin.client()
    ok(c.call("VolumeDriver.Create", {"Name": "orphan", "Opts": {"size": "64M", "nodes": LOCAL}}))
    path = ok(c.call("VolumeDriver.Mount", {"Name": "orphan", "ID": "A"}))["Mountpoint"]
    plugin.kill()
    plugin.state_file.unlink()
    plugin.start()
    c = plugin.client()
    assert ok(c.call("VolumeDriver.Path", {"Name": "orphan"}))["Mountpoint"] == path
    with _in_use(path):
        assert "in use on this node" in failed(c.call("VolumeDriver.Remove", {"Name": "orphan"}))
    ok(c.call("VolumeDriver.Unmount", {"Name": "orphan", "ID": "A"}))  # unknown ID releases the adopted one
    assert not _mounted(Path(path).parent)


def test_controller_outage_gives_actionable_errors(plugin: PluginProcess, emulator) -> None:  # type: ignore[no-untyped-def]
    c = plugin.client()
    ok(c.call("VolumeDriver.Create", {"Name": "local1", "Opts": {"size": "64M", "nodes": LOCAL}}))
    path = ok(c.call("VolumeDriver.Mount", {"Name": "local1", "ID": "A"}))["Mountpoint"]
    emulator.stop()
    try:
        # a volume mounted here is still answered by Get, so Docker keeps its metadata
        got = ok(c.call("VolumeDriver.Get", {"Name": "local1"}))["Volume"]
        assert got["Mountpoint"] == path and "LINSTOR controller" in got["Status"]["warning"]
        assert "LINSTOR controller" in failed(c.call("VolumeDriver.Get", {"Name": "other"}))
        err = failed(c.call("VolumeDriver.Create", {"Name": "new", "Opts": {}}))
        assert "LINSTOR controller" in err and "LS_CONTROLLERS" in err
        assert "LINSTOR controller" in failed(c.call("VolumeDriver.List", {}))
        # A container can still release its volume without the controller.
        ok(c.call("VolumeDriver.Unmount", {"Name": "local1", "ID": "A"}))
        assert not _mounted(Path(path).parent)
        assert c.health()["linstor_reachable"] is False
    finally:
        emulator.start()


def test_sigterm_stops_cleanly_and_removes_the_socket(plugin: PluginProcess) -> None:
    assert plugin.proc is not None
    plugin.proc.send_signal(signal.SIGTERM)
    assert plugin.proc.wait(timeout=20) == 0
    plugin.proc = None
    assert not plugin.socket_path.exists()
    assert '"stopped"' in plugin.log_tail()


def test_request_log_lines_are_structured(plugin: PluginProcess) -> None:
    c = plugin.client()
    failed(c.call("VolumeDriver.Get", {"Name": "logged"}))
    lines = [json.loads(line) for line in plugin.log_tail(20000).splitlines() if line.startswith("{")]
    entry = [e for e in lines if e.get("method") == "VolumeDriver.Get" and e.get("volume") == "logged"]
    assert entry and entry[-1]["result"] == "NotFound" and "duration_ms" in entry[-1]


def test_socket_activation_uses_the_inherited_socket(emulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc = PluginProcess(tmp_path / "sa", emulator.url, LOCAL)
    proc.base_dir.mkdir(parents=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(proc.socket_path))
    listener.listen(16)
    fd = listener.fileno()

    def as_fd3() -> None:
        os.dup2(fd, 3)
        os.set_inheritable(3, True)

    # LISTEN_PID must be the plugin's own pid: a shell sets it and execs the plugin. The
    # --socket path given is never bound: the inherited socket replaces it.
    proc.bind_path = str(tmp_path / "sa" / "never-bound.sock")
    cmd = shlex.join(proc.command())
    proc.command = lambda: ["sh", "-c", f"LISTEN_PID=$$ LISTEN_FDS=1 exec {cmd}"]  # type: ignore[method-assign]
    try:
        proc.start(preexec_fn=as_fd3, close_fds=False)
        assert not os.path.exists(proc.bind_path)
        assert "socket activation" in proc.log_tail()
        assert ok(proc.client().call("VolumeDriver.Capabilities", {}))["Capabilities"]["Scope"] == "global"
    finally:
        assert proc.stop() == 0
        listener.close()


def test_bad_configuration_is_reported_at_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "docker_plugin",
            "--socket",
            str(tmp_path / "x.sock"),
            "--controllers",
            "ftp://x",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("LS_")},
    )
    assert result.returncode == 2
    assert "bad configuration" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.sock").exists()


def test_concurrent_mounts_and_unmounts_of_one_volume(plugin: PluginProcess) -> None:
    c = plugin.client()
    ok(c.call("VolumeDriver.Create", {"Name": "crowd", "Opts": {"size": "64M", "nodes": LOCAL}}))
    ids = [f"id-{i}" for i in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        paths = list(pool.map(lambda i: ok(c.call("VolumeDriver.Mount", {"Name": "crowd", "ID": i})), ids))
    assert len({p["Mountpoint"] for p in paths}) == 1
    staging = Path(paths[0]["Mountpoint"]).parent
    got = ok(c.call("VolumeDriver.Get", {"Name": "crowd"}))["Volume"]
    assert got["Status"]["mounts_on_this_node"] == 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: ok(c.call("VolumeDriver.Unmount", {"Name": "crowd", "ID": i})), ids))
    assert not _mounted(staging)
    assert json.loads(plugin.state_file.read_text())["volumes"] == []


def test_attachment_left_by_a_vanished_mount_is_released_at_start(plugin: PluginProcess) -> None:
    c = plugin.client()
    ok(c.call("VolumeDriver.Create", {"Name": "stale", "Opts": {"size": "64M", "nodes": "node-b"}}))
    path = ok(c.call("VolumeDriver.Mount", {"Name": "stale", "ID": "A"}))["Mountpoint"]
    plugin.kill()
    subprocess.run(["umount", str(Path(path).parent)], check=True)  # as after a reboot
    plugin.start()
    c = plugin.client()
    assert ok(c.call("VolumeDriver.Path", {"Name": "stale"}))["Mountpoint"] == ""
    _wait_detached(c, "stale")
    status = ok(c.call("VolumeDriver.Get", {"Name": "stale"}))["Volume"]["Status"]
    assert status["diskful_nodes"] == ["node-b"]


def test_config_file_defaults_apply_to_implicit_creation(emulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    conf = tmp_path / "docker-volume.conf"
    conf.write_text("[global]\nfs = xfs\nsize = 320M\nreplicas = 1\n")
    proc = PluginProcess(tmp_path / "cf", emulator.url, LOCAL, extra_args=("--config-file", str(conf)))
    proc.start()
    try:
        c = proc.client()
        ok(c.call("VolumeDriver.Create", {"Name": "from-defaults", "Opts": None}))
        ok(c.call("VolumeDriver.Create", {"Name": "overridden", "Opts": {"fs": "ext4", "size": "64M"}}))
        status = ok(c.call("VolumeDriver.Get", {"Name": "from-defaults"}))["Volume"]["Status"]
        assert status["fs"] == "xfs" and status["size_bytes"] >= 320 * 1024 * 1024
        assert len(status["diskful_nodes"]) == 1
        assert ok(c.call("VolumeDriver.Get", {"Name": "overridden"}))["Volume"]["Status"]["fs"] == "ext4"
    finally:
        assert proc.stop() == 0


def test_bad_default_in_config_file_stops_the_start(tmp_path: Path) -> None:
    conf = tmp_path / "docker-volume.conf"
    conf.write_text("[global]\ncontrollers = http://127.0.0.1:1\nflavour = sweet\n")
    sock = tmp_path / "never.sock"
    result = subprocess.run(
        [sys.executable, "-m", "docker_plugin", "--socket", str(sock), "--config-file", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("LS_")},
    )
    assert result.returncode == 2
    assert 'unknown option "flavour"' in result.stderr and "Traceback" not in result.stderr
    assert not sock.exists()


def test_volumes_of_other_clients_are_invisible_and_left_alone(plugin: PluginProcess, emulator) -> None:  # type: ignore[no-untyped-def]
    config = Config(controllers=(emulator.url,), node_name=LOCAL, config_file=None)
    service = VolumeService(LinstorClient(config), config)
    service.create_volume("pvc-foreign", 64 * 1024 * 1024, parse_csi_parameters({}))
    c = plugin.client()
    assert "pvc-foreign" not in names(c)  # docker volume prune can never reach it
    assert "does not exist" in failed(c.call("VolumeDriver.Get", {"Name": "pvc-foreign"}))
    assert "not created through Docker" in failed(c.call("VolumeDriver.Create", {"Name": "pvc-foreign"}))
    assert "left alone" in failed(c.call("VolumeDriver.Remove", {"Name": "pvc-foreign"}))
    assert "does not exist" in failed(c.call("VolumeDriver.Mount", {"Name": "pvc-foreign", "ID": "A"}))
    assert service.get_volume("pvc-foreign").name == "pvc-foreign"


def linstor_calls(metrics_port: int) -> float:
    text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("linstor_plugin_linstor_requests_total{")
    )


def test_list_reads_a_page_at_a_time_and_only_docker_volumes(emulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    metrics_port = free_port()
    proc = PluginProcess(
        tmp_path / "pg",
        emulator.url,
        LOCAL,
        extra_args=(
            "--release-delay",
            "0",
            "--metrics-port",
            str(metrics_port),
            "--metrics-address",
            "127.0.0.1",
        ),
    )
    proc.start(env={"LS_LIST_PAGE_SIZE": "2"})
    try:
        c = proc.client()
        made = [f"paged-{i}" for i in range(5)]
        for name in made:
            ok(c.call("VolumeDriver.Create", {"Name": name, "Opts": {"size": "16M", "nodes": "node-b"}}))
        config = Config(controllers=(emulator.url,), node_name=LOCAL, config_file=None)
        VolumeService(LinstorClient(config), config).create_volume(
            "pvc-between", 16 * 1024 * 1024, parse_csi_parameters({})
        )
        before = linstor_calls(metrics_port)
        listed = ok(c.call("VolumeDriver.List", {}))["Volumes"]
        # 5 marked definitions in pages of 2: 3 reads, and the guess at a fourth page made
        # while the partly filled third was read; LINSTOR filters out the CSI volume
        assert linstor_calls(metrics_port) - before == 4
        assert sorted(v["Name"] for v in listed) == made
        assert all(datetime.fromisoformat(v["CreatedAt"].replace("Z", "+00:00")).tzinfo for v in listed)
        assert all("Mountpoint" not in v for v in listed)
    finally:
        proc.stop()


def test_release_delay_bridges_docker_s_pre_start_unmount(emulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc = PluginProcess(tmp_path / "rd", emulator.url, LOCAL, extra_args=("--release-delay", "1.5"))
    proc.start()
    try:
        c = proc.client()
        ok(c.call("VolumeDriver.Create", {"Name": "lazy", "Opts": {"size": "64M", "nodes": "node-b"}}))
        # docker run: Mount A, copy image content, Unmount A, then Mount B to start
        path = ok(c.call("VolumeDriver.Mount", {"Name": "lazy", "ID": "A"}))["Mountpoint"]
        staging = Path(path).parent
        first = _mount_id(staging)
        ok(c.call("VolumeDriver.Unmount", {"Name": "lazy", "ID": "A"}))
        assert _mounted(staging)
        assert ok(c.call("VolumeDriver.Path", {"Name": "lazy"}))["Mountpoint"] == ""  # nobody holds it
        assert ok(c.call("VolumeDriver.Mount", {"Name": "lazy", "ID": "B"}))["Mountpoint"] == path
        assert _mount_id(staging) == first  # reused, not mounted again
        ok(c.call("VolumeDriver.Unmount", {"Name": "lazy", "ID": "B"}))
        _wait_unmounted(staging)  # released once the delay passed
        _wait_detached(c, "lazy")

        # Remove right after the last Unmount releases at once instead of waiting
        ok(c.call("VolumeDriver.Mount", {"Name": "lazy", "ID": "C"}))
        ok(c.call("VolumeDriver.Unmount", {"Name": "lazy", "ID": "C"}))
        ok(c.call("VolumeDriver.Remove", {"Name": "lazy"}))
        assert not _mounted(staging) and "lazy" not in names(c)

        # and a stop releases what is waiting
        ok(c.call("VolumeDriver.Create", {"Name": "lazy2", "Opts": {"size": "64M", "nodes": LOCAL}}))
        path2 = ok(c.call("VolumeDriver.Mount", {"Name": "lazy2", "ID": "D"}))["Mountpoint"]
        ok(c.call("VolumeDriver.Unmount", {"Name": "lazy2", "ID": "D"}))
        assert _mounted(Path(path2).parent)
    finally:
        assert proc.stop() == 0
        _unmount_below(proc.mount_root)
    assert not _mounted(Path(path2).parent)


def test_socket_is_served_before_the_controller_answers(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc = PluginProcess(tmp_path / "dc", dead, LOCAL, extra_args=("--release-delay", "0"))
    proc.start(timeout=10)  # waits for Plugin.Activate over the socket
    try:
        c = proc.client()
        assert ok(c.call("VolumeDriver.Capabilities", {}))["Capabilities"]["Scope"] == "global"
        assert ok(c.call("VolumeDriver.Path", {"Name": "v"}))["Mountpoint"] == ""
        assert c.health()["linstor_reachable"] is False
        err = failed(c.call("VolumeDriver.Create", {"Name": "v", "Opts": {}}))
        assert "LINSTOR controller" in err and "then retry" in err
    finally:
        assert proc.stop() == 0


def test_health_turns_reachable_at_the_first_call_after_the_controller_answers(
    root_loop: None, tmp_path: Path
) -> None:
    late = EmulatorProcess(state_dir=tmp_path / "late" / "state", dev_dir=tmp_path / "late" / "dev")
    proc = PluginProcess(tmp_path / "hp", late.url, LOCAL, extra_args=("--release-delay", "0"))
    proc.start(timeout=10)
    stop_asking = threading.Event()
    try:
        c = proc.client()
        assert c.health()["linstor_reachable"] is False

        def keep_asking() -> None:  # as an operator's probe would, while the controller starts
            while not stop_asking.is_set():
                c.health()
                stop_asking.wait(0.05)

        asker = threading.Thread(target=keep_asking)
        asker.start()
        try:
            late.start()  # returns once it answers
        finally:
            stop_asking.set()
            asker.join(30)
        # a "no" from a moment ago is not reused: this call asks the controller again
        assert c.health()["linstor_reachable"] is True
    finally:
        stop_asking.set()
        reset_and_stop([late])
        assert proc.stop() == 0


def _legacy_volume(emulator, name: str) -> str:  # type: ignore[no-untyped-def]
    """A volume as LINBIT's Python Docker plugin left it: marker, no filesystem properties."""
    config = Config(controllers=(emulator.url,), node_name=LOCAL, config_file=None)
    client = LinstorClient(config)
    client.create_resource_definition(name, "DfltRscGrp", props={"Aux/is-linstor-docker-volume": "true"})
    answer = requests.post(
        f"{emulator.url}/v1/resource-definitions/{name}/volume-definitions",
        json={"volume_definition": {"size_kib": 64 * 1024}},
        timeout=30,
    )
    assert answer.status_code < 300, answer.text
    client.create_resource(name, LOCAL)
    return client.get_volume(name, LOCAL).device_path


def test_linbit_python_plugin_volumes_are_adopted_not_formatted(plugin: PluginProcess, emulator) -> None:  # type: ignore[no-untyped-def]
    device = _legacy_volume(emulator, "legacy")
    subprocess.run(["mkfs.ext4", "-q", device], check=True)
    c = plugin.client()
    assert "legacy" in names(c)
    path = ok(c.call("VolumeDriver.Mount", {"Name": "legacy", "ID": "A"}))["Mountpoint"]
    Path(path, "kept").write_text("x")
    ok(c.call("VolumeDriver.Unmount", {"Name": "legacy", "ID": "A"}))

    blank = _legacy_volume(emulator, "legacy-blank")
    answer = c.call("VolumeDriver.Mount", {"Name": "legacy-blank", "ID": "A"})
    err = failed(answer)
    assert "records no filesystem" in err and "never formatted" in err
    assert answer["Mountpoint"] == ""
    assert subprocess.run(["blkid", "-p", blank], capture_output=True).returncode == 2  # still blank

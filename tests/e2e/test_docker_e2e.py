"""The plugin under a real Docker daemon: what a user types, what a user sees.

A private dockerd (tests/dockerd.py) discovers the plugin as ``linstor`` through its own
``/run/docker/plugins``; the plugin runs in the daemon's mount namespace, backed by the
LINSTOR emulator with real loop devices. Containers use a busybox image imported from
Debian's busybox-static.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.conftest import have_root_and_loop, require
from tests.dockerd import DockerStack, docker_stack, dockerd_available

pytestmark = [pytest.mark.docker, pytest.mark.root, pytest.mark.slow]

LOCAL = socket.gethostname().split(".")[0] or "localhost"


class Stack(DockerStack):
    def docker(self, *args: str, check: bool = True) -> str:
        try:
            return self.daemon.docker(*args, check=check).stdout
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- plugin log ---\n{self.plugin.log_tail(6000)}") from None

    def released(self, timeout: float = 15.0) -> bool:
        """The plugin releases a volume a moment (its release delay) after the last Unmount."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.staged():
                return True
            time.sleep(0.2)
        return False

    def is_staged(self, resource: str) -> bool:
        return f"{self.plugin.mount_root}/{resource}" in self.staged()

    def staged(self) -> list[str]:
        """Mount points the plugin has under its root, as the daemon's namespace sees them."""
        out = self.daemon.run_in_namespace(["findmnt", "-rn", "-o", "TARGET"]).stdout
        root = str(self.plugin.mount_root)
        return [line for line in out.splitlines() if line.startswith(root + "/")]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    ok, reason = have_root_and_loop()
    require(ok, reason)
    ok, reason = dockerd_available()
    require(ok, reason)
    with docker_stack("dv-e2e-", LOCAL, plugin_args=()) as (daemon, plugin, emulator):
        yield Stack(daemon, plugin, emulator)


def test_create_inspect_and_ls(stack: Stack) -> None:
    stack.docker("volume", "create", "-d", "linstor", "-o", "size=320M", "-o", "fs=xfs", "xfsvol")
    inspected = json.loads(stack.docker("volume", "inspect", "xfsvol"))[0]
    assert inspected["Driver"] == "linstor"
    assert inspected["Scope"] == "global"
    assert inspected["Status"]["fs"] == "xfs"
    assert inspected["Status"]["size_bytes"] >= 320 * 1024 * 1024
    assert inspected["CreatedAt"]
    listed = stack.docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}").splitlines()
    assert "linstor xfsvol" in listed


def test_data_written_by_one_container_is_read_by_the_next(stack: Stack) -> None:
    stack.docker("volume", "create", "-d", "linstor", "-o", "size=64M", "shared")
    stack.docker("run", "--rm", "-v", "shared:/data", "busybox", "sh", "-c", "echo hello > /data/greeting")
    assert stack.released()  # after the container ended
    out = stack.docker(
        "run", "--rm", "-v", "shared:/data", "busybox", "sh", "-c", "cat /data/greeting; ls -a /data"
    )
    assert out.splitlines()[0] == "hello"
    assert "lost+found" not in out  # containers see <mount>/data, not the filesystem root


def test_image_content_is_copied_into_a_new_volume(stack: Stack) -> None:
    # Docker copies the image's files at the mount path into an empty volume (Mount,
    # copy, Unmount, then Mount again to start); data/ is what makes "empty" true.
    seed = "mkdir -p /seed && echo from-image > /seed/f"
    stack.docker("run", "--name", "seeder", "busybox", "sh", "-c", seed)
    stack.docker("commit", "seeder", "seeded:latest")
    stack.docker("rm", "seeder")
    stack.docker("volume", "create", "-d", "linstor", "-o", "size=64M", "copyup")
    out = stack.docker("run", "--rm", "-v", "copyup:/seed", "seeded", "cat", "/seed/f")
    assert out.strip() == "from-image"
    # and the copy is in the volume: a container of another image sees it
    assert stack.docker("run", "--rm", "-v", "copyup:/x", "busybox", "cat", "/x/f").strip() == "from-image"


def test_implicit_creation_with_volume_driver(stack: Stack) -> None:
    out = stack.docker(
        "run",
        "--rm",
        "-v",
        "newname:/data",
        "--volume-driver",
        "linstor",
        "busybox",
        "sh",
        "-c",
        "df -k /data",
    )
    assert "/data" in out
    inspected = json.loads(stack.docker("volume", "inspect", "newname"))[0]
    assert inspected["Driver"] == "linstor"
    assert inspected["Status"]["size_bytes"] >= 100 * 1024 * 1024  # configured defaults applied


def test_anonymous_volume_lives_and_dies_with_the_container(stack: Stack) -> None:
    before = set(stack.docker("volume", "ls", "-q").split())
    out = stack.docker("run", "--rm", "-v", "/scratch", "--volume-driver", "linstor", "busybox", "sh", "-c",
                       "echo x > /scratch/f && cat /scratch/f")  # fmt: skip
    assert out.strip() == "x"
    assert set(stack.docker("volume", "ls", "-q").split()) == before  # docker rm -v removed it


def test_plugin_restart_while_a_container_runs(stack: Stack) -> None:
    stack.docker("volume", "create", "-d", "linstor", "-o", "size=64M", "live")
    stack.docker("run", "-d", "--name", "runner", "-v", "live:/data", "busybox", "sleep", "600")
    try:
        assert stack.is_staged("live")
        assert stack.plugin.stop() == 0  # clean SIGTERM with a container using a volume
        stack.plugin.start()
        assert stack.is_staged("live")  # the mount survived the restart
        stack.docker("exec", "runner", "sh", "-c", "echo after-restart > /data/f")
        # docker cp on a running container mounts and unmounts again with the container's ID
        assert "after-restart" in stack.docker("cp", "runner:/data/f", "-")
        assert stack.is_staged("live")
        stack.docker("exec", "runner", "cat", "/data/f")

        refused = stack.daemon.docker("volume", "rm", "live", check=False)
        assert refused.returncode != 0 and "in use" in refused.stderr
    finally:
        stack.docker("rm", "-f", "runner")
    assert stack.released()  # the Unmount after the restart found its count
    stack.docker("volume", "rm", "live")
    assert "live" not in stack.docker("volume", "ls", "-q").split()


def test_bad_option_shows_a_clear_message(stack: Stack) -> None:
    result = stack.daemon.docker("volume", "create", "-d", "linstor", "-o", "sise=1G", "typo", check=False)
    assert result.returncode != 0
    assert 'unknown option "sise"' in result.stderr
    assert "Traceback" not in result.stderr
    assert "typo" not in stack.docker("volume", "ls", "-q").split()


def test_volume_rm_of_a_volume_used_on_another_node_is_refused(stack: Stack) -> None:
    stack.docker("volume", "create", "-d", "linstor", "-o", "size=64M", "-o", "nodes=node-b", "remote")
    resource = json.loads(stack.docker("volume", "inspect", "remote"))[0]["Status"]["resource"]
    answer = stack.emulator.control(f"resources/{resource}/node-b/in_use", {"in_use": True})
    assert answer.status_code == 200, answer.text
    result = stack.daemon.docker("volume", "rm", "remote", check=False)
    assert result.returncode != 0 and "node-b" in result.stderr
    stack.emulator.control(f"resources/{resource}/node-b/in_use", {"in_use": False})
    stack.docker("volume", "rm", "remote")


def test_a_mount_resent_after_a_lost_answer_does_not_pin_the_volume(stack: Stack) -> None:
    """Docker re-sends a Mount whose answer a plugin crash lost: one container, counted twice."""
    stack.docker("volume", "create", "-d", "linstor", "-o", "size=64M", "resent")
    stack.docker("run", "-d", "--name", "twice", "-v", "resent:/data", "busybox", "sleep", "600")
    try:
        state = json.loads(stack.plugin.state_file.read_text())
        (record,) = [v for v in state["volumes"] if v["name"] == "resent"]
        (mount_id,) = record["holders"]  # the container's mount ID, as Docker sent it
        # what Docker's client retry delivers after the plugin restarted
        answer = stack.plugin.client().call("VolumeDriver.Mount", {"Name": "resent", "ID": mount_id})
        assert answer["Err"] == "", answer
        assert stack.docker("exec", "twice", "sh", "-c", "echo kept > /data/f; cat /data/f").strip() == "kept"
    finally:
        stack.docker("rm", "-f", "twice")  # one Unmount for the two Mounts
    stack.docker("volume", "rm", "resent")  # released: no container uses it any more
    assert "resent" not in stack.docker("volume", "ls", "-q").split()
    assert not stack.is_staged("resent")
    lines = [json.loads(x) for x in stack.plugin.log_tail(200_000).splitlines() if x.startswith("{")]
    released = [e for e in lines if e.get("event") == "stale_mounts_released" and e.get("volume") == "resent"]
    assert released and released[-1]["ids"] == [mount_id]

"""What a Docker user reads when LINSTOR says no, what the log says, and a slow first mount.

A private dockerd, the plugin in its mount namespace and the emulator (the local node plus
node-b), as in test_docker_e2e. Every message is read where the user reads it: the stderr
of the docker CLI, ``docker volume inspect``, and the plugin's log.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from plugin.placement_diagnosis import listing
from tests.conftest import have_root_and_loop, require
from tests.dockerd import DockerStack, docker_stack, dockerd_available

pytestmark = [pytest.mark.docker, pytest.mark.root, pytest.mark.slow]

LOCAL = socket.gethostname().split(".")[0] or "localhost"


class Stack(DockerStack):
    def docker(self, *args: str) -> str:
        done = self.daemon.docker(*args, check=False)
        assert done.returncode == 0, f"{done.stderr}\n--- plugin log ---\n{self.plugin.log_tail(6000)}"
        return done.stdout

    def refused(self, *args: str) -> str:
        """The stderr of a docker command that must fail."""
        done = self.daemon.docker(*args, check=False)
        assert done.returncode != 0, done.stdout
        assert "Traceback" not in done.stderr
        return done.stderr

    def log_entries(self) -> list[dict[str, Any]]:
        text = self.plugin.log_tail(2_000_000)
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def volumes(self) -> list[str]:
        return self.docker("volume", "ls", "-q").split()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    ok, reason = have_root_and_loop()
    require(ok, reason)
    ok, reason = dockerd_available()
    require(ok, reason)
    with docker_stack("dv-msg-", LOCAL, plugin_args=("--progress-interval", "0.5")) as (
        daemon,
        plugin,
        emulator,
    ):
        yield Stack(daemon, plugin, emulator)


@pytest.mark.parametrize(
    ("name", "options", "says"),
    [
        (
            "on-no-node",
            ["-o", "nodes=no-such-node"],
            f"node no-such-node is not a LINSTOR node (LINSTOR nodes: {listing(sorted([LOCAL, 'node-b']))})",
        ),
        (
            "in-no-pool",
            ["-o", "storagepool=no-such-pool"],
            "storage pool no-such-pool does not exist on any node (storage pools: DfltStorPool)",
        ),
        (
            "too-big",
            ["-o", "size=500T"],
            "(500 TiB, 2 replicas): no storage pool has 500 TiB free; the most free space is ",
        ),
        ("too-many", ["-o", "replicas=3"], "3 replicas asked for, but only 2 nodes have a storage pool"),
    ],
    ids=["unknown-node", "unknown-pool", "size", "replicas"],
)
def test_a_refused_placement_says_why(stack: Stack, name: str, options: list[str], says: str) -> None:
    stderr = stack.refused("volume", "create", "-d", "linstor", *options, name)
    assert says in stderr
    assert "Not enough available nodes" not in stderr
    assert str(500 * 1024**4) not in stderr  # sizes in human units, not bytes
    assert name not in stack.volumes()  # nothing was made
    # the plugin's line for the request carries the same sentence, not only the class
    failed = [
        e for e in stack.log_entries() if e.get("method") == "VolumeDriver.Create" and e.get("volume") == name
    ]
    assert failed and failed[-1]["result"] in ("InvalidArgument", "NoSpace")
    assert failed[-1]["error"].startswith(f"cannot place volume {name!r}")
    assert says in failed[-1]["error"]
    assert failed[-1]["duration_ms"] >= 0


def test_inspect_shows_a_volume_still_being_prepared(stack: Stack) -> None:
    # a replica on node-b only: the first mount here attaches a diskless resource, made slow
    stack.docker("volume", "create", "-d", "linstor", "-o", "size=64M", "-o", "nodes=node-b", "slowmount")
    resource = json.loads(stack.docker("volume", "inspect", "slowmount"))[0]["Status"]["resource"]
    answer = stack.emulator.control("latency", {"ms": 4000, "paths": "make-available"})
    assert answer.ok, answer.text
    ran: dict[str, Any] = {}

    def run() -> None:
        ran["result"] = stack.daemon.docker(
            "run", "--rm", "-v", "slowmount:/data", "busybox", "sh", "-c", "echo hi > /data/f", check=False
        )

    runner = threading.Thread(target=run)
    runner.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and runner.is_alive():
            state = json.loads(stack.docker("volume", "inspect", "slowmount"))[0]["Status"]["state"]
            seen.append(state)
            if state.startswith("being prepared"):
                break
            time.sleep(0.2)
    finally:
        runner.join(120)
        stack.emulator.control("latency", {"ms": 0})
    assert ran["result"].returncode == 0, ran["result"].stderr
    preparing = [s for s in seen if s.startswith("being prepared")]
    assert preparing, seen
    assert preparing[0].startswith(f"being prepared: attaching to this node ({LOCAL}) for ")
    assert json.loads(stack.docker("volume", "inspect", "slowmount"))[0]["Status"]["state"] == "ready"
    # and the log said so while it lasted, then that it ended
    progress = [e for e in stack.log_entries() if e.get("volume") == resource and "operation" in e]
    still = [e for e in progress if e["msg"] == "still working"]
    assert still and still[0]["operation"] == f"attaching to this node ({LOCAL})"
    assert any(e["msg"] == "long operation done" for e in progress)

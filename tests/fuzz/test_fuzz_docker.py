"""Fuzz every Docker volume plugin endpoint over its real unix socket, against the emulator.

The plugin runs from its command line in a private mount namespace with audited host
commands; bodies are well-formed requests with adversarial values (names, sizes, mkfs and
mount options naming devices and host directories) and malformed ones (not JSON, wrong
types, deep nesting, megabytes). A volume "victim" is mounted for a container and must stay
mounted; after every request the properties of :mod:`tests.fuzz.checks` hold.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from docker_plugin.client import PluginClient
from plugin.names import resource_name_for
from tests.conftest import EmulatorProcess, have_root_and_loop, require, reset_and_stop
from tests.fuzz import strategies as fz
from tests.fuzz.audit import rdev_of
from tests.fuzz.budget import CALL_DEADLINE, fuzz_settings, timeout_for
from tests.fuzz.checks import Watch, docker_outcome
from tests.fuzz.scratch import Scratch
from tests.fuzz.stack import (
    NamespacedDaemon,
    as_text,
    docker_plugin,
    local_devices,
    restart_emulator,
    start_emulator,
    wait_for_docker,
)
from tests.fuzz.tally import DOCKER_ERROR, TALLY

LOCAL = socket.gethostname().split(".")[0] or "localhost"
VICTIM = "victim"
ENDPOINTS = (
    "Plugin.Activate",
    "VolumeDriver.Create",
    "VolumeDriver.Remove",
    "VolumeDriver.Mount",
    "VolumeDriver.Unmount",
    "VolumeDriver.Path",
    "VolumeDriver.Get",
    "VolumeDriver.List",
    "VolumeDriver.Capabilities",
)
OPTION_KEYS = [
    "size", "fs", "fsopts", "mountopts", "replicas", "nodes", "storagepool",
    "disklessstoragepool", "disklessonremaining", "resourcegroup",
]  # fmt: skip


@dataclass(repr=False)
class DockerWorld:
    emulator: EmulatorProcess
    scratch: Scratch
    plugin: NamespacedDaemon
    targets: fz.Targets
    watch: Watch

    def __repr__(self) -> str:
        return "DockerWorld()"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # Hypothesis's printer
        printer.text(repr(self))

    @property
    def client(self) -> PluginClient:
        return PluginClient(str(self.plugin.socket), timeout=CALL_DEADLINE)  # type: ignore[attr-defined]

    def devices_of(self, name: object) -> set[str]:
        if not isinstance(name, str) or not name or "\x00" in name:
            return set()
        try:
            resource = resource_name_for(name)
        except Exception:  # a name the plugin refuses names no volume
            return set()
        return {r for r in (rdev_of(d) for d in local_devices(self.emulator, resource, LOCAL)) if r}

    def mount_victim(self) -> None:
        c = self.client
        assert c.call("VolumeDriver.Create", {"Name": VICTIM, "Opts": {"size": "32M"}})["Err"] == ""
        answer = c.call("VolumeDriver.Mount", {"Name": VICTIM, "ID": "container-1"})
        assert answer["Err"] == "", answer
        point = answer["Mountpoint"]
        self.targets.victim_paths = [point, str(Path(point).parent)]
        self.targets.victim_devices = local_devices(self.emulator, resource_name_for(VICTIM), LOCAL)
        self.watch.required_mounts = [str(Path(point).parent)]
        self.watch.start()

    def recover(self) -> None:
        """After a failed example: a fresh plugin (and namespace) and repaired scratch data."""
        self.plugin.stop()
        restart_emulator(self.emulator)  # type: ignore[arg-type]
        self.scratch.repair()
        self.plugin.start()
        wait_for_docker(self.plugin)
        answer = self.client.call("VolumeDriver.Mount", {"Name": VICTIM, "ID": "container-1"})
        assert answer["Err"] == "", answer
        self.watch.start()

    def send(self, endpoint: str, body: bytes | None, name: object) -> str:
        before = self.devices_of(name)
        self.watch.before()
        try:
            with TALLY.counting("Docker"):
                try:
                    status, _, payload = self.client.raw(f"/{endpoint}", body)
                except TimeoutError:
                    raise AssertionError(f"hang: no answer within {CALL_DEADLINE:g}s") from None
                except (OSError, ValueError) as exc:
                    raise AssertionError(f"no protocol answer: {exc!r}") from None
                outcome = docker_outcome(status, payload)
                self.watch.after(before | self.devices_of(name))
        except AssertionError as failure:
            try:
                self.recover()
            except Exception as exc:  # the failure stands; the note says why later ones may differ
                failure.add_note(f"afterwards the world could not be recovered: {exc!r}")
            raise
        TALLY.record("Docker", "OK" if outcome == "OK" else DOCKER_ERROR)
        return outcome


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerWorld]:
    ok, reason = have_root_and_loop()
    require(ok, reason)
    base = tmp_path_factory.mktemp("fuzz-docker")
    scratch = Scratch(base / "scratch")
    scratch.create()
    emulator = start_emulator(base / "emu", scratch.cwd("emulator"))
    plugin = None
    try:
        plugin = docker_plugin(base / "plugin", emulator, LOCAL, scratch.cwd("docker"))
        mount_root = str(plugin.mount_root)  # type: ignore[attr-defined]
        targets = fz.Targets(
            root=mount_root, scratch_tree=str(scratch.tree), scratch_devices=list(scratch.devices)
        )
        made = DockerWorld(
            emulator, scratch, plugin, targets, Watch(plugin, emulator, scratch, root=mount_root)
        )
        made.mount_victim()
        yield made
    finally:
        if plugin is not None:
            plugin.stop()
        reset_and_stop([emulator])
        scratch.close()


def names(world: DockerWorld) -> st.SearchStrategy[object]:
    return st.one_of(
        st.sampled_from(["fuzz-vol", "fuzz-other"]),  # never the victim: naming it may release it
        fz.names(),
        st.sampled_from([None, 5, 1.5, True, [], {}, ["a"], {"a": 1}]),
    )


def options(world: DockerWorld) -> st.SearchStrategy[object]:
    t = world.targets
    value = st.one_of(
        fz.mkfs_options(t),
        fz.mount_options(t),
        st.sampled_from(
            ["64M", "0", "-1", "1P", "9" * 40, "1.5G", "ext4", "xfs", "btrfs", "ntfs", "3", "-5"]
        ),
        st.sampled_from([None, 5, True, [], {}]),
    )
    key = st.one_of(st.sampled_from(OPTION_KEYS), fz.names())
    return st.one_of(st.dictionaries(key, value, max_size=4), st.sampled_from([None, "size=1G", [], 5]))


def bodies(world: DockerWorld) -> st.SearchStrategy[tuple[str, bytes | None, object]]:
    """(endpoint, raw body, the Name it carries) for every endpoint and some that do not exist."""
    endpoint = st.one_of(
        st.sampled_from(ENDPOINTS), st.sampled_from(["VolumeDriver.Snapshot", "..", "", "x" * 5000])
    )

    def encode(fields: dict[str, Any]) -> bytes:
        return (json.dumps(fields) + "\n").encode()

    well_formed = st.builds(
        lambda ep, name, opts, mount_id, extra: (
            ep,
            encode({"Name": name, "Opts": opts, "ID": mount_id, **extra}),
            name,
        ),
        endpoint,
        names(world),
        options(world),
        st.one_of(st.sampled_from(["container-2", "", "container-1"]), fz.names(), st.just(None), st.just(7)),
        st.dictionaries(fz.names(), st.just(1), max_size=2),
    )
    raw = st.builds(
        lambda ep, body: (ep, body, None),
        endpoint,
        st.sampled_from(
            [
                None,
                b"",
                b"{not json",
                b"[]",
                b"null",
                b'"Name"',
                b"\xff\xfe\x00",
                b"[" * 100_000 + b"]" * 100_000,
                b'{"Name": "' + b"x" * (4 * 1024 * 1024) + b'"}',
                b'{"Name": "a", "Name": "b"}',
                b'{"Name": "\\u0000"}',
                b'{"Name": "\\ud800"}',
            ]
        ),
    )
    # A plain create whose only oddity is its filesystem options: the path to mkfs and mount.
    option_create = st.builds(
        lambda n, fs, mkfs, mnt: (
            "VolumeDriver.Create",
            encode(
                {
                    "Name": f"fuzz-opts-{n}",
                    "Opts": {"size": "32M", "fs": fs, "fsopts": mkfs, "mountopts": mnt},
                }
            ),
            f"fuzz-opts-{n}",
        ),
        st.integers(0, 5),
        st.sampled_from(["ext4", "xfs", "btrfs"]),
        fz.mkfs_options(world.targets),
        fz.mount_options(world.targets),
    )
    mount = st.builds(
        lambda n, mount_id: (
            "VolumeDriver.Mount",
            encode({"Name": f"fuzz-opts-{n}", "ID": mount_id}),
            f"fuzz-opts-{n}",
        ),
        st.integers(0, 5),
        st.sampled_from(["c1", "c2"]),
    )
    return st.one_of(well_formed, raw, option_create, option_create, mount)


CI = 80


@timeout_for(CI)
@fuzz_settings(CI)
@given(data=st.data())
def test_docker_endpoints(world: DockerWorld, data: st.DataObject) -> None:
    endpoint, body, name = data.draw(bodies(world), "request")
    note = f"POST /{endpoint} {as_text(body)}"
    try:
        world.send(endpoint, body, name)
    except AssertionError as exc:
        raise AssertionError(f"{note}: {exc}") from None

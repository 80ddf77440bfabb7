"""Controller failover and degraded controllers, through VolumeService, against a real emulator.

LINSTOR runs one active controller; HA setups list several addresses (``LS_CONTROLLERS``)
of which the others are down, hung or behind a proxy that answers 503. Two emulators
cannot stand in for an HA pair (they share no state), so the second address here is
something that is *not* a controller: a refused port, a proxy answering 503 without a
LINSTOR body, or a socket that accepts and never answers. The emulator's ``/_emu/``
control API then provides what a live controller does on a bad day: outages, latency
longer than the client's read timeout, and LINSTOR error answers on single endpoints,
which must reach the caller as the right typed error and change nothing.

Volumes live on the emulator's virtual nodes without a filesystem, so no loop devices or
root are needed, except for the Docker plugin test (its volumes always get a filesystem).
Plain client-level failover and outages are covered in ``test_linstor_client.py``; this
module covers the service and the front ends on top of it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from plugin import names
from plugin.config import Config
from plugin.errors import (
    AlreadyExists,
    Busy,
    InUse,
    NodeOffline,
    NoSpace,
    NotFound,
    OperationFailed,
    Unavailable,
    VolumeError,
)
from plugin.linstor.client import LinstorClient
from plugin.params.model import VolumeParams
from plugin.volumes.service import VolumeService
from testkit.waiting import wait_until
from tests.conftest import REPO_ROOT, EmulatorProcess, free_port
from tests.unit.test_linstor_client import send_bytes

MIB = 1024 * 1024
ON_B = VolumeParams(place_count=1, fs_type=None, nodes=("node-b",))
HOST = "linbit.com/hostname"


def unique(prefix: str = "fo") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def service(*controllers: str, read_timeout: float = 30.0) -> VolumeService:
    config = Config(
        controllers=controllers,
        node_name="node-b",
        connect_timeout=1.0,
        read_timeout=read_timeout,
        config_file=None,
    )
    return VolumeService(LinstorClient(config, retries=1, backoff=0.05), config)


@pytest.fixture
def emu(emulator_factory) -> EmulatorProcess:  # type: ignore[no-untyped-def]
    return emulator_factory(nodes=("node-b", "node-c"))


def faults(emu: EmulatorProcess) -> dict[str, Any]:
    answer = requests.get(f"{emu.url}/_emu/faults", timeout=10)
    answer.raise_for_status()
    return answer.json()


def clear_faults(emu: EmulatorProcess) -> None:
    requests.delete(f"{emu.url}/_emu/errors", timeout=10).raise_for_status()


# ------------------------------------------------------------------ things that are not controllers


class _Proxy503(BaseHTTPRequestHandler):
    """A load balancer whose backend is gone: 503 with an HTML body, no LINSTOR entries."""

    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        send_bytes(self, 503, b"<html><body>503 Service Unavailable</body></html>", "text/html")

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test counts hits instead."""


class HungController:
    """Accepts TCP connections and never answers: a controller stuck in a long GC pause."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self.connections:
            conn.close()
        self.sock.close()


class BlackholedController:
    """An address whose SYNs go unanswered (a full accept queue): connects time out."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.fillers: list[socket.socket] = []
        for _ in range(3):  # never accepted: they fill the queue, later SYNs are dropped
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            self.fillers.append(filler)

    def close(self) -> None:
        for filler in self.fillers:
            filler.close()
        self.sock.close()


@pytest.fixture
def blackhole() -> Iterator[BlackholedController]:
    controller = BlackholedController()
    time.sleep(0.1)  # let the fillers' handshakes complete into the queue
    yield controller
    controller.close()


@pytest.fixture
def proxy_503() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy503)
    server.daemon_threads = True
    server.hits = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def hung() -> Iterator[HungController]:
    controller = HungController()
    yield controller
    controller.close()


# ----------------------------------------------------------------------------- a dead controller listed first


def _every_operation(fresh: Callable[[], VolumeService]) -> list[VolumeService]:
    """Run each VolumeService operation on a new service, so each one starts at the dead address."""
    used: list[VolumeService] = []

    def svc() -> VolumeService:
        used.append(fresh())
        return used[-1]

    name = unique()
    volume = svc().create_volume(name, 8 * MIB, ON_B)
    assert volume.diskful_nodes == ("node-b",)
    assert svc().create_volume(name, 8 * MIB, ON_B).id == volume.id
    assert svc().get_volume(volume.id).size_bytes == 8 * MIB
    assert svc().find_volume(name) is not None
    assert volume.id in {v.id for v in svc().list_volumes(with_replicas=True)}
    assert svc().expand_volume(volume.id, 12 * MIB).size_bytes == 12 * MIB
    snap = svc().create_snapshot(volume.id, unique("snap"))
    assert snap.ready
    assert [s.id for s in svc().list_snapshots(volume.id)] == [snap.id]
    assert svc().get_snapshot(snap.id).volume_id == volume.id
    restored = svc().create_volume(unique("restored"), 12 * MIB, ON_B, source=f"snapshot:{snap.id}")
    cloned = svc().create_volume(unique("clone"), 12 * MIB, ON_B, source=f"volume:{volume.id}")
    attachment = svc().attach(volume.id, "node-c")
    assert attachment.diskless and attachment.created_by_attach
    svc().detach(volume.id, "node-c")
    assert "node-c" not in {r.node for r in svc().get_volume(volume.id).replicas}
    assert svc().node_topology("node-b")[HOST] == "node-b"
    assert svc().capacity_bytes(ON_B, {HOST: "node-b"}) > 0
    assert svc().healthy()
    svc().delete_snapshot(snap.id)
    for victim in (cloned, restored, volume):
        svc().delete_volume(victim.id)
    assert svc().find_volume(name) is None
    return used


def test_every_operation_works_with_a_refused_controller_listed_first(emu: EmulatorProcess) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    used = _every_operation(lambda: service(dead, emu.url))
    for svc in used:
        # each service started at the dead address, then stayed with the live one
        assert svc.client.current_controller == emu.url


def test_every_operation_works_behind_a_503_proxy_listed_first(
    emu: EmulatorProcess, proxy_503: ThreadingHTTPServer
) -> None:
    proxy = f"http://127.0.0.1:{proxy_503.server_address[1]}"
    used = _every_operation(lambda: service(proxy, emu.url))
    # a 503 without LINSTOR entries was never passed on, so even POSTs fail over; and
    # each service asked the proxy exactly once, then kept to the controller that answered
    assert proxy_503.hits == len(used)  # type: ignore[attr-defined]
    assert all(svc.client.current_controller == emu.url for svc in used)


@pytest.mark.parametrize("dead", ["refused port", "unresolvable name", "503 proxy", "connect timeout"])
def test_a_first_write_fails_over_when_it_cannot_have_arrived(
    emu: EmulatorProcess, proxy_503: ThreadingHTTPServer, blackhole: BlackholedController, dead: str
) -> None:
    """A POST is re-sent elsewhere only when the first address provably never took it."""
    first = {
        "refused port": f"http://127.0.0.1:{free_port()}",
        "unresolvable name": "http://linstor-controller.invalid:3370",  # RFC 6761: never resolves
        "503 proxy": f"http://127.0.0.1:{proxy_503.server_address[1]}",
        "connect timeout": blackhole.url,
    }[dead]
    client = service(first, emu.url).client
    group = unique("rg")
    client.create_resource_group(group, {"place_count": 1})  # the very first request is a write
    assert client.current_controller == emu.url
    assert client.get_resource_group(group).name == group


def test_a_hung_controller_listed_first_costs_one_read_timeout(
    emu: EmulatorProcess, hung: HungController
) -> None:
    svc = service(hung.url, emu.url, read_timeout=1.0)
    name = unique()
    volume = svc.create_volume(name, 8 * MIB, ON_B)  # starts with reads: they fail over
    assert svc.client.current_controller == emu.url
    svc.expand_volume(volume.id, 12 * MIB)
    snap = svc.create_snapshot(volume.id, unique("snap"))
    svc.delete_snapshot(snap.id)
    svc.delete_volume(volume.id)
    assert svc.find_volume(name) is None
    assert len(hung.connections) == 1  # asked once; every later call went to the live one


def test_a_write_that_may_have_reached_a_hung_controller_is_not_resent(
    emu: EmulatorProcess, hung: HungController
) -> None:
    """A POST that timed out may have been applied: it is reported, not replayed elsewhere."""
    client = service(hung.url, emu.url, read_timeout=1.0).client
    group = unique("rg")
    with pytest.raises(Unavailable, match="may or may not have been applied") as lost:
        client.create_resource_group(group, {"place_count": 1})
    assert hung.url in str(lost.value)
    with pytest.raises(NotFound):
        client.get_resource_group(group)  # the read fails over; nothing was sent to the live one


# ----------------------------------------------------------------------------- outages


def test_outage_with_every_controller_down_changes_nothing_and_names_each(emu: EmulatorProcess) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    svc = service(emu.url, dead)
    volume = svc.create_volume(unique(), 8 * MIB, ON_B)
    emu.outage(3)
    attempts: list[tuple[str, Callable[[], object]]] = [
        ("expand", lambda: svc.expand_volume(volume.id, 16 * MIB)),
        ("snapshot", lambda: svc.create_snapshot(volume.id, "during-outage")),
        ("attach", lambda: svc.attach(volume.id, "node-c")),
        ("delete", lambda: svc.delete_volume(volume.id)),
        ("create", lambda: svc.create_volume(unique(), 8 * MIB, ON_B)),
    ]
    for what, attempt in attempts:
        with pytest.raises(Unavailable) as down:
            attempt()
        message = str(down.value)
        assert emu.url in message and dead in message, (what, message)
        assert "LS_CONTROLLERS" in message, (what, message)
        assert set(down.value.details["reasons"]) == {emu.url, dead}, what
    after = wait_until(
        lambda: svc.get_volume(volume.id),
        timeout=15,
        interval=0.2,
        what="the emulator's return",
        ignore=(Unavailable,),
    )
    assert svc.client.current_controller == emu.url
    assert after.size_bytes == 8 * MIB
    assert {r.node for r in after.replicas} == {"node-b"}
    assert svc.list_snapshots(volume.id) == []
    svc.delete_volume(volume.id)


def test_first_write_after_an_outage_uses_a_fresh_connection(emu: EmulatorProcess) -> None:
    """Pooled keep-alive connections die with the outage; the first POST afterwards must not
    land on one of them and be reported as 'may or may not have been applied'."""
    svc = service(emu.url)
    svc.client.controller_version()  # leaves a pooled keep-alive connection behind
    emu.outage(1)
    emu.wait_back()  # waits with a separate client, so the service's pool is untouched
    group = unique("rg")
    svc.client.create_resource_group(group, {"place_count": 1})
    assert svc.client.get_resource_group(group).name == group


def test_a_client_moves_to_the_next_controller_when_the_active_one_dies(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    """LINSTOR HA moves the controller to another host; the client follows and stays there.

    Two emulators do not share state, so each has its own virtual node: which one answered
    shows in the node list, and where a new volume was made.
    """
    first = emulator_factory(nodes=("node-b", "first-only"), name="first")
    second = emulator_factory(nodes=("node-b", "second-only"), name="second")
    svc = service(first.url, second.url)
    assert "first-only" in {n.name for n in svc.client.list_nodes()}
    first.outage(2)
    assert "second-only" in {n.name for n in svc.client.list_nodes()}
    volume = svc.create_volume(unique(), 8 * MIB, ON_B)  # the writes go to the new controller
    assert service(second.url).get_volume(volume.id).name == volume.name
    first.wait_back()  # the first controller comes back ...
    # ... but the client keeps to the one that answered, as there is one active controller
    assert svc.get_volume(volume.id).id == volume.id
    assert svc.client.current_controller == second.url
    with pytest.raises(NotFound):
        service(first.url).get_volume(volume.id)


# ----------------------------------------------------------------------------- latency


def test_latency_longer_than_the_read_timeout_is_a_clear_unavailable(emu: EmulatorProcess) -> None:
    svc = service(emu.url, read_timeout=0.5)
    volume = svc.create_volume(unique(), 8 * MIB, ON_B)
    assert emu.control("latency", {"ms": 1500, "paths": "^/v1/(resource-definitions|view/resources)"}).ok
    try:
        for read in (lambda: svc.get_volume(volume.id), lambda: svc.list_volumes()):
            with pytest.raises(Unavailable) as slow:
                read()
            assert "no answer within 0.5s" in str(slow.value)
            assert emu.url in str(slow.value)
        # other endpoints are not slowed down, and a patient client gets its answer
        assert svc.node_topology("node-b")[HOST] == "node-b"
        assert service(emu.url, read_timeout=10).get_volume(volume.id).id == volume.id
    finally:
        emu.control("latency", {"ms": 0})
    assert svc.get_volume(volume.id).size_bytes == 8 * MIB


def test_a_create_that_timed_out_but_was_applied_is_found_on_retry(emu: EmulatorProcess) -> None:
    """The spawn outlives the client's read timeout, then completes: the retry converges."""
    svc = service(emu.url, read_timeout=0.5)
    svc.create_volume(unique(), 8 * MIB, ON_B)  # the resource group exists from here on
    name = unique()
    assert emu.control("latency", {"ms": 2500, "paths": "/spawn$"}).ok
    try:
        with pytest.raises(Unavailable, match="may or may not have been applied"):
            svc.create_volume(name, 8 * MIB, ON_B)
    finally:
        emu.control("latency", {"ms": 0})
    wait_until(  # the delayed spawn lands after the client gave up
        lambda: svc.find_volume(name) is not None, timeout=10, interval=0.1, what="the delayed spawn"
    )
    again = svc.create_volume(name, 8 * MIB, ON_B)
    assert again.name == name and again.size_bytes == 8 * MIB
    assert [v.id for v in svc.list_volumes() if v.name == name] == [again.id]
    with pytest.raises(AlreadyExists):
        svc.create_volume(name, 16 * MIB, ON_B)
    svc.delete_volume(again.id)


def test_writes_that_timed_out_but_were_applied_are_safe_to_retry(emu: EmulatorProcess) -> None:
    """Snapshot, grow and delete all outlive the read timeout, complete later, and the retry
    of each reports the finished state instead of an error."""
    svc = service(emu.url, read_timeout=0.5)
    volume = svc.create_volume(unique(), 8 * MIB, ON_B)
    rd = f"^/v1/resource-definitions/{volume.id}"
    steps: list[tuple[str, Callable[[], object], Callable[[], bool]]] = [
        (
            rd + "/snapshots$",
            lambda: svc.create_snapshot(volume.id, "slow"),
            lambda: [s.name for s in svc.list_snapshots(volume.id)] == ["slow"],
        ),
        (
            rd + "/volume-definitions/0$",
            lambda: svc.expand_volume(volume.id, 12 * MIB),
            lambda: svc.get_volume(volume.id).size_bytes == 12 * MIB,
        ),
    ]
    for regex, call, landed in steps:
        assert emu.control("latency", {"ms": 1200, "paths": regex}).ok
        try:
            with pytest.raises(Unavailable):
                call()
        finally:
            emu.control("latency", {"ms": 0})
        wait_until(landed, timeout=10, interval=0.1, what=f"the delayed request to {regex} landing")
        call()
    assert [s.name for s in svc.list_snapshots(volume.id)] == ["slow"]
    assert svc.get_volume(volume.id).size_bytes == 12 * MIB
    [snapshot] = svc.list_snapshots(volume.id)
    svc.delete_snapshot(snapshot.id)
    assert emu.control("latency", {"ms": 1200, "paths": rd + "$"}).ok
    try:
        with pytest.raises(Unavailable):
            svc.delete_volume(volume.id)
    finally:
        emu.control("latency", {"ms": 0})
    wait_until(
        lambda: svc.find_volume(volume.name) is None, timeout=10, interval=0.1, what="the delayed delete"
    )
    svc.delete_volume(volume.id)  # a missing volume is fine


@pytest.mark.parametrize("retried", [True, False], ids=["publish retried", "unpublished at once"])
def test_an_attach_that_timed_out_is_still_undone_by_detach(emu: EmulatorProcess, retried: bool) -> None:
    """The diskless resource made by a lost make-available answer still belongs to the plugin."""
    svc = service(emu.url, read_timeout=0.5)
    volume = svc.create_volume(unique(), 8 * MIB, ON_B)
    assert emu.control("latency", {"ms": 1200, "paths": "/make-available$"}).ok
    try:
        with pytest.raises(Unavailable, match="may or may not have been applied"):
            svc.attach(volume.id, "node-c")
    finally:
        emu.control("latency", {"ms": 0})
    wait_until(
        lambda: "node-c" in {r.node for r in svc.get_volume(volume.id).replicas},
        timeout=10,
        interval=0.1,
        what="the delayed make-available",
    )
    if retried:
        attachment = svc.attach(volume.id, "node-c")  # the CO retries the publish
        assert attachment.diskless and attachment.created_by_attach
    svc.detach(volume.id, "node-c")  # ... and unpublishes, later or right away
    assert "node-c" not in {r.node for r in svc.get_volume(volume.id).replicas}
    # a replica with data is never taken for a lost attach
    svc.attach(volume.id, "node-b")
    svc.detach(volume.id, "node-b")
    assert {r.node for r in svc.get_volume(volume.id).replicas} == {"node-b"}


# ----------------------------------------------------------------------------- injected LINSTOR errors


def _inject(
    emu: EmulatorProcess, method: str, path_regex: str, status: int, ret_code: int, count: int = 1
) -> None:
    """Answer the next ``count`` matching requests with the error (-1: until cleared).

    A 997 is injected for good: the plugin waits a moment for a stale in-use report to
    clear, so a single 997 is retried away, as it would be on a real controller.
    """
    count = -1 if ret_code == 997 else count
    rule = {
        "method": method,
        "path_regex": path_regex,
        "status": status,
        "ret_code": ret_code,
        "count": count,
        "message": f"Injected {ret_code} for {method} {path_regex}.",
    }
    assert emu.control("errors", rule).ok


@pytest.mark.parametrize(
    ("method", "path_regex", "status", "ret_code", "error", "says"),
    [
        ("POST", "/spawn$", 500, 996, NoSpace, "cannot place volume"),
        ("POST", "/spawn$", 500, 980, NoSpace, "cannot place volume"),
        ("POST", "/spawn$", 400, 206, NoSpace, "cannot place volume"),
        ("POST", "/spawn$", 404, 300, NotFound, "cannot place volume"),
        ("POST", "/spawn$", 500, 999, OperationFailed, "Injected 999"),
        ("POST", "^/v1/resource-groups$", 500, 995, NodeOffline, "Injected 995"),
    ],
    ids=["not-enough-nodes", "no-free-space", "invalid-size", "unknown-node", "impl-error", "offline"],
)
def test_injected_create_errors_are_typed_and_leave_nothing(
    emu: EmulatorProcess,
    method: str,
    path_regex: str,
    status: int,
    ret_code: int,
    error: type[VolumeError],
    says: str,
) -> None:
    svc = service(emu.url)
    params = VolumeParams(place_count=1, fs_type=None, nodes=("node-c",))  # a group not made yet
    _inject(emu, method, path_regex, status, ret_code)
    name = unique()
    with pytest.raises(error) as failed:
        svc.create_volume(name, 8 * MIB, params)
    assert type(failed.value) is error
    assert says in str(failed.value)
    assert failed.value.details["code"] == ret_code
    assert faults(emu)["errors"] == []  # the rule was used up by exactly that call
    assert svc.find_volume(name) is None
    # the fault was one answer, not a broken service: the same request now works
    assert svc.create_volume(name, 8 * MIB, params).name == name


def test_injected_errors_on_existing_volumes_are_typed_and_change_nothing(emu: EmulatorProcess) -> None:
    svc = service(emu.url)
    volume = svc.create_volume(unique(), 8 * MIB, ON_B)
    rd = f"^/v1/resource-definitions/{volume.id}"
    cases: list[tuple[str, str, int, int, type[VolumeError], str, Callable[[], object]]] = [
        ("DELETE", rd + "$", 500, 997, InUse, "in use", lambda: svc.delete_volume(volume.id)),
        (
            "PUT",
            rd + "/volume-definitions/0$",
            500,
            980,
            NoSpace,
            "not enough free space to grow",
            lambda: svc.expand_volume(volume.id, 64 * MIB),
        ),
        (
            "POST",
            rd + "/snapshots$",
            500,
            995,
            NodeOffline,
            "a node holding it is offline",
            lambda: svc.create_snapshot(volume.id, "s1"),
        ),
        (
            "POST",
            rd + "/resources/node-c/make-available$",
            404,
            300,
            NotFound,
            "node node-c",
            lambda: svc.attach(volume.id, "node-c"),
        ),
        (
            "GET",
            "^/v1/view/resources",
            500,
            999,
            OperationFailed,
            "Injected 999",
            lambda: svc.get_volume(volume.id),
        ),
    ]
    for method, regex, status, ret_code, error, says, call in cases:
        _inject(emu, method, regex, status, ret_code)
        with pytest.raises(error) as failed:
            call()
        assert type(failed.value) is error, (method, regex)
        assert says in str(failed.value), (method, regex, str(failed.value))
        if ret_code != 997:  # the others were injected once and used up
            assert faults(emu)["errors"] == [], (method, regex)
        clear_faults(emu)
    after = svc.get_volume(volume.id)
    assert after.size_bytes == 8 * MIB
    assert {r.node for r in after.replicas} == {"node-b"}
    assert svc.list_snapshots(volume.id) == []
    svc.delete_volume(volume.id)
    assert svc.find_volume(volume.name) is None


def test_an_error_that_outlasts_the_retries_is_not_hidden(emu: EmulatorProcess) -> None:
    """LINSTOR error answers are final: the client never retries them, even for GETs."""
    svc = service(emu.url)
    rule = {"method": "GET", "path_regex": "^/v1/nodes/node-b$", "status": 500, "ret_code": 999, "count": -1}
    assert emu.control("errors", rule).ok
    try:
        before = svc.client.request_count
        with pytest.raises(OperationFailed):
            svc.node_topology("node-b")
        assert svc.client.request_count - before == 1
    finally:
        with contextlib.suppress(requests.RequestException):
            clear_faults(emu)
    assert svc.node_topology("node-b")[HOST] == "node-b"


# ------------------------------------------------------------------ many callers, and the front ends


def test_many_threads_fail_over_together(emu: EmulatorProcess, proxy_503: ThreadingHTTPServer) -> None:
    """Daemon threads share one client: the switch to the live controller is safe under load."""
    proxy = f"http://127.0.0.1:{proxy_503.server_address[1]}"
    svc = service(proxy, f"http://127.0.0.1:{free_port()}", emu.url)
    names = [unique("t") for _ in range(12)]

    def work(name: str) -> str:
        volume = svc.create_volume(name, 8 * MIB, ON_B)
        svc.expand_volume(volume.id, 12 * MIB)
        svc.delete_volume(volume.id)
        return name

    with ThreadPoolExecutor(max_workers=12) as pool:
        assert sorted(pool.map(work, names)) == sorted(names)
    assert svc.client.current_controller == emu.url
    assert not set(names) & {v.name for v in svc.list_volumes()}


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths are limited to about 107 bytes, shorter than pytest's tmp_path allows."""
    path = Path(tempfile.mkdtemp(prefix="fo-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_csi_driver_process_with_a_dead_controller_first(
    emu: EmulatorProcess, short_dir: Path, tmp_path: Path
) -> None:
    import grpc

    from csi.generated import csi_pb2
    from csi.testing import CsiClient, block_cap

    env = {k: v for k, v in os.environ.items() if not k.startswith("LS_")}
    env.update(
        {
            "CSI_ENDPOINT": f"unix://{short_dir}/csi.sock",
            "LS_CONTROLLERS": f"127.0.0.1:{free_port()},{emu.url}",  # a bare host:port is http
        }
    )
    log = tmp_path / "csi.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "csi", "--mode", "controller", "--node", "node-b"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with grpc.insecure_channel(f"unix://{short_dir}/csi.sock") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            client = CsiClient(channel)
            assert client.identity.Probe(csi_pb2.ProbeRequest(), timeout=5).ready.value
            volume = client.controller.CreateVolume(
                csi_pb2.CreateVolumeRequest(
                    name=unique("pvc"),
                    capacity_range={"required_bytes": 8 * MIB},
                    volume_capabilities=[block_cap()],
                    parameters={"linstor.csi.linbit.com/nodeList": "node-b"},
                ),
                timeout=30,
            ).volume
            listed = client.controller.ListVolumes(csi_pb2.ListVolumesRequest(), timeout=30)
            assert volume.volume_id in {e.volume.volume_id for e in listed.entries}
            client.controller.DeleteVolume(
                csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id), timeout=30
            )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()
    with pytest.raises(NotFound):
        service(emu.url).get_volume(volume.volume_id)


@pytest.mark.root
def test_docker_plugin_process_with_a_dead_controller_first(
    root_loop: None, emu: EmulatorProcess, short_dir: Path
) -> None:
    from tests.dockerd import PluginProcess

    controllers = f"http://127.0.0.1:{free_port()},{emu.url}"
    plugin = PluginProcess(short_dir / "p", controllers, "node-b")
    plugin.start()
    name = unique("docker")
    try:
        client = plugin.client(timeout=60)
        created = client.call(
            "VolumeDriver.Create", {"Name": name, "Opts": {"nodes": "node-b", "size": "16M"}}
        )
        assert created["Err"] == "", created
        assert name in {v["Name"] for v in client.call("VolumeDriver.List", {})["Volumes"]}
        assert client.health()["linstor_reachable"] is True
        assert client.call("VolumeDriver.Remove", {"Name": name})["Err"] == ""
    finally:
        plugin.stop()
    assert service(emu.url).find_volume(name) is None


# ------------------------------------------------------------------ multi-step creates under faults


def _restore_steps(target: str) -> dict[str, tuple[str, str]]:
    return {
        "definition": ("POST", "^/v1/resource-definitions$"),
        "restore": ("POST", "/snapshot-restore-resource/"),
        "placement": ("POST", f"^/v1/resource-definitions/{target}/autoplace$"),
        "completion marker": ("PUT", f"^/v1/resource-definitions/{target}$"),
    }


@pytest.mark.parametrize("step", ["definition", "restore", "placement", "completion marker"])
def test_a_restore_failing_at_any_step_leaves_nothing(emu: EmulatorProcess, step: str) -> None:
    svc = service(emu.url)
    source = svc.create_volume(unique("src"), 8 * MIB, ON_B)
    snap = svc.create_snapshot(source.id, unique("snap"))
    name = unique("restored")
    target = names.resource_name_for(name)
    method, regex = _restore_steps(target)[step]
    _inject(emu, method, regex, 500, 999)
    with pytest.raises(OperationFailed, match="Injected 999"):
        svc.create_volume(name, 8 * MIB, ON_B, source=f"snapshot:{snap.id}")
    assert faults(emu)["errors"] == []  # the step was reached and failed
    assert svc.client.list_resource_definitions([target]) == []
    restored = svc.create_volume(name, 8 * MIB, ON_B, source=f"snapshot:{snap.id}")
    assert restored.id == target and restored.source == f"snapshot:{snap.id}"


def test_a_restore_whose_rollback_failed_too_is_hidden_then_replaced(emu: EmulatorProcess) -> None:
    """The half-made definition keeps its CREATING marker: invisible, and removed by the retry."""
    svc = service(emu.url)
    source = svc.create_volume(unique("src"), 8 * MIB, ON_B)
    snap = svc.create_snapshot(source.id, unique("snap"))
    name = unique("restored")
    target = names.resource_name_for(name)
    _inject(emu, "POST", f"^/v1/resource-definitions/{target}/autoplace$", 500, 999)
    _inject(emu, "DELETE", f"^/v1/resource-definitions/{target}$", 500, 998)
    with pytest.raises(OperationFailed, match="Injected 999"):  # the cause, not the rollback's error
        svc.create_volume(name, 8 * MIB, ON_B, source=f"snapshot:{snap.id}")
    assert faults(emu)["errors"] == []
    assert len(svc.client.list_resource_definitions([target])) == 1  # left behind ...
    assert svc.find_volume(name) is None  # ... but no volume to anyone
    assert target not in {v.id for v in svc.list_volumes()}
    with pytest.raises(NotFound):
        svc.get_volume(target)
    restored = svc.create_volume(name, 8 * MIB, ON_B, source=f"snapshot:{snap.id}")
    assert restored.id == target and svc.get_volume(target).name == name


@pytest.mark.parametrize(
    ("step", "method", "regex"),
    [
        ("clone", "POST", "/clone$"),
        ("clone status", "GET", "/clone/"),
        ("placement", "POST", "/autoplace$"),
    ],
)
def test_a_clone_failing_at_any_step_leaves_no_volume(
    emu: EmulatorProcess, step: str, method: str, regex: str
) -> None:
    svc = service(emu.url)
    source = svc.create_volume(unique("src"), 8 * MIB, ON_B)
    name = unique("clone")
    target = names.resource_name_for(name)
    _inject(emu, method, regex, 500, 999)
    with pytest.raises(OperationFailed, match="Injected 999"):
        svc.create_volume(name, 8 * MIB, ON_B, source=f"volume:{source.id}")
    assert faults(emu)["errors"] == [], step
    assert svc.list_snapshots(source.id) == []  # no temporary snapshot left either
    assert svc.find_volume(name) is None and target not in {v.id for v in svc.list_volumes()}
    if step != "clone status":
        assert svc.client.list_resource_definitions([target]) == []
    # else: a poll that fails while LINSTOR still copies cannot roll back at once (a definition
    # being cloned cannot be deleted); the half-made one stays hidden until a retry replaces it
    made = wait_until(
        lambda: svc.create_volume(name, 8 * MIB, ON_B, source=f"volume:{source.id}"),
        timeout=15,
        interval=0.2,
        what="the interrupted clone settling",
        ignore=(Busy,),
    )
    assert made.id == target and svc.get_volume(target).name == name
    assert len(svc.client.list_resource_definitions([target])) == 1


# ----------------------------------------------------------------------------- injected errors, front ends


def test_injected_linstor_errors_reach_csi_as_the_spec_codes(emu: EmulatorProcess) -> None:
    """The same LINSTOR answers, one layer up: the gRPC status a CO acts on."""
    import grpc

    from csi.generated import csi_pb2
    from csi.testing import block_cap, driver_on_emulator
    from tests import csi_requests as rq

    def create(name: str) -> csi_pb2.CreateVolumeRequest:
        return csi_pb2.CreateVolumeRequest(
            name=name,
            capacity_range={"required_bytes": 8 * MIB},
            volume_capabilities=[block_cap()],
            parameters={"linstor.csi.linbit.com/nodeList": "node-b"},
        )

    with driver_on_emulator(emu.url, "node-b", mode="controller") as (_, client, _):
        ctl = client.controller
        volume = ctl.CreateVolume(create(unique("pvc")), timeout=30).volume
        rd = f"^/v1/resource-definitions/{volume.volume_id}"
        cases: list[tuple[str, str, int, int, grpc.StatusCode, Callable[[], object]]] = [
            ("POST", "/spawn$", 500, 996, grpc.StatusCode.RESOURCE_EXHAUSTED,
             lambda: ctl.CreateVolume(create(unique("pvc")), timeout=30)),
            ("DELETE", rd + "$", 500, 997, grpc.StatusCode.FAILED_PRECONDITION,
             lambda: ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id), timeout=30)),
            ("POST", rd + "/snapshots$", 500, 995, grpc.StatusCode.UNAVAILABLE,
             lambda: ctl.CreateSnapshot(
                 csi_pb2.CreateSnapshotRequest(source_volume_id=volume.volume_id, name=unique("snap")),
                 timeout=30,
             )),
            ("PUT", rd + "/volume-definitions/0$", 500, 980, grpc.StatusCode.RESOURCE_EXHAUSTED,
             lambda: ctl.ControllerExpandVolume(
                 csi_pb2.ControllerExpandVolumeRequest(
                     volume_id=volume.volume_id, capacity_range={"required_bytes": 64 * MIB}
                 ),
                 timeout=30,
             )),
            ("POST", "/make-available$", 404, 300, grpc.StatusCode.NOT_FOUND,
             lambda: ctl.ControllerPublishVolume(
                 rq.controller_publish(volume.volume_id, "node-c", block_cap()),
                 timeout=30,
             )),
            ("GET", "^/v1/view/resources", 500, 999, grpc.StatusCode.INTERNAL,
             lambda: ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id), timeout=30)),
        ]  # fmt: skip
        for method, regex, status, ret_code, code, call in cases:
            _inject(emu, method, regex, status, ret_code)
            with pytest.raises(grpc.RpcError) as failed:
                call()
            assert failed.value.code() == code, (method, regex, failed.value.details())
            details = failed.value.details() or ""
            assert details and "Traceback" not in details, (method, regex)
            clear_faults(emu)
            assert faults(emu)["errors"] == [], (method, regex)
        after = service(emu.url).get_volume(volume.volume_id)  # nothing changed on the way
        assert after.size_bytes == 8 * MIB and {r.node for r in after.replicas} == {"node-b"}
        assert service(emu.url).list_snapshots(volume.volume_id) == []
        ctl.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id), timeout=30)
    with pytest.raises(NotFound):
        service(emu.url).get_volume(volume.volume_id)


@pytest.mark.root
def test_injected_linstor_errors_reach_docker_as_actionable_sentences(
    root_loop: None, emu: EmulatorProcess, short_dir: Path
) -> None:
    from tests.dockerd import PluginProcess

    plugin = PluginProcess(short_dir / "p", emu.url, "node-b")
    plugin.start()
    try:
        client = plugin.client(timeout=60)
        name = unique("docker")
        opts = {"nodes": "node-b", "size": "16M"}
        _inject(emu, "POST", "/spawn$", 500, 996)
        err = str(client.call("VolumeDriver.Create", {"Name": name, "Opts": opts})["Err"])
        assert "Injected 996" in err and "add storage or nodes" in err, err
        assert name not in {v["Name"] for v in client.call("VolumeDriver.List", {})["Volumes"]}
        assert client.call("VolumeDriver.Create", {"Name": name, "Opts": opts})["Err"] == ""

        resource = names.resource_name_for(name)
        _inject(emu, "DELETE", f"^/v1/resource-definitions/{resource}$", 500, 997)
        err = str(client.call("VolumeDriver.Remove", {"Name": name})["Err"])
        assert "in use" in err and "Traceback" not in err, err
        assert name in {v["Name"] for v in client.call("VolumeDriver.List", {})["Volumes"]}
        clear_faults(emu)

        _inject(emu, "GET", "^/v1/resource-definitions", 500, 999)
        err = str(client.call("VolumeDriver.Get", {"Name": name})["Err"])
        assert "Injected 999" in err and "log" in err and "Traceback" not in err, err
        assert faults(emu)["errors"] == []
        assert client.call("VolumeDriver.Remove", {"Name": name})["Err"] == ""
    finally:
        plugin.stop()
    assert service(emu.url).find_volume(name) is None

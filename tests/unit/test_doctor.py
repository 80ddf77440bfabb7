"""The doctor's verdicts, from fakes: a scripted LINSTOR client and a scripted host."""

from __future__ import annotations

import http.server
import json
import os
import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from plugin import errors
from plugin.config import Config
from plugin.linstor.records import Node, StoragePool, VersionInfo, many
from tools import doctor
from tools.doctor import FAIL, OK, WARN, Host, Result

GIB_KIB = 1024 * 1024


class FakeLinstor:
    """Answers like LinstorClient; an exception instance as an answer is raised."""

    def __init__(self, version: Any = None, node: Any = None, pools: Any = None) -> None:
        self.version = version if version is not None else {"version": "1.29.1", "rest_api_version": "1.23.0"}
        self.node = (
            node if node is not None else {"name": "n1", "type": "SATELLITE", "connection_status": "ONLINE"}
        )
        self.pools = (
            pools
            if pools is not None
            else [
                {"storage_pool_name": "DfltDisklessStorPool", "provider_kind": "DISKLESS"},
                {
                    "storage_pool_name": "pool1",
                    "provider_kind": "LVM_THIN",
                    "free_capacity": 8 * GIB_KIB,
                    "total_capacity": 10 * GIB_KIB,
                },
            ]
        )
        self.calls: list[str] = []

    def _answer(self, name: str, value: Any) -> Any:
        self.calls.append(name)
        if isinstance(value, Exception):
            raise value
        return value

    def controller_version(self) -> VersionInfo:
        return VersionInfo.from_wire(self._answer("controller_version", self.version))

    def get_node(self, node: str) -> Node:
        return Node.from_wire(self._answer("get_node", self.node))

    def node_storage_pools(self, node: str) -> list[StoragePool]:
        return many(StoragePool.from_wire, self._answer("node_storage_pools", self.pools))


def fake_host(tmp_path: Path, tools: Sequence[str] = (), drbd: str | None = None, modinfo: str = "") -> Host:
    proc_drbd = tmp_path / "proc-drbd"
    if drbd is not None:
        proc_drbd.write_text(drbd)

    def run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        assert list(argv[:1]) == ["modinfo"]
        return subprocess.CompletedProcess(list(argv), 0 if modinfo else 1, modinfo, "")

    return Host(
        which=lambda cmd: f"/usr/sbin/{cmd}" if cmd in tools else None,
        proc_drbd=proc_drbd,
        run=run,
        glob=lambda pattern: [],
        probe_csi=lambda path: (OK, "gRPC health SERVING", ""),
        probe_docker=lambda path: (OK, "plugin healthy", ""),
    )


ALL_TOOLS = tuple(t.command for t in doctor.TOOLS)
CONFIG = Config(controllers=("http://ctrl:3370",), node_name="n1", config_file=None)


@pytest.fixture
def listening_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "csi.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, 0o660)
    server.listen(1)
    yield path
    server.close()


def by_check(results: list[Result]) -> dict[str, Result]:
    return {r.check: r for r in results}


def test_healthy_node_is_all_ok(tmp_path: Path, listening_socket: Path) -> None:
    host = fake_host(tmp_path, ALL_TOOLS, drbd="version: 9.2.12 (api:2/proto:86-122)\n")
    results = doctor.run_checks(
        CONFIG, FakeLinstor(), host, f"unix://{listening_socket}", str(listening_socket)
    )
    assert [r for r in results if r.verdict != OK] == []
    checks = by_check(results)
    assert "LINSTOR 1.29.1" in checks["controller"].message
    assert "ONLINE" in checks["node"].message
    assert "8.0 GiB free of 10.0 GiB" in checks["storage pool pool1"].message
    assert "DfltDisklessStorPool" not in " ".join(checks)
    assert "9.2.12" in checks["drbd"].message


def test_unreachable_controller_fails_and_skips_linstor_checks(tmp_path: Path) -> None:
    client = FakeLinstor(version=errors.Unavailable("no LINSTOR controller reachable"))
    results = doctor.run_checks(CONFIG, client, fake_host(tmp_path, ALL_TOOLS), "unix:///nope", "/nope")
    checks = by_check(results)
    assert checks["controller"].verdict == FAIL
    assert "http://ctrl:3370" in checks["controller"].message
    assert checks["node"].verdict == WARN
    assert client.calls == ["controller_version"], "no further LINSTOR calls after the controller failed"


def test_unregistered_node_fails_with_what_to_do(tmp_path: Path) -> None:
    client = FakeLinstor(node=errors.NotFound("no such node"))
    checks = by_check(doctor.run_checks(CONFIG, client, fake_host(tmp_path, ALL_TOOLS), "unix:///x", "/x"))
    assert checks["node"].verdict == FAIL
    assert "linstor node create n1" in checks["node"].hint
    assert "storage pools" not in checks and "storage pool pool1" not in checks


def test_offline_node_fails_but_pools_are_still_shown(tmp_path: Path) -> None:
    client = FakeLinstor(node={"name": "n1", "type": "SATELLITE", "connection_status": "OFFLINE"})
    checks = by_check(doctor.run_checks(CONFIG, client, fake_host(tmp_path, ALL_TOOLS), "unix:///x", "/x"))
    assert checks["node"].verdict == FAIL
    assert "OFFLINE" in checks["node"].message and "linstor-satellite" in checks["node"].hint
    assert checks["storage pool pool1"].verdict == OK


@pytest.mark.parametrize(
    ("pools", "verdict", "text"),
    [
        ([{"storage_pool_name": "DfltDisklessStorPool", "provider_kind": "DISKLESS"}], WARN, "diskless"),
        (
            [
                {
                    "storage_pool_name": "p",
                    "provider_kind": "ZFS",
                    "free_capacity": 100,
                    "total_capacity": GIB_KIB,
                }
            ],
            WARN,
            "only 100.0 KiB free",
        ),
        ([{"storage_pool_name": "p", "provider_kind": "LVM"}], WARN, "does not report its capacity"),
        (
            [
                {
                    "storage_pool_name": "p",
                    "provider_kind": "LVM",
                    "free_capacity": 1,
                    "total_capacity": 2,
                    "reports": [{"message": "volume group vg0 not found"}],
                }
            ],
            FAIL,
            "vg0 not found",
        ),
        (errors.Unavailable("controller went away"), FAIL, "controller went away"),
    ],
)
def test_storage_pool_verdicts(pools: Any, verdict: str, text: str) -> None:
    results = doctor.check_storage_pools(FakeLinstor(pools=pools), "n1")
    assert len(results) == 1
    assert results[0].verdict == verdict
    assert text in results[0].message


def test_missing_tools_name_their_package_and_severity(tmp_path: Path) -> None:
    present = tuple(t for t in ALL_TOOLS if t not in ("mkfs.ext4", "mkfs.btrfs"))
    checks = by_check(doctor.check_tools(fake_host(tmp_path, present)))
    assert checks["tool mkfs.ext4"].verdict == FAIL
    assert checks["tool mkfs.ext4"].hint == "install e2fsprogs"
    assert checks["tool mkfs.btrfs"].verdict == WARN
    assert checks["tool mkfs.btrfs"].hint == "install btrfs-progs"
    assert checks["tool blkid"].verdict == OK


def test_drbd_verdicts(tmp_path: Path) -> None:
    assert doctor.check_drbd(fake_host(tmp_path, drbd="version: 9.1.0 (api:2)\n")).verdict == OK
    old = doctor.check_drbd(fake_host(tmp_path, drbd="version: 8.4.11 (api:1)\n"))
    assert old.verdict == WARN and "DRBD 9" in old.message
    (tmp_path / "proc-drbd").unlink()
    not_loaded = doctor.check_drbd(fake_host(tmp_path, modinfo="9.2.12\n"))
    assert not_loaded.verdict == WARN and not_loaded.hint == "modprobe drbd"
    absent = doctor.check_drbd(fake_host(tmp_path))
    assert absent.verdict == WARN, "a missing DRBD module is not fatal (emulator, storage-only layers)"
    assert "emulator" in absent.hint


def test_socket_verdicts(tmp_path: Path, listening_socket: Path) -> None:
    host = fake_host(tmp_path)
    ok = by_check(doctor.check_sockets(host, f"unix://{listening_socket}", str(tmp_path / "missing.sock")))
    assert ok["csi socket"].verdict == OK and "0660" in ok["csi socket"].message
    assert ok["docker socket"].verdict == WARN and "does not exist" in ok["docker socket"].message

    os.chmod(listening_socket, 0o666)
    loose = by_check(doctor.check_sockets(host, f"unix://{listening_socket}", "/x"))["csi socket"]
    assert loose.verdict == WARN and "writable by every user" in loose.message

    stale = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(stale))
    dead.close()
    verdict = by_check(doctor.check_sockets(host, f"unix://{stale}", "/x"))["csi socket"]
    assert verdict.verdict == FAIL and "nothing accepts connections" in verdict.message

    regular = tmp_path / "file.sock"
    regular.write_text("")
    assert by_check(doctor.check_sockets(host, f"unix://{regular}", "/x"))["csi socket"].verdict == FAIL
    assert by_check(doctor.check_sockets(host, "tcp://1.2.3.4:5", "/x"))["csi socket"].verdict == FAIL


def test_managed_docker_plugin_sockets_are_checked(tmp_path: Path, listening_socket: Path) -> None:
    host = fake_host(tmp_path)
    host.glob = lambda pattern: [str(listening_socket)]
    checks = by_check(doctor.check_sockets(host, "unix:///x", str(tmp_path / "no-legacy.sock")))
    assert "docker socket" not in checks, "no legacy socket expected when a managed plugin is found"
    assert checks["docker managed plugin socket"].verdict == OK


def test_result_line_shows_the_hint_only_for_problems() -> None:
    assert Result("x", OK, "fine", "ignored").line() == "OK    x: fine"
    assert Result("x", FAIL, "broken", "fix it").line() == "FAIL  x: broken -> fix it"


def test_main_exit_code_and_output(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A bad configuration is one FAIL line and exit 1, without a traceback."""
    missing_ca = tmp_path / "no-ca.pem"
    monkeypatch.setenv("LS_ROOT_CA", str(missing_ca))
    code = doctor.main(["--config-file", ""], host=fake_host(tmp_path))
    out = capsys.readouterr().out
    assert code == 1
    assert out.splitlines()[0].startswith("FAIL  configuration:")
    assert str(missing_ca) in out
    assert out.splitlines()[-1] == "1 check: 1 failed, 0 warnings"
    assert "Traceback" not in out


def test_sizes_are_shown_in_binary_units() -> None:
    assert doctor._human(0) == "0 B"
    assert doctor._human(1) == "1.0 KiB"
    assert doctor._human(1536) == "1.5 MiB"
    assert doctor._human(1024**3) == "1.0 TiB"
    assert doctor._human(5 * 1024**4) == "5.0 PiB"


def test_socket_verdict_follows_the_health_probe(tmp_path: Path, listening_socket: Path) -> None:
    host = fake_host(tmp_path)
    host.probe_csi = lambda path: (FAIL, "does not answer gRPC health checks (DEADLINE_EXCEEDED)", "restart")
    hung = by_check(doctor.check_sockets(host, f"unix://{listening_socket}", "/x"))["csi socket"]
    assert hung.verdict == FAIL and "accepts connections but does not answer" in hung.message
    host.probe_csi = lambda path: (WARN, "gRPC health NOT_SERVING", "wait")
    assert (
        by_check(doctor.check_sockets(host, f"unix://{listening_socket}", "/x"))["csi socket"].verdict == WARN
    )


@pytest.fixture
def fast_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "PROBE_TIMEOUT", 0.5)


def test_probe_csi_against_a_real_grpc_health_service(tmp_path: Path, fast_probes: None) -> None:
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    path = tmp_path / "csi.sock"
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"unix://{path}")
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert doctor.probe_csi(str(path))[:2] == (OK, "gRPC health SERVING")
        servicer.enter_graceful_shutdown()
        assert doctor.probe_csi(str(path))[:2] == (WARN, "gRPC health NOT_SERVING")
    finally:
        server.stop(0).wait()


def test_probe_csi_fails_on_a_socket_that_never_answers(listening_socket: Path, fast_probes: None) -> None:
    verdict, message, hint = doctor.probe_csi(str(listening_socket))
    assert verdict == FAIL and "gRPC health" in message and hint


class _HealthHandler(http.server.BaseHTTPRequestHandler):
    answer: ClassVar[dict[str, Any]] = {}

    def do_GET(self) -> None:
        body = json.dumps(self.answer).encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.mark.parametrize(
    ("answer", "verdict", "text"),
    [
        ({"status": "ok", "mounted_volumes": 2, "linstor_reachable": True}, OK, "2 volumes mounted"),
        ({"status": "ok", "mounted_volumes": 0, "linstor_reachable": False}, WARN, "cannot reach LINSTOR"),
    ],
)
def test_probe_docker_reads_the_plugin_health(
    tmp_path: Path, fast_probes: None, answer: dict[str, Any], verdict: str, text: str
) -> None:
    path = tmp_path / "linstor.sock"
    handler = type("Handler", (_HealthHandler,), {"answer": answer})
    server = _UnixHTTPServer(str(path), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = doctor.probe_docker(str(path))
        assert result[0] == verdict and text in result[1]
    finally:
        server.shutdown()
        server.server_close()


def test_probe_docker_fails_on_a_socket_that_never_answers(listening_socket: Path, fast_probes: None) -> None:
    verdict, message, _ = doctor.probe_docker(str(listening_socket))
    assert verdict == FAIL and "/health" in message


@pytest.mark.parametrize(
    ("version", "verdict", "words"),
    [
        ({"version": "1.34.0", "rest_api_version": "1.28.0"}, OK, "within the supported range"),
        ({"version": "1.27.1", "rest_api_version": "1.21.0"}, FAIL, "REST API 1.22.0 or newer"),
        ({"version": "1.36.0", "rest_api_version": "1.30.0"}, WARN, "newer than the newest tested"),
        ({"version": "custom-build"}, WARN, "no usable version"),
    ],
)
def test_controller_version_is_checked_against_the_supported_range(
    tmp_path: Path, listening_socket: Path, version: dict[str, str], verdict: str, words: str
) -> None:
    host = fake_host(tmp_path, ALL_TOOLS, drbd="version: 9.2.12 (api:2/proto:86-122)\n")
    results = doctor.run_checks(
        CONFIG, FakeLinstor(version=version), host, f"unix://{listening_socket}", str(listening_socket)
    )
    controller = by_check(results)["controller"]
    assert controller.verdict == verdict and words in controller.message, controller

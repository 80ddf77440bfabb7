"""The doctor against a running LINSTOR controller emulator, as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import requests

from testkit.waiting import wait_until
from tests.conftest import REPO_ROOT


def run_doctor(*args: str) -> tuple[int, list[dict[str, Any]]]:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.doctor", "--json", "--config-file", "", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines()]


def by_check(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["check"]: r for r in results}


def test_doctor_reports_controller_node_and_pools(emulator_factory: Any, tmp_path: Any) -> None:
    emu = emulator_factory(nodes=("node-b",))
    nodes = {n["name"]: n for n in requests.get(emu.url + "/v1/nodes", timeout=10).json()}
    version = requests.get(emu.url + "/v1/controller/version", timeout=10).json()["version"]
    assert "node-b" in nodes

    code, results = run_doctor(
        "--controllers",
        emu.url,
        "--node",
        "node-b",
        "--csi-endpoint",
        f"unix://{tmp_path}/csi.sock",
        "--docker-socket",
        str(tmp_path / "linstor.sock"),
    )
    checks = by_check(results)
    assert checks["controller"]["verdict"] == "OK"
    assert version in checks["controller"]["message"]
    assert checks["node"]["verdict"] == "OK", checks["node"]
    pools = [r for r in results if r["check"].startswith("storage pool")]
    assert pools, "the emulator's node has a storage pool"
    assert all(p["verdict"] in ("OK", "WARN") for p in pools)
    assert any("free of" in p["message"] for p in pools)
    # Sockets that do not exist are a warning, not a failure.
    assert checks["csi socket"]["verdict"] == "WARN"
    failed = [r for r in results if r["verdict"] == "FAIL"]
    assert code == (1 if failed else 0)
    assert all(r["check"].startswith("tool ") for r in failed), failed


def test_doctor_fails_for_an_unknown_node(emulator_factory: Any) -> None:
    emu = emulator_factory(nodes=("node-b",))
    code, results = run_doctor("--controllers", emu.url, "--node", "no-such-node")
    node = by_check(results)["node"]
    assert code == 1
    assert node["verdict"] == "FAIL"
    assert "no-such-node" in node["message"] and "linstor node create" in node["hint"]


def test_doctor_fails_when_the_controller_is_down(emulator_factory: Any) -> None:
    emu = emulator_factory(nodes=("node-b",))
    url = emu.url
    emu.stop()
    code, results = run_doctor("--controllers", url, "--node", "node-b")
    checks = by_check(results)
    assert code == 1
    assert checks["controller"]["verdict"] == "FAIL"
    assert url in checks["controller"]["message"]
    assert checks["node"]["verdict"] == "WARN"


def test_doctor_sees_a_running_csi_driver_socket(emulator_factory: Any, tmp_path: Any) -> None:
    """A live driver's socket is OK; once the driver is gone the check says so."""
    emu = emulator_factory(nodes=("node-b",))
    sock = tmp_path / "csi.sock"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "csi",
            "--endpoint",
            f"unix://{sock}",
            "--mode",
            "controller",
            "--node",
            "node-b",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "LS_CONTROLLERS": emu.url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def listening() -> bool:
            assert driver.poll() is None, "the CSI driver exited"
            return sock.exists()

        wait_until(listening, timeout=20, what="the CSI driver's socket")
        args = ("--controllers", emu.url, "--node", "node-b", "--csi-endpoint", f"unix://{sock}")
        _, results = run_doctor(*args)
        csi = by_check(results)["csi socket"]
        assert csi["verdict"] == "OK", csi
        assert "listening" in csi["message"] and "gRPC health SERVING" in csi["message"]
    finally:
        driver.terminate()
        driver.wait(timeout=30)
    _, results = run_doctor(*args)
    assert by_check(results)["csi socket"]["verdict"] in ("WARN", "FAIL")

"""DRBD TCP ports and minors come from configurable ranges, as the controller's settings allow."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import requests

from tests.conftest import REPO_ROOT, EmulatorProcess


def make_volume(url: str, name: str) -> requests.Response:
    """A definition with one 1 MiB volume and a replica on node-b; the last answer is returned."""
    s = requests.Session()
    s.post(f"{url}/v1/resource-definitions", json={"resource_definition": {"name": name}}, timeout=10)
    vd = s.post(
        f"{url}/v1/resource-definitions/{name}/volume-definitions",
        json={"volume_definition": {"size_kib": 1024}},
        timeout=10,
    )
    if vd.status_code >= 400:
        return vd
    return s.post(
        f"{url}/v1/resource-definitions/{name}/resources",
        json=[{"resource": {"node_name": "node-b"}}],
        timeout=10,
    )


def drbd_numbers(url: str, name: str) -> tuple[list[int], int]:
    """(tcp ports, minor) of the replica on node-b."""
    rsc = requests.get(f"{url}/v1/resource-definitions/{name}/resources/node-b", timeout=10).json()
    drbd = rsc["layer_object"]["drbd"]
    return drbd["tcp_ports"], drbd["drbd_volumes"][0]["drbd_volume_definition"]["minor_number"]


def test_ports_and_minors_come_from_the_configured_ranges(
    root_loop: None, emulator_factory: Callable[..., EmulatorProcess]
) -> None:
    emu = emulator_factory(
        nodes=("node-b",), extra_args=("--tcp-port-range", "7100-7101", "--minor-range", "3000-3002")
    )
    for name in ("r1", "r2"):
        assert make_volume(emu.url, name).status_code < 400
    assert drbd_numbers(emu.url, "r1") == ([7100], 3000)
    assert drbd_numbers(emu.url, "r2") == ([7101], 3001)

    refused = make_volume(emu.url, "r3")  # node-b has no port left; a minor is still free
    assert refused.status_code >= 400
    assert "No free DRBD TCP port left on node" in refused.text
    assert requests.get(f"{emu.url}/v1/resource-definitions/r3/resources", timeout=10).json() == []

    requests.delete(f"{emu.url}/v1/resource-definitions/r1", timeout=10).raise_for_status()
    assert make_volume(emu.url, "r4").status_code < 400  # a freed port is handed out again
    assert drbd_numbers(emu.url, "r4")[0] == [7100]


def test_a_bad_range_is_refused_at_start_with_the_reason(tmp_path: Path) -> None:
    for flag, value, reason in (
        ("--tcp-port-range", "8000-7000", "DRBD TCP port range 8000-7000 must have LOW <= HIGH"),
        ("--tcp-port-range", "7000-70000", "both within 1-65535"),
        ("--minor-range", "many", "'many' is not a range LOW-HIGH of DRBD minor numbers"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "emulator", "serve", "--state-dir", str(tmp_path / "s"), flag, value],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert reason in done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "s").exists()

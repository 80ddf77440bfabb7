"""The ``linstor-emulator serve`` process: metrics wired to its flags, and a clean SIGTERM.

The request counting itself is covered in-process (tests/unit/test_emulator_metrics.py);
here the real command line runs, so the flag and the signal handling are what is tested.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from emulator.state import STATE_FILE
from tests.conftest import EmulatorProcess


def gauge(text: str, name: str) -> float:
    family = next(f for f in text_string_to_metric_families(text) if f.name == name)
    return family.samples[0].value


def test_metrics_are_served_by_default_and_off_with_no_metrics(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    on: EmulatorProcess = emulator_factory(name="on")
    created = requests.post(
        f"{on.url}/v1/resource-definitions", json={"resource_definition": {"name": "m1"}}, timeout=10
    )
    assert created.status_code == 201, created.text
    text = requests.get(f"{on.url}/metrics", timeout=10).text
    assert gauge(text, "linstor_emulator_resource_definitions") == 1
    assert 'endpoint="/v1/resource-definitions",method="POST",status="201"' in text
    off: EmulatorProcess = emulator_factory(name="off", extra_args=("--no-metrics",))
    assert requests.get(f"{off.url}/metrics", timeout=10).status_code == 404


def test_sigterm_saves_the_state_and_exits_zero_promptly(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    emu: EmulatorProcess = emulator_factory()
    assert emu.proc is not None
    with requests.Session() as idle:  # a kept-alive connection must not hold the shutdown up
        created = idle.post(
            f"{emu.url}/v1/resource-definitions", json={"resource_definition": {"name": "t1"}}, timeout=10
        )
        assert created.status_code == 201, created.text
        # Only the save at shutdown can bring the file back.
        (emu.state_dir / STATE_FILE).unlink()
        started = time.monotonic()
        emu.proc.send_signal(signal.SIGTERM)
        try:
            code = emu.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            emu.proc.kill()
            raise
        elapsed = time.monotonic() - started
    emu.proc = None
    assert code == 0
    assert elapsed < 5, f"took {elapsed:.1f}s to stop"
    saved = json.loads((emu.state_dir / STATE_FILE).read_text())
    assert "T1" in saved["resource_definitions"]
    assert emu.log_path is not None
    lines = [json.loads(line) for line in emu.log_path.read_text().splitlines() if line.startswith("{")]
    assert any(line["msg"].startswith("signal 15") for line in lines)
    assert lines[-1]["msg"].startswith("stopped")
    assert not any("Traceback" in line.get("exc", "") for line in lines)

"""Hostile request bodies get a LINSTOR-shaped answer, never a traceback in the log."""

from __future__ import annotations

import pytest
import requests

#: ``API_CALL_PARSE_ERROR`` exactly as the controller sends it.
API_CALL_PARSE_ERROR = -3458764513820540931


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/resource-definitions", "[" * 100_000),
        ("/v1/resource-groups/DfltRscGrp/spawn", '{"a":' * 50_000 + "1" + "}" * 50_000),
    ],
)
def test_deeply_nested_json_is_a_parse_error(emulator_factory, path: str, body: str) -> None:  # type: ignore[no-untyped-def]
    emu = emulator_factory()
    answer = requests.post(
        emu.url + path, data=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert answer.status_code == 400
    entries = answer.json()
    assert entries[0]["message"] == "Unable to parse input json."
    assert entries[0]["ret_code"] == API_CALL_PARSE_ERROR
    assert "nested too deeply" in entries[0]["details"]
    control = requests.post(emu.url + "/_emu/latency", data="[" * 100_000, timeout=30)
    assert control.status_code == 400 and "nested too deeply" in control.json()["error"]
    assert requests.get(emu.url + "/v1/nodes", timeout=10).status_code == 200
    log = emu.log_path.read_text(errors="replace") if emu.log_path else ""
    assert "RecursionError" not in log and "Traceback" not in log

"""The emulator pauses the cyclic collector while a REST read builds its answer, and only then.

The pause is shared by overlapping reads, so the collector must run again exactly when
the last one ends, after errors too, and never be switched on by a read if something
else had switched it off.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from emulator import collector
from emulator.server import EmulatorServer
from tests.unit.test_emulator_metrics import start_server, url


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    assert collector.readers() == 0
    if not was:
        gc.disable()


def test_paused_inside_and_running_again_after_also_after_an_error() -> None:
    with collector.paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector.paused():
        raise RuntimeError("the handler failed")
    assert gc.isenabled()


def test_overlapping_reads_share_the_pause_until_the_last_one_ends() -> None:
    inside, leave = threading.Event(), threading.Event()

    def other_read() -> None:
        with collector.paused():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other_read)
    thread.start()
    assert inside.wait(10)
    with collector.paused():
        assert collector.readers() == 2
    assert not gc.isenabled()  # the other read still runs
    leave.set()
    thread.join(10)
    assert gc.isenabled()


def test_a_collector_switched_off_before_stays_off() -> None:
    gc.disable()
    with collector.paused():
        pass
    assert not gc.isenabled()
    gc.enable()


def test_the_server_pauses_for_rest_reads_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str, bool]] = []
    dispatch = EmulatorServer.dispatch

    def recording(self: EmulatorServer, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        seen.append((method, path, gc.isenabled()))
        return dispatch(self, method, path, *args, **kwargs)

    monkeypatch.setattr(EmulatorServer, "dispatch", recording)
    server = start_server(tmp_path)
    try:
        made = requests.post(
            url(server, "/v1/resource-definitions"), json={"resource_definition": {"name": "r1"}}, timeout=10
        )
        assert made.status_code == 201, made.text
        listed = requests.get(url(server, "/v1/resource-definitions"), timeout=10)
        assert [r["name"] for r in listed.json()] == ["r1"]
        assert requests.get(url(server, "/metrics"), timeout=10).status_code == 200
    finally:
        server.stop()
    assert seen == [
        ("POST", "/v1/resource-definitions", True),
        ("GET", "/v1/resource-definitions", False),
        ("GET", "/metrics", True),
    ]
    assert gc.isenabled()

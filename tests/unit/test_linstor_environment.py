"""Proxy settings from the environment: honoured as requests would, but read once, at start.

The transport reads ``HTTP_PROXY``/``NO_PROXY`` (and CA bundles, ``.netrc``) for each
controller when it is made, instead of letting requests scan the environment on every call.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.test_linstor_client import (
    FakeController,
    clear_proxy_environment,
    client_for,
    closed_port,
    serving_fake,
)

CONTROLLER = "http://linstor.invalid:3370"  # never resolved: only a proxy can reach it


@pytest.fixture
def proxy() -> Iterator[FakeController]:
    """A fake that answers as an HTTP proxy would see requests: with absolute URLs as paths."""
    with serving_fake() as server:
        yield server


@pytest.fixture(autouse=True)
def clean_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxy_environment(monkeypatch)


def test_calls_go_through_the_proxy_the_environment_named_at_start(
    proxy: FakeController, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy.on("GET", f"{CONTROLLER}/v1/nodes", (200, []))
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    client = client_for(CONTROLLER)
    # Changed after start: not read again (a daemon's environment does not change).
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port()}")
    assert client.list_nodes() == []
    assert client.list_nodes() == []
    assert proxy.count("GET", f"{CONTROLLER}/v1/nodes") == 2


def test_no_proxy_sends_a_controller_directly(proxy: FakeController, monkeypatch: pytest.MonkeyPatch) -> None:
    with serving_fake() as direct:
        direct.on("GET", "/v1/nodes", (200, []))
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        client = client_for(direct.url)
        assert client.list_nodes() == []
        assert direct.count("GET", "/v1/nodes") == 1
        assert proxy.seen == []

"""Requests built per controller once (plugin.linstor.prepared) are the ones requests would send.

The transport no longer goes through ``Session.request``; these tests hold the hand-built
request to what the session builds for the same call (method, URL, headers in order, body),
and check on the wire that what was read once at start (``.netrc``, CA bundle) still
reaches every call.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from plugin.errors import Unavailable
from plugin.linstor.prepared import Route, query_string
from plugin.linstor.transport import USER_AGENT
from tests.unit.test_linstor_client import (
    FakeController,
    FakeHandler,
    Pki,
    client_for,
    pki,  # noqa: F401 - the module-scoped fixture, shared
    send_bytes,
    server_tls,
    serving_fake,
    start_fake,
)

BASE = "http://controller.invalid:3370"
TIMEOUT = (2.0, 5.0)

PARAMS: list[dict[str, Any] | None] = [
    None,
    {},
    {"nodes": ["node-a", "node-b"], "resources": "pvc-1"},
    {"limit": 500, "offset": 0, "cached": True},
    {"props": ["Aux/csi-name=pvc x/ü&=?", "Aux/x"], "skip": None, "empty": []},
    {"keys": ("a", None, "b")},
]
BODIES: list[Any] = [
    None,
    {},
    {"resource_definition": {"name": "pvc-1", "props": {"Aux/name": 'ü "quoted"'}}, "size": 16384},
    [1, 2.5, None, True],
]


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[requests.Session]:
    """A session set up as the transport sets its own up, with .netrc credentials for the controller."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine controller.invalid login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    made = requests.Session()
    made.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
    yield made
    made.close()


def as_session_would(session: requests.Session, method: str, url: str, params: Any, body: Any) -> Any:
    """What ``Session.request`` prepares for the call the transport used to make."""
    request = requests.Request(
        method=method,
        url=url,
        params=params or {},
        data={},
        json=body,
        auth=requests.utils.get_netrc_auth(url),
    )
    return session.prepare_request(request)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("body", BODIES)
def test_prepared_request_is_the_one_the_session_builds(
    session: requests.Session, method: str, params: Any, body: Any
) -> None:
    route = Route.of(session, BASE, TIMEOUT)
    path = "/v1/resource-definitions/pvc%2F1%20x/resources/node-%C3%BC"
    ours = route.prepare(method, path, params, body)
    theirs = as_session_would(session, method, BASE + path, params, body)
    assert (ours.method, ours.url, ours.body) == (theirs.method, theirs.url, theirs.body)
    assert list(ours.headers.items()) == list(theirs.headers.items())
    assert ours.headers["Authorization"].startswith("Basic ")  # the .netrc entry, read once


def test_query_strings_match_requests_for_repeated_and_missing_values() -> None:
    for params in PARAMS:
        expected = requests.Request("GET", BASE + "/v1/x", params=params or {}).prepare().url
        query = query_string(params)
        assert BASE + "/v1/x" + (f"?{query}" if query else "") == expected


def test_settings_are_taken_from_the_environment_at_start(
    session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/custom-bundle.pem")
    route = Route.of(session, BASE, TIMEOUT)
    monkeypatch.setenv("HTTP_PROXY", "http://other-proxy.invalid:3128")
    assert route.send_options["proxies"]["http"] == "http://proxy.invalid:3128"
    assert route.send_options["verify"] == "/etc/ssl/custom-bundle.pem"
    assert route.send_options["timeout"] == TIMEOUT
    assert route.send_options["stream"] is False
    assert route.adapter is session.get_adapter(BASE)


# ----------------------------------------------------------------------------- on the wire


def recording(fake: FakeController, seen: list[dict[str, str]]) -> Any:
    """A reply that keeps the request's headers and answers an empty list."""

    def reply(handler: FakeHandler) -> None:
        seen.append(dict(handler.headers.items()))
        send_bytes(handler, 200, b"[]")

    return reply


def test_headers_and_netrc_credentials_reach_the_controller(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine localhost login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    fake = start_fake()
    try:
        seen: list[dict[str, str]] = []
        fake.on("POST", "/v1/resource-groups", recording(fake, seen))
        fake.on("DELETE", "/v1/resource-groups/sc-1", recording(fake, seen))
        client = client_for(fake.url)
        client.request("POST", "/v1/resource-groups", body={"name": "sc-1"})
        client.request("DELETE", "/v1/resource-groups/{}", "sc-1")
        assert fake.seen[0][2] == {"name": "sc-1"}
        post, delete = seen
        assert post["Authorization"] == requests.auth._basic_auth_str("alice", "s3cret")
        assert post["User-Agent"] == USER_AGENT
        assert post["Content-Type"] == "application/json"
        assert int(post["Content-Length"]) == len(json.dumps({"name": "sc-1"}))
        assert delete["Content-Length"] == "0"
        assert delete["Authorization"] == post["Authorization"]
    finally:
        assert fake.server is not None
        fake.server.shutdown()
        fake.server.server_close()


@pytest.fixture
def https_fake(pki: Pki) -> Iterator[FakeController]:  # noqa: F811 - the imported fixture
    """An HTTPS controller whose certificate the test CA signed; no client certificate asked."""
    with serving_fake(server_tls(pki)) as controller:
        controller.on("GET", "/v1/nodes", (200, []))
        yield controller


def test_ca_bundle_named_by_the_environment_at_start_verifies_the_controller(
    https_fake: FakeController,
    pki: Pki,  # noqa: F811 - the imported fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki.ca)
    trusting = client_for(https_fake.url, retries=0)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki.other_ca)
    distrusting = client_for(https_fake.url, retries=0)
    assert trusting.list_nodes() == []  # still the bundle it was made with
    with pytest.raises(Unavailable, match="TLS handshake failed"):
        distrusting.list_nodes()
    assert https_fake.count("GET", "/v1/nodes") == 1

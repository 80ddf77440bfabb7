"""requests' environment lookups are done once per LINSTOR client when nothing makes them per-URL."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from plugin.linstor.session_env import needs_per_call_lookup, read_environment_once


@pytest.fixture(autouse=True)
def no_netrc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc unless a test writes one


def test_the_ca_bundle_is_kept_and_per_call_lookups_stop() -> None:
    session = requests.Session()
    read_environment_once(session, {"REQUESTS_CA_BUNDLE": "/etc/ssl/bundle.pem", "PATH": "/bin"})
    assert session.trust_env is False
    assert session.verify == "/etc/ssl/bundle.pem"
    # what requests would have taken from the environment on each call is now the session's own
    merged = session.merge_environment_settings("https://ctrl:3371/v1/nodes", {}, None, None, None)
    assert merged["verify"] == "/etc/ssl/bundle.pem" and merged["proxies"] == {}


def test_curl_bundle_counts_and_an_explicit_verify_is_left_alone() -> None:
    session = requests.Session()
    read_environment_once(session, {"CURL_CA_BUNDLE": "/curl.pem"})
    assert session.verify == "/curl.pem"
    explicit = requests.Session()
    explicit.verify = False
    read_environment_once(explicit, {"CURL_CA_BUNDLE": "/curl.pem"})
    assert explicit.verify is False and explicit.trust_env is False


@pytest.mark.parametrize(
    "environ",
    [
        {"HTTPS_PROXY": "http://proxy:3128"},
        {"no_proxy": "ctrl"},
        {"ALL_PROXY": "socks5://p"},
        {"NETRC": "/n"},
    ],
)
def test_proxies_or_netrc_keep_requests_per_url_rules(environ: dict[str, str]) -> None:
    session = requests.Session()
    read_environment_once(session, environ)
    assert session.trust_env is True
    assert needs_per_call_lookup(environ)


def test_a_netrc_file_keeps_the_per_call_lookup(tmp_path: Path) -> None:
    (tmp_path / ".netrc").write_text("machine ctrl login u password p\n")
    session = requests.Session()
    read_environment_once(session, {})
    assert session.trust_env is True

"""What ``requests`` takes from the environment, read once per client instead of per call.

With ``trust_env`` (its default) a session looks up proxies, ``NO_PROXY``, a CA bundle
(``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) and ``~/.netrc`` on every request: about a
millisecond each time, and a pod's NodeStage and NodePublish wait on four LINSTOR reads.
A daemon's environment does not change while it runs, so when nothing in it needs
requests' per-URL rules (no proxy variable, no netrc file) the one setting that can
apply, the CA bundle, is copied onto the session and the per-call lookup is switched off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import requests

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
NETRC_FILES = ("~/.netrc", "~/_netrc")


def needs_per_call_lookup(environ: Mapping[str, str]) -> bool:
    """Whether proxies or a netrc file make requests' answer depend on the URL."""
    if any(environ.get(name) or environ.get(name.upper()) for name in PROXY_VARIABLES):
        return True
    if environ.get("NETRC"):
        return True
    return any(os.path.exists(os.path.expanduser(path)) for path in NETRC_FILES)


def read_environment_once(session: requests.Session, environ: Mapping[str, str] | None = None) -> None:
    """Apply the environment to ``session`` now, and stop requests reading it on every call."""
    env = os.environ if environ is None else environ
    if needs_per_call_lookup(env):
        return
    bundle = env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle
    session.trust_env = False

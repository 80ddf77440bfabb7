"""TLS end to end: the plugin's LINSTOR client and the emulator over HTTPS with client certificates.

A production controller listens on https://…:3371 with certificates from the site's own
CA and often accepts only clients presenting a certificate it signed (mTLS). These tests
run the emulator that way, with a throwaway CA from :mod:`tests.certs`, and check both
directions: every way a user configures the client's CA and certificate reaches a working
VolumeService, and every wrong setup (no client certificate, a foreign CA, an expired
server certificate, plain http, a mismatched key) is a typed error with a sentence that
says what failed, and changes nothing. The CSI driver, the Docker plugin and the doctor
are run as processes against the same server, and the official python-linstor client is
checked with its own certificate options.

Volumes here live on the emulator's virtual nodes only, with no filesystem, so no loop
device is needed and the tests run without root; only the Docker plugin test (its volumes
always get a filesystem) needs root and loop devices.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from plugin.config import Config, load_config
from plugin.errors import InvalidArgument, NotFound, OperationFailed, Unavailable, VolumeError
from plugin.linstor.client import LinstorClient
from plugin.params.model import VolumeParams
from plugin.volumes.service import VolumeService
from testkit.waiting import wait_until
from tests.certs import SERVER_ADDRESSES, SERVER_NAMES, CertificateAuthority, TlsFiles, make_tls_files
from tests.conftest import REPO_ROOT, TlsEmulator, free_port, reset_and_stop
from tests.processes import terminate

MIB = 1024 * 1024
ON_B = VolumeParams(place_count=1, fs_type=None, nodes=("node-b",))


@pytest.fixture
def pki(tmp_path: Path) -> TlsFiles:
    return make_tls_files(tmp_path / "pki")


@pytest.fixture
def foreign(tmp_path: Path) -> TlsFiles:
    """A second, unrelated CA with its own server and client certificates."""
    return make_tls_files(tmp_path / "foreign", ca_name="foreign-ca")


@pytest.fixture
def tls_emulator_factory(tmp_path: Path) -> Iterator[object]:
    started: list[TlsEmulator] = []

    def start(
        tls: TlsFiles, *, require_client_cert: bool = True, verify_server: bool = True, name: str = "tls"
    ) -> TlsEmulator:
        base = tmp_path / name
        emu = TlsEmulator(
            state_dir=base / "state",
            dev_dir=base / "dev",
            nodes=("node-b", "node-c"),
            extra_args=tls.emulator_args(require_client_cert),
            tls=tls,
            client_cert=require_client_cert,
            verify_server=verify_server,
        )
        emu.start()
        started.append(emu)
        return emu

    yield start
    reset_and_stop(started)


@pytest.fixture
def mtls(tls_emulator_factory, pki: TlsFiles) -> TlsEmulator:  # type: ignore[no-untyped-def]
    """An emulator that serves HTTPS and requires a client certificate from the test CA."""
    return tls_emulator_factory(pki)


def tls_config(
    url: str,
    *,
    root_ca: Path | None,
    cert: Path | None = None,
    key: Path | None = None,
    read_timeout: float = 30.0,
) -> Config:
    return Config(
        controllers=(url,),
        root_ca=str(root_ca) if root_ca else None,
        user_certificate=str(cert) if cert else None,
        user_key=str(key) if key else None,
        connect_timeout=2.0,
        read_timeout=read_timeout,
        config_file=None,
    )


def service(config: Config) -> VolumeService:
    return VolumeService(LinstorClient(config, retries=1, backoff=0.05), config)


def good_service(emu: TlsEmulator, pki: TlsFiles) -> VolumeService:
    return service(tls_config(emu.url, root_ca=pki.ca_cert, cert=pki.client_cert, key=pki.client_key))


def unique(prefix: str = "tls") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def assert_clear_unavailable(exc: Unavailable, *fragments: str) -> None:
    """A user-facing sentence: names the controller and the TLS reason, carries no traceback."""
    text = str(exc)
    assert "Traceback" not in text and 'File "' not in text
    assert "https://127.0.0.1:" in text or "http://127.0.0.1:" in text
    for fragment in fragments:
        assert fragment.lower() in text.lower(), text


# ----------------------------------------------------------------------------- working setups


def _config_sources(emu: TlsEmulator, pki: TlsFiles, tmp_path: Path) -> dict[str, Config]:
    """The ways a user hands the client its CA and certificate, each through load_config."""
    conf = tmp_path / "docker-volume.conf"
    conf.write_text(
        "[global]\n"
        f"controllers = {emu.url}\n"
        f"cafile = {pki.ca_cert}\n"
        f"certfile = {pki.client_cert}\n"
        f"keyfile = {pki.client_key}\n"
    )
    return {
        # the LINSTOR client's own variables, as the CSI driver's deployment sets them
        "env LS_*": load_config(
            env={
                "LS_CONTROLLERS": emu.url,
                "LS_ROOT_CA": str(pki.ca_cert),
                "LS_USER_CERTIFICATE": str(pki.client_cert),
                "LS_USER_KEY": str(pki.client_key),
            },
            config_file=None,
        ),
        # the names LINBIT's Go Docker plugin reads, and python-linstor's URL scheme
        "env LS_CA_FILE & co": load_config(
            env={
                "LS_CONTROLLERS": f"linstor+ssl://127.0.0.1:{emu.port}",
                "LS_CA_FILE": str(pki.ca_cert),
                "LS_CERT_FILE": str(pki.client_cert),
                "LS_KEY_FILE": str(pki.client_key),
            },
            config_file=None,
        ),
        # the Docker plugin's config file, host name instead of address (DNS SAN)
        "config file": load_config(
            overrides={"controllers": f"https://localhost:{emu.port}"}, env={}, config_file=str(conf)
        ),
    }


def test_every_config_source_reaches_the_mtls_controller(
    mtls: TlsEmulator, pki: TlsFiles, tmp_path: Path
) -> None:
    for source, config in _config_sources(mtls, pki, tmp_path).items():
        assert config.root_ca == str(pki.ca_cert), source
        client = LinstorClient(config)
        try:
            assert client.controller_version().rest_api_version.startswith("1."), source
            assert {"node-b", "node-c"} <= {n.name for n in client.list_nodes()}, source
        finally:
            client.close()


def test_volume_lifecycle_over_mtls(mtls: TlsEmulator, pki: TlsFiles) -> None:
    svc = good_service(mtls, pki)
    assert svc.healthy()
    name = unique()
    volume = svc.create_volume(name, 8 * MIB, ON_B)
    assert volume.name == name and volume.size_bytes == 8 * MIB
    assert volume.diskful_nodes == ("node-b",)
    assert svc.create_volume(name, 8 * MIB, ON_B).id == volume.id  # idempotent over TLS too
    assert svc.get_volume(volume.id).name == name
    assert name in {v.name for v in svc.list_volumes()}
    assert svc.expand_volume(volume.id, 12 * MIB).size_bytes == 12 * MIB

    snap = svc.create_snapshot(volume.id, unique("snap"))
    restored = svc.create_volume(unique("restored"), 12 * MIB, ON_B, source=f"snapshot:{snap.id}")
    assert restored.size_bytes == 12 * MIB

    attachment = svc.attach(volume.id, "node-c")
    assert attachment.diskless and attachment.created_by_attach and attachment.device_path
    svc.detach(volume.id, "node-c")
    assert "node-c" not in {r.node for r in svc.get_volume(volume.id).replicas}

    made = {str(k).lower() for k in mtls.state()["resource_definitions"]}  # type: ignore[union-attr]
    assert {volume.id.lower(), restored.id.lower()} <= made
    svc.delete_volume(restored.id)
    svc.delete_snapshot(snap.id)
    svc.delete_volume(volume.id)
    assert svc.find_volume(name) is None
    # the emulator agrees, asked through its own control API over the same mTLS listener
    left = {str(k).lower() for k in mtls.state()["resource_definitions"]}  # type: ignore[union-attr]
    assert volume.id.lower() not in left and restored.id.lower() not in left


def test_ls_root_ca_wins_over_a_ca_bundle_from_the_environment(
    mtls: TlsEmulator, pki: TlsFiles, foreign: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Container images often set REQUESTS_CA_BUNDLE; the controller's CA must still be the one used."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(foreign.ca_cert))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(foreign.ca_cert))
    assert good_service(mtls, pki).client.list_nodes()
    # without LS_ROOT_CA the environment's bundle is the trust store, and it lacks the test CA
    untrusting = LinstorClient(tls_config(mtls.url, root_ca=None, cert=pki.client_cert, key=pki.client_key))
    with pytest.raises(Unavailable, match="certificate verify failed"):
        untrusting.controller_version()


def test_https_without_client_verification_needs_only_the_ca(tls_emulator_factory, pki: TlsFiles) -> None:  # type: ignore[no-untyped-def]
    emu = tls_emulator_factory(pki, require_client_cert=False, name="https-only")
    svc = service(tls_config(emu.url, root_ca=pki.ca_cert))
    volume = svc.create_volume(unique(), 8 * MIB, ON_B)
    svc.delete_volume(volume.id)
    assert svc.find_volume(volume.name) is None


def test_certificates_from_an_intermediate_ca_verify_against_the_root(
    tls_emulator_factory,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """Both sides send leaf plus intermediate and trust only the root, as with cert-manager."""
    root = CertificateAuthority.create("site-root")
    issuing = root.intermediate("site-issuing")
    base = tmp_path / "chain"
    base.mkdir()
    server_cert, server_key = issuing.issue("controller", base / "s.crt", base / "s.key", server=True)
    client_cert, client_key = issuing.issue("plugin", base / "c.crt", base / "c.key", server=False)
    assert server_cert.read_text().count("BEGIN CERTIFICATE") == 2
    chained = TlsFiles(root.write(base / "root.crt"), server_cert, server_key, client_cert, client_key)
    emu = tls_emulator_factory(chained, name="chained")
    svc = service(tls_config(emu.url, root_ca=chained.ca_cert, cert=client_cert, key=client_key))
    volume = svc.create_volume(unique(), 8 * MIB, ON_B)
    svc.delete_volume(volume.id)
    assert svc.find_volume(volume.name) is None
    # a client certificate without its intermediate cannot be traced to the root by the server
    leaf_only = base / "c-leaf.crt"
    text = client_cert.read_text()
    leaf_only.write_text(
        text[: text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")] + "\n"
    )
    refused = LinstorClient(tls_config(emu.url, root_ca=chained.ca_cert, cert=leaf_only, key=client_key))
    with pytest.raises(Unavailable, match="TLS handshake failed"):
        refused.controller_version()


def test_many_threads_share_one_tls_client(mtls: TlsEmulator, pki: TlsFiles) -> None:
    client = good_service(mtls, pki).client
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: len(client.list_nodes()), range(32)))
    assert answers == [answers[0]] * 32 and answers[0] >= 3


def test_failover_across_https_controllers(
    tls_emulator_factory,  # type: ignore[no-untyped-def]
    mtls: TlsEmulator,
    pki: TlsFiles,
    foreign: TlsFiles,
) -> None:
    """A dead HTTPS address and a controller whose certificate the client does not trust are
    both passed over for the one that proves itself; nothing is sent to the untrusted one."""
    impostor = tls_emulator_factory(foreign, name="impostor")
    dead = f"https://127.0.0.1:{free_port()}"
    config = Config(
        controllers=(dead, impostor.url, mtls.url),
        root_ca=str(pki.ca_cert),
        user_certificate=str(pki.client_cert),
        user_key=str(pki.client_key),
        connect_timeout=2.0,
        read_timeout=30.0,
        config_file=None,
    )
    svc = service(config)
    volume = svc.create_volume(unique(), 8 * MIB, ON_B)
    assert svc.client.current_controller == mtls.url
    assert volume.id.lower() in {str(k).lower() for k in mtls.state()["resource_definitions"]}  # type: ignore[union-attr]
    assert impostor.state()["resource_definitions"] == {}
    svc.delete_volume(volume.id)


def test_outage_of_an_mtls_controller_then_a_fresh_handshake(mtls: TlsEmulator, pki: TlsFiles) -> None:
    svc = good_service(mtls, pki)
    volume = svc.create_volume(unique(), 8 * MIB, ON_B)
    mtls.outage(1.5)
    with pytest.raises(Unavailable) as down:
        svc.get_volume(volume.id)
    assert_clear_unavailable(down.value, mtls.url)
    back = wait_until(
        lambda: svc.get_volume(volume.id),
        timeout=15,
        interval=0.2,
        what="the emulator's return",
        ignore=(Unavailable,),
    )
    assert back.id == volume.id  # pooled TLS connections are gone
    svc.delete_volume(volume.id)


def test_a_write_cut_off_mid_request_over_tls_is_not_resent(mtls: TlsEmulator, pki: TlsFiles) -> None:
    """A TLS connection lost after the request went out is "may have been applied", like plain
    HTTP, and not a handshake failure that would be safe to re-send: the write lands once."""
    config = tls_config(mtls.url, root_ca=pki.ca_cert, cert=pki.client_cert, key=pki.client_key)
    client = LinstorClient(config, retries=6, backoff=0.2)  # retries would outlast the outage
    client.controller_version()
    group = unique("rg")
    assert mtls.control("latency", {"ms": 1500, "paths": "^/v1/resource-groups$"}).ok
    outage = threading.Timer(0.4, lambda: mtls.control("outage", {"seconds": 0.6}))
    outage.start()
    try:
        with pytest.raises(Unavailable, match="may or may not have been applied"):
            client.create_resource_group(group, {"place_count": 1})
    finally:
        outage.join()
    landed = wait_until(  # the emulator finishes the request it had, after the outage
        lambda: client.get_resource_group(group),
        timeout=15,
        interval=0.2,
        what="the cut-off write landing",
        ignore=(Unavailable, NotFound),
    )
    assert landed.name == group
    mtls.control("latency", {"ms": 0})


class _RedirectToHttps(BaseHTTPRequestHandler):
    """A controller's plain port once HTTPS is on: every request is sent to the HTTPS port."""

    protocol_version = "HTTP/1.1"
    target = ""

    def _redirect(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(302)
        self.send_header("Location", self.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_DELETE = _redirect

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def redirector(mtls: TlsEmulator) -> Iterator[str]:
    handler = type("Redirect", (_RedirectToHttps,), {"target": mtls.url})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning")
def test_http_address_of_a_controller_that_redirects_to_https(
    mtls: TlsEmulator, pki: TlsFiles, redirector: str
) -> None:
    """The plugin does not follow a redirect (it would re-send writes to an address the user
    never configured) but says which address to configure; python-linstor follows it."""
    svc = service(tls_config(redirector, root_ca=pki.ca_cert, cert=pki.client_cert, key=pki.client_key))
    with pytest.raises(OperationFailed) as redirected:
        svc.client.controller_version()
    message = str(redirected.value)
    assert mtls.url in message and "LS_CONTROLLERS" in message, message
    name = unique()
    with pytest.raises(OperationFailed):
        svc.create_volume(name, 8 * MIB, ON_B)
    assert _nothing_created(mtls, pki, name)

    lin = _python_linstor(
        redirector.replace("http://", "linstor://"),
        cafile=pki.ca_cert,
        certfile=pki.client_cert,
        keyfile=pki.client_key,
    )
    lin.connect()  # type: ignore[attr-defined]
    try:
        assert {"node-b", "node-c"} <= {n.name for n in lin.node_list_raise().nodes}  # type: ignore[attr-defined]
    finally:
        lin.disconnect()  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- refused setups


def _nothing_created(emu: TlsEmulator, pki: TlsFiles, name: str) -> bool:
    return good_service(emu, pki).find_volume(name) is None


def test_without_client_certificate_the_controller_refuses(mtls: TlsEmulator, pki: TlsFiles) -> None:
    svc = service(tls_config(mtls.url, root_ca=pki.ca_cert))
    with pytest.raises(Unavailable) as version:
        svc.client.controller_version()
    # The reason text is a race inside TLS 1.3: the server's "certificate required" alert
    # or, when the connection is torn down first, a bare EOF. Both say the handshake failed.
    assert_clear_unavailable(version.value, "TLS handshake failed")
    assert not svc.healthy()
    name = unique()
    with pytest.raises(Unavailable) as create:
        svc.create_volume(name, 8 * MIB, ON_B)
    assert_clear_unavailable(create.value, "TLS")
    assert _nothing_created(mtls, pki, name)


def test_refusal_for_a_missing_client_certificate_says_what_to_configure(
    mtls: TlsEmulator, pki: TlsFiles
) -> None:
    client = LinstorClient(tls_config(mtls.url, root_ca=pki.ca_cert), retries=0)
    with pytest.raises(Unavailable) as refused:
        client.controller_version()
    assert_clear_unavailable(refused.value, "LS_USER_CERTIFICATE")


def test_client_certificate_of_another_ca_is_refused(
    mtls: TlsEmulator, pki: TlsFiles, foreign: TlsFiles
) -> None:
    svc = service(tls_config(mtls.url, root_ca=pki.ca_cert, cert=foreign.client_cert, key=foreign.client_key))
    with pytest.raises(Unavailable) as version:
        svc.client.list_nodes()
    assert_clear_unavailable(version.value, "TLS handshake failed")
    name = unique()
    with pytest.raises(Unavailable):
        svc.create_volume(name, 8 * MIB, ON_B)
    assert _nothing_created(mtls, pki, name)


@pytest.mark.parametrize("trust", ["foreign CA", "system trust store"])
def test_server_of_an_untrusted_ca_is_not_trusted(
    mtls: TlsEmulator, pki: TlsFiles, foreign: TlsFiles, trust: str
) -> None:
    """Verification is on by default: no LS_ROOT_CA means the system store, which lacks the test CA."""
    root_ca = foreign.ca_cert if trust == "foreign CA" else None
    svc = service(tls_config(mtls.url, root_ca=root_ca, cert=pki.client_cert, key=pki.client_key))
    with pytest.raises(Unavailable) as version:
        svc.client.controller_version()
    assert_clear_unavailable(version.value, "certificate verify failed", "LS_ROOT_CA")
    name = unique()
    with pytest.raises(Unavailable):
        svc.create_volume(name, 8 * MIB, ON_B)
    assert _nothing_created(mtls, pki, name)


@pytest.mark.filterwarnings("ignore:Unverified HTTPS request")
def test_expired_server_certificate_is_not_trusted(tls_emulator_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ca = CertificateAuthority.create("expiring-ca")
    base = tmp_path / "expired-pki"
    base.mkdir()
    server_cert, server_key = ca.issue(
        "old", base / "server.crt", base / "server.key", server=True, valid=False
    )
    client_cert, client_key = ca.issue("client", base / "client.crt", base / "client.key", server=False)
    expired = TlsFiles(ca.write(base / "ca.crt"), server_cert, server_key, client_cert, client_key)
    # the readiness probe cannot verify an expired server, so it only checks that TLS answers
    emu = tls_emulator_factory(expired, verify_server=False, name="expired")
    client = LinstorClient(
        tls_config(emu.url, root_ca=expired.ca_cert, cert=client_cert, key=client_key), retries=0
    )
    with pytest.raises(Unavailable) as refused:
        client.controller_version()
    assert_clear_unavailable(refused.value, "certificate verify failed", "expired")


@pytest.mark.filterwarnings("ignore:Unverified HTTPS request")
@pytest.mark.parametrize("problem", ["issued for another name", "expired"])
def test_a_server_certificate_of_the_right_ca_is_not_blamed_on_the_ca(
    tls_emulator_factory,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    problem: str,
) -> None:
    ca = CertificateAuthority.create("site-ca")
    base = tmp_path / "right-ca"
    base.mkdir()
    server_cert, server_key = ca.issue(
        "controller",
        base / "server.crt",
        base / "server.key",
        server=True,
        valid=problem != "expired",
        server_names=("linstor-controller.example",) if problem != "expired" else SERVER_NAMES,
        server_addresses=() if problem != "expired" else SERVER_ADDRESSES,
    )
    client_cert, client_key = ca.issue("client", base / "client.crt", base / "client.key", server=False)
    files = TlsFiles(ca.write(base / "ca.crt"), server_cert, server_key, client_cert, client_key)
    emu = tls_emulator_factory(files, verify_server=False, name="right-ca")
    client = LinstorClient(tls_config(emu.url, root_ca=files.ca_cert, cert=client_cert, key=client_key))
    with pytest.raises(Unavailable) as refused:
        client.controller_version()
    message = str(refused.value)
    # OpenSSL's own words name the real problem ...
    assert ("mismatch" if problem != "expired" else "expired") in message, message
    # ... and the advice must not contradict them
    assert "not signed by the CA" not in message, message


def test_plain_http_to_the_https_port_is_unavailable_and_changes_nothing(
    mtls: TlsEmulator, pki: TlsFiles
) -> None:
    svc = service(tls_config(f"http://127.0.0.1:{mtls.port}", root_ca=None))
    with pytest.raises(Unavailable) as version:
        svc.client.controller_version()
    assert_clear_unavailable(version.value, f"http://127.0.0.1:{mtls.port}")
    name = unique()
    with pytest.raises(Unavailable):
        svc.create_volume(name, 8 * MIB, ON_B)
    assert _nothing_created(mtls, pki, name)


def test_client_key_that_does_not_match_its_certificate(
    mtls: TlsEmulator, pki: TlsFiles, foreign: TlsFiles
) -> None:
    svc = service(tls_config(mtls.url, root_ca=pki.ca_cert, cert=pki.client_cert, key=foreign.client_key))
    with pytest.raises(Unavailable) as mismatch:
        svc.client.controller_version()
    assert_clear_unavailable(mismatch.value, "key values mismatch")


def test_tls_settings_that_cannot_work_fail_at_configuration(pki: TlsFiles, tmp_path: Path) -> None:
    """Caught before any connection: a missing file or a key without its certificate."""
    missing = tmp_path / "no-such-ca.crt"
    with pytest.raises(InvalidArgument, match=r"no-such-ca\.crt"):
        load_config(
            env={"LS_CONTROLLERS": "https://127.0.0.1:1", "LS_ROOT_CA": str(missing)}, config_file=None
        )
    with pytest.raises(InvalidArgument, match="LS_USER_CERTIFICATE"):
        load_config(
            env={"LS_CONTROLLERS": "https://127.0.0.1:1", "LS_USER_KEY": str(pki.client_key)},
            config_file=None,
        )
    with pytest.raises(InvalidArgument, match="linstors"):
        load_config(env={"LS_CONTROLLERS": "linstors://127.0.0.1:1"}, config_file=None)


def _unusable_tls_file(pki: TlsFiles, tmp_path: Path, problem: str) -> tuple[str, Path]:
    """(setting, file) for a TLS file that exists and is readable but cannot be used."""
    if problem == "key is not PEM":
        path = tmp_path / "client.key.der"
        key = serialization.load_pem_private_key(pki.client_key.read_bytes(), None)
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return "user_key", path
    if problem == "key is encrypted":
        path = tmp_path / "client.key.enc"
        key = serialization.load_pem_private_key(pki.client_key.read_bytes(), None)
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"passphrase"),
            )
        )
        return "user_key", path
    if problem == "CA file holds a key":
        return "root_ca", pki.client_key
    if problem == "key of another certificate":
        return "user_key", pki.server_key
    path = tmp_path / "empty.crt"
    path.write_text("")
    return "user_certificate", path


@pytest.mark.parametrize(
    "problem",
    [
        "key is not PEM",
        "key is encrypted",
        "key of another certificate",
        "CA file holds a key",
        "certificate file is empty",
    ],
)
def test_an_unusable_tls_file_is_named(
    mtls: TlsEmulator, pki: TlsFiles, tmp_path: Path, problem: str
) -> None:
    """Caught no later than the first request (best when the client is made), naming the setting."""
    setting, path = _unusable_tls_file(pki, tmp_path, problem)
    files = {"root_ca": pki.ca_cert, "user_certificate": pki.client_cert, "user_key": pki.client_key}
    files[setting] = path
    env_names = {
        "root_ca": "LS_ROOT_CA",
        "user_certificate": "LS_USER_CERTIFICATE",
        "user_key": "LS_USER_KEY",
    }
    env = {"LS_CONTROLLERS": mtls.url, **{env_names[k]: str(v) for k, v in files.items()}}
    with pytest.raises(VolumeError) as unusable:
        LinstorClient(load_config(env=env, config_file=None), retries=0).controller_version()
    message = str(unusable.value)
    assert "Traceback" not in message
    assert setting in message or env_names[setting] in message or str(path) in message, message


# ----------------------------------------------------------------------------- the emulator's side


def test_refused_handshake_is_one_log_line_without_traceback(mtls: TlsEmulator, pki: TlsFiles) -> None:
    """A client without a certificate is an expected event: one structured warning, no traceback."""
    client = LinstorClient(tls_config(mtls.url, root_ca=pki.ca_cert), retries=0)
    with pytest.raises(Unavailable):
        client.controller_version()

    def logged() -> list[dict]:  # the server thread logs after the client gave up
        lines = [json.loads(line) for line in mtls.log_text().splitlines() if line.strip()]
        warned = [line for line in lines if line.get("level") == "warning"]
        return (
            lines if any("TLS handshake with 127.0.0.1 failed" in str(w.get("msg")) for w in warned) else []
        )

    lines = wait_until(logged, timeout=5, what="the refused handshake's log line")
    warnings = [line for line in lines if line.get("level") == "warning"]
    assert len(warnings) == 1, warnings
    assert "Traceback" not in json.dumps(lines)


def test_a_client_that_never_starts_its_handshake_blocks_no_one(mtls: TlsEmulator, pki: TlsFiles) -> None:
    """The handshake runs on the connection's own thread, not on the accepting one."""
    silent = [socket.create_connection(("127.0.0.1", mtls.port), timeout=5) for _ in range(4)]
    try:
        config = tls_config(
            mtls.url, root_ca=pki.ca_cert, cert=pki.client_cert, key=pki.client_key, read_timeout=5.0
        )
        assert LinstorClient(config, retries=0).controller_version().rest_api_version.startswith("1.")
    finally:
        for conn in silent:
            conn.close()


# ----------------------------------------------------------------------------- python-linstor


def _python_linstor(url: str, **files: Path) -> object:
    import linstor

    lin = linstor.Linstor(url, timeout=10)
    for option, path in files.items():
        setattr(lin, option, str(path))
    return lin


@pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning")
def test_python_linstor_over_linstor_ssl_with_its_cert_options(
    mtls: TlsEmulator, pki: TlsFiles, foreign: TlsFiles
) -> None:
    import linstor

    url = f"linstor+ssl://127.0.0.1:{mtls.port}"
    lin = _python_linstor(url, cafile=pki.ca_cert, certfile=pki.client_cert, keyfile=pki.client_key)
    lin.connect()  # type: ignore[attr-defined]
    group, rd = unique("rg"), unique("rd")
    try:
        assert {"node-b", "node-c"} <= {n.name for n in lin.node_list_raise().nodes}  # type: ignore[attr-defined]
        created = lin.resource_group_create(group, place_count=1)  # type: ignore[attr-defined]
        assert not any(r.is_error() for r in created), [str(r) for r in created]
        spawned = lin.resource_group_spawn(group, rd, ["8M"])  # type: ignore[attr-defined]
        assert not any(r.is_error() for r in spawned), [str(r) for r in spawned]
    finally:
        lin.disconnect()  # type: ignore[attr-defined]
    # the plugin's client sees what python-linstor made over the same mTLS listener
    client = good_service(mtls, pki).client
    assert client.get_volume_definition(rd).size_kib == 8 * 1024
    client.delete_resource_definition(rd)

    # no client certificate: the server ends the handshake
    with pytest.raises(linstor.LinstorNetworkError):
        _python_linstor(url, cafile=pki.ca_cert).connect()  # type: ignore[attr-defined]
    # a CA that did not sign the server: python-linstor verifies once it is given a cafile
    untrusting = _python_linstor(
        url, cafile=foreign.ca_cert, certfile=pki.client_cert, keyfile=pki.client_key
    )
    with pytest.raises(linstor.LinstorNetworkError, match="certificate verify failed"):
        untrusting.connect()  # type: ignore[attr-defined]


@pytest.mark.parametrize("setup", ["client certificate", "no client certificate", "foreign CA"])
def test_doctor_checks_the_tls_connection(
    mtls: TlsEmulator, pki: TlsFiles, foreign: TlsFiles, tmp_path: Path, setup: str
) -> None:
    """The first thing an operator runs when TLS does not work: it must say which setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LS_")}
    env["LS_ROOT_CA"] = str(foreign.ca_cert if setup == "foreign CA" else pki.ca_cert)
    if setup != "no client certificate":
        env.update({"LS_USER_CERTIFICATE": str(pki.client_cert), "LS_USER_KEY": str(pki.client_key)})
    command = [
        sys.executable,
        "-m",
        "tools.doctor",
        "--json",
        "--config-file",
        "",
        "--controllers",
        mtls.url,
    ]
    command += ["--node", "node-b", "--csi-endpoint", f"unix://{tmp_path}/csi.sock"]
    command += ["--docker-socket", str(tmp_path / "docker.sock")]
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        env=env,
    )
    assert "Traceback" not in proc.stdout + proc.stderr
    checks = {r["check"]: r for r in map(json.loads, proc.stdout.splitlines())}
    controller = checks["controller"]
    if setup == "client certificate":
        assert controller["verdict"] == "OK", controller
        assert checks["node"]["verdict"] == "OK", checks["node"]
    else:
        assert controller["verdict"] == "FAIL" and proc.returncode == 1
        wanted = "LS_USER_CERTIFICATE" if setup == "no client certificate" else "LS_ROOT_CA"
        assert wanted in controller["message"] + controller["hint"], controller
    assert "PRIVATE KEY" not in proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- the front ends as processes


def _key_material(path: Path) -> list[str]:
    """The base64 lines of a PEM private key: none of them may ever show up in a log."""
    return [line for line in path.read_text().splitlines() if line and not line.startswith("-----")]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths are limited to about 107 bytes, shorter than pytest's tmp_path allows."""
    path = Path(tempfile.mkdtemp(prefix="tls-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _csi_driver(short_dir: Path, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LS_")}
    # debug logging: the most a daemon ever writes, and still no key material in it
    clean.update({"CSI_ENDPOINT": f"unix://{short_dir}/csi.sock", "LOG_LEVEL": "debug", **env})
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "csi", "--mode", "controller", "--node", "node-b"],
            cwd=REPO_ROOT,
            env=clean,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    terminate(proc, timeout=20)


@pytest.mark.parametrize("setup", ["client certificate", "foreign CA"])
def test_csi_driver_process_over_mtls(
    mtls: TlsEmulator, pki: TlsFiles, foreign: TlsFiles, short_dir: Path, tmp_path: Path, setup: str
) -> None:
    """The driver reads LS_ROOT_CA & co. as the TLS overlay sets them; a wrong CA is UNAVAILABLE."""
    import grpc

    from csi.generated import csi_pb2
    from csi.testing import CsiClient, block_cap

    ca = pki.ca_cert if setup == "client certificate" else foreign.ca_cert
    env = {
        "LS_CONTROLLERS": mtls.url,
        "LS_ROOT_CA": str(ca),
        "LS_USER_CERTIFICATE": str(pki.client_cert),
        "LS_USER_KEY": str(pki.client_key),
    }
    log = tmp_path / "csi.log"
    proc = _csi_driver(short_dir, log, env)
    name = unique("pvc")
    request = csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range={"required_bytes": 8 * MIB},
        volume_capabilities=[block_cap()],
        parameters={"linstor.csi.linbit.com/nodeList": "node-b"},
    )
    try:
        with grpc.insecure_channel(f"unix://{short_dir}/csi.sock") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            client = CsiClient(channel)
            if setup == "client certificate":
                volume = client.controller.CreateVolume(request, timeout=30).volume
                assert volume.capacity_bytes == 8 * MIB
                assert good_service(mtls, pki).find_volume(name) is not None
                client.controller.DeleteVolume(
                    csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id), timeout=30
                )
            else:
                with pytest.raises(grpc.RpcError) as refused:
                    client.controller.CreateVolume(request, timeout=30)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
                details = refused.value.details() or ""
                assert "certificate verify failed" in details and "Traceback" not in details
            assert good_service(mtls, pki).find_volume(name) is None
    finally:
        _stop_process(proc)
    text = log.read_text()
    assert proc.returncode == 0, text
    assert "PRIVATE KEY" not in text
    assert not [line for line in _key_material(pki.client_key) if line in text]


@pytest.mark.root
@pytest.mark.parametrize("setup", ["client certificate", "foreign CA"])
def test_docker_plugin_process_over_mtls_from_its_config_file(
    root_loop: None, mtls: TlsEmulator, pki: TlsFiles, foreign: TlsFiles, short_dir: Path, setup: str
) -> None:
    """TLS from ``[global]`` of docker-volume.conf, as docs/docker.md describes it."""
    from tests.dockerd import PluginProcess

    ca = pki.ca_cert if setup == "client certificate" else foreign.ca_cert
    conf = short_dir / "docker-volume.conf"
    conf.write_text(
        f"[global]\nroot_ca = {ca}\nuser_certificate = {pki.client_cert}\nuser_key = {pki.client_key}\n"
    )
    plugin = PluginProcess(short_dir / "p", mtls.url, "node-b", extra_args=("--config-file", str(conf)))
    plugin.start(env={"LS_DOCKER_LOG_LEVEL": "debug"})
    name = unique("docker")
    try:
        client = plugin.client(timeout=60)
        answer = client.call(
            "VolumeDriver.Create", {"Name": name, "Opts": {"nodes": "node-b", "size": "16M"}}
        )
        if setup == "client certificate":
            assert answer["Err"] == "", answer
            listed = client.call("VolumeDriver.List", {})
            assert name in {v["Name"] for v in listed["Volumes"]}
            assert client.call("VolumeDriver.Remove", {"Name": name})["Err"] == ""
            assert client.health()["linstor_reachable"] is True
        else:
            err = str(answer["Err"])
            assert "certificate verify failed" in err and "Traceback" not in err, err
            assert client.health()["linstor_reachable"] is False
        assert good_service(mtls, pki).find_volume(name) is None
    finally:
        plugin.stop()
    text = plugin.log_tail(1_000_000)
    assert "PRIVATE KEY" not in text
    assert not [line for line in _key_material(pki.client_key) if line in text]


@pytest.mark.parametrize("front_end", ["csi", "docker_plugin"])
def test_front_ends_refuse_to_start_with_an_unusable_tls_file(
    pki: TlsFiles, short_dir: Path, tmp_path: Path, front_end: str
) -> None:
    """A wrong key file stops the daemon at once with the setting and file named, no traceback."""
    setting, der_key = _unusable_tls_file(pki, tmp_path, "key is not PEM")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LS_")}
    env.update(
        {
            "CSI_ENDPOINT": f"unix://{short_dir}/csi.sock",
            "LS_CONTROLLERS": "https://127.0.0.1:1",
            "LS_ROOT_CA": str(pki.ca_cert),
            "LS_USER_CERTIFICATE": str(pki.client_cert),
            "LS_USER_KEY": str(der_key),
        }
    )
    args = {
        "csi": ["--mode", "controller", "--node", "node-b"],
        "docker_plugin": [
            "--socket", str(short_dir / "d.sock"), "--mount-root", str(short_dir / "mnt"),
            "--state-file", str(short_dir / "mounts.json"), "--config-file", "",
        ],
    }[front_end]  # fmt: skip
    try:
        proc = subprocess.run(
            [sys.executable, "-m", front_end, *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{front_end} started with an unusable {setting}")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "LS_USER_KEY" in output and str(der_key) in output, output
    assert "Traceback" not in output
    assert not (short_dir / "csi.sock").exists() and not (short_dir / "d.sock").exists()


def _files_holding(roots: list[Path], material: list[str]) -> list[str]:
    """Regular files below ``roots`` that contain any line of ``material``."""
    found = []
    for root in roots:
        for path in root.rglob("*") if root.is_dir() else ():
            try:
                if path.is_file() and not path.is_symlink():
                    text = path.read_text(errors="replace")
                    if any(line in text for line in material):
                        found.append(str(path))
            except OSError:
                continue
    return found


def _open_files_holding(pid: int, material: list[str]) -> list[str]:
    """Files on disk the process has open that contain any line of ``material``."""
    found = []
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if not target.startswith("/") or target.startswith("/memfd:"):
            continue  # sockets, pipes, anonymous inodes and memory-only files are no disk
        try:
            text = Path(target).read_text(errors="replace")
        except OSError:
            continue
        if any(line in text for line in material):
            found.append(target)
    return found


def test_pem_contents_are_never_written_to_a_file_not_even_by_a_killed_driver(
    mtls: TlsEmulator, pki: TlsFiles, short_dir: Path, tmp_path: Path
) -> None:
    """PEM contents in LS_ROOT_CA & co.: the driver works over mTLS, and neither while it runs
    nor after kill -9 does any file hold the key (nothing to leak, nothing to clean up)."""
    import grpc

    from csi.generated import csi_pb2
    from csi.testing import CsiClient, block_cap

    scratch = tmp_path / "tmpdir"  # the driver's TMPDIR: where temporary files would go
    scratch.mkdir()
    system_tmp = Path(tempfile.gettempdir())
    before = set(system_tmp.glob("linstor-plugin-tls-*"))
    env = {
        "LS_CONTROLLERS": mtls.url,
        "LS_ROOT_CA": pki.ca_cert.read_text(),
        "LS_USER_CERTIFICATE": pki.client_cert.read_text(),
        "LS_USER_KEY": pki.client_key.read_text(),
        "TMPDIR": str(scratch),
    }
    material = _key_material(pki.client_key)
    log = tmp_path / "csi.log"
    proc = _csi_driver(short_dir, log, env)
    name = unique("pvc")
    try:
        with grpc.insecure_channel(f"unix://{short_dir}/csi.sock") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            request = csi_pb2.CreateVolumeRequest(
                name=name,
                capacity_range={"required_bytes": 8 * MIB},
                volume_capabilities=[block_cap()],
                parameters={"linstor.csi.linbit.com/nodeList": "node-b"},
            )
            volume = CsiClient(channel).controller.CreateVolume(request, timeout=30).volume
        assert good_service(mtls, pki).find_volume(name) is not None  # mTLS with the contents works
        # during: no file anywhere a temporary file could go, none among the driver's open files
        assert _files_holding([scratch, Path("/dev/shm")], material) == []
        assert _open_files_holding(proc.pid, material) == []
        assert set(system_tmp.glob("linstor-plugin-tls-*")) == before
        proc.kill()  # kill -9: no exit handler runs
        proc.wait(timeout=20)
    finally:
        _stop_process(proc)
    # after: nothing was left behind
    assert _files_holding([scratch, Path("/dev/shm")], material) == []
    assert set(system_tmp.glob("linstor-plugin-tls-*")) == before
    good_service(mtls, pki).delete_volume(volume.volume_id)
    assert "PRIVATE KEY" not in log.read_text()

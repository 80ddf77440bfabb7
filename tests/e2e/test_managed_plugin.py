"""The managed Docker plugin, installed the way users install it, on a real Docker daemon.

The test builds the plugin directory with deploy/docker/build-managed-plugin.sh (no
registry), registers it with ``docker plugin create linstor``, points it at a LINSTOR
controller emulator with ``docker plugin set``, enables it, and then creates, uses and
removes a volume with plain docker commands. The emulator keeps its device nodes in a
directory under /dev, because the plugin sees the host's /dev and nothing else of it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.certs import make_tls_files
from tests.conftest import (
    REPO_ROOT,
    EmulatorProcess,
    TlsEmulator,
    have_root_and_loop,
    require,
    reset_and_stop,
)
from tests.dockerd import DockerDaemon, dockerd_available

pytestmark = [pytest.mark.docker, pytest.mark.root, pytest.mark.slow]

BUILD_SCRIPT = REPO_ROOT / "deploy" / "docker" / "build-managed-plugin.sh"
PLUGIN = "linstor"


class Installed:
    def __init__(self, daemon: DockerDaemon, emulator: EmulatorProcess, node: str) -> None:
        self.daemon = daemon
        self.emulator = emulator
        self.node = node

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.daemon.docker(*args, check=check)

    def resource_definitions(self, emulator: EmulatorProcess | None = None) -> list[str]:
        emulator = emulator or self.emulator
        url = emulator.url + "/v1/resource-definitions"
        answer = requests.get(url, timeout=10, **emulator.request_kwargs())
        answer.raise_for_status()
        return [rd["name"] for rd in answer.json()]

    def reconfigure(self, **env: str) -> None:
        """``docker plugin set`` works only on a disabled plugin: disable, set, enable."""
        self.docker("plugin", "disable", "-f", PLUGIN)
        self.docker("plugin", "set", PLUGIN, *(f"{name}={value}" for name, value in env.items()))
        enabled = self.docker("plugin", "enable", "--timeout", "60", PLUGIN, check=False)
        assert enabled.returncode == 0, f"enable failed: {enabled.stderr}\n{self.daemon.log_tail()}"


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    ok, reason = have_root_and_loop()
    require(ok, reason)
    ok, reason = dockerd_available()
    require(ok, reason)
    with tempfile.TemporaryDirectory(prefix="mp-e2e-") as tmp:
        base = Path(tmp)
        build = subprocess.run(
            ["bash", str(BUILD_SCRIPT), str(base / "plugin")], capture_output=True, text=True, timeout=600
        )
        assert build.returncode == 0, f"building the managed plugin failed:\n{build.stdout}\n{build.stderr}"
        dev_dir = Path("/dev") / f"linstor-e2e-{uuid.uuid4().hex[:8]}"
        emulator = EmulatorProcess(state_dir=base / "emu" / "state", dev_dir=dev_dir, nodes=("node-b",))
        emulator.start()
        daemon = DockerDaemon(base / "d")
        try:
            node = requests.get(emulator.url + "/_emu/health", timeout=10).json()["local_node"]
            daemon.start()
            daemon.import_busybox()
            daemon.docker("plugin", "create", PLUGIN, str(base / "plugin"))
            daemon.docker(
                "plugin", "set", PLUGIN, f"LS_CONTROLLERS={emulator.url}", f"LS_NODE_NAME={node}",
                "LS_DOCKER_LOG_LEVEL=debug",
            )  # fmt: skip
            enabled = daemon.docker("plugin", "enable", "--timeout", "60", PLUGIN, check=False)
            assert enabled.returncode == 0, f"enable failed: {enabled.stderr}\n{daemon.log_tail()}"
            try:
                yield Installed(daemon, emulator, node)
            finally:
                ids = daemon.docker("ps", "-aq", check=False).stdout.split()
                if ids:
                    daemon.docker("rm", "-f", *ids, check=False)
                for name in daemon.docker("volume", "ls", "-q", check=False).stdout.split():
                    daemon.docker("volume", "rm", "-f", name, check=False)
                daemon.docker("plugin", "disable", "-f", PLUGIN, check=False)
                daemon.docker("plugin", "rm", "-f", PLUGIN, check=False)
        finally:
            daemon.stop()
            reset_and_stop([emulator])
            shutil.rmtree(dev_dir, ignore_errors=True)


def test_plugin_is_installed_enabled_and_configured(installed: Installed) -> None:
    info = json.loads(installed.docker("plugin", "inspect", PLUGIN).stdout)[0]
    assert info["Enabled"] is True
    assert info["Config"]["Interface"]["Socket"] == "linstor.sock"
    assert info["Config"]["Interface"]["Types"] == ["docker.volumedriver/1.0"]
    env = dict(item.split("=", 1) for item in info["Settings"]["Env"])
    assert env["LS_CONTROLLERS"] == installed.emulator.url
    assert env["LS_NODE_NAME"] == installed.node


def test_create_mount_use_and_remove_a_volume(installed: Installed) -> None:
    name = f"mp-{uuid.uuid4().hex[:8]}"
    installed.docker("volume", "create", "-d", PLUGIN, "-o", "size=64M", name)
    assert len(installed.resource_definitions()) == 1
    listed = installed.docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}").stdout.splitlines()
    assert f"{PLUGIN}:latest {name}" in listed

    run = ("run", "--rm", "--network", "none", "-v", f"{name}:/data", "busybox")
    installed.docker(*run, "sh", "-c", "echo kept-by-linstor > /data/proof && sync")
    # A second container on a fresh mount reads what the first one wrote.
    assert installed.docker(*run, "cat", "/data/proof").stdout.strip() == "kept-by-linstor"
    df = installed.docker(*run, "df", "-P", "-k", "/data").stdout.splitlines()[-1].split()
    assert 40_000 < int(df[1]) <= 65_536, f"a 64M filesystem backs /data: {df}"

    installed.docker("volume", "rm", name)
    assert installed.resource_definitions() == []
    assert name not in installed.docker("volume", "ls", "-q").stdout.split()


def test_bad_option_is_refused_with_a_clear_message(installed: Installed) -> None:
    result = installed.docker("volume", "create", "-d", PLUGIN, "-o", "sise=1G", "mp-bad", check=False)
    assert result.returncode != 0
    assert "sise" in result.stderr
    assert "Traceback" not in result.stderr
    assert installed.resource_definitions() == []


def test_volumes_outlive_a_plugin_restart(installed: Installed) -> None:
    """Volumes live in LINSTOR, not in the plugin: disable and enable, and they are still there."""
    name = f"mp-{uuid.uuid4().hex[:8]}"
    installed.docker("volume", "create", "-d", PLUGIN, "-o", "size=32M", name)
    # Docker counts existing volumes as uses of the plugin; nothing is mounted, so -f is safe.
    installed.docker("plugin", "disable", "-f", PLUGIN)
    installed.docker("plugin", "enable", PLUGIN)
    assert name in installed.docker("volume", "ls", "-q").stdout.split()
    run = ("run", "--rm", "--network", "none", "-v", f"{name}:/data", "busybox")
    installed.docker(*run, "touch", "/data/after-restart")
    installed.docker("volume", "rm", name)
    assert installed.resource_definitions() == []


def test_doctor_finds_the_managed_plugin_socket(installed: Installed) -> None:
    """Run where dockerd runs: the doctor discovers /run/docker/plugins/<id>/linstor.sock."""
    plugin_id = json.loads(installed.docker("plugin", "inspect", PLUGIN).stdout)[0]["Id"]
    proc = installed.daemon.run_in_namespace(
        [
            sys.executable, "-m", "tools.doctor", "--json", "--config-file", "",
            "--controllers", installed.emulator.url, "--node", installed.node,
        ]
    )  # fmt: skip
    results = {}
    for line in proc.stdout.splitlines():
        entry = json.loads(line)
        results[entry["check"]] = entry
    managed = results["docker managed plugin socket"]
    assert managed["verdict"] == "OK", managed
    assert f"/run/docker/plugins/{plugin_id}/linstor.sock" in managed["message"]
    assert "plugin healthy" in managed["message"], "the plugin reaches the emulator"
    assert results["node"]["verdict"] == "OK"


def test_doctor_inside_the_plugin_finds_every_required_tool(installed: Installed) -> None:
    """The rootfs carries the node tools: run the doctor in the plugin as docs/docker.md shows."""
    runc = shutil.which("runc")
    require(runc is not None, "needs runc (Debian package runc, a docker.io dependency)")
    plugin_id = json.loads(installed.docker("plugin", "inspect", PLUGIN).stdout)[0]["Id"]
    root = installed.daemon.exec_root / "runtime-runc" / "plugins.moby"
    proc = installed.daemon.run_in_namespace(
        [str(runc), "--root", str(root), "exec", plugin_id, "linstor-plugin-doctor", "--json"]
    )
    results = {}
    for line in proc.stdout.splitlines():
        entry = json.loads(line)
        results[entry["check"]] = entry
    assert results, f"no doctor output: {proc.stderr}"
    for check, entry in results.items():
        if check.startswith("tool ") and check != "tool losetup":
            assert entry["verdict"] == "OK", entry
    # Inside the plugin the settings come from `docker plugin set`.
    assert results["controller"]["verdict"] == "OK"
    assert results["node"]["verdict"] == "OK"
    assert results["docker socket"]["verdict"] == "OK", "the plugin's own socket is listening"


def test_a_controller_requiring_client_certificates_is_reached_with_pem_contents(
    installed: Installed, tmp_path: Path
) -> None:
    """The plugin sees no host files: TLS material is handed over as PEM contents with `plugin set`."""
    tls = make_tls_files(tmp_path / "pki")
    dev_dir = Path("/dev") / f"linstor-e2e-{uuid.uuid4().hex[:8]}"
    secure = TlsEmulator(
        state_dir=tmp_path / "state",
        dev_dir=dev_dir,
        nodes=("node-b",),
        extra_args=tls.emulator_args(),
        tls=tls,
    )
    secure.start()
    name = f"mp-tls-{uuid.uuid4().hex[:8]}"
    try:
        # Without the CA the plugin cannot trust the controller, and says so in docker's output.
        installed.reconfigure(LS_CONTROLLERS=secure.url)
        refused = installed.docker("volume", "create", "-d", PLUGIN, "-o", "size=32M", name, check=False)
        assert refused.returncode != 0
        assert "set LS_ROOT_CA" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
        assert installed.resource_definitions(secure) == []

        installed.reconfigure(
            LS_ROOT_CA=tls.ca_cert.read_text(),
            LS_USER_CERTIFICATE=tls.client_cert.read_text(),
            LS_USER_KEY=tls.client_key.read_text(),
        )
        installed.docker("volume", "create", "-d", PLUGIN, "-o", "size=32M", name)
        assert len(installed.resource_definitions(secure)) == 1
        assert installed.resource_definitions() == [], "the plain controller is not involved"
        run = ("run", "--rm", "--network", "none", "-v", f"{name}:/data", "busybox")
        installed.docker(*run, "sh", "-c", "echo over-mtls > /data/proof && sync")
        assert installed.docker(*run, "cat", "/data/proof").stdout.strip() == "over-mtls"
        installed.docker("volume", "rm", name)
        assert installed.resource_definitions(secure) == []
    finally:
        installed.docker("volume", "rm", "-f", name, check=False)
        installed.reconfigure(
            LS_CONTROLLERS=installed.emulator.url, LS_ROOT_CA="", LS_USER_CERTIFICATE="", LS_USER_KEY=""
        )
        reset_and_stop([secure])
        shutil.rmtree(dev_dir, ignore_errors=True)

"""The Docker artifacts agree with the code: managed-plugin config.json, Dockerfile, systemd units.

The managed plugin's entrypoint is parsed with the plugin's own argument parser and its
environment with the core's config loader, so a renamed flag or variable fails here
rather than at ``docker plugin enable`` on a user's machine. The systemd units are read
as systemd reads them (repeated keys allowed) and their command line parsed the same way.
One test runs the service's command line under ``systemd-socket-activate``, which hands
over a listening socket exactly as the .socket unit does.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

from docker_plugin import cli as docker_cli
from docker_plugin.client import PluginClient
from plugin.config import load_config
from testkit.waiting import wait_until
from tools import doctor

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO_ROOT / "deploy" / "docker"
SYSTEMD_DIR = REPO_ROOT / "deploy" / "systemd"
CONFIG_KEYS = {
    "description", "documentation", "entrypoint", "workdir", "interface", "network", "propagatedMount",
    "mounts", "linux", "env", "args", "user", "ipchost", "pidhost", "rootfs",
}  # fmt: skip


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return json.loads((DOCKER_DIR / "plugin" / "config.json").read_text())


def console_scripts() -> dict[str, str]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def entrypoint_args(config: dict[str, Any]) -> list[str]:
    entry = config["entrypoint"]
    assert entry[0] == "/usr/local/bin/linstor-docker-volume", "the entrypoint runs the plugin's launcher"
    assert console_scripts()["linstor-docker-volume"] == "docker_plugin.cli:main"
    return entry[1:]


# ---- managed plugin config.json -------------------------------------------------------------


def test_config_json_has_only_known_fields(config: dict[str, Any]) -> None:
    assert set(config) <= CONFIG_KEYS, set(config) - CONFIG_KEYS
    assert config["interface"]["types"] == ["docker.volumedriver/1.0"]
    assert config["network"]["type"] == "host", "the plugin must reach the LINSTOR controller"


def test_entrypoint_socket_and_mount_root_match_the_plugin_interface(config: dict[str, Any]) -> None:
    args = docker_cli.build_parser().parse_args(entrypoint_args(config))
    assert args.socket == "/run/docker/plugins/" + config["interface"]["socket"]
    assert config["interface"]["socket"] == "linstor.sock"
    # Docker only sees mounts made under propagatedMount.
    assert args.mount_root == config["propagatedMount"]


def test_plugin_gets_devices_and_the_right_to_mount(config: dict[str, Any]) -> None:
    assert "CAP_SYS_ADMIN" in config["linux"]["capabilities"]
    assert config["linux"]["allowAllDevices"] is True
    dev = [m for m in config["mounts"] if m["destination"] == "/dev"]
    assert len(dev) == 1 and dev[0]["source"] == "/dev" and "rbind" in dev[0]["options"]
    for mount in config["mounts"]:
        assert {"name", "source", "destination", "type", "options"} <= set(mount)


def test_env_is_settable_and_read_by_the_code(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {e["name"]: e for e in config["env"]}
    assert env["LS_CONTROLLERS"]["settable"] == ["value"]
    sources = (REPO_ROOT / "plugin" / "config.py").read_text() + (
        REPO_ROOT / "docker_plugin" / "cli.py"
    ).read_text()
    for name in env:
        assert f'"{name}"' in sources, f"{name} is offered in config.json but no code reads it"
    # The defaults as the plugin would see them.
    values = {name: e["value"] for name, e in env.items()}
    loaded = load_config(env=values, config_file=None)
    assert loaded.controllers == (values["LS_CONTROLLERS"],)
    assert loaded.node_name == socket.gethostname(), "an empty LS_NODE_NAME falls back to the host name"
    loaded = load_config(env={**values, "LS_NODE_NAME": "node-7"}, config_file=None)
    assert loaded.node_name == "node-7"
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    args = docker_cli.build_parser().parse_args(entrypoint_args(config))
    assert args.log_level == values["LS_DOCKER_LOG_LEVEL"]
    assert args.metrics_port == int(values["LS_DOCKER_METRICS_PORT"])
    assert args.progress_interval == float(values["LS_DOCKER_PROGRESS_INTERVAL"])


def test_rootfs_builder_copies_the_tools_the_doctor_requires() -> None:
    sys.path.insert(0, str(DOCKER_DIR))
    try:
        import assemble_rootfs
    finally:
        sys.path.remove(str(DOCKER_DIR))
    required = {t.command for t in doctor.TOOLS if t.verdict_if_missing == doctor.FAIL}
    assert required <= set(assemble_rootfs.TOOLS)
    assert set(assemble_rootfs.REQUIRED_TOOLS) == required
    config = json.loads((DOCKER_DIR / "plugin" / "config.json").read_text())
    assert config["propagatedMount"] == assemble_rootfs.PROPAGATED_MOUNT


def test_build_script_is_executable_and_strict() -> None:
    script = DOCKER_DIR / "build-managed-plugin.sh"
    assert os.access(script, os.X_OK)
    assert "set -euo pipefail" in script.read_text()
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


# ---- Dockerfile -----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DOCKER_DIR / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_base_packages_cover_the_node_tools() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0][0] == "FROM"
    assert re.fullmatch(r"debian:[a-z]+-slim", instructions[0][1])
    installs = " ".join(rest for word, rest in instructions if word == "RUN" and "apt-get install" in rest)
    packages = set(installs.split())
    assert {"python3", "python3-venv", "e2fsprogs", "xfsprogs", "btrfs-progs", "util-linux"} <= packages
    for tool in doctor.TOOLS:
        if tool.command == "losetup":
            continue  # emulator only
        package = tool.package.split()[0]
        assert package in packages, f"{tool.command} needs {package} in the image"


def test_dockerfile_copies_existing_sources_that_the_context_filter_keeps() -> None:
    ignore = (DOCKER_DIR / "Dockerfile.dockerignore").read_text().splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore, "the context filter must start by excluding everything (.venv is large)"
    for word, rest in dockerfile_instructions():
        if word != "COPY":
            continue
        *sources, _dest = rest.split()
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"COPY {source}: no such path"
            assert source.rstrip("/") in kept, f"COPY {source} is excluded by Dockerfile.dockerignore"
    packages = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    for pattern in packages["find"]["include"]:
        assert pattern.rstrip("*") in kept, f"package {pattern} is not copied into the image"


def test_dockerfile_command_is_a_console_script() -> None:
    cmd = next(rest for word, rest in dockerfile_instructions() if word == "CMD")
    assert json.loads(cmd)[0] in console_scripts()


# ---- systemd units --------------------------------------------------------------------------


def read_unit(name: str) -> dict[str, dict[str, list[str]]]:
    """A unit file as systemd reads it: sections of keys with (possibly repeated) values."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in (SYSTEMD_DIR / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{name}: key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{name}: not a key=value line: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def exec_start() -> list[str]:
    service = read_unit("linstor-docker-volume.service")
    return shlex.split(service["Service"]["ExecStart"][0])


def test_socket_and_service_units_belong_together() -> None:
    service = read_unit("linstor-docker-volume.service")
    sock = read_unit("linstor-docker-volume.socket")
    assert "linstor-docker-volume.socket" in service["Unit"]["Requires"]
    assert "linstor-docker-volume.service" in sock["Unit"]["PartOf"]
    assert sock["Install"]["WantedBy"] == ["sockets.target"]
    assert "docker.service" in sock["Unit"]["Before"], "Docker must find the socket when it starts"
    argv = exec_start()
    assert Path(argv[0]).name in console_scripts()
    args = docker_cli.build_parser().parse_args(argv[1:])
    assert args.socket == sock["Socket"]["ListenStream"][0] == docker_cli.DEFAULT_SOCKET
    assert args.mount_root == docker_cli.DEFAULT_MOUNT_ROOT


@pytest.mark.timeout(60)
def test_service_command_line_serves_a_socket_activated_socket(tmp_path: Path) -> None:
    """The .service's command, started with a socket handed over like the .socket unit does."""
    activate = shutil.which("systemd-socket-activate")
    if activate is None:
        pytest.skip("systemd-socket-activate (package systemd) is not installed")
    argv = exec_start()
    args = argv[1:]
    sock_path = tmp_path / "linstor.sock"
    args[args.index("--socket") + 1] = str(sock_path)
    args[args.index("--mount-root") + 1] = str(tmp_path / "mnt")
    command = [sys.executable, "-m", "docker_plugin", *args, "--config-file", ""]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LS_", "LISTEN_"))}
    env["LS_CONTROLLERS"] = "http://127.0.0.1:9"  # never contacted by Plugin.Activate
    proc = subprocess.Popen(
        [activate, "-l", str(sock_path), "-E", "LS_CONTROLLERS", *command],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def listening() -> bool:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            return sock_path.exists()

        wait_until(listening, timeout=20, what="the socket of systemd-socket-activate")
        answer = PluginClient(str(sock_path), timeout=20).call("Plugin.Activate")
        assert answer["Implements"] == ["VolumeDriver"]
        caps = PluginClient(str(sock_path), timeout=20).call("VolumeDriver.Capabilities")
        assert caps["Capabilities"]["Scope"] == "global"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        output = proc.stdout.read().decode() if proc.stdout else ""
        if proc.stdout:
            proc.stdout.close()
    assert "socket activation" in output, f"the plugin did not use the handed-over socket:\n{output}"


# ---- the offline image build (deploy/docker/build_image.py) ---------------------------------


def _build_image_module() -> Any:
    sys.path.insert(0, str(DOCKER_DIR))
    try:
        import build_image
    finally:
        sys.path.remove(str(DOCKER_DIR))
    return build_image


def test_image_tag_is_the_project_version_everywhere_it_is_named() -> None:
    build_image = _build_image_module()
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert build_image.default_tag() == f"linstor-volume-plugin:{version}"
    kustomization = (REPO_ROOT / "deploy" / "kubernetes" / "base" / "kustomization.yaml").read_text()
    assert re.search(rf'newTag: "{re.escape(version)}"', kustomization), "kustomize tag != project version"
    for job in (REPO_ROOT / "deploy" / "nomad").glob("linstor-csi-*.nomad.hcl"):
        assert f'default     = "{build_image.default_tag()}"' in job.read_text(), job.name


def test_pinned_packages_are_exactly_the_runtime_dependencies() -> None:
    build_image = _build_image_module()
    build_image.check_pins(build_image.installed_runtime(), build_image.read_constraints())


def test_a_package_off_its_pin_is_refused_with_both_versions() -> None:
    build_image = _build_image_module()
    pins = build_image.read_constraints()
    drifted = {**pins, "grpcio": "0.0.1", "extra-thing": "1.0"}
    del drifted["requests"]
    with pytest.raises(build_image.BuildError) as refused:
        build_image.check_pins(drifted, pins)
    message = str(refused.value)
    assert f"grpcio is 0.0.1 here, pinned {pins['grpcio']}" in message
    assert "extra-thing 1.0 is a runtime dependency but is not pinned" in message
    assert f"requests=={pins['requests']} is pinned but is not a runtime dependency" in message
    assert "constraints.txt" in message


def test_a_malformed_pin_line_names_its_line(tmp_path: Path) -> None:
    build_image = _build_image_module()
    bad = tmp_path / "constraints.txt"
    bad.write_text("# pins\nrequests==2.0\nflask>=3\n")
    with pytest.raises(build_image.BuildError, match=r"line 3: expected name==version, found 'flask>=3'"):
        build_image.read_constraints(bad)


def test_image_build_script_is_executable_and_strict() -> None:
    script = DOCKER_DIR / "build-image.sh"
    assert os.access(script, os.X_OK)
    assert "set -euo pipefail" in script.read_text()
    check = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_the_wheel_carries_the_project_and_its_version(tmp_path: Path) -> None:
    """The image installs the project from this wheel: every package and the metadata."""
    build_image = _build_image_module()
    wheel = build_image.build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    version = build_image.project_version()
    for package in ("plugin", "csi", "docker_plugin", "emulator"):
        assert f"{package}/__init__.py" in names
    assert f"linstor_volume_plugin-{version}.dist-info/entry_points.txt" in names
    assert not any("__pycache__" in name for name in names)


def test_the_image_runtime_set_follows_pyproject_not_the_installed_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An editable install keeps the dependency list of the day it was made; a dependency
    # dropped from pyproject.toml since must not be copied into the image.
    build_image = _build_image_module()
    assemble = build_image.assemble_rootfs
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["requests>=2", "pyyaml>=6; python_version < \'3\'"]\n'
    )
    monkeypatch.setattr(assemble, "REPO_ROOT", tmp_path)
    names = {
        build_image.normalize(d.metadata["Name"]) for d in assemble.runtime_distributions(assemble.PROJECT)
    }
    assert "requests" in names and "urllib3" in names  # requests and what it needs in turn
    assert "pyyaml" not in names  # its marker does not apply
    assert "grpcio" not in names  # declared by the installed metadata, not by this pyproject.toml


def test_flask_is_no_runtime_dependency() -> None:
    build_image = _build_image_module()
    names = {
        build_image.normalize(d.metadata["Name"])
        for d in build_image.assemble_rootfs.runtime_distributions(build_image.assemble_rootfs.PROJECT)
    }
    assert "flask" not in names and "werkzeug" not in names
    assert "flask" not in build_image.read_constraints()

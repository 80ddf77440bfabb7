"""Options that name devices or host files, or overwhelm the parsers, are refused at create time.

Docker's Create goes through the real protocol app to a driver that has no LINSTOR and no
host behind it: an answer with the validation sentence proves nothing else was
touched. CSI's CreateVolume goes through the real controller servicer with a core that
records every call. Length limits and parser linearity are checked with megabytes of
input for every key (pytest-timeout guards against a hang).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from csi.controller import ControllerServicer
from csi.generated import csi_pb2
from docker_plugin.app import create_app
from docker_plugin.driver import DockerVolumeDriver
from docker_plugin.refcounts import MountStore
from plugin.errors import InvalidArgument
from plugin.params.csi import parse_csi_parameters
from plugin.params.docker import parse_docker_options
from plugin.params.keys import CSI_PARAMETERS, DOCKER_OPTIONS, MAX_KEY_CHARS, MAX_VALUE_CHARS
from plugin.params.values import BadValue, parse_count_map, parse_remote_access
from testkit.wsgi import WsgiClient

NS = "linstor.csi.linbit.com/"
Mode = csi_pb2.VolumeCapability.AccessMode.Mode

# (fsopts, what the message says) for the probe's findings and their relatives
BAD_MKFS = [
    ("victimdev", '"victimdev" is not an option'),
    ("-d /some/host/dir", "-d copies a directory of the host"),
    ("-E offset=99999999999", "offset= places the filesystem away from the start"),
    ("-V", "-V prints the version of mkfs and exits without formatting"),
]
BAD_MOUNT = [("journal_path=/dev/x", "journal_path= names a file, directory or device of the host")]


class _NoBackend:
    """Any use fails loudly: a refused Create must not reach LINSTOR or the host."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"unexpected backend call: {name}")


class _RecordingCore:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.config = type("Cfg", (), {"property_namespace": "Aux"})()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        self.calls.append(name)
        raise AssertionError(f"unexpected core call: {name}")


@pytest.fixture
def docker(tmp_path: Path) -> WsgiClient:
    driver = DockerVolumeDriver(
        _NoBackend(),  # type: ignore[arg-type]
        _NoBackend(),  # type: ignore[arg-type]
        MountStore(tmp_path / "state.json"),
        node="n1",
        mount_root=tmp_path / "mnt",
    )
    return WsgiClient(create_app(driver, health=lambda: {"linstor_reachable": False}))


def docker_create(client: WsgiClient, name: str, opts: dict[str, str] | None) -> str:
    resp = client.post("/VolumeDriver.Create", data=json.dumps({"Name": name, "Opts": opts}))
    assert resp.status_code == 200
    return str(json.loads(resp.data)["Err"])


def csi_create(parameters: dict[str, str], fs_type: str = "", flags: tuple[str, ...] = ()) -> str:
    core = _RecordingCore()
    servicer = ControllerServicer(core)  # type: ignore[arg-type]
    capability = csi_pb2.VolumeCapability(
        mount={"fs_type": fs_type, "mount_flags": list(flags)}, access_mode={"mode": Mode.SINGLE_NODE_WRITER}
    )
    request = csi_pb2.CreateVolumeRequest(
        name="pvc-1", volume_capabilities=[capability], parameters=parameters
    )
    with pytest.raises(InvalidArgument) as info:
        servicer.CreateVolume(request, None)  # type: ignore[arg-type]
    assert core.calls == []
    return str(info.value)


@pytest.mark.parametrize("fs", ["ext4", "xfs", "btrfs"])
@pytest.mark.parametrize(("fsopts", "expected"), BAD_MKFS)
def test_docker_create_refuses_mkfs_options_that_reach_beyond_the_volume(
    docker: WsgiClient, fs: str, fsopts: str, expected: str
) -> None:
    err = docker_create(docker, "data", {"fs": fs, "fsopts": fsopts, "size": "1G"})
    assert err.startswith(f'invalid value "{fsopts}" for option "fsopts": not allowed for {fs}: ')
    if fs == "ext4" or expected.startswith(('"', "-V")):
        assert expected in err


@pytest.mark.parametrize(("mountopts", "expected"), BAD_MOUNT)
def test_docker_create_refuses_mount_options_naming_devices(
    docker: WsgiClient, mountopts: str, expected: str
) -> None:
    err = docker_create(docker, "data", {"mountopts": f"noatime,{mountopts}"})
    assert err.startswith(f'invalid value "noatime,{mountopts}" for option "mountopts": ')
    assert expected in err


def test_docker_fsopts_version_is_refused_with_a_clear_message(docker: WsgiClient) -> None:
    err = docker_create(docker, "data", {"fsopts": "-V"})
    assert "prints the version of mkfs and exits without formatting" in err
    assert "holds None" not in err


def test_docker_checks_the_volumes_own_filesystem(docker: WsgiClient) -> None:
    # -K is an xfs/btrfs option; mke2fs does not know it
    assert "not allowed for ext4" in docker_create(docker, "data", {"fsopts": "-K"})
    err = docker_create(docker, "data", {"fs": "btrfs", "mountopts": "inode64"})
    assert 'mount option "inode64" is not allowed for btrfs' in err


@pytest.mark.parametrize(("fsopts", "expected"), BAD_MKFS)
def test_csi_create_volume_refuses_mkfs_options_before_any_call(fsopts: str, expected: str) -> None:
    message = csi_create({NS + "fsOpts": fsopts})
    assert f'"{fsopts}" for parameter "{NS}fsOpts": not allowed for any filesystem' in message
    assert expected in message
    # the filesystem from the capability decides, before anything reaches LINSTOR
    message = csi_create({NS + "fsOpts": "-K"}, fs_type="ext4")
    assert message.startswith('invalid value "-K" for parameter "fsOpts": not allowed for ext4')


@pytest.mark.parametrize(("mountopts", "expected"), BAD_MOUNT)
def test_csi_create_volume_refuses_mount_options_and_flags(mountopts: str, expected: str) -> None:
    assert expected in csi_create({NS + "mountOpts": mountopts})
    message = csi_create({}, fs_type="xfs", flags=("noatime", "logdev=/dev/sdb"))
    assert message.startswith("invalid mount_flags in the volume capability: ")
    assert "logdev= names a device of the host" in message
    message = csi_create({NS + "mountOpts": "inode64"}, fs_type="ext4")
    assert message.startswith('invalid value "inode64" for parameter "mountOpts": ')


def test_docker_name_with_nul_is_reported_as_such(docker: WsgiClient) -> None:
    err = docker_create(docker, "da\x00ta", None)
    assert "NUL" in err and "1024" not in err
    assert "limited to 1024 characters" in docker_create(docker, "x" * 1025, None)


# --- bounds and linear parsing ------------------------------------------------------------


@pytest.mark.parametrize("size", [1 << 20, 10 << 20])
def test_every_docker_option_refuses_megabytes(size: int) -> None:
    for spec in DOCKER_OPTIONS:
        with pytest.raises(InvalidArgument, match=f"values are limited to {MAX_VALUE_CHARS} characters"):
            parse_docker_options({spec.name: "a," * (size // 2)})
    with pytest.raises(InvalidArgument, match=f"option names are limited to {MAX_KEY_CHARS} characters"):
        parse_docker_options({"k" * size: "1"})
    with pytest.raises(InvalidArgument, match="in the defaults of the configuration"):
        parse_docker_options({}, {"fsopts": "-q " * size})


@pytest.mark.parametrize("size", [1 << 20, 10 << 20])
def test_every_csi_parameter_refuses_megabytes(size: int) -> None:
    for spec in CSI_PARAMETERS:
        with pytest.raises(InvalidArgument, match=f'the value of parameter "{NS}{spec.name}" is {size}'):
            parse_csi_parameters({NS + spec.name: "{" * size})
    with pytest.raises(InvalidArgument, match="parameter names are limited"):
        parse_csi_parameters({"property.linstor.csi.linbit.com/" + "a" * size: "x"})
    with pytest.raises(InvalidArgument, match="at most 256 are accepted"):
        parse_csi_parameters({f"example.com/k{i}": "v" for i in range(100_000)})


@pytest.mark.parametrize(
    "fill",
    ["a" * MAX_VALUE_CHARS, "a " * (MAX_VALUE_CHARS // 2), "{" * MAX_VALUE_CHARS, "[" * MAX_VALUE_CHARS,
     "1" * MAX_VALUE_CHARS, "-q " * (MAX_VALUE_CHARS // 3), "'" + "x" * (MAX_VALUE_CHARS - 2) + "'"],
)  # fmt: skip
def test_values_at_the_limit_are_parsed_to_an_answer(fill: str) -> None:
    """The largest accepted value of every key ends in a result or a clear refusal, never a crash."""
    for spec in CSI_PARAMETERS:
        try:
            parse_csi_parameters({NS + spec.name: fill})
        except InvalidArgument as exc:
            assert spec.name in str(exc)
    for spec in DOCKER_OPTIONS:
        try:
            parse_docker_options({spec.name: fill})
        except InvalidArgument as exc:
            assert spec.name in str(exc)


@pytest.mark.parametrize("text", ["[" * 3000, "{a: " * 3000, "9" * 5000, "{zone: " + "9" * 5000 + "}"])
def test_yaml_values_that_break_the_parser_are_bad_values(text: str) -> None:
    with pytest.raises(BadValue):
        parse_count_map(text)
    with pytest.raises(BadValue):
        parse_remote_access(text)

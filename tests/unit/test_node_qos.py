"""IO limits: the qos.linbit.com values, the publish context, and where a node writes them.

The cgroup trees here are plain directories shaped like the kernel's (cgroup v2 with
``io.max``, cgroup v1 with ``blkio.throttle.*``); the device numbers are stubbed. The
real kernel takes the limits in tests/integration/test_csi_modify.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plugin import node_qos
from plugin.errors import InvalidArgument
from plugin.models import Volume
from plugin.params import qos
from plugin.params.csi import parse_csi_parameters

UID = "6f1c2a0e-1b2c-4d5e-8f90-0123456789ab"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("104857600", 104857600),
        ("40Mi", 40 * 1024**2),
        ("1Gi", 1024**3),
        ("500k", 500_000),
        ("1G", 10**9),
        ("1.5Ki", 1536),
        ("1e3", 1000),
        ("+7", 7),
        ("0", 0),
        ("100m", 1),  # a milli-quantity rounds up, as Quantity.Value() does
        (" 12 ", 12),
    ],
)
def test_kubernetes_quantities(text: str, value: int) -> None:
    assert qos.parse_quantity(text) == value


@pytest.mark.parametrize(
    "text", ["", "abc", "-5", "10 Mi", "1KB", "0x10", "1e999", "1." + "0" * 40, "9" * 40]
)
def test_bad_quantities(text: str) -> None:
    with pytest.raises(ValueError):
        qos.parse_quantity(text)


def test_a_bad_limit_names_the_key() -> None:
    with pytest.raises(InvalidArgument, match=re.escape('"abc" for parameter "qos.linbit.com/wbps"')):
        qos.parse_limit("qos.linbit.com/wbps", "abc")


def test_storage_class_limits_are_kept_as_integers_and_others_ignored_with_a_note() -> None:
    params = parse_csi_parameters(
        {"qos.linbit.com/rbps": "40Mi", "qos.linbit.com/wiops": "0", "qos.linbit.com/device": "/dev/sda"}
    )
    assert params.extra == {"qos.linbit.com/rbps": str(40 * 1024**2)}
    assert any("qos.linbit.com/device" in note for note in params.notes)
    with pytest.raises(InvalidArgument, match=re.escape("qos.linbit.com/riops")):
        parse_csi_parameters({"qos.linbit.com/riops": "-1"})


def test_publish_context_carries_device_and_limits_only_when_limited() -> None:
    props = {"Aux/qos.linbit.com/rbps": "1048576", "Aux/qos.linbit.com/wiops": "200", "Aux/other": "x"}
    context = qos.publish_context(props, "/dev/drbd1000")
    assert context == {
        "qos.linbit.com/device": "/dev/drbd1000",
        "qos.linbit.com/rbps": "1048576",
        "qos.linbit.com/wiops": "200",
    }
    assert qos.publish_context({}, "/dev/drbd1000") == {}
    assert qos.publish_context({"Aux/qos.linbit.com/rbps": "0"}, "/dev/drbd1000") == {}
    assert qos.publish_context(props, "") == {}  # no device on the node: nothing to limit
    assert qos.stored_limits(props) == qos.Limits(rbps=1048576, wiops=200)
    assert qos.stored_limits({"Aux/qos.linbit.com/rbps": "garbage"}) == qos.Limits()


def test_pod_cgroup_names_for_both_cgroup_drivers() -> None:
    names = {str(p.relative_to("/x")) for p in node_qos.pod_cgroup_candidates(Path("/x"), UID)}
    escaped = UID.replace("-", "_")
    assert f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{escaped}.slice" in names
    assert f"kubepods.slice/kubepods-pod{escaped}.slice" in names
    assert f"kubepods/besteffort/pod{UID}" in names
    assert f"kubepods/pod{UID}" in names


@pytest.fixture
def numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node_qos, "device_numbers", lambda device: "147:1000")


def test_cgroup_v2_gets_io_max(tmp_path: Path, numbers: None) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu io memory\n")
    pod = (
        tmp_path
        / "kubepods.slice"
        / "kubepods-besteffort.slice"
        / f"kubepods-besteffort-pod{UID.replace('-', '_')}.slice"
    )
    pod.mkdir(parents=True)
    (pod / "io.max").write_text("")
    result = node_qos.apply_limits(qos.Limits(rbps=100, wiops=5), "/dev/drbd1000", UID, str(tmp_path))
    assert result.cgroup == str(pod)
    assert (pod / "io.max").read_text() == "147:1000 rbps=100 wbps=max riops=max wiops=5\n"


def test_cgroup_v2_without_the_io_controller_is_reported(tmp_path: Path, numbers: None) -> None:
    (tmp_path / "cgroup.controllers").write_text("cpu memory\n")
    pod = tmp_path / "kubepods" / f"pod{UID}"
    pod.mkdir(parents=True)
    result = node_qos.apply_limits(qos.Limits(rbps=1), "/dev/drbd1000", UID, str(tmp_path))
    assert not result.cgroup and "io controller is not enabled" in result.reason


def test_cgroup_v1_gets_the_blkio_throttle_files(tmp_path: Path, numbers: None) -> None:
    blkio = tmp_path / "blkio"
    blkio.mkdir()
    (blkio / "blkio.throttle.read_bps_device").write_text("")
    pod = blkio / "kubepods" / "burstable" / f"pod{UID}"
    pod.mkdir(parents=True)
    result = node_qos.apply_limits(qos.Limits(rbps=10, wbps=20), "/dev/drbd1000", UID, str(tmp_path))
    assert result.cgroup == str(pod)
    assert (pod / "blkio.throttle.read_bps_device").read_text() == "147:1000 10\n"
    assert (pod / "blkio.throttle.write_bps_device").read_text() == "147:1000 20\n"
    assert (pod / "blkio.throttle.read_iops_device").read_text() == "147:1000 0\n"  # 0 removes a rule


@pytest.mark.parametrize(
    ("uid", "reason"),
    [("", "podInfoOnMount"), ("../../etc", "podInfoOnMount"), (UID, "no cgroup io controller")],
)
def test_nothing_applied_says_why(tmp_path: Path, numbers: None, uid: str, reason: str) -> None:
    result = node_qos.apply_limits(qos.Limits(rbps=1), "/dev/drbd1000", uid, str(tmp_path))
    assert not result.cgroup and reason in result.reason


def test_a_pod_without_a_cgroup_is_reported(tmp_path: Path, numbers: None) -> None:
    (tmp_path / "cgroup.controllers").write_text("io\n")
    result = node_qos.apply_limits(qos.Limits(rbps=1), "/dev/drbd1000", UID, str(tmp_path))
    assert not result.cgroup and f"no cgroup v2 directory of pod {UID}" in result.reason


def test_a_publication_without_limits_touches_nothing() -> None:
    plain = Volume(id="pvc-1", name="pvc-1", size_bytes=1, resource_group="rg", properties={"Aux/x": "1"})
    assert node_qos.apply_for_publication(plain, "/dev/null", {node_qos.POD_UID_KEY: UID}) is None


def test_a_publication_applies_the_volumes_current_limits(
    tmp_path: Path, numbers: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    blkio = tmp_path / "blkio"
    blkio.mkdir()
    (blkio / "blkio.throttle.read_bps_device").write_text("")
    pod = blkio / "kubepods" / f"pod{UID}"
    pod.mkdir(parents=True)
    limited = Volume(
        id="pvc-1",
        name="pvc-1",
        size_bytes=1,
        resource_group="rg",
        properties={"Aux/qos.linbit.com/wiops": "7"},
    )
    monkeypatch.setattr(node_qos, "CGROUP_ROOT", str(tmp_path))
    result = node_qos.apply_for_publication(limited, "/dev/drbd1000", {node_qos.POD_UID_KEY: UID})
    assert result is not None and result.cgroup == str(pod)
    assert (pod / "blkio.throttle.write_iops_device").read_text() == "147:1000 7\n"


def test_device_numbers_refuse_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(ValueError, match="not a block device"):
        node_qos.device_numbers(str(path))

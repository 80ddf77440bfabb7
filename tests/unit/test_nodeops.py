"""Node operations without root: mount-table parsing, option and command building, and
NodeOps driven through a fake host (a scripted ``run`` plus a fake mountinfo file)."""

from __future__ import annotations

import logging
import os
import stat
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from plugin import progress
from plugin.errors import FailedPrecondition, InUse, InvalidArgument, NotFound, OperationFailed, Unavailable
from plugin.node import blockdev
from plugin.node import commandlines as nodecommands
from plugin.node import commands as nodeops
from plugin.node.commands import CommandResult, checked
from plugin.node.mounttable import location_in_filesystem, parse_line, parse_mountinfo, top_mount, unescape
from plugin.node.ops import NodeOps
from testkit.waiting import wait_until

# ---------------------------------------------------------------------------------------
# mountinfo parsing

SAMPLE = """\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
40 22 7:3 / /var/lib/kubelet/plugins/pv\\040one/globalmount rw,relatime shared:7 - ext4 /dev/drbd1000 rw
41 22 7:3 / /var/lib/kubelet/pods/p/vols/v\\040a rw,nosuid,nodev shared:7 master:2 - ext4 /dev/drbd1000 rw
42 22 0:45 / /mnt/btr rw,relatime - btrfs /dev/loop5 rw,space_cache=v2,subvolid=5,subvol=/
43 22 0:45 /sub\\011dir /mnt/btr-bind ro,relatime - btrfs /dev/loop5 rw,space_cache=v2
44 22 0:5 /loop3 /var/lib/blk/file rw,nosuid - devtmpfs udev rw,size=100k
45 42 0:46 / /mnt/btr tmpfs rw - tmpfs tmpfs rw
"""


def test_parse_line_reads_every_field() -> None:
    e = parse_line(SAMPLE.splitlines()[2])
    assert e.mount_id == 41 and e.parent_id == 22
    assert e.device_number == (7, 3)
    assert e.root == "/"
    assert e.mount_point == "/var/lib/kubelet/pods/p/vols/v a"
    assert e.mount_options == ("rw", "nosuid", "nodev")
    assert e.fs_type == "ext4" and e.source == "/dev/drbd1000"
    assert e.super_options == ("rw",)
    assert not e.read_only and not e.superblock_read_only


def test_escapes_are_decoded() -> None:
    assert unescape(r"a\040b\011c\012d\134e") == "a b\tc\nd\\e"
    entries = parse_mountinfo(SAMPLE)
    assert entries[1].mount_point == "/var/lib/kubelet/plugins/pv one/globalmount"
    assert entries[4].root == "/sub\tdir"
    assert entries[4].read_only


def test_emergency_read_only_counts_as_read_only_superblock() -> None:
    e = parse_line("50 1 7:0 / /m rw,relatime - ext4 /dev/loop0 rw,errors=remount-ro,emergency_ro")
    assert not e.read_only and e.superblock_read_only


def test_malformed_line_is_rejected() -> None:
    with pytest.raises(ValueError, match="separator"):
        parse_line("1 2 3:4 / /x rw shared:1 ext4 /dev/x rw")


def test_top_mount_picks_the_mount_stacked_last() -> None:
    entries = parse_mountinfo(SAMPLE)
    top = top_mount(entries, "/mnt/btr")
    assert top is not None and top.fs_type == "tmpfs"
    assert top_mount(entries, "/nowhere") is None


def test_location_in_filesystem_traces_binds_to_their_source() -> None:
    entries = parse_mountinfo(SAMPLE)
    assert location_in_filesystem(entries, "/var/lib/kubelet/plugins/pv one/globalmount") == ((7, 3), "/")
    assert location_in_filesystem(entries, "/var/lib/kubelet/plugins/pv one/globalmount/data") == (
        (7, 3),
        "/data",
    )
    assert location_in_filesystem(entries, "/etc/hosts") == ((254, 1), "/etc/hosts")


def ext4_image(path: Path, blocks: int, log_block_size: int, *, bit64: bool, magic: int = 0xEF53) -> str:
    """A file holding nothing but an ext4 superblock with the given size fields."""
    import struct

    sb = bytearray(1024)
    struct.pack_into("<I", sb, 0x04, blocks & 0xFFFFFFFF)
    struct.pack_into("<I", sb, 0x18, log_block_size)
    struct.pack_into("<H", sb, 0x38, magic)
    struct.pack_into("<I", sb, 0x60, 0x80 if bit64 else 0)
    struct.pack_into("<I", sb, 0x150, blocks >> 32 if bit64 else 0)
    path.write_bytes(bytes(1024) + bytes(sb) + bytes(2048))
    return str(path)


def test_ext4_size_is_read_from_the_superblock(tmp_path: Path) -> None:
    assert blockdev.ext4_size_bytes(ext4_image(tmp_path / "a", 409600, 0, bit64=False)) == 409600 * 1024
    huge = (5 << 32) + 7  # only a 64bit filesystem has the high half of the block count
    assert blockdev.ext4_size_bytes(ext4_image(tmp_path / "b", huge, 2, bit64=True)) == huge * 4096


@pytest.mark.parametrize(
    ("blocks", "log_block_size", "magic"), [(1000, 0, 0x1234), (1000, 7, 0xEF53)], ids=["magic", "block size"]
)
def test_ext4_superblock_that_cannot_be_trusted_is_left_to_dumpe2fs(
    tmp_path: Path, blocks: int, log_block_size: int, magic: int
) -> None:
    assert (
        blockdev.ext4_size_bytes(ext4_image(tmp_path / "x", blocks, log_block_size, bit64=False, magic=magic))
        is None
    )
    (tmp_path / "short").write_bytes(bytes(1500))
    assert blockdev.ext4_size_bytes(str(tmp_path / "short")) is None


def test_ext4_size_falls_back_to_dumpe2fs(host: FakeHost, ops: NodeOps, tmp_path: Path) -> None:
    host.on("dumpe2fs", answer(0, "Block count:              2048\nBlock size:               4096\n"))
    (tmp_path / "blank").write_bytes(bytes(4096))
    assert ops.grower.ext4_size_bytes(str(tmp_path / "blank")) == 2048 * 4096
    assert host.tools_called() == ["dumpe2fs"]
    assert ops.grower.ext4_size_bytes(ext4_image(tmp_path / "e", 100, 0, bit64=False)) == 100 * 1024
    assert host.tools_called() == ["dumpe2fs"]  # a readable superblock needs no command


# ---------------------------------------------------------------------------------------
# option and command building


def test_mount_options_read_write_plain() -> None:
    assert nodecommands.mount_options("ext4", ["noatime,discard", "nodev"], readonly=False) == [
        "noatime",
        "discard",
        "nodev",
    ]


def test_mount_options_xfs_always_gets_nouuid() -> None:
    assert nodecommands.mount_options("xfs", [], readonly=False) == ["nouuid"]
    assert nodecommands.mount_options("xfs", ["nouuid"], readonly=False) == ["nouuid"]


def test_mount_options_read_only_replays_journal_only_on_writable_device() -> None:
    assert nodecommands.mount_options("xfs", ["rw"], readonly=True, device_read_only=False) == [
        "ro",
        "nouuid",
    ]
    assert nodecommands.mount_options("xfs", [], readonly=True, device_read_only=True) == [
        "ro",
        "nouuid",
        "norecovery",
    ]
    assert nodecommands.mount_options("ext4", [], readonly=True, device_read_only=True) == ["ro", "noload"]
    assert nodecommands.mount_options("btrfs", [], readonly=True, device_read_only=True) == ["ro"]
    # unknown device state: no replay skipping
    assert nodecommands.mount_options("xfs", [], readonly=True, device_read_only=None) == ["ro", "nouuid"]


def test_mount_command_read_write_forbids_ro_fallback() -> None:
    assert nodecommands.mount_command("/dev/d", "/t", "ext4", ["noatime"], readonly=False) == [
        "mount",
        "-w",
        "-t",
        "ext4",
        "-o",
        "noatime",
        "/dev/d",
        "/t",
    ]
    assert nodecommands.mount_command("/dev/d", "/t", "xfs", ["ro", "nouuid"], readonly=True) == [
        "mount",
        "-t",
        "xfs",
        "-o",
        "ro,nouuid",
        "/dev/d",
        "/t",
    ]
    assert nodecommands.mount_command("/dev/d", "/t", None, [], readonly=False) == [
        "mount",
        "-w",
        "/dev/d",
        "/t",
    ]


def test_bind_remount_command() -> None:
    assert nodecommands.bind_remount_command("/t", True, ["nosuid", "rw"]) == [
        "mount",
        "-o",
        "remount,bind,ro,nosuid",
        "/t",
    ]
    assert nodecommands.bind_remount_command("/t", False, ["noexec"]) == [
        "mount",
        "-o",
        "remount,bind,rw,noexec",
        "/t",
    ]


def test_mkfs_command_uses_the_users_options() -> None:
    assert nodecommands.mkfs_command("/dev/d", "ext4", "-E nodiscard -L 'my data'") == [
        "mkfs.ext4",
        "-E",
        "nodiscard",
        "-L",
        "my data",
        "/dev/d",
    ]
    assert nodecommands.mkfs_command("/dev/d", "XFS") == ["mkfs.xfs", "/dev/d"]


@pytest.mark.parametrize("fs", ["vfat", "ext3", "", "ext4;rm"])
def test_unsupported_filesystem_is_invalid_argument(fs: str) -> None:
    with pytest.raises(InvalidArgument, match="ext4, xfs, btrfs"):
        nodecommands.mkfs_command("/dev/d", fs)


@pytest.mark.parametrize("opts", ["-L x /dev/sda", "-d file,name=/dev/sdb", "-L 'unterminated"])
def test_mkfs_options_naming_paths_or_malformed_are_refused(opts: str) -> None:
    with pytest.raises(InvalidArgument, match="mkfs options"):
        nodecommands.mkfs_arguments(opts)


def test_blkid_export_is_described() -> None:
    assert (
        nodecommands.describe_signature(nodecommands.parse_blkid_export("DEVNAME=/dev/x\nTYPE=xfs\nUUID=1\n"))
        == "xfs"
    )
    assert (
        nodecommands.describe_signature(
            nodecommands.parse_blkid_export("DEVNAME=/dev/x\nPTUUID=ab\nPTTYPE=gpt\n")
        )
        == "gpt partition table"
    )
    assert (
        nodecommands.describe_signature({"DEVNAME": "/dev/x", "SBMAGIC": "x"})
        == "unrecognised signature (SBMAGIC)"
    )
    assert nodecommands.describe_signature({"DEVNAME": "/dev/x"}) is None


def test_filesystem_size_parsers() -> None:
    dumpe2fs = (
        "Filesystem volume name:   <none>\nBlock count:              409600\nBlock size:               1024\n"
    )
    assert nodecommands.parse_dumpe2fs_size(dumpe2fs) == 409600 * 1024
    xfs_info = (
        "meta-data=/dev/loop0             isize=512    agcount=4, agsize=25600 blks\n"
        "         =                       sectsz=512   attr=2, projid32bit=1\n"
        "data     =                       bsize=4096   blocks=102400, imaxpct=25\n"
        "naming   =version 2              bsize=4096   ascii-ci=0, ftype=1\n"
    )
    assert nodecommands.parse_xfs_info_size(xfs_info) == 4096 * 102400
    show = (
        "Label: none  uuid: 979b1b13\n\tTotal devices 1 FS bytes used 147456\n"
        "\tdevid    1 size 419430400 used 92274688 path /dev/loop0\n"
    )
    assert nodecommands.parse_btrfs_show_sizes(show) == [(419430400, "/dev/loop0")]
    with pytest.raises(OperationFailed):
        nodecommands.parse_dumpe2fs_size("nothing here")
    with pytest.raises(OperationFailed):
        nodecommands.parse_xfs_info_size("nothing here")


# ---------------------------------------------------------------------------------------
# run(): real commands, no root needed


def test_run_failure_names_command_and_stderr() -> None:
    with pytest.raises(OperationFailed) as info:
        nodeops.run([sys.executable, "-c", "import sys; sys.stderr.write('disk on fire\\n'); sys.exit(3)"])
    message = str(info.value)
    assert "exit 3" in message and "disk on fire" in message and sys.executable in message
    assert info.value.details["returncode"] == 3


def test_multi_line_stderr_becomes_one_sentence() -> None:
    result = CommandResult(
        ("mount", "/dev/x", "/t"), 32, "", "mount: /t: bad superblock.\n       see dmesg\n"
    )
    with pytest.raises(OperationFailed) as info:
        checked(result)
    assert str(info.value) == "mount /dev/x /t failed (exit 32): mount: /t: bad superblock; see dmesg"


def test_run_accepts_listed_exit_codes_and_returns_output() -> None:
    result = nodeops.run([sys.executable, "-c", "print('hi'); raise SystemExit(2)"], ok_codes=(0, 2))
    assert result.returncode == 2 and result.stdout == "hi\n"


def test_run_never_uses_a_shell() -> None:
    result = nodeops.run([sys.executable, "-c", "import sys; print(sys.argv[1])", "$(echo hacked); ls"])
    assert result.stdout.strip() == "$(echo hacked); ls"


def test_run_timeout_and_missing_tool() -> None:
    with pytest.raises(OperationFailed, match=r"did not finish within 0\.2s"):
        nodeops.run([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.2)
    with pytest.raises(OperationFailed, match="not installed"):
        nodeops.run(["no-such-tool-for-nodeops-test", "--help"])


# ---------------------------------------------------------------------------------------
# NodeOps against a fake host


def encode(path: str) -> str:
    return path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")


class FakeHost:
    """A scripted ``run`` that keeps a fake mountinfo file in step with mount/umount."""

    def __init__(self, tmp_path: Path) -> None:
        self.mountinfo = tmp_path / "mountinfo"
        self.lines: list[str] = ["1 0 254:1 / / rw,relatime - ext4 /dev/vda1 rw"]
        self.calls: list[list[str]] = []
        self.handlers: dict[str, Callable[[list[str]], CommandResult]] = {}
        self._next_id = 100
        self.write()

    def write(self) -> None:
        self.mountinfo.write_text("\n".join(self.lines) + "\n")

    def add_mount(
        self,
        mount_point: str,
        fs: str = "ext4",
        source: str = "/dev/fake0",
        mm: str = "4095:4095",
        root: str = "/",
        opts: str = "rw,relatime",
        super_opts: str = "rw",
    ) -> None:
        self._next_id += 1
        self.lines.append(
            f"{self._next_id} 1 {mm} {encode(root)} {encode(mount_point)} {opts} - {fs} {source} {super_opts}"
        )
        self.write()

    def remove_mount(self, mount_point: str) -> None:
        encoded = encode(mount_point)
        for i in range(len(self.lines) - 1, -1, -1):
            if self.lines[i].split()[4] == encoded:
                del self.lines[i]
                break
        self.write()

    def on(self, tool: str, handler: Callable[[list[str]], CommandResult]) -> None:
        self.handlers[tool] = handler

    def __call__(
        self, args: Sequence[str], *, timeout: float, ok_codes: Sequence[int] = (0,)
    ) -> CommandResult:
        argv = list(args)
        self.calls.append(argv)
        handler = self.handlers.get(argv[0])
        if handler is not None:
            result = handler(argv)
        elif argv[0] == "umount":
            self.remove_mount(argv[-1])
            result = CommandResult(tuple(argv), 0, "", "")
        else:
            result = CommandResult(tuple(argv), 0, "", "")
        return checked(result, ok_codes)

    def tools_called(self) -> list[str]:
        return [c[0] for c in self.calls]


def answer(code: int, stdout: str = "", stderr: str = "") -> Callable[[list[str]], CommandResult]:
    return lambda argv: CommandResult(tuple(argv), code, stdout, stderr)


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path)


@pytest.fixture
def ops(host: FakeHost) -> NodeOps:
    return NodeOps(device_timeout=0.2, run=host, mountinfo_path=str(host.mountinfo))


@pytest.fixture
def image(tmp_path: Path) -> str:
    path = tmp_path / "disk.img"
    path.write_bytes(b"\0" * 8192)
    return str(path)


def test_signature_blank_when_blkid_finds_nothing(host: FakeHost, ops: NodeOps, image: str) -> None:
    host.on("blkid", answer(2))
    assert ops.filesystem_signature(image) is None
    assert host.calls == [["blkid", "-p", "-o", "export", image]]


@pytest.mark.parametrize(
    ("code", "stdout", "expected"),
    [
        (0, "DEVNAME=x\nTYPE=ext4\n", "ext4"),
        (0, "DEVNAME=x\nTYPE=LVM2_member\n", "LVM2_member"),
        (0, "DEVNAME=x\nPTTYPE=dos\n", "dos partition table"),
        (0, "", "unrecognised signature"),
        (8, "", "several signatures"),
        (4, "", "unknown"),
    ],
)
def test_signature_anything_but_a_clean_miss_is_not_blank(
    host: FakeHost, ops: NodeOps, image: str, code: int, stdout: str, expected: str
) -> None:
    host.on("blkid", answer(code, stdout))
    found = ops.filesystem_signature(image)
    assert found is not None and expected in found


def test_signature_of_unreadable_device_is_not_blank_and_skips_blkid(
    host: FakeHost, ops: NodeOps, tmp_path: Path
) -> None:
    found = ops.filesystem_signature(str(tmp_path))  # a directory cannot be read like a device
    assert found is not None and "cannot be read" in found
    assert host.calls == []


def test_signature_of_missing_device(ops: NodeOps, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        ops.filesystem_signature(str(tmp_path / "nope"))


def test_format_if_blank_runs_mkfs_with_user_options(host: FakeHost, ops: NodeOps, image: str) -> None:
    host.on("blkid", answer(2))
    assert ops.format_if_blank(image, "xfs", "-m crc=1 -K") is True
    assert host.calls[-1] == ["mkfs.xfs", "-m", "crc=1", "-K", image]
    assert host.tools_called().count("blkid") == 2  # probed again right before mkfs


def test_a_running_mkfs_is_listed_and_logs_progress(
    host: FakeHost, ops: NodeOps, image: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen: dict[str, object] = {}

    def slow_mkfs(argv: list[str]) -> CommandResult:
        seen["listed"] = [op.what for op in progress.under_way(image)]
        wait_until(  # until the first progress line, as a slow mkfs would
            lambda: any(
                r.name == "plugin.progress" and r.getMessage() == "still working" for r in caplog.records
            ),
            timeout=20,
            interval=0.01,
            what="the first progress line",
        )
        return CommandResult(tuple(argv), 0, "", "")

    host.on("blkid", answer(2))
    host.on("mkfs.ext4", slow_mkfs)
    progress.set_interval(0.05)
    try:
        with caplog.at_level(logging.INFO, logger="plugin.progress"):
            assert ops.format_if_blank(image, "ext4") is True
    finally:
        progress.set_interval(progress.DEFAULT_INTERVAL)
    (what,) = seen["listed"]  # type: ignore[misc]
    assert what.startswith(f"formatting {image} (mkfs.ext4, ")
    records = [r for r in caplog.records if r.name == "plugin.progress"]
    lines = [r.fields for r in records]  # type: ignore[attr-defined]
    assert records[0].getMessage() == "still working"
    assert lines[0]["volume"] == image and lines[0]["operation"] == what
    assert records[-1].getMessage() == "long operation done" and lines[-1]["operation"] == what
    assert progress.under_way(image) == []


def test_format_if_blank_never_formats_a_device_with_a_signature(
    host: FakeHost, ops: NodeOps, image: str
) -> None:
    host.on("blkid", answer(0, "DEVNAME=x\nTYPE=ext4\n"))
    assert ops.format_if_blank(image, "ext4") is False
    assert "mkfs.ext4" not in host.tools_called()


def test_format_if_blank_rechecks_before_mkfs(host: FakeHost, ops: NodeOps, image: str) -> None:
    answers = iter([answer(2), answer(0, "TYPE=xfs\n")])
    host.on("blkid", lambda argv: next(answers)(argv))
    assert ops.format_if_blank(image, "ext4") is False
    assert not any(t.startswith("mkfs") for t in host.tools_called())


def test_format_if_blank_propagates_probe_failure_without_formatting(
    host: FakeHost, ops: NodeOps, image: str
) -> None:
    def missing(argv: list[str]) -> CommandResult:
        raise OperationFailed("blkid -p failed: blkid is not installed on this node")

    host.on("blkid", missing)
    with pytest.raises(OperationFailed, match="not installed"):
        ops.format_if_blank(image, "ext4")
    assert not any(t.startswith("mkfs") for t in host.tools_called())


def test_format_if_blank_validates_before_touching_anything(host: FakeHost, ops: NodeOps, image: str) -> None:
    with pytest.raises(InvalidArgument, match="unsupported filesystem type 'vfat'"):
        ops.format_if_blank(image, "vfat")
    with pytest.raises(InvalidArgument, match="would name another device or file"):
        ops.format_if_blank(image, "ext4", "-L x /dev/sda")
    assert host.calls == []


def test_mkfs_failure_message_has_command_and_stderr(host: FakeHost, ops: NodeOps, image: str) -> None:
    host.on("blkid", answer(2))
    host.on("mkfs.ext4", answer(1, stderr="mke2fs: Device size reported to be zero\n"))
    with pytest.raises(OperationFailed) as info:
        ops.format_if_blank(image, "ext4", "-L secretlabel")
    # the command is named, the user's options are not (they may carry secrets)
    assert f"mkfs.ext4 <2 arguments> {image}" in str(info.value)
    assert "secretlabel" not in str(info.value)
    assert "Device size reported to be zero" in str(info.value)


def test_is_mounted_and_mount_source_with_escaped_path(host: FakeHost, ops: NodeOps, tmp_path: Path) -> None:
    target = tmp_path / "with space"
    target.mkdir()
    assert not ops.is_mounted(str(target))
    host.add_mount(str(target), source="/dev/drbd1001")
    assert ops.is_mounted(str(target))
    assert ops.mount_source(str(target)) == "/dev/drbd1001"


def test_mounts_of_directory_finds_its_binds(host: FakeHost, ops: NodeOps, tmp_path: Path) -> None:
    staging, pub1, pub2, other = (tmp_path / n for n in ("staging", "pub1", "pub2", "other"))
    for p in (staging, pub1, pub2, other):
        p.mkdir()
    host.add_mount(str(staging), mm="4095:7")
    host.add_mount(str(pub1), mm="4095:7")
    host.add_mount(str(pub2), mm="4095:7", root="/data")
    host.add_mount(str(other), mm="4095:8")
    assert ops.mounts_of(str(staging)) == [str(staging), str(pub1)]
    (staging / "data").mkdir()
    assert ops.mounts_of(str(staging / "data")) == [str(pub2)]


def test_unmount_of_missing_target_does_nothing(host: FakeHost, ops: NodeOps, tmp_path: Path) -> None:
    ops.unmount(str(tmp_path / "never-made"))
    assert host.calls == []


def test_unmount_not_mounted_removes_only_the_empty_dir(host: FakeHost, ops: NodeOps, tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    ops.unmount(str(target))
    assert not target.exists()
    assert host.calls == []


def test_unmount_unmounts_stacked_mounts_and_removes_target(
    host: FakeHost, ops: NodeOps, tmp_path: Path
) -> None:
    target = tmp_path / "t"
    target.mkdir()
    host.add_mount(str(target))
    host.add_mount(str(target), fs="tmpfs", source="tmpfs", mm="0:99")
    ops.unmount(str(target))
    assert host.calls == [["umount", str(target)], ["umount", str(target)]]
    assert not target.exists()


def test_unmount_keeps_target_when_asked(host: FakeHost, ops: NodeOps, tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    host.add_mount(str(target))
    ops.unmount(str(target), remove_target=False)
    assert target.is_dir() and not ops.is_mounted(str(target))


def test_unmount_tolerates_a_concurrent_unmount(host: FakeHost, ops: NodeOps, tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    host.add_mount(str(target))

    def raced(argv: list[str]) -> CommandResult:
        host.remove_mount(argv[-1])
        return CommandResult(tuple(argv), 32, "", f"umount: {argv[-1]}: not mounted.\n")

    host.on("umount", raced)
    ops.unmount(str(target))
    assert not target.exists()


def test_unmount_of_busy_target_is_in_use_never_silently_lazy(
    host: FakeHost, ops: NodeOps, tmp_path: Path
) -> None:
    target = tmp_path / "t"
    target.mkdir()
    host.add_mount(str(target))
    host.on("umount", answer(32, stderr=f"umount: {target}: target is busy.\n"))
    with pytest.raises(InUse, match="busy"):
        ops.unmount(str(target))
    assert host.calls == [["umount", str(target)]]
    assert target.is_dir()


def test_lazy_unmount_only_when_asked(host: FakeHost, ops: NodeOps, tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    host.add_mount(str(target))

    def busy_unless_lazy(argv: list[str]) -> CommandResult:
        if "-l" in argv:
            host.remove_mount(argv[-1])
            return CommandResult(tuple(argv), 0, "", "")
        return CommandResult(tuple(argv), 32, "", "umount: target is busy.\n")

    host.on("umount", busy_unless_lazy)
    ops.unmount(str(target), lazy=True)
    assert host.calls[-1] == ["umount", "-l", str(target)]
    assert not target.exists()


def test_unmount_never_removes_a_dir_holding_data(host: FakeHost, ops: NodeOps, tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    (target / "precious").write_text("keep me")
    with pytest.raises(FailedPrecondition, match="not empty"):
        ops.unmount(str(target))
    assert (target / "precious").read_text() == "keep me"


def test_unmount_never_removes_a_file_holding_data(ops: NodeOps, tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("data")
    with pytest.raises(FailedPrecondition, match="left in place"):
        ops.unmount(str(target))
    assert target.read_text() == "data"


def test_unmount_error_other_than_busy_is_reported(host: FakeHost, ops: NodeOps, tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    host.add_mount(str(target))
    host.on("umount", answer(1, stderr="umount: permission denied\n"))
    with pytest.raises(OperationFailed, match="permission denied"):
        ops.unmount(str(target))


@pytest.mark.parametrize(
    ("fs", "expected"),
    [
        ("ext4", ["resize2fs", "/dev/fake-ext4"]),
        ("xfs", ["xfs_growfs", "{path}"]),
        ("btrfs", ["btrfs", "filesystem", "resize", "max", "{path}"]),
    ],
)
def test_grow_filesystem_uses_the_tool_of_the_filesystem(
    host: FakeHost, ops: NodeOps, tmp_path: Path, fs: str, expected: list[str]
) -> None:
    target = tmp_path / "m"
    target.mkdir()
    host.add_mount(str(target), fs=fs, source=f"/dev/fake-{fs}")
    ops.grow_filesystem(str(target))
    assert host.calls == [[a.format(path=str(target)) for a in expected]]


def test_grow_filesystem_refusals(host: FakeHost, ops: NodeOps, tmp_path: Path) -> None:
    target = tmp_path / "m"
    target.mkdir()
    with pytest.raises(FailedPrecondition, match="not mounted"):
        ops.grow_filesystem(str(target))
    host.add_mount(str(target), fs="vfat")
    with pytest.raises(InvalidArgument, match="vfat"):
        ops.grow_filesystem(str(target))
    host.remove_mount(str(target))
    host.add_mount(str(target), opts="ro,relatime", super_opts="ro")
    with pytest.raises(FailedPrecondition, match="read-only"):
        ops.grow_filesystem(str(target))
    assert host.calls == []


def test_condition_of_missing_and_unmounted_paths(ops: NodeOps, tmp_path: Path) -> None:
    missing = ops.condition(str(tmp_path / "gone"))
    assert missing.abnormal and "does not exist" in missing.message
    (tmp_path / "m").mkdir()
    unmounted = ops.condition(str(tmp_path / "m"))
    assert unmounted.abnormal and "not mounted" in unmounted.message


def test_condition_device_gone(host: FakeHost, ops: NodeOps, tmp_path: Path) -> None:
    target = tmp_path / "m"
    target.mkdir()
    host.add_mount(str(target), source="/dev/no-such-drbd-device", mm="4095:1048575")
    cond = ops.condition(str(target))
    assert cond.abnormal and "gone" in cond.message and "/dev/no-such-drbd-device" in cond.message


@pytest.mark.parametrize("super_opts", ["ro", "rw,emergency_ro"])
def test_condition_read_only_superblock_under_read_write_mount(
    host: FakeHost, ops: NodeOps, tmp_path: Path, super_opts: str
) -> None:
    numbers = sorted(os.listdir("/sys/dev/block")) if os.path.isdir("/sys/dev/block") else []
    if not numbers:
        pytest.skip("no block device in sysfs to stand in for the volume's device")
    target = tmp_path / "m"
    target.mkdir()
    host.add_mount(str(target), fs="xfs", source="/dev/stand-in", mm=numbers[0], super_opts=super_opts)
    cond = ops.condition(str(target))
    assert cond.abnormal and "read-only" in cond.message and "fsck" in cond.message


def test_stats_needs_an_existing_mounted_path(ops: NodeOps, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        ops.stats(str(tmp_path / "gone"))
    with pytest.raises(NotFound, match="nothing is mounted"):
        ops.stats(str(tmp_path))


def test_mount_refuses_sources_that_are_not_block_devices(
    host: FakeHost, ops: NodeOps, tmp_path: Path
) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        ops.mount(str(tmp_path / "nodev"), str(tmp_path / "t"), "ext4")
    with pytest.raises(FailedPrecondition, match="not a block device"):
        ops.mount(str(tmp_path), str(tmp_path / "t"), "ext4")
    with pytest.raises(InvalidArgument, match="remount"):
        ops.mount(str(tmp_path), str(tmp_path / "t"), "ext4", options=["remount"])
    assert host.calls == [] and not (tmp_path / "t").exists()


def test_wait_for_device_times_out_with_a_clear_message(ops: NodeOps, tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match=r"did not appear within 0.1s"):
        ops.wait_for_device(str(tmp_path / "drbd1000"), timeout=0.1)
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(FailedPrecondition, match="not a block device"):
        ops.wait_for_device(str(plain))


def test_wait_for_device_sees_a_late_node(ops: NodeOps, tmp_path: Path) -> None:
    devices = [
        e.path for e in os.scandir("/dev") if not e.is_symlink() and stat.S_ISBLK(os.stat(e.path).st_mode)
    ]
    if not devices:
        pytest.skip("no block device node visible in /dev to link to")
    link = tmp_path / "drbd1000"
    timer = threading.Timer(0.2, lambda: os.symlink(devices[0], link))
    timer.start()
    try:
        ops.wait_for_device(str(link), timeout=5)
    finally:
        timer.join()
    assert link.exists()


def test_stage_validates_everything_before_any_command(host: FakeHost, ops: NodeOps, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        ops.stage(str(tmp_path / "d"), str(tmp_path / "s"), "zfs")
    with pytest.raises(InvalidArgument):
        ops.stage(str(tmp_path / "d"), str(tmp_path / "s"), "ext4", mkfs_opts="/dev/sda")
    with pytest.raises(InvalidArgument):
        ops.stage(str(tmp_path / "d"), str(tmp_path / "s"), "ext4", mount_opts=["bind"])
    assert host.calls == []


def any_block_device() -> str:
    """A block device node to stand in for a volume (only stat'ed, never opened)."""
    for entry in sorted(os.scandir("/dev"), key=lambda e: e.name):
        try:
            if not entry.is_symlink() and stat.S_ISBLK(os.stat(entry.path).st_mode):
                return entry.path
        except OSError:
            continue
    pytest.skip("no block device node visible in /dev")


def mounting_host(host: FakeHost, device: str) -> None:
    """Teach the fake host to record mounts of ``device`` and binds in its mountinfo."""
    rdev = os.stat(device).st_rdev
    mm = f"{os.major(rdev)}:{os.minor(rdev)}"

    binds: dict[str, str] = {}

    def mount(argv: list[str]) -> CommandResult:
        target = argv[-1]
        if argv[1] == "--bind":
            binds[target] = argv[2]
            host.add_mount(target, mm="254:1", root=argv[2])
        elif argv[2].startswith("remount,bind,"):
            host.remove_mount(target)
            host.add_mount(target, mm="254:1", root=binds[target], opts=argv[2].split(",")[2])
        else:
            ro = "ro" in argv[argv.index("-o") + 1].split(",") if "-o" in argv else False
            host.add_mount(target, source=argv[-2], mm=mm, opts="ro" if ro else "rw")
        return CommandResult(tuple(argv), 0, "", "")

    host.on("mount", mount)


def test_mount_argument_list_and_idempotent_repeat(host: FakeHost, ops: NodeOps, tmp_path: Path) -> None:
    device = any_block_device()
    mounting_host(host, device)
    target = tmp_path / "staging"
    ops.mount(device, str(target), "xfs", ["noatime"])
    assert host.calls == [["mount", "-w", "-t", "xfs", "-o", "noatime,nouuid", device, str(target)]]
    assert target.is_dir()
    ops.mount(device, str(target), "xfs", ["noatime"])
    assert len(host.calls) == 1
    with pytest.raises(FailedPrecondition, match="already mounted read-write"):
        ops.mount(device, str(target), "xfs", readonly=True)


def test_read_only_mount_argument_list(host: FakeHost, ops: NodeOps, tmp_path: Path) -> None:
    device = any_block_device()
    mounting_host(host, device)
    target = tmp_path / "ro"
    ops.mount(device, str(target), "ext4", ["rw", "noatime"], readonly=True)
    # the device is made read-only first (the fake host does not change sysfs, so the
    # journal-skipping option that follows from a read-only device is not expected here)
    rdev = os.stat(device).st_rdev
    if blockdev.read_only((os.major(rdev), os.minor(rdev))):
        assert host.tools_called() == ["mount"]
    else:
        assert host.calls[0] == ["blockdev", "--setro", device]
    mount = host.calls[-1]
    assert mount[:4] == ["mount", "-t", "ext4", "-o"] and mount[5:] == [device, str(target)]
    assert mount[4].split(",")[:2] == ["ro", "noatime"]
    assert "-w" not in mount and "rw" not in mount[4].split(",")


def test_read_only_bind_argument_list(host: FakeHost, ops: NodeOps, tmp_path: Path) -> None:
    device = any_block_device()
    mounting_host(host, device)
    source, target = tmp_path / "staging", tmp_path / "publish"
    source.mkdir()
    ops.bind_mount(str(source), str(target), readonly=True, options=["nosuid"])
    assert host.calls == [
        ["mount", "--bind", str(source), str(target)],
        ["mount", "-o", "remount,bind,ro,nosuid", str(target)],
    ]
    ops.bind_mount(str(source), str(target), readonly=True)  # repeat: no-op
    assert len(host.calls) == 2


def test_failed_read_only_remount_undoes_the_bind(host: FakeHost, ops: NodeOps, tmp_path: Path) -> None:
    device = any_block_device()
    mounting_host(host, device)
    plain_mount = host.handlers["mount"]

    def remount_fails(argv: list[str]) -> CommandResult:
        if "remount,bind,ro" in argv:
            return CommandResult(tuple(argv), 32, "", "mount: cannot remount read-only\n")
        return plain_mount(argv)

    host.on("mount", remount_fails)
    source, target = tmp_path / "staging", tmp_path / "publish"
    source.mkdir()
    with pytest.raises(OperationFailed, match="cannot remount read-only"):
        ops.bind_mount(str(source), str(target), readonly=True)
    assert host.calls[-1] == ["umount", str(target)]
    assert not ops.is_mounted(str(target)) and not target.exists()


def test_a_wait_between_the_probe_and_mkfs_is_followed_by_another_probe(
    host: FakeHost, ops: NodeOps, image: str
) -> None:
    """Whoever wrote meanwhile is seen: the last look at the device stays right before mkfs."""
    answers = iter([answer(2), answer(0, "TYPE=xfs\n")])
    host.on("blkid", lambda argv: next(answers)(argv))
    waits: list[str] = []
    found = ops.formatter.probe_then_format(image, (7, 0), "ext4", "", [], lambda: waits.append("x") or True)
    assert found == ("xfs", False) and waits == ["x"]
    assert host.tools_called() == ["blkid", "blkid"]


def test_no_wait_means_one_probe_then_mkfs(host: FakeHost, ops: NodeOps, image: str) -> None:
    host.on("blkid", answer(2))
    order: list[str] = []
    found = ops.formatter.probe_then_format(
        image, (7, 0), "ext4", "", [], lambda: order.append(str(host.tools_called())) or False
    )
    assert found == ("ext4", True)
    assert order == ["['blkid']"]  # called after the probe, before mkfs
    assert host.tools_called() == ["blkid", "mkfs.ext4"]


def test_nothing_before_mkfs_runs_for_a_device_that_is_not_blank_and_a_refusal_stops_mkfs(
    host: FakeHost, ops: NodeOps, image: str
) -> None:
    host.on("blkid", answer(0, "TYPE=ext4\n"))
    assert ops.formatter.probe_then_format(image, (7, 0), "ext4", "", [], _fail) == ("ext4", False)
    host.on("blkid", answer(2))
    with pytest.raises(NotFound, match="definition says no"):
        ops.formatter.probe_then_format(image, (7, 0), "ext4", "", [], _fail)
    assert not any(t.startswith("mkfs") for t in host.tools_called())


def _fail() -> bool:
    raise NotFound("definition says no")

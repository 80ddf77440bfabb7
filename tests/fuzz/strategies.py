"""Random and adversarial values for fuzzed requests.

Each strategy mixes plain random data with the values the reliability probe found
dangerous: paths that are relative, climb with ``..``, name ``/``, ``/etc``, a symlink out of
the root, a scratch file, or carry a NUL; sizes at the edges of int64; names that are empty,
unicode, 1 MB long or contain NUL; mkfs and mount options that name a device, a host
directory or an offset; capabilities that are missing, conflicting or name an unknown
filesystem. The concrete scratch paths and devices come from :class:`Targets`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from hypothesis import strategies as st

from csi.generated import csi_pb2

Mode = csi_pb2.VolumeCapability.AccessMode.Mode
MB = 1024 * 1024

INT64_EDGES = (0, -1, 1, 511, 4096, 4 * MB, 2**31, 2**40, 2**50 + 1, 2**62, 2**63 - 1, -(2**63))


@dataclass
class Targets:
    """Concrete things of one test run that fuzzed values point at."""

    root: str  # the node's allowed root as the daemon sees it
    scratch_tree: str
    scratch_devices: list[str]
    own_paths: list[str] = field(default_factory=list)  # legitimate paths for the fuzzed volume
    victim_paths: list[str] = field(default_factory=list)  # another volume's staging/target
    victim_devices: list[str] = field(default_factory=list)
    foreign_mounts: list[str] = field(default_factory=list)  # tmpfs outside the root
    escape_links: list[str] = field(default_factory=list)  # symlinks under the root, pointing out


def names() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(
            [
                "",
                "\x00",
                "vol\x00ume",
                "ü" * 64,
                "名前-ボリューム",
                "x" * 129,
                "x" * 1025,
                "x" * MB,
                "../../etc",
                "/etc/passwd",
                "-o",
                "--rootdir=/etc",
                " ",
                "a b",
                "CON",
                "pvc-" + "0" * 36,
                "\n",
            ]
        ),
        st.text(min_size=0, max_size=80),
        st.from_regex(r"[A-Za-z0-9_.-]{1,60}", fullmatch=True),
    )


def sizes() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(INT64_EDGES), st.integers(-(2**63), 2**63 - 1), st.integers(0, 512 * MB))


def paths(t: Targets) -> st.SearchStrategy[str]:
    tree = t.scratch_tree
    fixed = [
        "",
        ".",
        "..",
        "relative/dir",
        "victimdev",
        "/",
        "/etc",
        "/etc/passwd",
        "/dev",
        "/proc",
        "/sys",
        "/tmp",
        t.root,
        t.root + "/",
        t.root + "/../../..",
        t.root + "/.." + tree,
        f"{t.root}/../../../..{tree}/empty-dir",
        f"{tree}/empty-dir",
        f"{tree}/empty-file",
        f"{tree}/data.txt",
        f"{tree}/nested",
        f"{tree}/victimdir",
        f"{t.root}/pods/x\x00y/mount",
        f"{t.root}/pods/" + "d" * 255 + "/mount",
        f"{t.root}/pods/" + "/".join(["d" * 200] * 25),
        f"{t.root}/pods/ü/volumes/mount",
        *t.scratch_devices,
        *t.own_paths,
        *t.victim_paths,
        *t.victim_devices,
        *t.foreign_mounts,
        *t.escape_links,
    ]
    below_root = st.lists(st.from_regex(r"[a-z0-9.~_-]{1,12}", fullmatch=True), min_size=1, max_size=4).map(
        lambda parts: os.path.join(t.root, "pods", *parts)
    )
    return st.one_of(st.sampled_from(fixed), st.sampled_from(fixed), below_root, st.text(max_size=40))


def _mostly(known: st.SearchStrategy[str], other: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Three draws in four from the known-dangerous list: the CI set is small."""
    return st.one_of(known, known, known, other)


def mkfs_options(t: Targets) -> st.SearchStrategy[str]:
    tree = t.scratch_tree
    dev = t.scratch_devices[0]
    return _mostly(
        st.sampled_from(
            [
                "",
                "victimdev",
                f"-d {tree}/victimdir",
                "-d victimdir",
                f"-r {tree}/victimdir",
                f"--rootdir {tree}/victimdir",
                f"-p {tree}/data.txt",
                f"-J device={dev}",
                f"-l {tree}/data.txt",
                "-E offset=99999999999",
                "-E offset=4096",
                "-V",
                "-n",
                "-S",
                "-F",
                f"{dev}",
                f"-O ^has_journal {dev}",
                "-m 1",
                "-L label",
                "'unterminated",
                "x" * 100_000,
                "-E " + ",".join(["nodiscard"] * 20_000),
            ]
        ),
        st.text(max_size=60),
    )


def mount_options(t: Targets) -> st.SearchStrategy[str]:
    tree = t.scratch_tree
    dev = t.scratch_devices[0]
    return _mostly(
        st.sampled_from(
            [
                "",
                "noatime",
                "noatime,discard",
                f"journal_path={dev}",
                f"journal_dev={dev}",
                f"logdev={dev}",
                f"rtdev={dev}",
                f"device={dev}",
                f"loop={dev}",
                "offset=4096",
                "bind",
                "rbind",
                "remount",
                "shared",
                "-o",
                f"context={tree}",
                "x" * 100_000,
                ",".join(["noatime"] * 50_000),
            ]
        ),
        st.text(max_size=40),
    )


def access_modes() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(list(Mode.values())), st.integers(-5, 100))


def fs_types() -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            "",
            "ext4",
            "xfs",
            "btrfs",
            "EXT4",
            "ntfs",
            "tmpfs",
            "proc",
            "bind",
            "../ext4",
            "ext4\x00",
            "x" * 5000,
        ]
    )


def capability(t: Targets) -> st.SearchStrategy[csi_pb2.VolumeCapability]:
    def build(kind: str, fs: str, flags: list[str], mode: int | None) -> csi_pb2.VolumeCapability:
        cap = csi_pb2.VolumeCapability()
        if kind in ("mount", "both"):
            cap.mount.CopyFrom(csi_pb2.VolumeCapability.MountVolume(fs_type=fs, mount_flags=flags))
        if kind == "block":
            cap.block.CopyFrom(csi_pb2.VolumeCapability.BlockVolume())
        if mode is not None:
            cap.access_mode.CopyFrom(csi_pb2.VolumeCapability.AccessMode(mode=mode))  # type: ignore[arg-type]
        return cap

    return st.builds(
        build,
        st.sampled_from(["mount", "block", "none", "both"]),
        fs_types(),
        st.lists(mount_options(t), max_size=3),
        st.one_of(st.none(), access_modes()),
    )


def string_maps(t: Targets, keys: list[str]) -> st.SearchStrategy[dict[str, str]]:
    values = st.one_of(mkfs_options(t), mount_options(t), paths(t), st.sampled_from(["1", "-1", "true", "x"]))
    return st.dictionaries(st.one_of(st.sampled_from(keys), names()), values, max_size=4)

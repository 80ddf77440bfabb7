"""The allow-lists of mkfs and mount options, per filesystem, and the linear splitter."""

from __future__ import annotations

import pytest

from plugin.errors import InvalidArgument
from plugin.params.fs_options import MAX_OPTIONS_CHARS, OptionError, check_mkfs_options, split_mkfs_options
from plugin.params.mount_rules import check_mount_option, split_mount_options


def mkfs_error(options: str, fs: str | None) -> str:
    with pytest.raises(OptionError) as info:
        check_mkfs_options(split_mkfs_options(options), fs)
    return str(info.value)


def mount_error(option: str, fs: str | None) -> str:
    with pytest.raises(OptionError) as info:
        check_mount_option(option, fs)
    return str(info.value)


def test_split_is_shell_like_without_expansion() -> None:
    assert split_mkfs_options("-L 'my data'  -E nodiscard") == ["-L", "my data", "-E", "nodiscard"]
    assert split_mkfs_options('-L "a b"c') == ["-L", "a bc"]
    assert split_mkfs_options("-L $(reboot)") == ["-L", "$(reboot)"]
    assert split_mkfs_options("-L ''") == ["-L", ""]
    assert split_mkfs_options("   ") == []


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("-L 'open", "balanced quotes"),
        ("-L a\n-q", "on one line"),
        ("-L a\\ b", "backslash"),
        ("-q " * (MAX_OPTIONS_CHARS // 2), f"limited to {MAX_OPTIONS_CHARS} characters"),
    ],
)
def test_split_refuses_what_a_splitter_could_read_differently(options: str, expected: str) -> None:
    with pytest.raises(OptionError, match=expected):
        split_mkfs_options(options)


@pytest.mark.parametrize(
    ("fs", "options"),
    [
        ("ext4", "-L data -E nodiscard,stride=8,lazy_itable_init=1 -m 1 -O ^has_journal -b 4096 -q"),
        ("ext4", "-jq -b4096 -T small -U random -e remount-ro -J size=16"),
        ("xfs", "-L data -m crc=1,reflink=1 -K -d agcount=4 -i size=512 -n ftype=1 -l size=8m"),
        ("btrfs", "--label data --nodiscard -m dup -d single -O ^no-holes --csum=xxhash"),
        ("btrfs", "-L data -K -n 16k --mixed"),
    ],
)
def test_ordinary_options_pass(fs: str, options: str) -> None:
    check_mkfs_options(split_mkfs_options(options), fs)
    check_mkfs_options(split_mkfs_options(options), None)


@pytest.mark.parametrize(
    ("fs", "options", "expected"),
    [
        # anything that names another device or a host file
        ("btrfs", "victimdev", '"victimdev" is not an option'),
        ("ext4", "-L x dev/sdb", '"dev/sdb" is not an option'),
        ("ext4", "-- /dev/sdb", '"--" is not an option'),
        ("ext4", "-d /some/host/dir", "-d copies a directory of the host"),
        ("ext4", "-qd/etc", "-d copies a directory of the host"),
        ("ext4", "-J device=/dev/sdb", "device= puts the journal on another device"),
        ("ext4", "-l badblocks.txt", "-l reads a list of bad blocks from a file of the host"),
        ("ext4", "-M /srv", "-M records a directory of the host"),
        ("ext4", "-z undo", "-z writes an undo file on the host"),
        ("xfs", "-p protofile", "-p reads a prototype file of the host"),
        ("xfs", "-d file,name=/dev/sdb", "file= makes the data section a file of the host"),
        ("xfs", "-d name=/dev/sdb", "name= names a file, directory or device of the host"),
        ("xfs", "-l logdev=/dev/sdb", "logdev= puts the log on another device"),
        ("xfs", "-r rtdev=/dev/sdb", "-r makes a realtime section"),
        ("xfs", "-c options=/etc/x.conf", "-c reads a configuration file"),
        ("btrfs", "-r /home", "-r copies a directory of the host"),
        ("btrfs", "--rootdir=/home", "--rootdir copies a directory of the host"),
        ("btrfs", "--rootdir /home --shrink", "--rootdir copies a directory of the host"),
        ("btrfs", "--root=/home", '"--root" is not an mkfs option'),  # no getopt abbreviations
        # options that make mkfs do something other than format
        ("ext4", "-V", "-V prints the version of mkfs and exits without formatting"),
        ("xfs", "-V", "-V prints the version"),
        ("btrfs", "--version", "--version prints the version"),
        ("ext4", "-n", "-n only shows what mkfs would do"),
        ("xfs", "-N", "-N only shows what mkfs would do"),
        ("ext4", "-F", "-F forces mkfs over an existing filesystem"),
        ("xfs", "-f", "-f forces mkfs"),
        ("btrfs", "-O list-all", 'refuses "list-all": it lists the features and exits'),
        ("ext4", "-S", "-S writes only superblocks"),
        ("ext4", "-t ext2", "-t chooses another filesystem type"),
        # values that keep mkfs busy, halt the node or just do not fit
        ("ext4", "-E offset=99999999999", "offset= places the filesystem away from the start"),
        ("ext4", "-E nodiscard,offset=4096", "offset= places the filesystem"),
        ("ext4", "-e panic", "-e takes one of continue, remount-ro"),
        ("ext4", "-c", "-c reads the whole device"),
        ("ext4", "-b 3", "-b takes one of 1024"),
        ("ext4", "-L", "-L needs a value"),
        ("ext4", "-L " + "x" * 17, "-L takes a label of up to 16"),
        ("ext4", "-L a/b", "-L takes a label"),
        ("ext4", "-E bogus", '"bogus" is not one of them'),
        ("ext4", "-E discard=1", 'takes "discard" without a value'),
        ("xfs", "-m crc", 'needs a value for "crc"'),
        ("btrfs", "-d raid1", "-d takes single or dup"),
        ("btrfs", "--nodiscard=1", "--nodiscard takes no value"),
        ("ext4", "-K", '"-K" is not an mkfs option this plugin passes to mkfs.ext4 (allowed: -b,'),
    ],
)
def test_refused_options_name_option_filesystem_and_reason(fs: str, options: str, expected: str) -> None:
    message = mkfs_error(options, fs)
    assert message.startswith(f"not allowed for {fs}: ")
    assert expected in message


def test_before_the_filesystem_is_known_an_option_must_suit_one() -> None:
    check_mkfs_options(split_mkfs_options("-K"), None)  # xfs and btrfs take it
    message = mkfs_error("-d /some/dir", None)
    assert "ext4: -d copies a directory of the host" in message
    assert "xfs: -d takes settings agcount=" in message and "btrfs: -d takes single or dup" in message
    assert mkfs_error("-V", None) == (
        "not allowed for any filesystem: -V prints the version of mkfs and exits without formatting"
    )


def test_no_options_are_fine_for_any_filesystem() -> None:
    check_mkfs_options([], "vfat")
    with pytest.raises(OptionError, match="no mkfs options are allowed for vfat"):
        check_mkfs_options(["-q"], "vfat")


@pytest.mark.parametrize(
    ("fs", "option"),
    [
        ("ext4", "noatime"),
        ("ext4", "commit=30"),
        ("ext4", "errors=remount-ro"),
        ("ext4", "data=ordered"),
        ("ext4", "barrier=0"),
        ("xfs", "inode64"),
        ("xfs", "logbsize=256k"),
        ("xfs", "nouuid"),
        ("btrfs", "compress=zstd:3"),
        ("btrfs", "space_cache=v2"),
        ("btrfs", "subvolid=5"),
        ("btrfs", "ssd"),
        ("ext4", 'context="system_u:object_r:container_file_t:s0"'),
        ("vfat", "nodev"),  # a filesystem the plugin does not make still gets the generic options
    ],
)
def test_ordinary_mount_options_pass(fs: str, option: str) -> None:
    check_mount_option(option, fs)
    if fs != "vfat":
        check_mount_option(option, None)


@pytest.mark.parametrize(
    ("fs", "option", "expected"),
    [
        ("ext4", "journal_path=/dev/x", "journal_path= names a file, directory or device of the host"),
        ("ext4", "journal_dev=259:1", "journal_dev= names a device of the host"),
        ("xfs", "logdev=/dev/sdb", "logdev= names a device of the host"),
        ("xfs", "rtdev=/dev/sdb", "rtdev= names a device of the host"),
        ("btrfs", "device=/dev/sdb", "device= names another device of the host"),
        ("btrfs", "subvol=/etc", "subvol= names a path"),
        ("ext4", "loop=/dev/loop7", "loop= names a file"),
        ("ext4", "X-mount.subdir=/etc", "X-mount.subdir= names a file"),
        ("ext4", "errors=panic", "errors=panic makes a filesystem error halt the whole node"),
        ("btrfs", "fatal_errors=panic", "fatal_errors=panic makes a filesystem error halt"),
        ("ext4", "commit=soon", 'commit= takes a whole number, not "soon"'),
        ("ext4", "commit", "commit needs a value: commit=<a whole number>"),
        ("ext4", "noatime=1", "noatime takes no value"),
        ("ext4", "inode64", "ext4's own: acl,"),  # an xfs option
        ("xfs", "journal_checksum", "xfs's own: attr2,"),
    ],
)
def test_refused_mount_options_name_option_filesystem_and_reason(fs: str, option: str, expected: str) -> None:
    message = mount_error(option, fs)
    assert message.startswith(f'mount option "{option}" is not allowed for {fs}')
    assert expected in message


def test_unknown_mount_option_lists_what_is_allowed() -> None:
    message = mount_error("bogus", "ext4")
    assert "allowed are the generic options async, atime," in message and "noatime" in message
    assert "ext4's own: acl," in message and "commit=<a whole number>" in message
    message = mount_error("bogus", None)
    assert "not allowed for any of ext4, xfs, btrfs" in message
    assert "each filesystem's own (see the parameter reference)" in message


def test_checks_are_linear_in_their_input() -> None:
    """Megabytes of options are refused or parsed quickly (pytest-timeout guards a hang)."""
    big = "-q " * 500_000
    with pytest.raises(OptionError, match="limited to"):
        split_mkfs_options(big)
    words = ["-q"] * 500_000
    check_mkfs_options(words, "ext4")
    with pytest.raises(OptionError):
        check_mkfs_options(["-E", "nodiscard," * 200_000 + "offset=1"], "ext4")
    with pytest.raises(OptionError):
        check_mount_option("commit=" + "9" * 1_000_000, "ext4")


@pytest.mark.parametrize("bad", ["bind", "remount", "rbind", "move", "--bind", "a b", "-w"])
def test_mount_options_refuse_what_changes_the_mount_itself(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="option"):
        split_mount_options([bad])


def test_mount_option_lists_split_at_commas_once_and_keep_the_first_of_each() -> None:
    # the one splitter of "a,b" lists: blanks and repeats dropped, every source alike
    assert split_mount_options([" noatime, ,discard", "noatime,nodev"], "ext4") == [
        "noatime",
        "discard",
        "nodev",
    ]
    assert split_mount_options("noatime,,", None) == ["noatime"]

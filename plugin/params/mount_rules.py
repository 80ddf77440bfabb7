"""Which mount options a user may give, per filesystem.

Generic VFS flags plus each filesystem's own options, with the shapes of their values;
options that name a device or file of the host (``journal_path=``, ``logdev=``,
``device=``, ``loop=``), run helpers, or make an error halt the node are refused with the
reason. Used when a volume is created (:mod:`plugin.params.rules`) and on the node right
before mount (:mod:`plugin.node.commandlines`), so both refuse the same options.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from plugin.errors import InvalidArgument
from plugin.params.filesystems import FILESYSTEMS
from plugin.params.fs_options import (
    BIT,
    MAX_OPTIONS_CHARS,
    NUMBER,
    PATH_REASON,
    SIZE,
    XFS_SIZE,
    OptionError,
    Shape,
    choice,
    quote,
    shown,
)
from plugin.params.values import split_commas

# Options that change what mount does rather than how the filesystem behaves.
FORBIDDEN_MOUNT_OPTIONS = frozenset(
    {"bind", "rbind", "remount", "move", "shared", "private", "slave", "unbindable", "defaults"}
)


@dataclass(frozen=True)
class MountRules:
    """Mount options without a value (``flags``), with one (``values``), and refusals with reasons."""

    name: str
    flags: frozenset[str]
    values: Mapping[str, Shape]
    refused: Mapping[str, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.flags) + [f"{n}=<{s.hint}>" for n, s in sorted(self.values.items())]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_CONTEXT = Shape(r'"?[A-Za-z0-9_.:-]{1,255}"?', "an SELinux context")
_HOST_FILES = "changes files of the host"
_LOOP = "belongs to loop devices, which the plugin does not use"
_PANIC = "makes a filesystem error halt the whole node"
_DAX = choice("always", "never", "inode")

# fmt: off
GENERIC_MOUNT = MountRules(
    "generic",
    _words(
        "async sync atime noatime diratime nodiratime relatime norelatime strictatime nostrictatime "
        "lazytime nolazytime dev nodev exec noexec suid nosuid dirsync iversion noiversion silent loud "
        "nosymfollow ro rw"
    ),
    {"context": _CONTEXT, "fscontext": _CONTEXT, "defcontext": _CONTEXT, "rootcontext": _CONTEXT},
    refused={
        "loop": PATH_REASON, "offset": _LOOP, "sizelimit": _LOOP,
        "helper": "runs a helper program of the host", "uhelper": "runs a helper program of the host",
        "x-mount.subdir": PATH_REASON, "x-mount.idmap": PATH_REASON,
        "x-mount.mkdir": "creates directories of the host",
        "x-mount.owner": _HOST_FILES, "x-mount.group": _HOST_FILES, "x-mount.mode": _HOST_FILES,
    },
)
MOUNT_RULES = {
    "ext4": MountRules(
        "ext4",
        _words(
            "acl noacl bsddf minixdf grpid bsdgroups nogrpid sysvgroups quota noquota usrquota grpquota "
            "prjquota nouid32 oldalloc orlov user_xattr nouser_xattr norecovery noload barrier nobarrier "
            "journal_checksum nojournal_checksum journal_async_commit delalloc nodelalloc auto_da_alloc "
            "noauto_da_alloc noinit_itable init_itable discard nodiscard block_validity noblock_validity "
            "dioread_lock dioread_nolock i_version nombcache dax"
        ),
        {
            "errors": choice("continue", "remount-ro"), "data": choice("journal", "ordered", "writeback"),
            "data_err": choice("ignore", "abort"), "barrier": BIT, "commit": NUMBER, "resgid": NUMBER,
            "resuid": NUMBER, "sb": NUMBER, "jqfmt": choice("vfsold", "vfsv0", "vfsv1"),
            "inode_readahead_blks": NUMBER, "stripe": NUMBER, "max_batch_time": NUMBER,
            "min_batch_time": NUMBER, "journal_ioprio": choice(*"01234567"), "init_itable": NUMBER,
            "max_dir_size_kb": NUMBER, "dax": _DAX,
        },
        refused={
            "journal_path": PATH_REASON, "journal_dev": "names a device of the host for the journal",
            "usrjquota": "names a quota file", "grpjquota": "names a quota file", "errors=panic": _PANIC,
            "abort": "stops the filesystem at once (a debugging aid)",
        },
    ),
    "xfs": MountRules(
        "xfs",
        _words(
            "attr2 noattr2 discard nodiscard grpid bsdgroups nogrpid sysvgroups filestreams ikeep noikeep "
            "inode32 inode64 largeio nolargeio noalign norecovery nouuid noquota uquota usrquota quota "
            "uqnoenforce qnoenforce gquota grpquota gqnoenforce pquota prjquota pqnoenforce swalloc wsync dax"
        ),
        {
            "allocsize": XFS_SIZE, "dax": _DAX, "logbufs": NUMBER, "logbsize": XFS_SIZE, "sunit": NUMBER,
            "swidth": NUMBER,
        },
        refused={"logdev": "names a device of the host for the log", "rtdev": "names a device of the host"},
    ),
    "btrfs": MountRules(
        "btrfs",
        _words(
            "acl noacl autodefrag noautodefrag barrier nobarrier clear_cache compress compress-force "
            "datacow nodatacow datasum nodatasum discard nodiscard flushoncommit noflushoncommit "
            "nologreplay norecovery rescan_uuid_tree skip_balance space_cache nospace_cache ssd "
            "ssd_spread nossd nossd_spread treelog notreelog usebackuproot user_subvol_rm_allowed degraded"
        ),
        {
            "commit": NUMBER,
            "compress": Shape(r"(?:zlib|lzo|zstd|no|none)(?::[0-9]{1,2})?", "zlib, lzo, zstd or no, :level"),
            "compress-force": Shape(r"(?:zlib|lzo|zstd)(?::[0-9]{1,2})?", "zlib, lzo or zstd, with :level"),
            "discard": choice("sync", "async"), "max_inline": SIZE, "metadata_ratio": NUMBER,
            "space_cache": choice("v1", "v2"), "subvolid": NUMBER, "thread_pool": NUMBER,
        },
        refused={
            "device": "names another device of the host to join the filesystem",
            "subvol": "names a path; use subvolid=<number>", "fatal_errors=panic": _PANIC,
            "fatal_errors": "can make a filesystem error halt the whole node",
        },
    ),
}
# fmt: on


_ALL_RULES = (GENERIC_MOUNT, *MOUNT_RULES.values())


def _refusal(option: str) -> str | None:
    """The reason an option is refused whatever the filesystem (a path, a device, a panic)."""
    name, eq, _ = option.partition("=")
    for rules in _ALL_RULES:
        if option in rules.refused:
            return f"{option} {rules.refused[option]}"
    for rules in _ALL_RULES:
        reason = rules.refused.get(name.lower())
        if reason:
            return f"{name}{'=' if eq else ''} {reason}"
    return None


def _value_problem(rules: Iterable[MountRules], option: str) -> str | None:
    """None when ``rules`` allow ``option``; else what is wrong with it ("" for an unknown name)."""
    name, eq, value = option.partition("=")
    wrong = ""
    for r in rules:
        shape = r.values.get(name)
        if not eq and name in r.flags:
            return None
        if eq and shape is not None:
            if re.fullmatch(shape.pattern, value):
                return None
            wrong = f"{name}= takes {shape.hint}, not {quote(value)}"
        elif not wrong and shape is not None:
            wrong = f"{name} needs a value: {name}=<{shape.hint}>"
        elif not wrong and eq and name in r.flags:
            wrong = f"{name} takes no value"
    return wrong


def check_mount_option(option: str, fs_type: str | None) -> None:
    """Refuse a mount option that is neither generic nor one of ``fs_type``'s own.

    With ``fs_type`` None the option must suit at least one supported filesystem; a
    filesystem this plugin does not make (one found on an adopted volume) gets only the
    generic options.
    """
    fs = (fs_type or "").lower()
    where = f"for {fs}" if fs_type is not None else "for any of " + ", ".join(FILESYSTEMS)
    refusal = _refusal(option)
    if refusal:
        raise OptionError(f"mount option {quote(option)} is not allowed {where}: {refusal}")
    own = MOUNT_RULES.get(fs)
    candidates = [own] if fs_type is not None else list(MOUNT_RULES.values())
    problem = ""
    for rules in candidates:
        found = _value_problem([GENERIC_MOUNT, *([rules] if rules else [])], option)
        if found is None:
            return
        problem = problem or found
    if problem:
        raise OptionError(f"mount option {quote(option)} is not allowed {where}: {problem}")
    if own is not None:
        also = f"; {fs}'s own: " + ", ".join(own.names())
    elif fs_type is None:
        also = ", and each filesystem's own (see the parameter reference)"
    else:
        also = f" (no {fs} options: the plugin does not make {fs} filesystems)"
    raise OptionError(
        f"mount option {quote(option)} is not allowed {where}; allowed are the generic options "
        + ", ".join(GENERIC_MOUNT.names())
        + also
    )


def split_mount_options(options: Sequence[str], fs_type: str | None = None) -> list[str]:
    """Flatten ``["noatime,discard", "nodev"]`` into single options and validate them.

    Every option must be on the allow-list of ``fs_type`` (generic options plus the
    filesystem's own; with None, of at least one supported filesystem). This is the one
    check for options from every source: stored volume options, CSI mount flags,
    Docker options.
    """
    if isinstance(options, str):
        options = [options]
    items = [str(item) for item in options]
    if sum(len(item) + 1 for item in items) > MAX_OPTIONS_CHARS:
        raise InvalidArgument(f"mount options are limited to {MAX_OPTIONS_CHARS} characters in all")
    result: list[str] = []
    for item in items:
        for opt in split_commas(item):
            if opt.startswith("-") or any(c.isspace() or c == "\0" for c in opt):
                raise InvalidArgument(
                    f"invalid mount option {shown(opt)}: give options like 'noatime' or 'discard'"
                )
            if opt in FORBIDDEN_MOUNT_OPTIONS:
                raise InvalidArgument(
                    f"mount option {opt!r} is not allowed here; it is managed by the plugin"
                )
            try:
                check_mount_option(opt, fs_type)
            except OptionError as exc:
                raise InvalidArgument(str(exc)) from None
            if opt not in result:
                result.append(opt)
    return result

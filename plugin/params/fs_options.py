"""Which mkfs options a user may give, per filesystem, and the value shapes both checks use.

A volume's mkfs options end up on a command line that also names the volume's device
(here, or on a LINSTOR satellite that shell-splits ``FileSystem/MkfsParams``). mkfs accepts
options that name other devices or host files (``mke2fs -d DIR``, ``mkfs.xfs -p FILE``,
``mkfs.btrfs --rootdir``, a stray word that becomes a second device) or that make it do
something other than format (``-V``, ``-n``, ``-f``). So options are checked against
allow-lists: per filesystem, every option and every value shape that is accepted,
parsed as getopt would; anything else is refused with a sentence that names the option,
the filesystem and what is allowed. Mount options follow the same idea in
:mod:`plugin.params.mount_rules`.

The same functions check at volume creation (:mod:`plugin.params.rules`) and on the node
right before mkfs (:mod:`plugin.node.commandlines`). Every check is linear in the length of
its input, and the input is bounded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MAX_OPTIONS_CHARS = 4096


class OptionError(ValueError):
    """An option is not allowed; the message is a sentence for the user."""


# --- value shapes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A value that must match ``pattern`` in full; ``hint`` says what that is, in words."""

    pattern: str
    hint: str

    def problem(self, value: str) -> str | None:
        return None if re.fullmatch(self.pattern, value) else f"takes {self.hint}, not {quote(value)}"


@dataclass(frozen=True)
class ListOf:
    """Comma (or ``sep``) separated items of one shape; some words refused with a reason."""

    item: str
    hint: str
    sep: str = ","
    refused: Mapping[str, str] = field(default_factory=dict)

    def problem(self, value: str) -> str | None:
        for word in value.split(self.sep):
            if word.lstrip("^") in self.refused:
                return f"refuses {quote(word)}: it {self.refused[word.lstrip('^')]}"
            if not re.fullmatch(self.item, word):
                return f"takes {self.hint}, not {quote(value)}"
        return None


@dataclass(frozen=True)
class Setting:
    """One ``name[=value]`` of a sub-option list: no value, a required one, or an optional one."""

    shape: Shape | None = None
    optional: bool = False


FLAG = Setting()


@dataclass(frozen=True)
class Settings:
    """A comma separated list of ``name[=value]`` settings, as mke2fs -E or mkfs.xfs -d take."""

    allowed: Mapping[str, Setting]
    refused: Mapping[str, str] = field(default_factory=dict)

    @property
    def hint(self) -> str:
        return "settings " + ", ".join(_setting_text(n, s) for n, s in self.allowed.items())

    def problem(self, value: str) -> str | None:
        for item in value.split(","):
            name, eq, arg = item.partition("=")
            if name in self.refused:
                return f"refuses {quote(item)}: {name}= {self.refused[name]}"
            setting = self.allowed.get(name)
            if setting is None:
                return f"takes {self.hint}; {quote(name)} is not one of them"
            if setting.shape is None and eq:
                return f"takes {quote(name)} without a value"
            if setting.shape is not None:
                if not eq and not setting.optional:
                    return f"needs a value for {quote(name)}: {setting.shape.hint}"
                if eq and re.fullmatch(setting.shape.pattern, arg) is None:
                    return f"takes {setting.shape.hint} for {name}=, not {quote(arg)}"
        return None


ValueShape = Shape | ListOf | Settings


def _setting_text(name: str, setting: Setting) -> str:
    if setting.shape is None:
        return name
    return f"{name}[=<{setting.shape.hint}>]" if setting.optional else f"{name}=<{setting.shape.hint}>"


def quote(text: str, limit: int = 60) -> str:
    shown = text if len(text) <= limit else text[: limit - 3] + "..."
    return '"' + shown.replace("\n", "\\n").replace("\0", "\\0") + '"'


def shown(text: str, limit: int = 80) -> str:
    """A user's value quoted in a message as Python would (``'...'``): one line, not endless."""
    text = text.replace("\n", "\\n").replace("\0", "\\0")
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def choice(*words: str) -> Shape:
    return Shape("|".join(re.escape(w) for w in words), "one of " + ", ".join(words))


NUMBER = Shape(r"[0-9]{1,12}", "a whole number")
BIT = choice("0", "1")
SIZE = Shape(r"[0-9]{1,15}[KkMmGgTtPpEe]?", "a size such as 4096, 64k or 1g")
XFS_SIZE = Shape(r"[0-9]{1,15}[SsBbKkMmGgTtPpEe]?", "a size such as 4096, 64k or 1g")
UUID = Shape(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}", "a UUID")
WORD = Shape(r"[A-Za-z0-9_.+-]{1,64}", "a word of letters, digits and _.+-")


def _label(limit: int) -> Shape:
    return Shape(
        rf"[A-Za-z0-9 _.+:@-]{{1,{limit}}}", f"a label of up to {limit} letters, digits, spaces and _.+:@-"
    )


PATH_REASON = "names a file, directory or device of the host"

# --- mkfs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MkfsRules:
    """The options of one mkfs: ``None`` is an option without a value."""

    fs: str
    short: Mapping[str, ValueShape | None]
    long: Mapping[str, ValueShape | None] = field(default_factory=dict)
    refused: Mapping[str, str] = field(default_factory=dict)  # "-d" / "--rootdir" -> reason

    def allowed_names(self) -> list[str]:
        return [f"-{c}" for c in self.short] + [f"--{n}" for n in self.long]


_NOT_A_FORMAT = "makes mkfs do something other than format the volume"
_FORCE = "forces mkfs over an existing filesystem; the plugin never formats a device that holds data"
_VERSION = "prints the version of mkfs and exits without formatting"
_DRY_RUN = "only shows what mkfs would do and formats nothing"
_COPY_DIR = "copies a directory of the host into the new filesystem"
_OFFSET = "places the filesystem away from the start of the volume (and can keep mkfs busy for hours)"
_OPT_BIT = Setting(BIT, optional=True)
_QUOTA_TYPES = Shape(
    r"(?:usr|grp|prj)quota(?::(?:usr|grp|prj)quota){0,2}", "quota types such as usrquota:grpquota"
)

# fmt: off
EXT4 = MkfsRules(
    "ext4",
    short={
        "b": choice("1024", "2048", "4096", "8192", "16384", "32768", "65536"), "C": SIZE, "D": None,
        "e": choice("continue", "remount-ro"),
        "E": Settings(
            {
                "stride": Setting(NUMBER), "stripe_width": Setting(NUMBER), "stripe-width": Setting(NUMBER),
                "resize": Setting(NUMBER), "lazy_itable_init": _OPT_BIT, "lazy_journal_init": _OPT_BIT,
                "assume_storage_prezeroed": _OPT_BIT, "packed_meta_blocks": _OPT_BIT,
                "num_backup_sb": Setting(choice("0", "1", "2")),
                "root_owner": Setting(Shape(r"[0-9]{1,10}:[0-9]{1,10}", "uid:gid numbers"), optional=True),
                "mmp_update_interval": Setting(NUMBER), "orphan_file_size": Setting(SIZE),
                "encoding": Setting(WORD), "encoding_flags": Setting(choice("strict", "nostrict")),
                "quotatype": Setting(_QUOTA_TYPES),
                "discard": FLAG, "nodiscard": FLAG, "test_fs": FLAG,
            },
            refused={"offset": _OFFSET},
        ),
        "g": NUMBER, "G": NUMBER, "i": NUMBER, "I": NUMBER, "j": None,
        "J": Settings(
            {"size": Setting(NUMBER), "fast_commit_size": Setting(NUMBER), "location": Setting(SIZE)},
            refused={"device": "puts the journal on another device of the host"},
        ),
        "L": _label(16), "m": Shape(r"[0-9]{1,2}(?:\.[0-9]{1,6})?", "a percentage such as 5 or 0.5"),
        "N": NUMBER, "o": Shape(r"[A-Za-z]{1,16}", "an operating system name such as linux"),
        "O": ListOf(r"\^?[a-z0-9_]{1,32}", "feature names separated by commas (^ turns one off)"),
        "q": None, "r": choice("0", "1"),
        "T": ListOf(r"[a-z0-9_]{1,32}", "usage types separated by commas, such as small or huge"),
        "U": Shape(UUID.pattern + "|clear|random|time", "a UUID, clear, random or time"), "v": None,
    },
    refused={
        "-V": _VERSION, "-F": _FORCE, "-n": _DRY_RUN, "-d": _COPY_DIR,
        "-l": "reads a list of bad blocks from a file of the host",
        "-M": "records a directory of the host in the filesystem",
        "-z": "writes an undo file on the host",
        "-c": "reads the whole device looking for bad blocks",
        "-S": "writes only superblocks over an existing filesystem",
        "-t": "chooses another filesystem type; the volume's type is set with the filesystem option",
        "-R": "is the old spelling of -E; use -E",
    },
)

XFS = MkfsRules(
    "xfs",
    short={
        "b": Settings({"size": Setting(XFS_SIZE)}),
        "d": Settings(
            {
                "agcount": Setting(NUMBER), "agsize": Setting(XFS_SIZE), "cowextsize": Setting(NUMBER),
                "size": Setting(XFS_SIZE), "sunit": Setting(NUMBER), "su": Setting(XFS_SIZE),
                "swidth": Setting(NUMBER), "sw": Setting(NUMBER), "noalign": _OPT_BIT,
                "rtinherit": Setting(BIT), "projinherit": Setting(NUMBER), "extszinherit": Setting(NUMBER),
                "daxinherit": Setting(BIT),
            },
            refused={"file": "makes the data section a file of the host", "name": PATH_REASON},
        ),
        "i": Settings(
            {
                "size": Setting(XFS_SIZE), "perblock": Setting(NUMBER), "maxpct": Setting(NUMBER),
                "align": _OPT_BIT, "attr": Setting(choice("1", "2")), "sparse": _OPT_BIT,
                "projid32bit": Setting(BIT), "nrext64": Setting(BIT),
            }
        ),
        "l": Settings(
            {
                "agnum": Setting(NUMBER), "internal": Setting(choice("1"), optional=True),
                "size": Setting(XFS_SIZE), "version": Setting(choice("1", "2")), "sunit": Setting(NUMBER),
                "su": Setting(XFS_SIZE), "lazy-count": Setting(BIT),
            },
            refused={"logdev": "puts the log on another device of the host", "file": PATH_REASON,
                     "name": PATH_REASON},
        ),
        "L": _label(12),
        "m": Settings(
            {
                name: Setting(UUID if name == "uuid" else BIT)
                for name in ("bigtime", "crc", "finobt", "inobtcount", "uuid", "rmapbt", "reflink")
            }
        ),
        "n": Settings(
            {"size": Setting(XFS_SIZE), "version": Setting(choice("2", "ci")), "ftype": Setting(BIT)}
        ),
        "s": Settings({"size": Setting(XFS_SIZE)}),
        "K": None, "q": None,
    },
    refused={
        "-V": _VERSION, "-f": _FORCE, "-N": _DRY_RUN,
        "-p": "reads a prototype file of the host and copies the files it names",
        "-c": "reads a configuration file of the host",
        "-r": "makes a realtime section, which lives on another device of the host",
    },
)

_PROFILE = Shape("single|dup", "single or dup (a LINSTOR volume is one device)")
_CSUM = choice("crc32c", "xxhash", "xxhash64", "sha256", "blake2", "blake2b")
_FEATURES = ListOf(
    r"\^?[a-z0-9_-]{1,32}",
    "feature names separated by commas (^ turns one off)",
    refused={"list-all": "lists the features and exits without formatting", "help": _NOT_A_FORMAT},
)
_BTRFS_VALUES: dict[str, ValueShape | None] = {
    "byte-count": SIZE, "data": _PROFILE, "metadata": _PROFILE, "mixed": None, "nodesize": SIZE,
    "sectorsize": SIZE, "label": _label(255), "nodiscard": None, "features": _FEATURES,
    "runtime-features": _FEATURES, "quiet": None, "uuid": UUID, "verbose": None, "csum": _CSUM,
    "checksum": _CSUM,
}
_BTRFS_SHORT = {"b": "byte-count", "d": "data", "m": "metadata", "M": "mixed", "n": "nodesize",
                "s": "sectorsize", "L": "label", "K": "nodiscard", "O": "features",
                "R": "runtime-features", "q": "quiet", "U": "uuid", "v": "verbose"}

BTRFS = MkfsRules(
    "btrfs",
    short={c: _BTRFS_VALUES[name] for c, name in _BTRFS_SHORT.items()},
    long=_BTRFS_VALUES,
    refused={
        "-V": _VERSION, "--version": _VERSION, "-f": _FORCE, "--force": _FORCE,
        "-r": _COPY_DIR, "--rootdir": _COPY_DIR,
        "--shrink": "belongs to --rootdir, which copies a directory of the host",
        "--help": "prints help and exits without formatting",
    },
)
# fmt: on

MKFS_RULES = {rules.fs: rules for rules in (EXT4, XFS, BTRFS)}


def split_mkfs_options(text: str) -> list[str]:
    """Split like a shell without running one: blanks separate, quotes group, nothing expands.

    Backslashes are refused: shells and LINSTOR's splitter treat them differently, and a
    difference is where an extra argument could hide. The loop is linear in the input.
    """
    if len(text) > MAX_OPTIONS_CHARS:
        raise OptionError(
            f"mkfs options are limited to {MAX_OPTIONS_CHARS} characters, these have {len(text)}"
        )
    if any(ch in text for ch in "\0\n\r"):
        raise OptionError("expected mkfs arguments on one line, such as '-E nodiscard'")
    if "\\" in text:
        raise OptionError("mkfs options cannot contain a backslash; quote a value with ' or \" instead")
    words: list[str] = []
    current: list[str] = []
    in_word = False
    quote = ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
            else:
                current.append(ch)
        elif ch in "'\"":
            quote, in_word = ch, True
        elif ch.isspace():
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(ch)
            in_word = True
    if quote:
        raise OptionError("expected mkfs arguments with balanced quotes, such as '-L \"my data\"'")
    if in_word:
        words.append("".join(current))
    return words


def _mkfs_problem(rules: MkfsRules, words: Sequence[str], list_allowed: bool = True) -> str | None:
    """The first refused word for this mkfs, as a clause after 'not allowed for <fs>: '."""
    allowed = f" (allowed: {', '.join(rules.allowed_names())})" if list_allowed else ""
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--" or not word.startswith("-") or word == "-":
            return (
                f"{quote(word)} is not an option; mkfs options start with '-', and a word on its own "
                "would name another device or file"
            )
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            shown = "--" + name
            if shown in rules.refused:
                return f"{shown} {rules.refused[shown]}"
            if name not in rules.long:
                return f"{quote(shown)} is not an mkfs option this plugin passes to mkfs.{rules.fs}{allowed}"
            shape = rules.long[name]
            if shape is None:
                if eq:
                    return f"{shown} takes no value"
                i += 1
                continue
            if not eq:
                i += 1
                if i == len(words):
                    return f"{shown} needs a value: {shape.hint}"
                value = words[i]
            problem = shape.problem(value)
            if problem:
                return f"{shown} {problem}"
            i += 1
            continue
        j = 1
        while j < len(word):
            shown = "-" + word[j]
            if shown in rules.refused:
                return f"{shown} {rules.refused[shown]}"
            if word[j] not in rules.short:
                return f"{quote(shown)} is not an mkfs option this plugin passes to mkfs.{rules.fs}{allowed}"
            shape = rules.short[word[j]]
            if shape is None:
                j += 1
                continue
            value = word[j + 1 :]
            if not value:
                i += 1
                if i == len(words):
                    return f"{shown} needs a value: {shape.hint}"
                value = words[i]
            problem = shape.problem(value)
            if problem:
                return f"{shown} {problem}"
            break
        i += 1
    return None


def check_mkfs_options(words: Sequence[str], fs_type: str | None) -> None:
    """Refuse anything but allowed mkfs options for ``fs_type``.

    With ``fs_type`` None (a CSI StorageClass, whose filesystem comes later with the
    volume capability) the options must suit at least one filesystem; the exact check
    follows once the filesystem is known.
    """
    if not words:
        return
    if fs_type is not None:
        rules = MKFS_RULES.get(fs_type.lower())
        if rules is None:
            raise OptionError(f"no mkfs options are allowed for {fs_type}")
        problem = _mkfs_problem(rules, words)
        if problem:
            raise OptionError(f"not allowed for {rules.fs}: {problem}")
        return
    problems = {fs: _mkfs_problem(rules, words, list_allowed=False) for fs, rules in MKFS_RULES.items()}
    if all(problems.values()):
        if len(set(problems.values())) == 1:
            raise OptionError(f"not allowed for any filesystem: {problems['ext4']}")
        raise OptionError(
            "not allowed for any filesystem: "
            + "; ".join(f"{fs}: {p}" for fs, p in problems.items())
            + " (the parameter reference lists each filesystem's options)"
        )

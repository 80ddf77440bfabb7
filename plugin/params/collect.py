"""The collected settings of one request: parsed values with where they came from.

Both dialects collect into a :class:`Settings`, which remembers how the user spelled
each key and whether it came from configured defaults, so every message can name the key
as written. The bounds checked here keep every parser linear in its input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from plugin.errors import InvalidArgument
from plugin.params.keys import MAX_KEY_CHARS, MAX_KEYS, MAX_VALUE_CHARS, ParamSpec
from plugin.params.values import BadValue


@dataclass
class Given:
    """A parsed key: how the user wrote it, the raw value, where it came from."""

    key: str
    raw: str
    value: Any
    from_defaults: bool = False


class Settings:
    """Parsed values by VolumeParams field, with enough provenance for good messages."""

    def __init__(self, word: str, lenient: bool = False) -> None:
        self.word = word  # "parameter" or "option"
        # lenient: what LINBIT's CSI driver accepts and ignores is accepted with a note
        self.lenient = lenient
        self.values: dict[str, Given] = {}
        self.properties: dict[str, Given] = {}
        self.notes: list[str] = []

    def drop(self, fld: str, why: str) -> None:
        """Forget a parsed value the way LINBIT's driver ignores it, and say so."""
        if fld in self.values:
            self.notes.append(f"{self.label(fld)} is ignored: {why}")
            del self.values[fld]

    def label(self, fld: str) -> str:
        given = self.values[fld]
        suffix = " (a default from the configuration)" if given.from_defaults else ""
        return f'{self.word} "{given.key}"{suffix}'

    def has(self, fld: str) -> bool:
        return fld in self.values

    def get(self, fld: str, default: Any = None) -> Any:
        return self.values[fld].value if fld in self.values else default

    def put(self, table: dict[str, Given], slot: str, given: Given) -> None:
        previous = table.get(slot)
        if (
            previous is not None
            and previous.from_defaults == given.from_defaults
            and previous.value != given.value
        ):
            if self.lenient:  # the first in priority order stays (see plugin.params.csi)
                self.notes.append(
                    f'{self.word} "{given.key}" is ignored: {self.word} "{previous.key}" sets the same thing'
                )
                return
            raise InvalidArgument(
                f'{self.word} "{given.key}" and {self.word} "{previous.key}" set the same thing '
                f'to different values ("{show(given.raw)}" and "{show(previous.raw)}"): give only one'
            )
        if previous is None or previous.from_defaults or not given.from_defaults:
            table[slot] = given


def show(raw: str, limit: int = 80) -> str:
    """A user's value as quoted in a message: one line, not endless."""
    text = raw.replace("\n", "\\n").replace("\0", "\\0")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_bounds(mapping: Mapping[str, str], word: str, where: str = "") -> None:
    """Refuse oversized requests before parsing anything: every key and value has a length limit."""
    if len(mapping) > MAX_KEYS:
        raise InvalidArgument(f"{len(mapping)} {word}s{where} are too many: at most {MAX_KEYS} are accepted")
    for key, raw in mapping.items():
        key = str(key)
        if len(key) > MAX_KEY_CHARS:
            raise InvalidArgument(
                f'{word} name "{show(key)}"{where} is {len(key)} characters long; {word} names are '
                f"limited to {MAX_KEY_CHARS} characters",
                key=key[:MAX_KEY_CHARS],
            )
        size = 0 if raw is None else len(str(raw))
        if size > MAX_VALUE_CHARS:
            raise InvalidArgument(
                f'the value of {word} "{show(key)}"{where} is {size} characters long; values are '
                f"limited to {MAX_VALUE_CHARS} characters",
                key=key,
            )


def parse_value(spec: ParamSpec, key: str, raw: str, word: str) -> Any:
    try:
        return spec.parse(raw)
    except BadValue as exc:
        raise InvalidArgument(
            f'invalid value "{show(raw)}" for {word} "{show(key)}": {exc.expected}', key=key
        ) from None


def unknown_key(key: str, word: str, specs: Iterable[ParamSpec], prefix: str = "") -> InvalidArgument:
    allowed = ", ".join(prefix + spec.name for spec in specs)
    return InvalidArgument(f'unknown {word} "{show(key)}": allowed {word}s are {allowed}', key=key)

"""Parsers for the values of volume parameters: numbers, booleans, sizes, lists, maps.

They know nothing about keys. A parser raises :class:`BadValue` with the sentence that
says what is allowed; :mod:`plugin.params.collect` adds the key and the user's value, so every
message names both (``invalid value "abc" for option "replicas": expected ...``).
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal, InvalidOperation

MAX_REPLICAS = 16
KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
# LINSTOR's largest volume: 2^40 KiB (MetaData.DRBD_MAX_kiB)
MAX_SIZE_BYTES = (1 << 40) * KIB

TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})

# Unit suffixes, matched case-insensitively. Single letters and IEC names are powers of
# 1024 (as LINBIT's plugins and the LINSTOR client read "G"); SI names (KB, MB, ...) are
# powers of 1000, as the LINSTOR client reads them.
SIZE_UNITS: dict[str, int] = {"": 1, "b": 1}
for _power, _letter in enumerate("kmgtp", start=1):
    SIZE_UNITS[_letter] = 1024**_power
    SIZE_UNITS[_letter + "i"] = 1024**_power
    SIZE_UNITS[_letter + "ib"] = 1024**_power
    SIZE_UNITS[_letter + "b"] = 1000**_power

_SIZE_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")


class BadValue(ValueError):
    """A value does not parse; ``expected`` says what would have been accepted."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def parse_int(value: str, low: int, high: int) -> int:
    expected = f"expected a whole number from {low} to {high}"
    text = value.strip()
    # the length bound keeps int() away from Python's limit on huge digit strings
    if not re.fullmatch(r"[+]?[0-9]{1,18}", text):
        raise BadValue(expected)
    number = int(text)
    if not low <= number <= high:
        raise BadValue(expected)
    return number


def parse_replicas(value: str) -> int:
    return parse_int(value, 1, MAX_REPLICAS)


def parse_bool(value: str) -> bool:
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise BadValue("expected true or false (also accepted: yes/no, on/off, 1/0)")


def parse_float(value: str, low_exclusive: float = 0.0) -> float:
    expected = f"expected a number greater than {low_exclusive:g}, such as 1.5"
    try:
        number = float(value.strip())
    except ValueError:
        raise BadValue(expected) from None
    if not math.isfinite(number) or number <= low_exclusive:
        raise BadValue(expected)
    return number


def parse_size(value: str) -> int:
    """Bytes from ``10G``, ``512MiB``, ``1.5T``, ``100MB`` or a bare number of bytes."""
    expected = (
        "expected a size such as 10G, 512MiB or 1.5T (K/M/G/T/P and KiB/MiB/... are powers "
        "of 1024, KB/MB/GB/... powers of 1000; a number without a unit is bytes)"
    )
    match = _SIZE_RE.fullmatch(value)
    if match is None:
        raise BadValue(expected)
    number_text, unit_text = match.groups()
    factor = SIZE_UNITS.get(unit_text.lower())
    if factor is None:
        raise BadValue(expected)
    try:
        exact = Decimal(number_text) * factor
    except InvalidOperation:  # pragma: no cover - the pattern only admits decimals
        raise BadValue(expected) from None
    if factor == 1 and exact != exact.to_integral_value():
        raise BadValue("expected a whole number of bytes, or a size with a unit such as 1.5G")
    if exact <= 0:
        raise BadValue("expected a size greater than zero")
    if exact > MAX_SIZE_BYTES:
        raise BadValue(f"expected a size of at most {format_size(MAX_SIZE_BYTES)} (LINSTOR's largest volume)")
    return int(exact.to_integral_value(rounding="ROUND_CEILING"))


def format_size(size: int) -> str:
    """A short exact spelling for messages: 300MiB, 1PiB, 4KiB, 1000 bytes."""
    for unit, factor in (("PiB", 1024**5), ("TiB", 1024**4), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size} bytes"


def human_size(size: int, exact: bool = False) -> str:
    """A size for people: ``10 TiB``, ``9.5 GiB``, ``512 bytes`` (exact where it is whole).

    With ``exact``, a rounded figure is followed by the bytes (``1.0 GiB (1073741825 bytes)``),
    for messages that compare two sizes which may round to the same figure.
    """
    for unit, factor in (("PiB", 1024**5), ("TiB", 1024**4), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size >= factor:
            if size % factor == 0:
                return f"{size // factor} {unit}"
            rounded = f"{size / factor:.1f} {unit}"
            return f"{rounded} ({size} bytes)" if exact else rounded
    return "1 byte" if size == 1 else f"{size} bytes"


def split_words(value: str) -> tuple[str, ...]:
    """Items separated by spaces or commas (LINBIT's plugins used one or the other)."""
    return tuple(item for item in re.split(r"[\s,]+", value.strip()) if item)


def split_commas(value: str) -> tuple[str, ...]:
    """Comma separated items, blanks dropped (the CSI ``mountOpts`` form)."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


MAX_YAML_BRACKETS = 64


def parse_yaml(value: str, expected: str) -> object:
    """YAML (which includes JSON) as the official driver reads map and list parameters.

    Real values nest two or three levels; deeper ones are refused before the YAML parser,
    which takes seconds on a few thousand nested brackets.
    """
    if value.count("[") + value.count("{") > MAX_YAML_BRACKETS:
        raise BadValue(f"{expected} (with at most {MAX_YAML_BRACKETS} brackets)")
    import yaml  # only map and list parameters need it; importing it costs every daemon start

    try:
        return yaml.safe_load(value)
    except (RecursionError, ValueError):  # deep nesting; an integer too long for Python
        raise BadValue(expected) from None
    except yaml.YAMLError:
        try:
            return json.loads(value)
        except (RecursionError, ValueError):
            raise BadValue(expected) from None


def parse_count_map(value: str) -> tuple[tuple[str, int], ...]:
    """``{zone: 2, rack: 1}`` (YAML or JSON) or ``zone=2 rack=1`` -> sorted (key, count) pairs."""
    expected = (
        "expected a map of property names to whole numbers from 1 to "
        f"{MAX_REPLICAS}, such as {{topology/zone: 2}} or zone=2"
    )
    text = value.strip()
    if re.fullmatch(r"[^\s=,{}:]+=\S+(?:[\s,]+[^\s=,{}:]+=\S+)*", text):
        pairs = [item.split("=", 1) for item in split_words(text)]
        raw: object = dict(pairs)
    else:
        raw = parse_yaml(text, expected)
    if not isinstance(raw, dict) or not raw:
        raise BadValue(expected)
    result: dict[str, int] = {}
    for key, count in raw.items():
        if not isinstance(key, str) or not key.strip() or isinstance(count, bool) or count is None:
            raise BadValue(expected)
        try:
            result[key.strip()] = parse_int(str(count), 1, MAX_REPLICAS)
        except BadValue:
            raise BadValue(expected) from None
    return tuple(sorted(result.items()))


def parse_remote_access(value: str) -> tuple[bool, tuple[tuple[str, ...], ...]]:
    """The official driver's remote access policy: ``true``, ``false`` or ``fromSame`` rules.

    Returns (allowed at all, rules). Rules are label lists: a diskless node may access the
    volume when it shares all labels of one rule with a node holding a replica. A rule
    with no labels means "from anywhere", which is the same as ``true``.
    """
    expected = (
        'expected true, false, or a YAML list of rules such as [{fromSame: ["topology.kubernetes.io/zone"]}]'
    )
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True, ()
    if word in FALSE_WORDS:
        return False, ()
    raw = parse_yaml(value, expected)
    if not isinstance(raw, list):
        raise BadValue(expected)
    rules: list[tuple[str, ...]] = []
    for rule in raw:
        if not isinstance(rule, dict) or set(rule) - {"fromSame"}:
            raise BadValue(expected)
        labels = rule.get("fromSame") or []
        if not isinstance(labels, list) or not all(isinstance(x, str) and x.strip() for x in labels):
            raise BadValue(expected)
        if not labels:
            return True, ()
        rules.append(tuple(sorted({x.strip() for x in labels})))
    if not rules:
        return False, ()
    return True, tuple(sorted(set(rules)))

"""A JSON array answer parsed one item at a time gives what ``json.loads`` gives, lazily."""

from __future__ import annotations

import json
from typing import Any

import pytest

from plugin.linstor.json_items import array_items, decode_text

ARRAYS: list[Any] = [
    [],
    [{}],
    [{"name": "a", "props": {"k": "v"}, "volume_definitions": [{"size_kib": 4096, "flags": []}]}],
    [1, -2.5, "x", None, True, False, [], [[1], {"a": [2]}]],
    [{"name": "\u00e9t\u00e9 \u2603 \ud83d\ude00", "escaped": 'a"b\\c\n'}],
]


@pytest.mark.parametrize("value", ARRAYS)
@pytest.mark.parametrize("indent", [None, 2])
def test_items_are_those_json_loads_gives(value: list[Any], indent: int | None) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    assert list(array_items(f" \n{text}\r\n\t")) == json.loads(text)


@pytest.mark.parametrize("value", ARRAYS)
def test_compact_json_as_linstor_writes_it(value: list[Any]) -> None:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    assert list(array_items(text)) == json.loads(text)


def test_spaces_around_brackets_and_commas_are_allowed() -> None:
    assert list(array_items('[ 1 ,\n2\t, {"a" : 3} ]')) == [1, 2, {"a": 3}]
    assert list(array_items("[ ]")) == []


def test_json_that_is_no_array_has_no_items() -> None:
    assert list(array_items("null")) == []
    assert list(array_items('{"name": "a"}')) == []


def test_items_are_handed_out_before_the_rest_is_parsed() -> None:
    items = array_items('[{"name": "a"}, {"name": "b"}, {broken')
    assert next(items) == {"name": "a"}
    assert next(items) == {"name": "b"}
    with pytest.raises(ValueError):
        next(items)


@pytest.mark.parametrize("text", ["[1 2]", "[1,]", "[1", "[1,", "[1 ", "[1] x", "[,1]", "[1,,2]", "not json"])
def test_malformed_json_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        list(array_items(text))
    with pytest.raises(ValueError):
        json.loads(text)  # the same texts json.loads refuses


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
def test_text_is_decoded_as_json_loads_detects_it(encoding: str) -> None:
    text = json.dumps([{"name": "\u00e9t\u00e9"}], ensure_ascii=False)
    assert decode_text(text.encode(encoding)) == text

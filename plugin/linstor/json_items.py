"""A JSON array answer parsed one item at a time, as the caller reaches it.

``json.loads`` of one page of a LINSTOR list (2,000 resource definitions: 1.6 MiB of
JSON) builds all of its dicts and strings at once, about 6 MiB of small objects. Those
come from CPython's small-object allocator, whose 1 MiB arenas go back to the system only
when every object in them is gone; a few objects made meanwhile that live on (a cache
entry, a metric series, a free-list slot) kept most of the arenas a page had needed, so a
daemon's resident memory grew by a page's worth with every long list. Parsed an item at a
time, a page never holds more than one item's objects besides its text (one large block,
returned to the system when freed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
#: JSON's white space, one character at a time
_BLANKS = frozenset(" \t\n\r")


def decode_text(content: bytes) -> str:
    """``content`` as text, in the encoding ``json.loads`` would detect for it."""
    return content.decode(json.detect_encoding(content), "surrogatepass")


def array_items(text: str) -> Iterator[Any]:
    """The items of the JSON array ``text``, each parsed when it is reached.

    Text that is valid JSON but no array (``null``, an object) has no items. Text that is
    not valid JSON raises :class:`json.JSONDecodeError` (a :class:`ValueError`) when the
    bad part is reached, so items before it may have been handed out already.
    """
    at = _SPACE.match(text).end()
    if not text.startswith("[", at):
        value = json.loads(text)
        yield from value if isinstance(value, list) else ()
        return
    at = _SPACE.match(text, at + 1).end()
    if text.startswith("]", at):
        _end(text, at + 1)
        return
    scan = _DECODER.scan_once  # raw_decode without its frame: one call per item of thousands
    while True:
        try:
            item, at = scan(text, at)
        except StopIteration as exc:
            raise json.JSONDecodeError("Expecting value", text, exc.value) from None
        yield item
        # LINSTOR writes compact JSON: look at the next character before asking the regex
        after = text[at : at + 1]
        if after in _BLANKS:
            at = _SPACE.match(text, at).end()
            after = text[at : at + 1]
        if after == ",":
            at += 1
            if text[at : at + 1] in _BLANKS:
                at = _SPACE.match(text, at).end()
            continue
        if after == "]":
            _end(text, at + 1)
            return
        raise json.JSONDecodeError("Expecting ',' delimiter", text, at)


def _end(text: str, at: int) -> None:
    """Only white space may follow the array."""
    at = _SPACE.match(text, at).end()
    if at != len(text):
        raise json.JSONDecodeError("Extra data", text, at)

"""Many small serialized messages kept in one buffer, in the order of their keys.

A ListVolumes listing is read once and kept while the caller pages through it: for 10,000
volumes, 10,000 entries of about 100 bytes. Kept as 10,000 ``bytes`` objects (and, while
the listing was read and sorted, 10,000 ids and tuples beside them) they took about 3 MiB
from CPython's small-object allocator, whose 1 MiB arenas go back to the system only when
every object in them is gone: the few long-lived objects made meanwhile (a cache entry, a
metric series, a free-list slot) kept those arenas, and the driver's resident memory, after
the listing was dropped. Here the messages and their keys are appended to growing buffers
(large blocks of the C allocator, returned whole when freed) and sorted only when they did
not arrive in key order, which for LINSTOR's lists (in upper-cased name order) they do
unless names mix cases or use ``_``.

A page is handed to protobuf as one repeated field (:func:`repeated_field`) and parsed once:
parsing each of its 500 entries on its own cost twice the CPU and left about 1 MiB of small
freed blocks in the C heap of the thread that served it.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

#: protobuf's wire type of a length-delimited field (a message, bytes, a string)
_LENGTH_DELIMITED = 2


def _varint(value: int) -> bytes:
    """``value`` (not negative) as a protobuf base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class PackedMessages(Sequence[bytes]):
    """Serialized messages in one buffer: a message is a slice of it, a slice of these is a view."""

    def __init__(self, buffer: bytes, ends: array[int], start: int = 0, stop: int | None = None) -> None:
        self._buffer = buffer
        self._ends = ends  # where each message ends in the buffer
        self._start = start
        self._stop = len(ends) if stop is None else stop

    def __len__(self) -> int:
        return self._stop - self._start

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> PackedMessages: ...

    def __getitem__(self, index: int | slice) -> bytes | PackedMessages:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                raise ValueError("packed messages are sliced without a step")
            stop = max(start, stop)
            return PackedMessages(self._buffer, self._ends, self._start + start, self._start + stop)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("packed message index out of range")
        at = self._start + index
        return self._buffer[self._ends[at - 1] if at else 0 : self._ends[at]]

    def __iter__(self) -> Iterator[bytes]:
        begin = self._ends[self._start - 1] if self._start else 0
        for at in range(self._start, self._stop):
            end = self._ends[at]
            yield self._buffer[begin:end]
            begin = end


class PackedBuilder:
    """Collects ``(key, message)`` pairs; :meth:`build` hands the messages out in key order.

    Keys compare as ``str`` does (their UTF-8 bytes sort alike); messages of equal keys keep
    the order they were added in.
    """

    def __init__(self) -> None:
        self._messages = bytearray()
        self._message_ends: array[int] = array("Q")
        self._keys = bytearray()
        self._key_ends: array[int] = array("Q")
        self._last_key: str | None = None
        self._in_order = True

    def add(self, key: str, message: bytes) -> None:
        if self._last_key is not None and key < self._last_key:
            self._in_order = False
        self._last_key = key
        self._messages += message
        self._message_ends.append(len(self._messages))
        self._keys += key.encode()
        self._key_ends.append(len(self._keys))

    def build(self) -> PackedMessages:
        if self._in_order:
            return PackedMessages(bytes(self._messages), self._message_ends)
        unsorted = PackedMessages(bytes(self._messages), self._message_ends)
        keys = PackedMessages(bytes(self._keys), self._key_ends)
        buffer = bytearray()
        ends: array[int] = array("Q")
        for index in sorted(range(len(keys)), key=keys.__getitem__):
            buffer += unsorted[index]
            ends.append(len(buffer))
        return PackedMessages(bytes(buffer), ends)


def packed_in_key_order(pairs: Iterable[tuple[str, bytes]]) -> PackedMessages:
    """The messages of ``pairs`` packed, in the order of their keys."""
    builder = PackedBuilder()
    for key, message in pairs:
        builder.add(key, message)
    return builder.build()


def repeated_field(number: int, messages: Iterable[bytes]) -> bytes:
    """Serialized ``messages`` as the wire form of a repeated message field ``number``.

    Parsed as the message that has the field, a page of entries costs one protobuf parse (and
    few blocks of memory) instead of one parse and one message per entry.
    """
    tag = _varint(number << 3 | _LENGTH_DELIMITED)
    out = bytearray()
    for message in messages:
        out += tag
        out += _varint(len(message))
        out += message
    return bytes(out)

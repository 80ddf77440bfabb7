"""The data of one shipped volume: the blocks that differ from a base (or are not zero), as a stream.

Where a satellite sends ``thin_send``/``zfs send`` output, the emulator sends its own format,
the same for S3 objects and LINSTOR-to-LINSTOR transfers:

    header  b"LEMUBAK1" | size: u64 | block: u32
    record  offset: u64 | length: u32 | data (length bytes)       (any number)
    end     0xFFFFFFFFFFFFFFFF: u64 | 0: u32

A full backup holds every block that is not all zero (a restore starts from a sparse, zeroed
file); an incremental one every block that differs from the base snapshot. Applying the chain
from the full backup to the wanted one gives the snapshot's bytes exactly.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from pathlib import Path

MAGIC = b"LEMUBAK1"
BLOCK = 256 * 1024
_HEAD = struct.Struct(">QI")
_END = 0xFFFFFFFFFFFFFFFF


class StreamError(Exception):
    """A stream that does not follow the format (cut short, wrong magic, out of range)."""


def pieces(src: Path | None, size_bytes: int, base: Path | None = None) -> Iterator[bytes]:
    """The stream of ``src`` (None: an all-zero volume) against ``base`` (None: a full backup)."""
    yield MAGIC + _HEAD.pack(size_bytes, BLOCK)
    if src is not None:
        zero = bytes(BLOCK)
        with open(src, "rb") as fh, open(base, "rb") if base is not None else io.BytesIO() as bh:
            offset = 0
            while offset < size_bytes:
                data = fh.read(min(BLOCK, size_bytes - offset))
                if not data:
                    break
                old = bh.read(len(data)) if base is not None else b""
                changed = data != old if base is not None else data != zero[: len(data)]
                if base is not None and len(old) < len(data):
                    changed = True
                if changed:
                    yield _HEAD.pack(offset, len(data)) + data
                offset += len(data)
    yield _HEAD.pack(_END, 0)


class StreamReader(io.RawIOBase):
    """A file-like view of :func:`pieces` (what an S3 multipart upload reads from)."""

    def __init__(self, source: Iterator[bytes]) -> None:
        self._source = source
        self._buf = b""
        self.sent = 0

    def readable(self) -> bool:
        return True

    def readinto(self, out: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = next(self._source)
            except StopIteration:
                return 0
        n = min(len(out), len(self._buf))
        out[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        self.sent += n
        return n


def chunks(source: Iterator[bytes], size: int) -> Iterator[bytes]:
    """Regroup a stream into pieces of ``size`` bytes (the last one shorter)."""
    buf = bytearray()
    for piece in source:
        buf += piece
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


class Applier:
    """Writes a stream into ``dest`` as its pieces arrive (in any split); ``finish()`` checks the end."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self._buf = bytearray()
        self._size: int | None = None
        self._done = False
        self.received = 0
        self._fh = open(dest, "r+b" if dest.exists() else "w+b")  # noqa: SIM115 - closed in finish/close

    def feed(self, data: bytes) -> None:
        self.received += len(data)
        self._buf += data
        self._parse()

    def _parse(self) -> None:
        if self._size is None:
            if len(self._buf) < len(MAGIC) + _HEAD.size:
                return
            if bytes(self._buf[: len(MAGIC)]) != MAGIC:
                raise StreamError("the backup data does not start with the emulator's stream header")
            self._size, _block = _HEAD.unpack_from(self._buf, len(MAGIC))
            del self._buf[: len(MAGIC) + _HEAD.size]
            self._fh.truncate(self._size)
        while not self._done and len(self._buf) >= _HEAD.size:
            offset, length = _HEAD.unpack_from(self._buf, 0)
            if offset == _END:
                self._done = True
                del self._buf[: _HEAD.size]
                break
            if len(self._buf) < _HEAD.size + length:
                return
            if offset + length > self._size:
                raise StreamError(f"a block at {offset} lies beyond the volume's {self._size} bytes")
            self._fh.seek(offset)
            self._fh.write(self._buf[_HEAD.size : _HEAD.size + length])
            del self._buf[: _HEAD.size + length]

    def finish(self) -> int:
        """Flush and close; the volume's size in bytes. A stream cut short raises :class:`StreamError`."""
        try:
            if not self._done or self._buf:
                raise StreamError("the backup data ended before its end marker")
            self._fh.flush()
            os.fsync(self._fh.fileno())
            return int(self._size or 0)
        finally:
            self._fh.close()

    def close(self) -> None:
        self._fh.close()

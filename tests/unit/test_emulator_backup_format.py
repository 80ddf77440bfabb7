"""Backup names as LINSTOR writes them, the emulator's data stream, and the S3 client's addressing."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from emulator import backup_names as bn
from emulator import backup_stream as bs
from emulator.s3_target import S3Target, endpoint_url

START = 1796281019954  # 2026-12-03 06:56:59.954 UTC


def test_names_follow_the_controllers_patterns() -> None:
    name = bn.BackupName("pvc-1", START, "snapshot-a")
    assert name.id == "pvc-1_back_20261203_065659^snapshot-a"
    assert name.meta_key == "pvc-1_back_20261203_065659^snapshot-a.meta"
    assert name.volume_key(0) == "pvc-1_00000_back_20261203_065659^snapshot-a"
    # A snapshot named like the backup id is not repeated after '^'.
    plain = bn.BackupName("pvc-1", START, bn.generated_snapshot_name(START))
    assert plain.id == "pvc-1_back_20261203_065659"
    assert plain.volume_key(12) == "pvc-1_00012_back_20261203_065659"


@pytest.mark.parametrize("snap", ["snapshot-a", "back_20261203_065659", "with_under_score"])
def test_names_parse_back(snap: str) -> None:
    name = bn.BackupName("my-rsc_x", START // 1000 * 1000, snap)
    assert bn.parse_meta(name.meta_key) == name
    assert bn.parse_volume(name.volume_key(3)) == (name, 3)
    assert bn.parse_id(name.id) == name
    assert bn.parse_volume(name.meta_key) is None
    assert bn.parse_meta("not-a-backup.txt") is None
    assert bn.parse_volume("rsc_00000_back_2026_x") is None


def _write(path: Path, size: int, blocks: dict[int, bytes]) -> None:
    with open(path, "wb") as fh:
        fh.truncate(size)
        for offset, data in blocks.items():
            fh.seek(offset)
            fh.write(data)


def _apply(dest: Path, stream: bytes, split: int) -> None:
    applier = bs.Applier(dest)
    try:
        for i in range(0, len(stream), split):
            applier.feed(stream[i : i + split])
        applier.finish()
    finally:
        applier.close()


def test_full_then_incremental_streams_rebuild_the_bytes(tmp_path: Path) -> None:
    size = 4 * 1024 * 1024 + 4096  # not a multiple of the block size
    full_src, inc_src = tmp_path / "s1", tmp_path / "s2"
    _write(full_src, size, {0: os.urandom(100_000), 3 * 1024 * 1024: os.urandom(5000)})
    _write(
        inc_src,
        size,
        {0: full_src.read_bytes()[:100_000], 3 * 1024 * 1024: bytes(5000), size - 10: b"0123456789"},
    )
    full = b"".join(bs.pieces(full_src, size))
    inc = b"".join(bs.pieces(inc_src, size, full_src))
    assert len(full) < 2 * bs.BLOCK + 200  # zero blocks are left out
    assert len(inc) < 3 * bs.BLOCK  # only the changed blocks (including one that became zero)
    dest = tmp_path / "restored"
    for split in (1 << 20, 7, 4096):
        dest.unlink(missing_ok=True)
        _apply(dest, full, split)
        assert dest.read_bytes() == full_src.read_bytes()
        _apply(dest, inc, split)
        assert dest.read_bytes() == inc_src.read_bytes()


def test_reader_and_chunks_keep_the_stream(tmp_path: Path) -> None:
    src = tmp_path / "v"
    rnd = random.Random(7)
    _write(src, 1 << 20, {rnd.randrange(0, 1 << 20, 512): os.urandom(512) for _ in range(20)})
    whole = b"".join(bs.pieces(src, 1 << 20))
    reader = bs.StreamReader(bs.pieces(src, 1 << 20))
    assert reader.read() == whole and reader.sent == len(whole)
    assert b"".join(bs.chunks(bs.pieces(src, 1 << 20), 1000)) == whole
    assert all(len(c) == 1000 for c in list(bs.chunks(bs.pieces(src, 1 << 20), 1000))[:-1])


def test_a_cut_or_foreign_stream_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "v"
    _write(src, 1 << 20, {0: b"x" * 10})
    stream = b"".join(bs.pieces(src, 1 << 20))
    with pytest.raises(bs.StreamError, match="end marker"):
        _apply(tmp_path / "a", stream[:-5], 1 << 20)
    with pytest.raises(bs.StreamError, match="header"):
        _apply(tmp_path / "b", b"NOTABACKUP" + stream[10:], 1 << 20)


def _remote(path_style: bool) -> dict[str, object]:
    return {
        "bucket": "my-bucket",
        "endpoint": "s3.example.test:9000",
        "region": "eu-central-1",
        "access_key": "AK",
        "secret_key": "SK",
        "use_path_style": path_style,
    }


def test_addressing_style_is_the_remotes() -> None:
    assert endpoint_url("s3.example.test") == "https://s3.example.test"
    assert endpoint_url("http://minio:9000") == "http://minio:9000"
    virtual = S3Target(_remote(False))
    path = S3Target(_remote(True))
    assert virtual.addressing_style == "virtual" and path.addressing_style == "path"
    # botocore builds the URLs without a request being sent.
    v_url = virtual._client.generate_presigned_url("get_object", Params={"Bucket": "my-bucket", "Key": "k"})
    p_url = path._client.generate_presigned_url("get_object", Params={"Bucket": "my-bucket", "Key": "k"})
    assert v_url.startswith("https://my-bucket.s3.example.test:9000/k?")
    assert p_url.startswith("https://s3.example.test:9000/my-bucket/k?")

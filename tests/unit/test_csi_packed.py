"""Serialized messages packed into one buffer read back as the list they were, in key order."""

from __future__ import annotations

import pytest

from csi.generated import csi_pb2
from csi.list_pages import ListingPages
from csi.packed import PackedMessages, packed_in_key_order, repeated_field

PAIRS = [(f"vol-{i:02d}", f"message {i}".encode() * (i % 3)) for i in range(12)]  # some are empty


def as_list(packed: PackedMessages) -> list[bytes]:
    return [packed[i] for i in range(len(packed))]


def test_messages_in_key_order_read_back_unchanged() -> None:
    packed = packed_in_key_order(PAIRS)
    expected = [message for _, message in PAIRS]
    assert len(packed) == len(expected)
    assert list(packed) == as_list(packed) == expected
    assert packed[-1] == expected[-1]


def test_messages_out_of_key_order_are_sorted_by_key_as_strings_sort() -> None:
    keys = ["b", "a_x", "aax", "B", "\u00e9", "a", "z-1"]
    packed = packed_in_key_order((key, key.encode()) for key in keys)
    assert [m.decode() for m in packed] == sorted(keys)


def test_equal_keys_keep_the_order_they_came_in() -> None:
    packed = packed_in_key_order([("b", b"1"), ("a", b"2"), ("b", b"3"), ("a", b"4")])
    assert list(packed) == [b"2", b"4", b"1", b"3"]


def test_slices_are_views_that_slice_and_index_like_lists() -> None:
    packed = packed_in_key_order(PAIRS)
    expected = [message for _, message in PAIRS]
    for start, stop in [(0, 5), (5, 12), (3, 3), (10, 40), (7, 2), (-4, None)]:
        part = packed[start:stop]
        assert isinstance(part, PackedMessages)
        assert list(part) == as_list(part) == expected[start:stop]
    assert list(packed[2:9][1:4]) == expected[2:9][1:4]


def test_indexes_outside_and_steps_are_refused() -> None:
    packed = packed_in_key_order(PAIRS)[4:6]
    for index in (2, -3):
        with pytest.raises(IndexError):
            packed[index]
    with pytest.raises(ValueError):
        packed[::2]


def test_nothing_packs_to_an_empty_sequence() -> None:
    packed = packed_in_key_order([])
    assert len(packed) == 0 and list(packed) == [] and list(packed[0:5]) == []


def test_listing_pages_cut_packed_messages_like_lists() -> None:
    pages: ListingPages[bytes] = ListingPages("volume")
    packed = packed_in_key_order(PAIRS)
    seen: list[bytes] = []
    token = ""
    while True:
        page, token = pages.page(lambda: packed, 5, token)
        seen += page
        if not token:
            break
    assert seen == [message for _, message in PAIRS]


def entry(volume_id: str, context_size: int) -> csi_pb2.ListVolumesResponse.Entry:
    return csi_pb2.ListVolumesResponse.Entry(
        volume=csi_pb2.Volume(
            volume_id=volume_id, capacity_bytes=4 << 20, volume_context={"k": "v" * context_size}
        ),
        status=csi_pb2.ListVolumesResponse.VolumeStatus(published_node_ids=["n1"]),
    )


@pytest.mark.parametrize("count", [0, 1, 7])
def test_a_page_parsed_from_the_repeated_field_is_the_response_built_from_entries(count: int) -> None:
    # context sizes give entry lengths of one, two and three varint bytes
    entries = [entry(f"vol-{i}", (0, 200, 20000)[i % 3]) for i in range(count)]
    packed = packed_in_key_order((e.volume.volume_id, e.SerializeToString()) for e in entries)
    field = csi_pb2.ListVolumesResponse.DESCRIPTOR.fields_by_name["entries"].number
    parsed = csi_pb2.ListVolumesResponse.FromString(repeated_field(field, packed))
    parsed.next_token = "7.abc"
    built = csi_pb2.ListVolumesResponse(entries=entries, next_token="7.abc")
    assert parsed == built
    assert parsed.SerializeToString() == built.SerializeToString()

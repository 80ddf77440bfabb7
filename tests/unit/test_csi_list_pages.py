"""ListVolumes pages are cut from one listing, and every token stays valid without it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from csi.errors import Aborted
from csi.list_pages import ListingPages
from plugin.errors import InvalidArgument


class Source:
    """A sorted list that counts how often it is read; ``items`` may change between reads."""

    def __init__(self, items: Sequence[str]) -> None:
        self.items = list(items)
        self.reads = 0

    def __call__(self) -> list[str]:
        self.reads += 1
        return list(self.items)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def page_through(pages: ListingPages[str], source: Source, size: int, token: str = "") -> list[str]:
    seen: list[str] = []
    while True:
        page, token = pages.page(source, size, token)
        assert len(page) <= size
        seen += page
        if not token:
            return seen


ITEMS = [f"vol-{i:02d}" for i in range(10)]


def test_paging_through_reads_the_list_once_and_lets_it_go() -> None:
    pages: ListingPages[str] = ListingPages("volume")
    source = Source(ITEMS)
    assert page_through(pages, source, 3) == ITEMS
    assert source.reads == 1
    assert pages.held() == 0  # the last page dropped the listing


def test_a_list_that_fits_one_page_keeps_nothing() -> None:
    pages: ListingPages[str] = ListingPages("volume")
    source = Source(ITEMS)
    assert pages.page(source, 0, "") == (ITEMS, "")
    assert pages.page(source, 10, "") == (ITEMS, "")
    assert pages.held() == 0


def test_pages_are_consistent_with_the_first_read() -> None:
    pages: ListingPages[str] = ListingPages("volume")
    source = Source(ITEMS)
    first, token = pages.page(source, 4, "")
    source.items.insert(0, "vol-00a")  # made while the caller pages: no shift, no duplicate
    assert first + page_through(pages, source, 4, token) == ITEMS


def test_a_token_of_another_process_is_served_by_reading_again() -> None:
    source = Source(ITEMS)
    _, token = ListingPages[str]("volume").page(source, 4, "")
    assert token.startswith("4.")
    other: ListingPages[str] = ListingPages("volume")  # a restart, or another replica of the driver
    assert page_through(other, source, 4, token) == ITEMS[4:]
    assert source.reads == 2
    assert page_through(other, source, 4, "8") == ITEMS[8:]  # a bare offset, as older tokens were


def test_an_expired_listing_is_read_again_at_the_same_offset() -> None:
    clock = Clock()
    pages: ListingPages[str] = ListingPages("volume", keep_seconds=60, clock=clock)
    source = Source(ITEMS)
    first, token = pages.page(source, 5, "")
    clock.now += 61
    assert pages.held() == 0
    assert first + page_through(pages, source, 5, token) == ITEMS
    assert source.reads == 2


def test_concurrent_pagings_keep_their_own_listings_and_the_oldest_is_evicted() -> None:
    pages: ListingPages[str] = ListingPages("volume", keep_listings=2)
    sources = [Source([f"{n}-{i}" for i in range(6)]) for n in "abc"]
    tokens = [pages.page(s, 2, "")[1] for s in sources]
    assert pages.held() == 2
    for source, token in reversed(list(zip(sources, tokens, strict=True))):
        assert page_through(pages, source, 2, token) == source.items[2:]
    assert [s.reads for s in sources] == [2, 1, 1]  # the evicted listing was read again


@pytest.mark.parametrize("token", ["bogus", "-1", "3.", "3.ab-cd", ".abc", "²", "11", "11.abcdef"])
def test_bad_tokens_are_aborted(token: str) -> None:
    pages: ListingPages[str] = ListingPages("volume")
    with pytest.raises(Aborted, match="not a valid volume page token"):
        pages.page(Source(ITEMS), 3, token)


def test_negative_max_entries_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="max_entries"):
        ListingPages[str]("volume").page(Source(ITEMS), -1, "")

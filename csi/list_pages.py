"""ListVolumes pages cut from one listing, so paging through n volumes reads them once.

Without this, every page re-read every volume and replica from LINSTOR to cut out its
slice: paging through n volumes in pages of k cost n/k full listings, which grows with
the square of n. The first page (no token) reads the whole sorted list once and keeps it
while the caller pages on; the following pages are cut from that listing. A token is
``<offset>.<listing>``: the offset alone is what older tokens were, and stays a valid
token everywhere. A token whose listing this process no longer holds (expired, evicted,
another replica of the driver, a restart) is served as before, by reading the list anew
and cutting at the offset, so no token ever becomes invalid because of the cache.

A kept listing is what LINSTOR answered when the first page was read: the pages of one
paging are consistent with each other, which re-reading per page could not promise
(a volume made or deleted between pages shifted every later offset).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from csi.errors import Aborted
from plugin.errors import InvalidArgument

T = TypeVar("T")

#: How long a listing is kept after its last page was handed out, in seconds.
KEEP_SECONDS = 60.0
#: How many listings are kept at once (several callers may page at the same time).
KEEP_LISTINGS = 4


def _parse(token: str, what: str) -> tuple[int, str]:
    offset, dot, listing = token.partition(".")
    if not (offset.isascii() and offset.isdigit()) or (dot and not (listing.isascii() and listing.isalnum())):
        raise Aborted(f"starting_token {token!r} is not a valid {what} page token; start again without it")
    return int(offset), listing


class ListingPages(Generic[T]):
    """Cuts pages from listings it keeps for a short while; safe for concurrent callers."""

    def __init__(
        self,
        what: str,
        keep_seconds: float = KEEP_SECONDS,
        keep_listings: int = KEEP_LISTINGS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.keep_seconds = keep_seconds
        self.keep_listings = keep_listings
        self._clock = clock
        self._lock = threading.Lock()
        #: listing id -> (items, time it was last used)
        self._listings: OrderedDict[str, tuple[Sequence[T], float]] = OrderedDict()

    def page(self, read: Callable[[], Sequence[T]], max_entries: int, token: str) -> tuple[Sequence[T], str]:
        """One page and the token of the next ("" after the last); ``read`` gives the sorted list."""
        if max_entries < 0:
            raise InvalidArgument("max_entries must not be negative")
        offset, listing = _parse(token, self.what) if token else (0, "")
        items = self._take(listing) if listing else None
        if items is None:
            items = read()
            listing = ""
        if offset > len(items):
            raise Aborted(
                f"starting_token {token!r} is not a valid {self.what} page token; start again without it"
            )
        end = len(items) if max_entries == 0 else min(len(items), offset + max_entries)
        if end >= len(items):
            return items[offset:end], ""
        listing = listing or secrets.token_hex(6)
        self._keep(listing, items)
        return items[offset:end], f"{end}.{listing}"

    def held(self) -> int:
        """How many listings are kept now (for tests and metrics)."""
        with self._lock:
            self._expire()
            return len(self._listings)

    def _take(self, listing: str) -> Sequence[T] | None:
        """The kept listing, removed: a page that is not the last puts it back with its new time."""
        with self._lock:
            self._expire()
            kept = self._listings.pop(listing, None)
        return kept[0] if kept is not None else None

    def _keep(self, listing: str, items: Sequence[T]) -> None:
        with self._lock:
            self._listings[listing] = (items, self._clock())
            self._listings.move_to_end(listing)
            while len(self._listings) > self.keep_listings:
                self._listings.popitem(last=False)

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, (_, used) in self._listings.items() if now - used > self.keep_seconds]:
            del self._listings[key]

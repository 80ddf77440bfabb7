"""Long LINSTOR lists read a page at a time, so a daemon never holds the whole answer.

For 10,000 volumes LINSTOR's whole JSON answer (and the objects parsed from it) was the
peak of a daemon's memory. LINSTOR's list endpoints take ``limit`` and ``offset`` and
apply them after filtering, to a list in name order (``limit`` 0, the default, means "all";
the offset is then ignored), so consecutive offsets give consecutive pages.

The controller still collects the whole filtered list for every page and serializes only
the page, so n objects in pages of k cost it n/k collections: the page size
(``LS_LIST_PAGE_SIZE``, default 2,000) keeps a list of 1,000 volumes at one call and bounds
what a daemon holds for 10,000 to the text of the page it works through and of the next one,
read ahead (two fifths of the answer's text at most), whose items are parsed one at a time
(:mod:`.json_items`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from plugin.errors import OperationFailed
from plugin.in_thread import InThread

#: What sends one GET and returns its parsed JSON (``LinstorClient.request``).
Request = Callable[..., Any]


def paged(
    request: Request,
    template: str,
    params: Mapping[str, Any],
    size: int,
    key: Callable[[Mapping[str, Any]], Any],
) -> Iterator[dict[str, Any]]:
    """The items of the list endpoint ``template``, ``size`` per REST call, in ``key`` order.

    Pages are separate reads. An object made before the offset between two reads shifts
    the next page by one, so its first item repeats the last one handed out: items whose
    key is not after the last key handed out are skipped. An object deleted before the
    offset between two reads hides the one that moved into the previous page; a listing
    made of several reads is not a snapshot of the cluster (neither were two list calls).
    A page shorter than ``size`` is the last one: a list shorter than a page costs one call.
    Each page's items are parsed as they are handed out, so only the page's text and the
    current item are held, not all of the page's objects (see :mod:`.json_items`).

    Once a list has filled a page, each further page is handed out while the next one is
    read in a thread of its own (:class:`~plugin.in_thread.InThread`): the controller
    assembles page k+1 while the caller works through page k. Only the next page's text is
    held meanwhile. Whether page k is full is known only once it is parsed, so the read of
    page k+1 is a guess, made when a page after a full one turns out not to be empty: a
    list of more than one page whose last page is partly filled costs one more (empty)
    read; a list of one page, or of whole pages, never does. The read-ahead's error is
    raised where its page would have been read; a guess not needed is waited for and
    dropped, so no read of a list outlives it.
    """
    size = max(1, int(size))

    def read(offset: int) -> Any:
        return request("GET", template, params={**params, "limit": size, "offset": offset}, items=True)

    offset = 0
    last: Any = None
    ahead: InThread[Any] | None = None
    page = read(offset)
    try:
        while True:
            count = 0
            try:
                for item in page or ():
                    if not count and offset:  # a full page came before this non-empty one: guess on
                        ahead = InThread(lambda at=offset + size: read(at), "linstor-read-ahead")
                    count += 1
                    at = key(item)
                    if last is None or at > last:
                        last = at
                        yield item
            except ValueError as exc:  # the JSON broke off inside the page
                raise OperationFailed(f"LINSTOR answered GET {template} with malformed JSON: {exc}") from None
            if count < size:
                return
            offset += size
            del page  # dropped before the next page is taken, not after
            page = ahead.result() if ahead is not None else read(offset)
            ahead = None
    finally:
        if ahead is not None:  # a guess not needed (the list ended, or its caller stopped)
            ahead.drop()  # no read of this list outlives it


#: A resource (its volumes, layer data, state) is about twice a definition's size on the
#: wire, so the replicas a volume list joins are read in pages of half as many: each page's
#: text, all a page holds at once (its items are parsed one at a time), is about the same
#: size either way (about 1.6 MiB for 2,000 definitions or 1,000 resources).
RESOURCE_PAGE_FRACTION = 2


def resource_page_size(list_page_size: int) -> int:
    """Resources per call when ``list_page_size`` definitions are read per call."""
    return max(1, list_page_size // RESOURCE_PAGE_FRACTION)


def props_match(props: Mapping[str, Any], filters: Sequence[str]) -> bool:
    """LINSTOR's ``props`` filters, checked here: ``key`` must exist, ``key=value`` match, all of them.

    Controllers older than the filter ignore the query parameter and answer everything, so
    a caller that relies on the filter checks each item again.
    """
    for wanted in filters:
        key, is_pair, value = wanted.partition("=")
        if (props.get(key) != value) if is_pair else (key not in props):
            return False
    return True


def by_name(item: Mapping[str, Any]) -> str:
    """LINSTOR orders nodes, groups and definitions by name, compared upper-cased."""
    return str(item.get("name", "")).upper()


def by_name_and_node(item: Mapping[str, Any]) -> tuple[str, str]:
    """LINSTOR orders resources by definition name, then node name, both upper-cased."""
    return str(item.get("name", "")).upper(), str(item.get("node_name", "")).upper()

"""Maps walked in key order without sorting them on every list call.

The controller keeps its nodes, resource groups and resource definitions in Java
``TreeMap`` s keyed by name (``CoreModule.ResourceDefinitionMapImpl`` and its siblings), so a
list call walks them in order and never sorts. A list call still visits every object for
every page it serves: ``/v1/resource-definitions`` collects the API data of every definition
that passes the name and ``props`` filters, ``/v1/view/resources`` does the same for every
resource of every definition (``CtrlVlmListApiCallHandler.assembleList``), and only then do
both apply ``skip(offset).limit(limit)``. The emulator models that walk per page; what it
no longer does is sort 10,000 keys for each page, which the controller never did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class SortedKeyDict(dict[K, V]):
    """A dict that keeps its items sorted by key until it is changed.

    Every method of ``dict`` that sets or removes a key drops the kept items, so a list
    call after a change sorts once and the following ones reuse it. Iterating the dict itself
    is still in insertion order, as for any dict: :meth:`ordered_items` is the sorted walk.
    """

    __slots__ = ("_order",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._order: tuple[tuple[K, V], ...] | None = None

    def ordered_items(self) -> tuple[tuple[K, V], ...]:
        """``sorted(self.items())``, sorting only when the dict changed since the last call."""
        if self._order is None:
            self._order = tuple(sorted(self.items()))
        return self._order

    def __setitem__(self, key: K, value: V) -> None:
        self._order = None
        super().__setitem__(key, value)

    def __delitem__(self, key: K) -> None:
        self._order = None
        super().__delitem__(key)

    def pop(self, key: K, *default: Any) -> Any:  # type: ignore[override]
        self._order = None
        return super().pop(key, *default)

    def popitem(self) -> tuple[K, V]:
        self._order = None
        return super().popitem()

    def clear(self) -> None:
        self._order = None
        super().clear()

    def setdefault(self, key: K, default: Any = None) -> Any:  # type: ignore[override]
        self._order = None
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self._order = None
        super().update(*args, **kwargs)

    def __ior__(self, other: Any) -> SortedKeyDict[K, V]:  # type: ignore[override,misc]
        self._order = None
        super().__ior__(other)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (dict(self),))


def in_key_order(objects: Mapping[K, V]) -> Iterable[tuple[K, V]]:
    """The items of ``objects`` sorted by key: kept for a :class:`SortedKeyDict`, and no
    sort at all for the one or two resources a definition usually has."""
    if isinstance(objects, SortedKeyDict):
        return objects.ordered_items()
    if len(objects) < 2:
        return objects.items()
    return sorted(objects.items())

"""A small bounded least-recently-used cache (thumbnails, predictions, Grad-CAM maps)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class LRUCache:
    """Keeps at most ``max_items`` entries, dropping the one used longest ago.

    Used only from the GUI thread, so it needs no lock.
    """

    def __init__(self, max_items: int):
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self.max_items = int(max_items)
        self._items: OrderedDict = OrderedDict()

    def get(self, key: Hashable, default=None):
        try:
            self._items.move_to_end(key)
        except KeyError:
            return default
        return self._items[key]

    def put(self, key: Hashable, value) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()

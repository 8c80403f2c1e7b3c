"""A bounded window of ids already handled, to drop duplicates.

Bounded both ways: at most `size` ids and none older than `max_age_s` seconds, so
memory stays flat. A duplicate that arrives after its id left the window is handled
again; deterministic event ids make that harmless for consumers that keep state.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable


class DedupWindow:
    def __init__(
        self, size: int, max_age_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._size = size
        self._max_age_s = max_age_s
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, str) or item not in self._seen:
            return False
        if self._clock() - self._seen[item] > self._max_age_s:
            del self._seen[item]
            return False
        return True

    def __len__(self) -> int:
        return len(self._seen)

    def add_all(self, ids: Iterable[str]) -> None:
        if self._size == 0:
            return
        now = self._clock()
        for item in ids:
            self._seen[item] = now
            self._seen.move_to_end(item)
        self._evict(now)

    def _evict(self, now: float) -> None:
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at <= self._max_age_s:
                break
            del self._seen[oldest]

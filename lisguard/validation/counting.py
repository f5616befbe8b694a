"""Counters and samples that stay the same size however long the feed: a year of a site's
messages (millions) is counted in a few megabytes.

- `BoundedTable`: counts per key with a first-seen note, at most `capacity` keys kept. Below
  the cap (what a site's days, message types, test codes and candidates fit in) every count is
  exact. Past it, the Misra-Gries "frequent items" rule: when the table holds twice the cap,
  the (cap+1)-th largest count is subtracted from every key and the keys left at zero or below
  are dropped. A key counted N times then shows between N - `undercount` and N, every key seen
  more than total/(cap+1) times is still there, and what was dropped is the "other" bucket.
- `Reservoir`: a uniform random sample of a fixed size from a stream of unknown length
  (Vitter's algorithm R), reproducible for a seed; the sample is built only when kept.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class BoundedTable(Generic[K, T]):
    """Counts per key, with what was noted the first time the key was seen (e.g. the control id
    of a message that carried it), keeping at most `capacity` keys (see the module)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.total = 0  # everything counted, kept or not
        self.undercount = 0  # how far below its true count a kept count may be (0: exact)
        self._counts: dict[K, int] = {}
        self._first: dict[K, T] = {}

    def add(self, key: K, first: T | None = None, n: int = 1) -> None:
        """Count `key` n times; `first` is kept when the key is new (a note the caller has at
        hand anyway: building one for every call would cost on the hot path)."""
        self.total += n
        counts = self._counts
        if key in counts:
            counts[key] += n
            return
        counts[key] = n
        if first is not None:
            self._first[key] = first
        if len(counts) > 2 * self.capacity:
            self._shrink()

    def _shrink(self) -> None:
        cut = heapq.nlargest(self.capacity + 1, self._counts.values())[-1]
        self.undercount += cut
        self._counts = {k: v - cut for k, v in self._counts.items() if v > cut}
        self._first = {k: v for k, v in self._first.items() if k in self._counts}

    def __len__(self) -> int:
        return len(self._counts)

    def __contains__(self, key: object) -> bool:
        return key in self._counts

    def count(self, key: K) -> int:
        return self._counts.get(key, 0)

    def first(self, key: K) -> T | None:
        return self._first.get(key)

    def most_common(self, n: int | None = None) -> list[tuple[K, int]]:
        """The kept keys, most counted first (ties in the order first seen)."""
        items = list(self._counts.items())
        if n is None:
            return sorted(items, key=lambda kv: -kv[1])
        return heapq.nlargest(n, items, key=lambda kv: kv[1])

    def items(self) -> list[tuple[K, int]]:
        """The kept keys in the order first seen (the order of a feed's days, for example)."""
        return list(self._counts.items())

    @property
    def exact(self) -> bool:
        return self.undercount == 0

    @property
    def other(self) -> int:
        """What the kept counts do not show: the dropped keys and the subtracted counts."""
        return self.total - sum(self._counts.values())

    def summary(self) -> dict[str, int | bool]:
        return {
            "total": self.total,
            "kept": len(self._counts),
            "capacity": self.capacity,
            "exact": self.exact,
            "undercount": self.undercount,
            "other": self.other,
        }


class Reservoir(Generic[T]):
    """A uniform sample of at most `size` items from a stream, the same for the same seed and
    the same stream. `offer` takes a function building the item, called only when it is kept:
    most items of a long stream are never built."""

    def __init__(self, size: int, seed: str) -> None:
        self.size = max(size, 0)
        self.seen = 0
        self.items: list[T] = []
        self._rng = random.Random(seed)  # a string seed is hashed with SHA-512: stable

    def offer(self, make: Callable[[], T]) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(make())
            return
        j = self._rng.randrange(self.seen)
        if j < self.size:
            self.items[j] = make()

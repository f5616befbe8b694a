"""The bounded counters and samples of `lisguard validate` (lisguard.validation.counting)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from lisguard.validation.counting import BoundedTable, Reservoir


def test_below_the_cap_every_count_is_exact_with_its_first_note() -> None:
    table: BoundedTable[str, int] = BoundedTable(10)
    for i, key in enumerate("abcabca"):
        table.add(key, i)
    assert table.items() == [("a", 3), ("b", 2), ("c", 2)]
    assert table.most_common(1) == [("a", 3)]
    assert (table.first("a"), table.first("b"), table.first("c")) == (0, 1, 2)
    assert table.exact and table.other == 0 and table.total == 7


def test_past_the_cap_it_stays_small_and_keeps_the_frequent_keys() -> None:
    rng = random.Random(5)
    capacity = 50
    table: BoundedTable[int, str] = BoundedTable(capacity)
    truth: Counter[int] = Counter()
    # 20 frequent keys among 200,000 one-off keys: a feed of free text in OBX-3
    stream = [k % 20 for k in range(300_000)] + list(range(1000, 201_000))
    rng.shuffle(stream)
    for key in stream:
        table.add(key, f"first {key}")
        truth[key] += 1
        assert len(table) <= 2 * capacity
    assert not table.exact
    # Misra-Gries: a kept count is at most `undercount` below the truth, never above it
    for key, n in table.items():
        assert truth[key] - table.undercount <= n <= truth[key]
        assert table.first(key) == f"first {key}"
    assert table.undercount <= len(stream) / (capacity + 1)
    # every key seen more than total/(capacity+1) times is still there
    heavy = {k for k, n in truth.items() if n > len(stream) / (capacity + 1)}
    assert heavy == set(range(20))
    assert heavy <= {k for k, _ in table.items()}
    assert table.other == table.total - sum(n for _, n in table.items())


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BoundedTable(0)


def test_reservoir_is_reproducible_and_builds_only_what_it_keeps() -> None:
    built: list[int] = []

    def draw(seed: str) -> list[int]:
        r: Reservoir[int] = Reservoir(5, seed)
        for i in range(1000):
            r.offer(lambda i=i: built.append(i) or i)
        assert r.seen == 1000 and len(r.items) == 5
        return sorted(r.items)

    first = draw("7/bb-serology")
    assert draw("7/bb-serology") == first
    assert draw("8/bb-serology") != first
    assert len(built) < 3 * 120, "most items of a long stream are never built"


def test_reservoir_smaller_stream_than_size_keeps_all_and_size_zero_keeps_none() -> None:
    r: Reservoir[int] = Reservoir(10, "s")
    for i in range(3):
        r.offer(lambda i=i: i)
    assert r.items == [0, 1, 2]
    none: Reservoir[int] = Reservoir(0, "s")
    none.offer(lambda: 1)
    assert none.items == [] and none.seen == 1


def test_reservoir_is_uniform() -> None:
    # each of 20 items kept in 4 of 20 places: over 4,000 seeded draws about 800 times each
    kept: Counter[int] = Counter()
    for trial in range(4000):
        r: Reservoir[int] = Reservoir(4, f"trial {trial}")
        for i in range(20):
            r.offer(lambda i=i: i)
        kept.update(r.items)
    assert set(kept) == set(range(20))
    assert all(680 < n < 920 for n in kept.values()), kept

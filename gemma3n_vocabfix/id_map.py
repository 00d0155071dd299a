"""The old-id -> new-id map, stored as ranges so it stays small for a 262k-id vocabulary."""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class IdRange:
    old_start: int
    new_start: int
    length: int

    @property
    def old_stop(self) -> int:
        return self.old_start + self.length

    @property
    def new_stop(self) -> int:
        return self.new_start + self.length


class IdMap:
    """Old ids [0, size) -> new ids, given by ranges that each shift a block of ids by a constant.

    `dropped`: old id ranges that have no new id (the `<unusedN>` slots the "unused" placement gives to appended
    tokens); the map sends them to None. Without dropped ids the map is a bijection of [0, size); with them, a
    bijection of the kept old ids onto [0, size - dropped).
    """

    def __init__(self, ranges: list[IdRange], dropped: list[tuple[int, int]] = ()):
        self.ranges = sorted((r for r in ranges if r.length > 0), key=lambda r: r.old_start)
        self.dropped = sorted((lo, hi) for lo, hi in dropped if hi > lo)
        self._old_starts = [r.old_start for r in self.ranges]
        by_new = sorted(self.ranges, key=lambda r: r.new_start)
        self._by_new = by_new
        self._new_starts = [r.new_start for r in by_new]
        self.size = sum(r.length for r in self.ranges) + sum(hi - lo for lo, hi in self.dropped)
        expected = 0
        for lo, hi in sorted([(r.old_start, r.old_stop) for r in self.ranges] + self.dropped):
            if lo != expected:
                raise ValueError(f"id ranges leave a gap or overlap at old id {expected}")
            expected = hi
        expected = 0
        for r in by_new:
            if r.new_start != expected:
                raise ValueError(f"id ranges leave a gap or overlap at new id {expected}")
            expected = r.new_stop

    @property
    def is_identity(self) -> bool:
        return not self.dropped and all(r.old_start == r.new_start for r in self.ranges)

    def __call__(self, old_id: int) -> int | None:
        """New id of `old_id` (None for a dropped id); ids at or past the map's size are returned unchanged."""
        if old_id < 0 or old_id >= self.size:
            return old_id
        return self._table[old_id]

    def many(self, old_ids) -> list[int | None]:
        """`self(i)` for each of `old_ids` (ints), in one pass: the tokenizer files map ~262k ids at a time."""
        table, size = self._table, self.size
        return [table[i] if 0 <= i < size else i for i in old_ids]

    @functools.cached_property
    def _table(self) -> list[int | None]:
        """New id of every old id: tokenizer files map each of their ~262k ids, and a list index beats bisect."""
        table: list[int | None] = [None] * self.size
        for r in self.ranges:
            table[r.old_start:r.old_stop] = range(r.new_start, r.new_stop)
        return table

    def inverse(self, new_id: int) -> int:
        r = self._by_new[bisect.bisect_right(self._new_starts, new_id) - 1]
        return r.old_start + (new_id - r.new_start)

    def in_new_order(self) -> list[IdRange]:
        return list(self._by_new)

    def to_json(self) -> list[dict[str, int]]:
        return [{"old_start": r.old_start, "old_stop": r.old_stop, "new_start": r.new_start} for r in self.ranges]

    def dropped_json(self) -> list[list[int]]:
        return [[lo, hi] for lo, hi in self.dropped]

"""The old-id -> new-id map, stored as ranges so it stays small for a 262k-id vocabulary."""

from __future__ import annotations

import bisect
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path


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

    @classmethod
    def from_record(cls, record: dict) -> IdMap:
        """The map a vocabfix.json (parsed) records: its `id_map` ranges and `id_map_dropped`. Raises KeyError,
        TypeError or ValueError for a malformed record."""
        ranges = [IdRange(_whole(r["old_start"]), _whole(r["new_start"]),
                          _whole(r["old_stop"]) - _whole(r["old_start"])) for r in record["id_map"]]
        dropped = [(_whole(lo), _whole(hi)) for lo, hi in record.get("id_map_dropped") or []]
        return cls(ranges, dropped)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> IdMap:
        """The map of a rewrite, from its vocabfix.json (the file, or the rewritten checkpoint folder holding it).

        Raises errors.CheckpointError when the file is missing, unreadable or not a vocabfix record."""
        from .errors import CheckpointError
        path = Path(path)
        if path.is_dir():
            path = path / "vocabfix.json"
        try:
            return cls.from_record(json.loads(path.read_bytes()))
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read ({e.strerror or e})",
                                  hint="pass the vocabfix.json a rewrite wrote (or the rewritten folder)") from None
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{path}: not a vocabfix record ({type(e).__name__}: {e})",
                                  hint="pass the vocabfix.json a rewrite wrote (or the rewritten folder)") from None

    def map(self, ids):
        """New ids of `ids`: a numpy integer array (any shape; returns an int64 array, vectorised through a lookup
        table) or a list of ints (returns a list). Negative ids (e.g. the -100 of ignored labels) and ids at or past
        the map's size are returned unchanged. Raises ValueError for an id the map drops (an `<unusedN>` slot that
        an appended token took)."""
        if isinstance(ids, list):
            mapped = self.many(ids)
            if None in mapped:
                raise ValueError(f"id {ids[mapped.index(None)]} has no new id (its <unusedN> slot was given to an "
                                 "appended token)")
            return mapped
        import numpy as np
        arr = np.asarray(ids)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"ids must be integers, not {arr.dtype}")
        table = self.lookup_table()
        inside = (arr >= 0) & (arr < self.size)
        out = arr.astype(np.int64, copy=True)
        out[inside] = table[arr[inside]]
        if (out[inside] < 0).any():
            bad = arr[inside][out[inside] < 0][0]
            raise ValueError(f"id {bad} has no new id (its <unusedN> slot was given to an appended token)")
        return out

    @functools.cached_property
    def _lookup(self):
        import numpy as np
        return np.array([-1 if n is None else n for n in self._table], dtype=np.int64)

    def lookup_table(self):
        """numpy int64 array of length `size`: the new id of every old id, -1 for a dropped one."""
        return self._lookup

    def to_json(self) -> list[dict[str, int]]:
        return [{"old_start": r.old_start, "old_stop": r.old_stop, "new_start": r.new_start} for r in self.ranges]

    def dropped_json(self) -> list[list[int]]:
        return [[lo, hi] for lo, hi in self.dropped]


def _whole(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a non-negative integer")
    return value

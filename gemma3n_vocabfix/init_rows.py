"""The values of new rows (`rows.InitRows`), in one place for the on-disk rewrite (writer.py: rows read from shard
bytes) and the in-memory fix (in_memory.py: rows read from a torch tensor).

A table is read through `read(first, count) -> float array (count, columns)` (float32, float64 for F64 tables), in
chunks of at most CHUNK_BYTES of float64: the largest table (262144 x 8960 bf16 per-layer rows) is never held whole.
Values come back as float arrays of the same kind; the caller casts them to the table's dtype (bf16: round to
nearest even, as torch does).

Modes (rows.Init):
- mean: the mean of the first `plan.mean_of_rows` rows (the input's text rows), accumulated in float64, then cast
  to float32 (unless the table is float64).
- zeros: zeros.
- normal: transformers' `mean_resizing` (`_init_added_embeddings_weights_with_mean`, transformers 5.24): samples of
  a multivariate normal with the text rows' mean and covariance scaled by 1e-9; the mean when that covariance is not
  positive definite. Deterministic: one generator per table, seeded by the table's role. Tables wider than
  rows.FULL_COVARIANCE_MAX_COLUMNS use the diagonal of the covariance (the full one of an 8960-wide table is 640 MB).
- subtoken: per row, the mean (float64, then float32) of the input rows in `InitRows.sources` (the token's pieces);
  the mean of the text rows for a token with no piece.
- copy: the source row itself (exact: every supported dtype goes through float32/float64 and back unchanged).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator

import numpy as np

from .rows import InitRows, TablePlan

CHUNK_BYTES = 16 * 1024 * 1024
COVARIANCE_SCALE = 1e-9  # transformers' epsilon: samples stay within a hair of the mean
ReadRows = Callable[[int, int], np.ndarray]


class RowMaker:
    """The new rows of one table plan, from its input rows read through `read`."""

    def __init__(self, plan: TablePlan, read: ReadRows):
        self.plan, self.read = plan, read
        self.float_dtype = np.float64 if plan.source.dtype == "F64" else np.float32
        self.columns = int(np.prod(plan.source.shape[1:], dtype=np.int64))
        self.chunk_rows = max(1, CHUNK_BYTES // max(1, self.columns * 8))
        self._mean: np.ndarray | None = None  # float64
        self._sampler = None
        self._rng = np.random.default_rng(zlib.crc32(plan.table.role.value.encode()))

    # --- statistics of the text rows ---------------------------------------------------------------------------

    def _chunks(self, rows: int) -> Iterator[np.ndarray]:
        for first in range(0, rows, self.chunk_rows):
            n = min(self.chunk_rows, rows - first)
            yield np.asarray(self.read(first, n)).reshape(n, self.columns)

    def mean64(self) -> np.ndarray:
        if self._mean is None:
            rows = self.plan.mean_of_rows
            total = np.zeros(self.columns, np.float64)
            for chunk in self._chunks(rows):
                total += chunk.sum(axis=0, dtype=np.float64)
            self._mean = total / rows
        return self._mean

    def mean_row(self) -> np.ndarray:
        return self.mean64().astype(self.float_dtype)

    def _normal_sampler(self):
        """(mean, factor, diagonal) with samples = mean + z @ factor.T (full) or mean + z * factor (diagonal);
        None when the scaled covariance is not positive definite."""
        mean, rows = self.mean64(), self.plan.mean_of_rows
        if self.plan.covariance == "diagonal":
            squares = np.zeros(self.columns, np.float64)
            for chunk in self._chunks(rows):
                centered = chunk.astype(np.float64) - mean
                squares += (centered * centered).sum(axis=0)
            variance = COVARIANCE_SCALE * squares / rows
            return (mean, np.sqrt(variance), True) if np.all(variance > 0) and np.all(np.isfinite(variance)) else None
        covariance = np.zeros((self.columns, self.columns), np.float64)
        for chunk in self._chunks(rows):
            centered = (chunk.astype(np.float64) - mean).astype(np.float32)  # float32 products, as transformers
            covariance += (centered.T @ centered).astype(np.float64)
        covariance *= COVARIANCE_SCALE / rows
        try:
            factor = np.linalg.cholesky(covariance)
        except np.linalg.LinAlgError:
            return None
        return (mean, factor, False) if np.all(np.isfinite(factor)) else None

    def _normal(self, n: int) -> np.ndarray:
        if self._sampler is None:
            self._sampler = self._normal_sampler() or False
        if self._sampler is False:
            return np.broadcast_to(self.mean_row(), (n, self.columns))
        mean, factor, diagonal = self._sampler
        z = self._rng.standard_normal((n, self.columns))
        samples = mean + (z * factor if diagonal else z @ factor.T)
        return samples.astype(np.float32).astype(self.float_dtype)  # sampled in float32 by transformers

    # --- new rows --------------------------------------------------------------------------------------------

    def _source_mean(self, rows: tuple[int, ...]) -> np.ndarray:
        if not rows:
            return self.mean_row()
        total = np.zeros(self.columns, np.float64)
        for r in rows:
            total += np.asarray(self.read(r, 1), dtype=np.float64).reshape(self.columns)
        return (total / len(rows)).astype(self.float_dtype)

    def rows(self, seg: InitRows) -> Iterator[np.ndarray]:
        """The values of `seg`'s rows, in chunks of at most CHUNK_BYTES (float32; float64 for F64 tables)."""
        step = self.chunk_rows
        for first in range(0, seg.count, step):
            n = min(step, seg.count - first)
            if seg.mode == "mean":
                yield np.broadcast_to(self.mean_row(), (n, self.columns))
            elif seg.mode == "zeros":
                yield np.zeros((n, self.columns), self.float_dtype)
            elif seg.mode == "normal":
                yield self._normal(n)
            elif seg.mode == "copy":
                row = np.asarray(self.read(seg.sources[first][0], 1)).reshape(self.columns).astype(self.float_dtype)
                yield np.broadcast_to(row, (n, self.columns))
            elif seg.mode == "subtoken":
                yield np.stack([self._source_mean(seg.sources[first + i]) for i in range(n)])
            else:
                raise ValueError(f"unknown init mode {seg.mode!r}")


def to_float(raw: bytes, dtype: str) -> np.ndarray:
    """Rows as float32 (float64 for F64 rows, which float32 would round)."""
    if dtype == "BF16":
        return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    if dtype == "F64":
        return np.frombuffer(raw, dtype="<f8")
    return np.frombuffer(raw, dtype={"F32": "<f4", "F16": "<f2"}[dtype]).astype(np.float32)


def from_float(values: np.ndarray, dtype: str) -> bytes:
    """Float rows as the table's bytes; BF16 rounds to nearest even, as torch does."""
    if dtype == "BF16":
        bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
        rounded = (bits + (((bits >> 16) & 1) + 0x7FFF)) >> 16
        return rounded.astype("<u2").tobytes()
    return np.ascontiguousarray(values).astype({"F32": "<f4", "F16": "<f2", "F64": "<f8"}[dtype]).tobytes()

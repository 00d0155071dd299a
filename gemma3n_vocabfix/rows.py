"""Where rows move: each output vocabulary table as a list of row segments of its input table.

The rewrite is function-preserving: output row r holds what a stock runtime reads for old id `id_map.inverse(r)`
when it runs the input (docs/gemma3n-vocab-layout.md, "What stock transformers does with an id"):
- the id's own input row, when the table has it (`CopyRows`; the map shifts whole blocks of ids, so a table is a
  few contiguous byte ranges of the input);
- for the per-layer table, row 0 (the pad row) when the table has no row for the id but `embed_tokens` does:
  stock transformers reads row 0 for every id at or past `vocab_size_per_layer_input` (`PadRow`; the shape
  transformers 4.5x's `resize_token_embeddings` leaves: embed_tokens grown, the per-layer table not);
- otherwise no runtime could read a row for the id (it is past `embed_tokens`, which raises IndexError), and only
  then is the row initialised: the mean of the input's text rows (`MeanRows`).
Rows the input has but the output does not (padding, per-layer rows of multimodal ids) are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from .layout import IdKind, Layout, TableRole, VocabTable
from .safetensors_header import TensorInfo


@dataclass(frozen=True)
class CopyRows:
    """`count` input rows from `first_row` on, copied as bytes."""

    first_row: int  # in the input table
    count: int


@dataclass(frozen=True)
class PadRow:
    """`count` copies of input row 0: what the per-layer input reads for an id past the table."""

    count: int


@dataclass(frozen=True)
class MeanRows:
    """`count` rows initialised to the mean of the input's text rows: ids no runtime could embed."""

    count: int


Segment = CopyRows | PadRow | MeanRows
INIT_MEAN = "mean of the text rows"


@dataclass
class TablePlan:
    """One output vocabulary table: `rows_out` rows, made of `segments` in order (rows of the input table)."""

    table: VocabTable
    rows_out: int
    segments: list[Segment]
    mean_of_rows: int  # the input text rows averaged for MeanRows (0 when none are needed)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def holds(self) -> IdKind:
        return self.table.holds

    @property
    def shape_out(self) -> tuple[int, ...]:
        return (self.rows_out, *self.source.shape[1:])

    @property
    def nbytes_out(self) -> int:
        return self.rows_out * self.source.row_bytes

    @property
    def rows_initialised(self) -> int:
        return sum(s.count for s in self.segments if isinstance(s, MeanRows))

    @property
    def rows_from_row_0(self) -> int:
        return sum(s.count for s in self.segments if isinstance(s, PadRow))

    def new_rows(self) -> list[dict]:
        """Where each output row the input had no row for comes from, as runs of new ids (for vocabfix.json)."""
        out, at = [], 0
        for seg in self.segments:
            if isinstance(seg, PadRow):
                out.append({"new_ids": [at, at + seg.count], "copied_from_row": 0})
            elif isinstance(seg, MeanRows):
                out.append({"new_ids": [at, at + seg.count], "initialised_by": INIT_MEAN})
            at += seg.count
        return out

    @property
    def rows_copied(self) -> int:
        return sum(s.count for s in self.segments if isinstance(s, CopyRows))

    @property
    def rows_dropped(self) -> int:
        return self.source.rows - self.rows_copied

    @property
    def changed(self) -> bool:
        return self.segments != [CopyRows(0, self.source.rows)]

    @property
    def source(self) -> TensorInfo:
        return self.table.tensor


def _append(segments: list[Segment], seg: Segment) -> None:
    last = segments[-1] if segments else None
    if isinstance(seg, CopyRows) and isinstance(last, CopyRows) and last.first_row + last.count == seg.first_row:
        segments[-1] = CopyRows(last.first_row, last.count + seg.count)
    elif type(seg) in (MeanRows, PadRow) and type(last) is type(seg):
        segments[-1] = type(seg)(last.count + seg.count)
    else:
        segments.append(seg)


def plan_table(table: VocabTable, layout: Layout) -> TablePlan:
    """The output table: row r is what a runtime reads for old id `layout.id_map.inverse(r)` in the input (see the
    module docstring); `rows_out` is `layout.target_rows(table)`."""
    rows_in = table.tensor.rows
    rows_out = layout.target_rows(table)
    if table.holds not in (IdKind.EVERY, IdKind.TEXT):  # vision / audio tables are indexed from their own offset
        return TablePlan(table, rows_in, [CopyRows(0, rows_in)], 0)
    # ids the input can embed read per-layer row 0 past the per-layer table (a table with a row 0)
    pad_until = (layout.rows(TableRole.EMBED_TOKENS) or 0) if table.holds is IdKind.TEXT and rows_in else 0
    segments: list[Segment] = []
    for r in layout.id_map.in_new_order():
        if r.new_start >= rows_out:
            break
        own = max(0, min(r.old_stop, rows_in) - r.old_start)
        pad = max(0, min(r.old_stop, pad_until) - max(r.old_start, rows_in))
        for seg in (CopyRows(r.old_start, own), PadRow(pad), MeanRows(r.length - own - pad)):
            if seg.count:
                _append(segments, seg)
    needs_mean = any(isinstance(s, MeanRows) for s in segments)
    return TablePlan(table, rows_out, segments, min(layout.text_end, rows_in) if needs_mean else 0)

"""Where rows move: each output vocabulary table as a list of row segments of its input table.

Output row r of a table holds the input row of old id `id_map.inverse(r)`. The map shifts whole
blocks of ids, so a table is a few contiguous byte ranges of the input; rows the input does not have
(tokens added without resizing the model) are initialised to the mean of the input's text rows.
Rows the input has but the output does not (padding, per-layer rows of multimodal ids) are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from .layout import IdKind, Layout, VocabTable
from .safetensors_header import TensorInfo


@dataclass(frozen=True)
class CopyRows:
    first_row: int  # in the input table
    count: int


@dataclass(frozen=True)
class MeanRows:
    count: int


Segment = CopyRows | MeanRows


@dataclass
class TablePlan:
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
    elif isinstance(seg, MeanRows) and isinstance(last, MeanRows):
        segments[-1] = MeanRows(last.count + seg.count)
    else:
        segments.append(seg)


def plan_table(table: VocabTable, layout: Layout) -> TablePlan:
    """The output table: row r is input row `layout.id_map.inverse(r)`, or the mean row where the input lacks it."""
    rows_in = table.tensor.rows
    rows_out = layout.target_rows(table)
    if table.holds not in (IdKind.EVERY, IdKind.TEXT):  # vision / audio tables are indexed from their own offset
        return TablePlan(table, rows_in, [CopyRows(0, rows_in)], 0)
    segments: list[Segment] = []
    for r in layout.id_map.in_new_order():
        if r.new_start >= rows_out:
            break
        have = max(0, min(r.old_stop, rows_in) - r.old_start)
        if have:
            _append(segments, CopyRows(r.old_start, have))
        if r.length - have:
            _append(segments, MeanRows(r.length - have))
    needs_mean = any(isinstance(s, MeanRows) for s in segments)
    return TablePlan(table, rows_out, segments,
                     min(layout.text_end, rows_in) if needs_mean else 0)

"""Where rows move: each output vocabulary table as a list of row segments of its input table.

The rewrite is function-preserving: output row r holds what a stock runtime reads for old id `id_map.inverse(r)`
when it runs the input (docs/gemma3n-vocab-layout.md, "What stock transformers does with an id"):
- the id's own input row, when the table has it (`CopyRows`; the map shifts whole blocks of ids, so a table is a
  few contiguous byte ranges of the input);
- for the per-layer table, row 0 (the pad row) when the table has no row for the id but `embed_tokens` does:
  stock transformers reads row 0 for every id at or past `vocab_size_per_layer_input` (`PadRow`; the shape
  transformers 4.5x's `resize_token_embeddings` leaves: embed_tokens grown, the per-layer table not);
- otherwise no runtime could read a row for the id (it is past `embed_tokens`, which raises IndexError), and only
  then is the row initialised (`InitRows`, by default the mean of the input's text rows; `Init` says how).
With `Init.reinit` the rows of the moved (appended) text ids are initialised too, even where the input has them.
Rows the input has but the output does not (padding, per-layer rows of multimodal ids) are dropped.
The values of initialised rows are computed by init_rows.py; here only which rows, how, and from which input rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import LayoutError
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


INIT_MODES = ("mean", "zeros", "normal", "subtoken", "copy")
FULL_COVARIANCE_MAX_COLUMNS = 4096  # wider tables sample `normal` with a diagonal covariance (8960^2 float64: 640 MB)


@dataclass(frozen=True)
class Init:
    """How new rows are made, resolved against the input at plan time (plan.resolve_init).

    mode: "mean" (of the text rows), "zeros", "normal" (transformers' mean_resizing: mean + covariance of the text
    rows, covariance scaled by 1e-9), "subtoken" (mean of the rows of the pieces the original tokenizer splits the
    token's text into), "copy" (the rows of the existing token `token`). `reinit`: also replace the rows the input
    has for the moved (appended) text ids.
    """

    mode: str = "mean"
    reinit: bool = False
    token: str | None = None  # copy: the token copied
    token_id: int | None = None  # copy: its (old) id, a text id
    pieces: dict[int, tuple[int, ...]] = field(default_factory=dict, compare=False, hash=False)  # old id -> piece ids
    texts: dict[int, str] = field(default_factory=dict, compare=False, hash=False)  # old id / piece id -> string

    def __str__(self) -> str:
        return f"copy:{self.token}" if self.mode == "copy" else self.mode


MEAN = Init()


@dataclass(frozen=True)
class InitRows:
    """`count` new rows made by `mode` (init_rows.py computes the values): ids no runtime could embed, and with
    reinit the moved text ids. `old_ids`: the old id of each row. `sources` (subtoken, copy): per row, the input
    rows whose mean it is (one row for copy; none: the mean of the text rows, a token with no usable piece)."""

    count: int
    mode: str = "mean"
    old_ids: tuple[int, ...] = ()
    sources: tuple[tuple[int, ...], ...] = ()


MeanRows = InitRows  # the name before the init modes existed
Segment = CopyRows | PadRow | InitRows
INIT_MEAN = "mean of the text rows"


@dataclass
class TablePlan:
    """One output vocabulary table: `rows_out` rows, made of `segments` in order (rows of the input table)."""

    table: VocabTable
    rows_out: int
    segments: list[Segment]
    mean_of_rows: int  # the input text rows whose statistics InitRows use (0 when none are needed)
    init: Init = MEAN
    rows_reinitialised: int = 0  # the input's own rows of moved ids replaced by the init (reinit)

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
        return sum(s.count for s in self.segments if isinstance(s, InitRows))

    @property
    def covariance(self) -> str | None:
        """For init "normal": "full", or "diagonal" for a table wider than FULL_COVARIANCE_MAX_COLUMNS."""
        if self.init.mode != "normal":
            return None
        columns = 1
        for n in self.source.shape[1:]:
            columns *= n
        return "full" if columns <= FULL_COVARIANCE_MAX_COLUMNS else "diagonal"

    @property
    def rows_from_row_0(self) -> int:
        return sum(s.count for s in self.segments if isinstance(s, PadRow))

    def new_rows(self) -> list[dict]:
        """Where each output row the input had no row for comes from, as runs of new ids (for vocabfix.json)."""
        out, at = [], 0
        for seg in self.segments:
            if isinstance(seg, PadRow):
                out.append({"new_ids": [at, at + seg.count], "copied_from_row": 0})
            elif isinstance(seg, InitRows):
                out.append({"new_ids": [at, at + seg.count], **self._init_record(seg)})
            at += seg.count
        return out

    def _init_record(self, seg: InitRows) -> dict:
        init = self.init
        if seg.mode == "mean":
            return {"initialised_by": INIT_MEAN}
        entry: dict = {"initialised_by": seg.mode}
        if seg.mode == "copy":
            entry["token"] = init.token
        elif seg.mode == "subtoken":
            entry["pieces"] = [{"token": init.texts.get(old), "pieces": [init.texts.get(p) for p in init.pieces[old]]}
                               if init.pieces.get(old) else {"token": init.texts.get(old), "pieces": [],
                                                             "fallback": INIT_MEAN}
                               for old in seg.old_ids]
        elif seg.mode == "normal":
            entry["covariance"] = self.covariance
            if self.covariance == "diagonal":
                entry["note"] = (f"diagonal covariance: the table is wider than {FULL_COVARIANCE_MAX_COLUMNS} columns")
            entry["fallback"] = f"{INIT_MEAN} when the covariance is not positive definite"
        return entry

    @property
    def rows_copied(self) -> int:
        return sum(s.count for s in self.segments if isinstance(s, CopyRows))

    @property
    def rows_dropped(self) -> int:
        return self.source.rows - self.rows_copied - self.rows_reinitialised

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
    elif isinstance(seg, PadRow) and isinstance(last, PadRow):
        segments[-1] = PadRow(last.count + seg.count)
    elif isinstance(seg, InitRows) and isinstance(last, InitRows) and last.mode == seg.mode:
        segments[-1] = InitRows(last.count + seg.count, seg.mode, last.old_ids + seg.old_ids,
                                last.sources + seg.sources)
    else:
        segments.append(seg)


def _row_read(table: VocabTable, token_id: int, pad_until: int) -> int | None:
    """The input row a runtime reads for text id `token_id` in `table` (None: no row)."""
    if token_id < table.tensor.rows:
        return token_id
    return 0 if token_id < pad_until else None


def _init_rows(table: VocabTable, init: Init, old_ids: range, pad_until: int) -> InitRows:
    sources: tuple[tuple[int, ...], ...] = ()
    if init.mode == "copy":
        row = _row_read(table, init.token_id, pad_until)
        if row is None:
            raise LayoutError(f"{table.tensor.name}: has no row for {init.token!r} (id {init.token_id}) to copy")
        sources = ((row,),) * len(old_ids)
    elif init.mode == "subtoken":
        found = []
        for old in old_ids:
            rows = tuple(_row_read(table, p, pad_until) for p in init.pieces.get(old, ()))
            if None in rows:
                raise LayoutError(f"{table.tensor.name}: has no row for a piece of {init.texts.get(old)!r}")
            found.append(rows)
        sources = tuple(found)
    return InitRows(len(old_ids), init.mode, tuple(old_ids), sources)


def plan_table(table: VocabTable, layout: Layout, init: Init = MEAN) -> TablePlan:
    """The output table: row r is what a runtime reads for old id `layout.id_map.inverse(r)` in the input (see the
    module docstring), or with `init.reinit` a new row for a moved text id; `rows_out` is
    `layout.target_rows(table)`."""
    rows_in = table.tensor.rows
    rows_out = layout.target_rows(table)
    if table.holds not in (IdKind.EVERY, IdKind.TEXT):  # vision / audio tables are indexed from their own offset
        return TablePlan(table, rows_in, [CopyRows(0, rows_in)], 0, init)
    # ids the input can embed read per-layer row 0 past the per-layer table (a table with a row 0)
    pad_until = (layout.rows(TableRole.EMBED_TOKENS) or 0) if table.holds is IdKind.TEXT and rows_in else 0
    segments: list[Segment] = []
    replaced = 0
    for r in layout.id_map.in_new_order():
        if r.new_start >= rows_out:
            break
        own = max(0, min(r.old_stop, rows_in) - r.old_start)
        pad = max(0, min(r.old_stop, pad_until) - max(r.old_start, rows_in))
        if init.reinit and r.old_start >= layout.text_end and r.new_start < layout.new_text_size:  # moved text ids
            replaced += own
            own = pad = 0
        ids = range(r.old_start + own + pad, r.old_stop)
        for seg in (CopyRows(r.old_start, own), PadRow(pad), _init_rows(table, init, ids, pad_until)):
            if seg.count:
                _append(segments, seg)
    needs_stats = any(isinstance(s, InitRows) for s in segments)
    return TablePlan(table, rows_out, segments, min(layout.text_end, rows_in) if needs_stats else 0, init, replaced)

"""Which table and row stock transformers reads for an id, and the id ranges of a layout split by that routing.

The rules are those of transformers 5.24's `Gemma3nModel.forward` (docs/gemma3n-vocab-layout.md, "What stock
transformers does with an id"): every id is looked up in `embed_tokens`; ids in `[vision_offset, audio_offset)` are
then replaced by `embed_vision[id - vision_offset]`, ids `>= audio_offset` (no upper bound) by
`embed_audio[id - audio_offset]`; the per-layer input reads row `id` of `embed_tokens_per_layer` for
`0 <= id < vocab_size_per_layer_input` and row 0 (the pad row) otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from .layout import Layout, TableRole


@dataclass(frozen=True)
class Route:
    """What stock transformers does with one id."""

    id: int
    table: TableRole  # the table whose row becomes the embedding
    row: int
    table_rows: int | None  # None: the table is not in the weights
    per_layer_row: int
    error: str | None  # why this id crashes the forward pass, if it does

    @property
    def ok(self) -> bool:
        return self.error is None


def per_layer_row(token_id: int, layout: Layout) -> int:
    """The `embed_tokens_per_layer` row the per-layer input reads for `token_id`: its own, or row 0."""
    return token_id if 0 <= token_id < layout.per_layer_size else 0


def route(token_id: int, layout: Layout) -> Route:
    """The table and row stock transformers embeds `token_id` with, its per-layer row, and why it crashes if it does."""
    vo, ao = layout.vision_offset, layout.audio_offset
    if vo <= token_id < ao:
        table, row = TableRole.VISION, token_id - vo
    elif token_id >= ao:
        table, row = TableRole.AUDIO, token_id - ao
    else:
        table, row = TableRole.EMBED_TOKENS, token_id
    rows = layout.rows(table)
    embed_rows = layout.rows(TableRole.EMBED_TOKENS)
    error = None
    if embed_rows is not None and token_id >= embed_rows:
        error = f"embed_tokens has {embed_rows:,} rows: IndexError"
    elif rows is not None and row >= rows:
        error = f"row {row:,} of a {rows:,}-row table: IndexError"
    return Route(token_id, table, row, rows, per_layer_row(token_id, layout), error)


def range_name(token_id: int, layout: Layout) -> str:
    """Which declared range an id is in: text, vision, audio, appended, or neither."""
    if layout.vision_offset <= token_id < layout.vision_end:
        return "vision"
    if layout.audio_offset <= token_id < layout.audio_end:
        return "audio"
    if token_id < layout.text_end:
        return "text"
    if token_id >= layout.multimodal_end:
        return "appended" if token_id < layout.tokenizer.size else "beyond the tokenizer"
    return "between the multimodal ranges"


@dataclass(frozen=True)
class Segment:
    """A run of ids inside one declared range that stock transformers routes the same way."""

    start: int
    stop: int
    table: TableRole
    first_row: int
    table_rows: int | None
    per_layer: str  # "rows a..b", "row 0 (pad row)" or "rows a..b (own rows, not the pad row)"
    error: str | None


@dataclass(frozen=True)
class IdRangeRoute:
    name: str  # text, vision, audio, between the multimodal ranges, appended, unused rows
    start: int
    stop: int
    declared_by: str
    segments: tuple[Segment, ...]

    @property
    def ok(self) -> bool:
        return all(s.error is None for s in self.segments)


def _segments(start: int, stop: int, layout: Layout, multimodal: bool) -> tuple[Segment, ...]:
    cuts = {start, stop}
    for c in (layout.vision_offset, layout.audio_offset, layout.per_layer_size, layout.rows(TableRole.EMBED_TOKENS)):
        if c is not None and start < c < stop:
            cuts.add(c)
    for role, base in ((TableRole.VISION, layout.vision_offset), (TableRole.AUDIO, layout.audio_offset)):
        rows = layout.rows(role)
        if rows is not None and start < base + rows < stop:
            cuts.add(base + rows)
    points = sorted(cuts)
    out = []
    for a, b in zip(points, points[1:], strict=False):
        first, last = route(a, layout), route(b - 1, layout)
        if a < layout.per_layer_size:
            own = " (own rows, not the pad row)" if multimodal else ""
            per_layer = f"rows {first.per_layer_row:,}..{last.per_layer_row:,}{own}"
        else:
            per_layer = "row 0 (pad row)"
        out.append(Segment(a, b, first.table, first.row, first.table_rows, per_layer, first.error or last.error))
    return tuple(out)


def routed_ranges(layout: Layout) -> list[IdRangeRoute]:
    """The layout's declared ranges in id order, each split into runs that stock transformers routes alike."""
    lay = layout
    out = [
        ("text", 0, lay.text_end, "below the first multimodal id"),
        ("vision", lay.vision_offset, lay.vision_end, "vision_config.vocab_offset/vocab_size"),
        ("audio", lay.audio_offset, lay.audio_end, "audio_config.vocab_offset/vocab_size"),
        ("between the multimodal ranges", *lay.between_range, "ids between the vision and audio ranges"),
        ("appended", lay.multimodal_end, lay.tokenizer.size, "tokenizer ids past the multimodal ranges"),
        ("unused rows", lay.total, lay.rows(TableRole.EMBED_TOKENS) or 0, "embed_tokens rows no token uses"),
    ]
    out.sort(key=lambda r: r[1])
    return [IdRangeRoute(n, a, b, d, _segments(a, b, lay, n in ("vision", "audio"))) for n, a, b, d in out if b > a]

"""`vocabfix inspect`: a checkpoint's vocabulary layout, what stock transformers does with each id, and findings.

Reads what `read_checkpoint` reads (config.json, generation_config.json, the tokenizer files and the safetensors
headers): no tensor bytes, and neither torch nor transformers is imported. Returns an `InspectReport`; it never
prints (render_inspect.py does).

The routing rules are those of transformers 5.24's `Gemma3nModel.forward` (docs/gemma3n-vocab-layout.md):
every id is looked up in `embed_tokens`; ids in `[vision_offset, audio_offset)` are then replaced by
`embed_vision[id - vision_offset]`, ids `>= audio_offset` (no upper bound) by `embed_audio[id - audio_offset]`;
the per-layer input reads row `id` of `embed_tokens_per_layer` for `0 <= id < vocab_size_per_layer_input` and
row 0 otherwise.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from . import __version__
from .checkpoint import INDEX_NAME, JSON_TOKENIZER_FILES, SENTENCEPIECE_FILE, Checkpoint
from .findings import CODES, Finding, Severity, gate
from .layout import AUDIO_IDS, EVERY_ID, TEXT_IDS, VISION_IDS, Layout, VocabTable, analyse

# (config key, tokenizer attribute naming the same token, default string of the released checkpoints)
SPECIAL_TOKENS = (
    ("image_token_id", "image_token", "<image_soft_token>"),
    ("audio_token_id", "audio_token", "<audio_soft_token>"),
    ("boi_token_id", "boi_token", "<start_of_image>"),
    ("eoi_token_id", "eoi_token", "<end_of_image>"),
    ("boa_token_id", "boa_token", "<start_of_audio>"),
    ("eoa_token_id", "eoa_token", "<end_of_audio>"),
    ("bos_token_id", "bos_token", "<bos>"),
    ("eos_token_id", "eos_token", "<eos>"),
    ("pad_token_id", "pad_token", "<pad>"),
)
GENERATION_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")
MAX_EXAMPLES = 5


def show(token: str | None) -> str:
    """A token string for a sentence: repr() quotes it and escapes control characters."""
    return "no token" if token is None else repr(token)


# --- the pieces of a report ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileView:
    name: str
    bytes: int | None
    role: str  # config, tokenizer, weights index, weights, other
    tensors: int | None = None  # shards only
    tensor_bytes: int | None = None
    dtypes: dict[str, int] | None = None  # dtype -> tensor count
    remote: bool = False  # described from the Hub without downloading


@dataclass(frozen=True)
class TableView:
    name: str
    short: str  # embed_tokens, lm_head, embed_tokens_per_layer, embed_vision, embed_audio
    holds: str  # layout.EVERY_ID / TEXT_IDS / VISION_IDS / AUDIO_IDS
    shape: tuple[int, ...]
    dtype: str
    rows: int
    first_id: int  # the id its row 0 stands for
    config_rows: int  # what the config makes transformers build
    config_key: str
    shard: str


@dataclass(frozen=True)
class Route:
    """What stock transformers does with one id."""

    id: int
    table: str  # short name of the table whose row becomes the embedding
    row: int
    table_rows: int | None  # None: the table is not in the weights
    per_layer_row: int
    error: str | None  # why this id crashes the forward pass, if it does

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Segment:
    """A run of ids inside one declared range that stock transformers routes the same way."""

    start: int
    stop: int
    table: str
    first_row: int
    table_rows: int | None
    per_layer: str  # "rows a..b", "row 0 (pad row)" or "rows a..b (own rows)"
    error: str | None


@dataclass(frozen=True)
class RangeView:
    name: str  # text, vision, audio, appended, unused rows
    start: int
    stop: int
    declared_by: str
    segments: tuple[Segment, ...]

    @property
    def ok(self) -> bool:
        return all(s.error is None for s in self.segments)


@dataclass(frozen=True)
class SpecialView:
    key: str
    config: object  # value in config.json (None when absent)
    generation: object  # value in generation_config.json
    tokenizer_key: str
    expected: str | None  # the string the tokenizer files give for it
    expected_id: int | None  # the tokenizer's id of that string
    tokens: tuple[str | None, ...]  # what the tokenizer names the config's id(s)
    agrees: bool


@dataclass(frozen=True)
class TokenView:
    query: str
    id: int | None
    token: str | None
    range: str | None
    route: Route | None
    note: str | None = None


@dataclass
class InspectReport:
    source: str
    revision: str | None
    layout: Layout
    files: list[FileView]
    tables: list[TableView]
    ranges: list[RangeView]
    special: list[SpecialView]
    tokens: list[TokenView]
    findings: list[Finding]
    fix_command: str

    def exit_code(self, strict: bool = False) -> int:
        return gate(self.findings, strict)

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity is severity)

    @property
    def shards(self) -> list[FileView]:
        return [f for f in self.files if f.role == "weights"]

    def layout_dict(self) -> dict:
        lay = self.layout
        mm_end = max(lay.vision_offset + lay.vision_size, lay.audio_offset + lay.audio_size)
        return {
            "text": [0, lay.first_multimodal_id],
            "vision": [lay.vision_offset, lay.vision_offset + lay.vision_size],
            "audio": [lay.audio_offset, lay.audio_offset + lay.audio_size],
            "appended": [mm_end, max(mm_end, lay.tokenizer.size)],
            "appended_tokens": max(0, lay.tokenizer.size - mm_end),
            "vocab_size": lay.vocab_size,
            "vocab_size_per_layer_input": lay.per_layer_size,
            "tokenizer_size": lay.tokenizer.size,
            "tokenizer_file_sizes": dict(lay.tokenizer.file_sizes),
            "consistent": lay.is_consistent,
            "ranges": [{"name": r.name, "start": r.start, "stop": r.stop, "declared_by": r.declared_by,
                        "segments": [asdict(s) for s in r.segments]} for r in self.ranges],
            "special_ids": [{**asdict(s), "tokens": list(s.tokens)} for s in self.special],
        }

    def to_dict(self, strict: bool = False) -> dict:
        return {
            "vocabfix_version": __version__,
            "source": self.source,
            "revision": self.revision,
            "exit_code": self.exit_code(strict),
            "strict": strict,
            "counts": {s.value: self.count(s) for s in Severity},
            "layout": self.layout_dict(),
            "files": [asdict(f) for f in self.files],
            "tensors": [{**asdict(t), "shape": list(t.shape)} for t in self.tables],
            "tokens": [{**asdict(t), "route": asdict(t.route) if t.route else None} for t in self.tokens],
            "findings": [f.to_dict() for f in self.findings],
            "fix_command": self.fix_command,
        }


# --- analysis ----------------------------------------------------------------------------------------------------

SHORT_NAMES = (("embed_tokens_per_layer.weight", "embed_tokens_per_layer"), ("embed_tokens.weight", "embed_tokens"),
               ("lm_head.weight", "lm_head"), ("embed_vision.embedding.weight", "embed_vision"),
               ("embed_audio.embedding.weight", "embed_audio"))


def _short(name: str) -> str:
    return next((short for suffix, short in SHORT_NAMES if name == suffix or name.endswith("." + suffix)), name)


class _Tables:
    """The vocabulary tables by role (the first one found when a name repeats)."""

    def __init__(self, layout: Layout):
        self.by_short: dict[str, VocabTable] = {}
        for t in layout.tables:
            self.by_short.setdefault(_short(t.tensor.name), t)

    def rows(self, short: str) -> int | None:
        t = self.by_short.get(short)
        return t.tensor.rows if t is not None else None


def route(token_id: int, layout: Layout, tables: _Tables) -> Route:
    vo, ao = layout.vision_offset, layout.audio_offset
    if vo <= token_id < ao:
        table, row = "embed_vision", token_id - vo
    elif token_id >= ao:
        table, row = "embed_audio", token_id - ao
    else:
        table, row = "embed_tokens", token_id
    rows = tables.rows(table)
    embed_rows = tables.rows("embed_tokens")
    per_layer_row = token_id if 0 <= token_id < layout.per_layer_size else 0
    error = None
    if embed_rows is not None and token_id >= embed_rows:
        error = f"embed_tokens has {embed_rows:,} rows: IndexError"
    elif rows is not None and row >= rows:
        error = f"row {row:,} of a {rows:,}-row table: IndexError"
    return Route(token_id, table, row, rows, per_layer_row, error)


def _range_name(token_id: int, layout: Layout) -> str:
    vo, ao = layout.vision_offset, layout.audio_offset
    if vo <= token_id < vo + layout.vision_size:
        return "vision"
    if ao <= token_id < ao + layout.audio_size:
        return "audio"
    if token_id < layout.first_multimodal_id:
        return "text"
    if token_id >= max(vo + layout.vision_size, ao + layout.audio_size):
        return "appended" if token_id < layout.tokenizer.size else "beyond the tokenizer"
    return "between the multimodal ranges"


def _segments(start: int, stop: int, layout: Layout, tables: _Tables, multimodal: bool) -> tuple[Segment, ...]:
    cuts = {start, stop}
    for c in (layout.vision_offset, layout.audio_offset, layout.per_layer_size, tables.rows("embed_tokens")):
        if c is not None and start < c < stop:
            cuts.add(c)
    for short, base in (("embed_vision", layout.vision_offset), ("embed_audio", layout.audio_offset)):
        rows = tables.rows(short)
        if rows is not None and start < base + rows < stop:
            cuts.add(base + rows)
    points = sorted(cuts)
    out = []
    for a, b in zip(points, points[1:], strict=False):
        first, last = route(a, layout, tables), route(b - 1, layout, tables)
        if a < layout.per_layer_size:
            own = " (own rows, not the pad row)" if multimodal else ""
            per_layer = f"rows {first.per_layer_row:,}..{last.per_layer_row:,}{own}"
        else:
            per_layer = "row 0 (pad row)"
        out.append(Segment(a, b, first.table, first.row, first.table_rows, per_layer, first.error or last.error))
    return tuple(out)


def _ranges(layout: Layout, tables: _Tables) -> list[RangeView]:
    lay = layout
    mm_end = max(lay.vision_offset + lay.vision_size, lay.audio_offset + lay.audio_size)
    out = [
        ("text", 0, lay.first_multimodal_id, "below the first multimodal id"),
        ("vision", lay.vision_offset, lay.vision_offset + lay.vision_size, "vision_config.vocab_offset/vocab_size"),
        ("audio", lay.audio_offset, lay.audio_offset + lay.audio_size, "audio_config.vocab_offset/vocab_size"),
    ]
    if lay.tokenizer.size > mm_end:
        out.append(("appended", mm_end, lay.tokenizer.size, "tokenizer ids past the multimodal ranges"))
    embed_rows = tables.rows("embed_tokens") or 0
    end = max(mm_end, lay.tokenizer.size)
    if embed_rows > end:
        out.append(("unused rows", end, embed_rows, "embed_tokens rows no token uses"))
    out.sort(key=lambda r: r[1])
    return [RangeView(n, a, b, d, _segments(a, b, layout, tables, n in ("vision", "audio")))
            for n, a, b, d in out if b > a]


def _table_views(ckpt: Checkpoint, layout: Layout) -> list[TableView]:
    config_rows = {EVERY_ID: (layout.vocab_size, "text_config.vocab_size"),
                   TEXT_IDS: (layout.per_layer_size, "text_config.vocab_size_per_layer_input"),
                   VISION_IDS: (layout.vision_size, "vision_config.vocab_size"),
                   AUDIO_IDS: (layout.audio_size, "audio_config.vocab_size")}
    first_id = {EVERY_ID: 0, TEXT_IDS: 0, VISION_IDS: layout.vision_offset, AUDIO_IDS: layout.audio_offset}
    out = []
    for t in layout.tables:
        rows, key = config_rows[t.holds]
        out.append(TableView(t.tensor.name, _short(t.tensor.name), t.holds, t.tensor.shape, t.tensor.dtype,
                             t.tensor.rows, first_id[t.holds], rows, key, _relative(ckpt, t.tensor.path)))
    return out


def _relative(ckpt: Checkpoint, path: Path) -> str:
    try:
        return path.relative_to(ckpt.root).as_posix()
    except ValueError:
        return path.name


def _file_views(ckpt: Checkpoint) -> list[FileView]:
    shards = {_relative(ckpt, s.path): s for s in ckpt.weights.shards}
    out = []
    for name in ckpt.files:
        remote = ckpt.remote is not None and not (ckpt.root / name).is_file()
        if name in shards:
            s = shards[name]
            dtypes = dict(sorted(Counter(t.dtype for t in s.tensors).items()))
            out.append(FileView(name, s.file_size, "weights", len(s.tensors), s.data_bytes, dtypes, remote))
            continue
        if name.endswith(".safetensors"):
            role = "weights (not in the index)"
        elif name == INDEX_NAME:
            role = "weights index"
        elif name in JSON_TOKENIZER_FILES or name == SENTENCEPIECE_FILE:
            role = "tokenizer"
        elif name in ("config.json", "generation_config.json"):
            role = "config"
        else:
            role = "other"
        out.append(FileView(name, ckpt.file_size(name), role, remote=remote))
    return out


def special_strings(ckpt: Checkpoint) -> dict[str, str]:
    """The token strings the tokenizer files give for bos/eos/pad/image/audio/...: what the processor uses."""
    out: dict[str, str] = {}
    sources = [ckpt.tokenizer_config or {}]
    for container in ("extra_special_tokens", "model_specific_special_tokens"):
        value = (ckpt.tokenizer_config or {}).get(container)
        if isinstance(value, dict):
            sources.append(value)
    sources.append(ckpt.special_tokens_map or {})
    for _, attr, _ in SPECIAL_TOKENS:
        for src in sources:
            value = src.get(attr)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                out[attr] = value
                break
    return out


def _special_views(ckpt: Checkpoint, layout: Layout) -> list[SpecialView]:
    strings = special_strings(ckpt)
    gen = ckpt.generation_config or {}
    out = []
    for key, attr, default in SPECIAL_TOKENS:
        value = ckpt.config.get(key, ckpt.text_config.get(key))
        gen_value = gen.get(key)
        if value is None and gen_value is None:
            continue
        expected = strings.get(attr, default if key not in GENERATION_KEYS else None)
        expected_id = layout.tokenizer.id_of(expected) if expected is not None else None
        ids = _ids(value) + _ids(gen_value)
        tokens = tuple(layout.tokenizer.token(i) for i in dict.fromkeys(ids))
        if key == "eos_token_id":
            agrees = all(expected_id in _ids(v) for v in (value, gen_value) if v is not None) \
                if expected_id is not None else True
        else:
            agrees = expected is None or all(_names(layout, i, expected) for i in ids)
        out.append(SpecialView(key, value, gen_value, attr, expected, expected_id, tokens, agrees))
    return out


def _names(layout: Layout, token_id: int, expected: str) -> bool:
    """Whether the tokenizer names `token_id` `expected` (an id only tokenizer.model knows counts as agreeing)."""
    token = layout.tokenizer.token(token_id)
    if token is None:
        return 0 <= token_id < layout.tokenizer.size and not layout.tokenizer.vocab
    return token == expected


def _ids(value: object) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []


def _token_views(queries: list[str], layout: Layout, tables: _Tables) -> list[TokenView]:
    out = []
    for q in queries:
        note = None
        if re.fullmatch(r"\s*-?[0-9]+\s*", q):
            token_id = int(q)
            also = layout.tokenizer.id_of(q)
            if also is not None and also != token_id:
                note = f"read as an id; the token string {show(q)} is id {also}"
        else:
            token_id = layout.tokenizer.id_of(q)
            if token_id is None:
                out.append(TokenView(q, None, None, None, None, "not a token of this tokenizer"))
                continue
        if token_id < 0:
            out.append(TokenView(q, token_id, None, None, None, "negative ids are not token ids"))
            continue
        out.append(TokenView(q, token_id, layout.tokenizer.token(token_id), _range_name(token_id, layout),
                             route(token_id, layout, tables), note))
    return out


class _Findings:
    def __init__(self, fix: str):
        self.items: list[Finding] = []
        self.fix = fix

    def add(self, code: str, message: str, fix: str | None = None, **details) -> None:
        assert code in CODES, code
        self.items.append(Finding(code, message, self.fix if fix is None else fix, details))


def _examples(layout: Layout, start: int, stop: int) -> str:
    names = [show(layout.tokenizer.token(i)) for i in range(start, min(stop, start + MAX_EXAMPLES))]
    more = ", ..." if stop - start > MAX_EXAMPLES else ""
    return ", ".join(names) + more


def _span(start: int, stop: int) -> str:
    return f"id {start:,}" if stop - start == 1 else f"ids {start:,}..{stop - 1:,}"


def _layout_findings(f: _Findings, layout: Layout, tables: _Tables) -> None:
    lay = layout
    vo, V, ao, A = lay.vision_offset, lay.vision_size, lay.audio_offset, lay.audio_size
    tok = lay.tokenizer.size
    audio_rows = tables.rows("embed_audio")
    audio_rows = A if audio_rows is None else audio_rows

    if tables.rows("embed_tokens") is None:
        f.add("VF017", "no model.language_model.embed_tokens.weight in the shards: from_pretrained initialises the "
              "text embedding at random", "re-save the model with model.save_pretrained(folder)")

    # VF001: the unbounded audio mask
    lo = max(ao + audio_rows, ao)
    if tok > lo:
        f.add("VF001", f"stock transformers sends every id >= audio_offset {ao:,} to the {audio_rows:,}-row audio "
              f"table, so {_span(lo, tok)} ({tok - lo:,} token(s): {_examples(lay, lo, tok)}) read rows "
              f"{lo - ao:,}..{tok - 1 - ao:,} of embed_audio: any input containing one raises 'IndexError: index "
              "out of range in self' (a device-side assert on CUDA)",
              ids=[lo, tok], count=tok - lo, audio_offset=ao, audio_rows=audio_rows,
              tokens=[lay.tokenizer.token(i) for i in range(lo, min(tok, lo + MAX_EXAMPLES))])

    # VF002: audio padding embeds vocab_size - 1 with embed_audio
    if ao + A != lay.vocab_size:
        pad_row = lay.vocab_size - 1 - ao
        effect = ("raises IndexError" if not 0 <= pad_row < audio_rows else
                  f"reads audio row {pad_row:,} instead of the last audio token's row {A - 1:,}")
        f.add("VF002", f"the audio ids end at {ao + A:,} but text_config.vocab_size is {lay.vocab_size:,}: audio "
              f"shorter than 30 s is padded with id vocab_size - 1 = {lay.vocab_size - 1:,} through embed_audio, "
              f"which {effect}", audio_end=ao + A, vocab_size=lay.vocab_size, padding_row=pad_row)

    # VF003: [text | vision | audio]
    if not (vo + V == ao):
        if ao < vo:
            what = (f"the audio ids [{ao:,}, {ao + A:,}) come before the vision ids [{vo:,}, {vo + V:,}): the vision "
                    f"mask (vision_offset <= id < audio_offset) is empty and every vision id is sent to embed_audio")
        else:
            what = (f"ids [{vo + V:,}, {ao:,}) between the vision and audio ranges are sent to embed_vision rows "
                    f"{V:,}.. of a {V:,}-row table (IndexError)")
        f.add("VF003", f"stock transformers assumes [text | vision | audio] with audio directly after vision; here "
              f"{what}", vision=[vo, vo + V], audio=[ao, ao + A])

    # VF004: per-layer inputs of multimodal ids
    first_mm, mm_end = lay.first_multimodal_id, max(vo + V, ao + A)
    per_layer_rows = tables.rows("embed_tokens_per_layer")
    if min(lay.per_layer_size, mm_end) > first_mm:  # (a table that disagrees with the config is VF005)
        f.add("VF004", f"vocab_size_per_layer_input is {lay.per_layer_size:,} and embed_tokens_per_layer has "
              f"{per_layer_rows or 0:,} rows, past the first multimodal id {first_mm:,} (what transformers 5's "
              "resize_token_embeddings does): image and audio ids read their own, freshly initialised per-layer "
              "rows instead of row 0 as in the released model, which silently changes every image and audio input",
              per_layer_size=lay.per_layer_size, per_layer_rows=per_layer_rows, first_multimodal_id=first_mm)

    # VF005 / VF006 / VF007: table rows against the config and the tokenizer
    for short, table in tables.by_short.items():
        rows = table.tensor.rows
        want, key = {EVERY_ID: (lay.vocab_size, "text_config.vocab_size"),
                     TEXT_IDS: (lay.per_layer_size, "text_config.vocab_size_per_layer_input"),
                     VISION_IDS: (V, "vision_config.vocab_size"),
                     AUDIO_IDS: (A, "audio_config.vocab_size")}[table.holds]
        if rows != want:
            fix = f.fix if table.holds in (EVERY_ID, TEXT_IDS) else \
                f"set {key} to {rows} in config.json, or restore the {rows}-row table it was trained with"
            f.add("VF005", f"{table.tensor.name} has {rows:,} rows but {key} is {want:,}: from_pretrained fails "
                  f"with a size mismatch for {short} (or, with ignore_mismatched_sizes, re-initialises it at random)",
                  fix, tensor=table.tensor.name, rows=rows, config_key=key, config_rows=want)
    embed_rows = tables.rows("embed_tokens")
    used = max(tok, mm_end)
    for short in ("embed_tokens", "lm_head"):
        rows = tables.rows(short)
        if rows is not None and rows > used:
            f.add("VF006", f"{short} has {rows:,} rows but the tokenizer defines {tok:,} ids: rows {used:,}.."
                  f"{rows - 1:,} belong to no token (resize_token_embeddings(pad_to_multiple_of=...) padding), and "
                  "counting them in vocab_size moves where stock transformers expects the audio range to end",
                  tensor=short, rows=rows, tokenizer_size=tok)
    if embed_rows is not None and tok > embed_rows:
        f.add("VF007", f"the tokenizer defines {_span(embed_rows, tok)} ({_examples(lay, embed_rows, tok)}) but "
              f"embed_tokens has {embed_rows:,} rows and no other table holds them: tokenizing text with one of "
              "them gives an id the model cannot embed (IndexError); the rewrite gives them the mean of the text "
              "rows, to be fine-tuned", ids=[embed_rows, tok], embed_rows=embed_rows)


def _special_findings(f: _Findings, ckpt: Checkpoint, views: list[SpecialView]) -> None:
    for v in views:
        if not v.agrees:
            where = "config.json" if v.config is not None else "generation_config.json"
            value = v.config if v.config is not None else v.generation
            named = ", ".join(show(t) for t in v.tokens)
            if v.key == "eos_token_id":
                effect = (f"generation does not stop at the tokenizer's eos_token {show(v.expected)} "
                          f"(id {v.expected_id})")
            elif v.key in ("image_token_id", "audio_token_id"):
                kind = v.key.split("_")[0]
                effect = (f"the processor inserts {show(v.expected)} (id {v.expected_id}) for each {kind} soft "
                          f"token, but get_placeholder_mask looks for id {value}: '{kind.capitalize()} features and "
                          f"{kind} tokens do not match'")
            else:
                effect = (f"the tokenizer's {v.tokenizer_key} is {show(v.expected)} (id {v.expected_id}), so code "
                          f"that reads {v.key} from the config uses a different token than the processor")
            fix = (f"set {v.key} to {v.expected_id} in {where} (the tokenizer's id of {show(v.expected)})"
                   if v.expected_id is not None else
                   f"make the tokenizer define {show(v.expected)}, or point {v.key} at the token it should name")
            f.add("VF008", f"{where} says {v.key} = {value}, which the tokenizer names {named}; {effect}", fix,
                  key=v.key, value=value, tokens=list(v.tokens), expected=v.expected, expected_id=v.expected_id)
    gen = ckpt.generation_config or {}
    for key in GENERATION_KEYS:
        a, b = ckpt.config.get(key, ckpt.text_config.get(key)), gen.get(key)
        # one a subset of the other (unsloth's config eos 106 beside generation [1, 106]) is a choice, not a clash
        if a is not None and b is not None and not (set(_ids(a)) <= set(_ids(b)) or set(_ids(b)) <= set(_ids(a))):
            f.add("VF009", f"config.json says {key} = {a} but generation_config.json says {b}: generate() uses "
                  "generation_config.json, other engines read config.json",
                  f"make {key} the same in both files", key=key, config=a, generation=b)


def _tokenizer_findings(f: _Findings, layout: Layout) -> None:
    for conflict in layout.tokenizer.conflicts:
        f.add("VF010", f"{conflict}: the fast and slow tokenizers (and vocabfix) cannot agree on what the id means",
              "re-save the tokenizer with tokenizer.save_pretrained(folder)", conflict=conflict)


def _weights_findings(f: _Findings, ckpt: Checkpoint) -> None:
    w = ckpt.weights
    resave = "re-save the model with model.save_pretrained(folder), or fix model.safetensors.index.json"
    for name in w.missing_shards:
        f.add("VF011", f"model.safetensors.index.json names {name!r}, which is not in the checkpoint: "
              "from_pretrained fails with a missing-file error", resave, shard=name)
    if w.listed_not_found:
        f.add("VF012", f"{len(w.listed_not_found)} tensor(s) listed in the index are in no shard (e.g. "
              f"{w.listed_not_found[0]!r}): from_pretrained reports them missing and initialises them at random",
              resave, tensors=w.listed_not_found[:50], count=len(w.listed_not_found))
    if w.found_not_listed:
        f.add("VF013", f"{len(w.found_not_listed)} tensor(s) in the shards are not listed in the index (e.g. "
              f"{w.found_not_listed[0]!r}): loaders that follow the index never read them", resave,
              tensors=w.found_not_listed[:50], count=len(w.found_not_listed))
    if w.duplicates:
        f.add("VF014", f"{len(w.duplicates)} tensor(s) are stored in more than one shard (e.g. {w.duplicates[0]!r}): "
              "which copy a loader uses depends on the order it reads the shards", resave,
              tensors=w.duplicates[:50], count=len(w.duplicates))
    if w.misplaced:
        f.add("VF015", f"{len(w.misplaced)} tensor(s) are listed under a shard that does not hold them (e.g. "
              f"{w.misplaced[0]!r}): a loader that follows the index looks for them in the wrong file", resave,
              tensors=w.misplaced[:50], count=len(w.misplaced))
    total = ((w.index or {}).get("metadata") or {}).get("total_size")
    if isinstance(total, int) and not isinstance(total, bool):
        actual = sum(s.data_bytes for s in w.shards)
        if total != actual and not w.missing_shards:
            f.add("VF016", f"the index's metadata.total_size is {total:,} bytes but the shards hold {actual:,} "
                  "bytes of tensors: only progress bars and size estimates read it", resave,
                  total_size=total, tensor_bytes=actual)


def fix_command(source: str, revision: str | None = None, hub: bool = False) -> str:
    """The rewrite command for this checkpoint, ready to paste (OUT beside a folder; for a repo, in the working
    folder)."""
    out = "./" + source.rstrip("/").split("/")[-1] + "-vocabfix" if hub else source.rstrip("/") + "-vocabfix"
    rev = f" --revision {shlex.quote(revision)}" if revision else ""
    return f"vocabfix rewrite {shlex.quote(source)} {shlex.quote(out)}{rev}"


def inspect_checkpoint(ckpt: Checkpoint, *, tokens: list[str] = (), source: str | None = None,
                       revision: str | None = None) -> InspectReport:
    """Describe `ckpt` (already read: no tensor bytes) and list what stock transformers will do wrong with it.

    `source` is how the user named the checkpoint (a folder or a Hub repo id), used in the fix commands.
    """
    layout = analyse(ckpt)
    tables = _Tables(layout)
    source = source or str(ckpt.root)
    fix = fix_command(source, revision, hub=ckpt.remote is not None)
    findings = _Findings(fix)
    special = _special_views(ckpt, layout)
    _layout_findings(findings, layout, tables)
    _special_findings(findings, ckpt, special)
    _tokenizer_findings(findings, layout)
    _weights_findings(findings, ckpt)
    ordered = sorted(findings.items, key=lambda x: (-x.severity.rank, x.code))
    return InspectReport(
        source=ckpt.label if ckpt.remote is not None else source,
        revision=revision,
        layout=layout,
        files=_file_views(ckpt),
        tables=_table_views(ckpt, layout),
        ranges=_ranges(layout, tables),
        special=special,
        tokens=_token_views(list(tokens), layout, tables),
        findings=ordered,
        fix_command=fix,
    )

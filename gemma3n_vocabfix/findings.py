"""What can be wrong with a checkpoint: stable codes and severities, the finding record, and the rules.

A code never changes meaning once released (CI jobs filter on them); add new codes, do not reuse old ones.
`find_problems` runs every rule; `vocabfix inspect` lists what it returns, and `vocabfix rewrite` refuses a
checkpoint with a finding in `BLOCKS_REWRITE`, with the same wording.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum

from .checkpoint import Checkpoint
from .layout import IdKind, Layout, TableRole, table_role
from .routing import route
from .special_ids import GENERATION_KEYS, SpecialId, config_value, is_token_ids, special_ids, token_ids
from .tokenizer_files import RESAVE_TOKENIZER, Conflict


class Severity(str, Enum):
    ERROR = "error"  # stock transformers crashes, refuses to load, or silently computes something else
    WARNING = "warning"  # suspicious, works today, fails `--strict`
    INFO = "info"  # worth knowing, never gates

    @property
    def rank(self) -> int:
        return {"error": 2, "warning": 1, "info": 0}[self.value]


@dataclass(frozen=True)
class Code:
    code: str
    severity: Severity
    title: str


def _codes(*rows: tuple[str, Severity, str]) -> dict[str, Code]:
    return {c: Code(c, s, t) for c, s, t in rows}


E, W, I = Severity.ERROR, Severity.WARNING, Severity.INFO  # noqa: E741
CODES = _codes(
    ("VF001", E, "ids routed to the audio table beyond its rows"),
    ("VF002", E, "audio range does not end at text_config.vocab_size"),
    ("VF003", E, "vision and audio ranges are not [text | vision | audio]"),
    ("VF004", E, "per-layer table covers multimodal ids (transformers 5 resize)"),
    ("VF005", E, "vocabulary table rows disagree with the config"),
    ("VF006", W, "vocabulary table has rows no token uses"),
    ("VF007", E, "tokenizer ids beyond every table"),
    ("VF008", E, "special id names a different token in the config and the tokenizer"),
    ("VF009", W, "config.json and generation_config.json disagree on a special id"),
    ("VF010", E, "tokenizer files disagree about an id"),
    ("VF011", E, "shard named by the index is missing"),
    ("VF012", E, "tensor listed in the index is in no shard"),
    ("VF013", W, "tensor in a shard is not listed in the index"),
    ("VF014", E, "tensor stored in more than one shard"),
    ("VF015", E, "tensor listed under the wrong shard"),
    ("VF016", I, "index total_size differs from the tensor bytes"),
    ("VF017", E, "no embed_tokens table in the weights"),
    ("VF018", E, "an id below the tokenizer's largest names no token"),
    ("VF019", E, "lm_head is untied but not in the weights"),
    ("VF020", E, "vision and audio ranges end past the tokenizer and embed_tokens"),
    ("VF021", E, "vocabulary tensor is not a 2-D table"),
    ("VF022", E, "vision and audio offsets contradict the tokenizer"),
    ("VF023", E, "the evidence of which ids are image and which audio disagrees"),
    ("VF024", E, "vision or audio embedder rows disagree with the config"),
    ("VF025", E, "model.safetensors beside a sharded index"),
    ("VF026", E, "a tensor that follows a vocabulary table's rows would not be re-rowed"),
    ("VF027", W, "lm_head is saved but tie_word_embeddings is true"),
)


REWRITE = "vocabfix rewrite IN OUT"  # the fix of every finding the rewrite fixes, until the caller names IN and OUT
# Problems the rewrite cannot fix or cannot work around: it refuses, citing the finding.
BLOCKS_REWRITE = ("VF010", "VF011", "VF012", "VF013", "VF014", "VF015", "VF017", "VF018", "VF019", "VF020",
                  "VF021", "VF023", "VF024", "VF025", "VF026")
MAX_EXAMPLES = 5
RESAVE_MODEL = "re-save the model with model.save_pretrained(folder), or fix model.safetensors.index.json"


@dataclass
class Finding:
    """One problem: its code (severity and title come from CODES), what goes wrong at run time, and the fix."""

    code: str
    message: str  # one sentence: what goes wrong at run time (token strings already escaped with repr)
    fix: str  # the command (or the edit) that fixes it; REWRITE when `vocabfix rewrite` does
    details: dict = field(default_factory=dict)  # machine-readable facts (ids, rows, tensor names)

    @property
    def severity(self) -> Severity:
        return CODES[self.code].severity

    @property
    def title(self) -> str:
        return CODES[self.code].title

    def to_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity.value, "title": self.title, "message": self.message,
                "fix": self.fix, "details": self.details}


def gate(findings: list[Finding], strict: bool = False) -> int:
    """The exit code: 1 if any finding is at the gated level (error; with `strict` also warning), else 0."""
    floor = Severity.WARNING.rank if strict else Severity.ERROR.rank
    return 1 if any(f.severity.rank >= floor for f in findings) else 0


def show(token: str | None) -> str:
    """A token string for a sentence: repr() quotes it and escapes control characters."""
    return "no token" if token is None else repr(token)


def find_problems(ckpt: Checkpoint, layout: Layout) -> list[Finding]:
    """Every finding for a checkpoint already read and analysed, errors first, then by code.

    A finding the rewrite fixes has `fix == REWRITE`; the caller substitutes the command for the checkpoint.
    """
    found: list[Finding] = []
    for rules in (_layout_findings(layout), _table_findings(layout), _companion_findings(ckpt, layout),
                  _special_findings(ckpt, layout), _tokenizer_findings(layout), _weights_findings(ckpt)):
        found += rules
    return sorted(found, key=lambda f: (-f.severity.rank, f.code))


def _finding(code: str, message: str, fix: str = REWRITE, **details) -> Finding:
    assert code in CODES, code
    return Finding(code, message, fix, details)


def _examples(layout: Layout, start: int, stop: int) -> str:
    names = [show(layout.tokenizer.token(i)) for i in range(start, min(stop, start + MAX_EXAMPLES))]
    return ", ".join(names) + (", ..." if stop - start > MAX_EXAMPLES else "")


def _span(start: int, stop: int) -> str:
    return f"id {start:,}" if stop - start == 1 else f"ids {start:,}..{stop - 1:,}"


def _layout_findings(lay: Layout) -> list[Finding]:
    """VF001-VF004, VF020: where the ranges sit against what stock transformers routes."""
    out = []
    vo, V, ao, A, tok = lay.vision_offset, lay.vision_size, lay.audio_offset, lay.audio_size, lay.tokenizer.size
    audio_rows = lay.rows(TableRole.AUDIO)
    audio_rows = A if audio_rows is None else audio_rows
    lo = ao + audio_rows  # the unbounded audio mask: ids from here on read past the audio table
    if tok > lo:
        out.append(_finding(
            "VF001", f"stock transformers sends every id >= audio_offset {ao:,} to the {audio_rows:,}-row audio "
            f"table, so {_span(lo, tok)} ({tok - lo:,} token(s): {_examples(lay, lo, tok)}) read rows "
            f"{lo - ao:,}..{tok - 1 - ao:,} of embed_audio: any input containing one raises 'IndexError: index "
            "out of range in self' (a device-side assert on CUDA)",
            ids=[lo, tok], count=tok - lo, audio_offset=ao, audio_rows=audio_rows,
            tokens=[lay.tokenizer.token(i) for i in range(lo, min(tok, lo + MAX_EXAMPLES))]))
    if lay.audio_end != lay.vocab_size:  # audio padding embeds vocab_size - 1 with embed_audio
        pad_row = lay.vocab_size - 1 - ao
        effect = ("raises IndexError" if not 0 <= pad_row < audio_rows else
                  f"reads audio row {pad_row:,} instead of the last audio token's row {A - 1:,}")
        out.append(_finding(
            "VF002", f"the audio ids end at {lay.audio_end:,} but text_config.vocab_size is {lay.vocab_size:,}: "
            f"audio shorter than 30 s is padded with id vocab_size - 1 = {lay.vocab_size - 1:,} through embed_audio, "
            f"which {effect}", audio_end=lay.audio_end, vocab_size=lay.vocab_size, padding_row=pad_row))
    if lay.vision_end != ao:
        if ao < vo:
            what = (f"the audio ids [{ao:,}, {lay.audio_end:,}) come before the vision ids [{vo:,}, {lay.vision_end:,}"
                    "): the vision mask (vision_offset <= id < audio_offset) is empty and every vision id is sent to "
                    "embed_audio")
        else:
            what = (f"ids [{lay.vision_end:,}, {ao:,}) between the vision and audio ranges are sent to embed_vision "
                    f"rows {V:,}.. of a {V:,}-row table (IndexError)")
        out.append(_finding("VF003", "stock transformers assumes [text | vision | audio] with audio directly after "
                            f"vision; here {what}", vision=[vo, lay.vision_end], audio=[ao, lay.audio_end]))
    if min(lay.per_layer_size, lay.multimodal_end) > lay.text_end:  # (a table that disagrees with the config: VF005)
        out.append(_finding(
            "VF004", f"vocab_size_per_layer_input is {lay.per_layer_size:,} and embed_tokens_per_layer has "
            f"{lay.rows(TableRole.PER_LAYER) or 0:,} rows, past the first multimodal id {lay.text_end:,} (what "
            "transformers 5's resize_token_embeddings does): image and audio ids read their own, freshly initialised "
            "per-layer rows instead of row 0 as in the released model, which silently changes every image and audio "
            "input", per_layer_size=lay.per_layer_size, per_layer_rows=lay.rows(TableRole.PER_LAYER),
            first_multimodal_id=lay.text_end))
    if lay.offsets_contradict_tokens:
        seen = []
        for start in (lay.vision_start, lay.audio_start):
            r = route(start, lay)
            seen.append(f"{show(lay.tokenizer.token(start))} (id {start:,}) with {r.table.value} row {r.row:,}"
                        + (" (IndexError)" if r.error else ""))
        out.append(_finding(
            "VF022", f"config.json puts the vision ids at [{vo:,}, {lay.vision_end:,}) and the audio ids at [{ao:,}, "
            f"{lay.audio_end:,}), but the tokenizer's image tokens start at {lay.vision_start:,} and its audio tokens "
            f"at {lay.audio_start:,}: stock transformers embeds {seen[0]} and {seen[1]} (the rewrite corrects the "
            "offsets, not the tokens)", config_vision_offset=vo, config_audio_offset=ao,
            vision_start=lay.vision_start, audio_start=lay.audio_start))
    if lay.evidence_conflict:
        out.append(_finding("VF023", f"{lay.evidence_conflict}: which ids are image and which audio cannot be told",
                            "make the tokenizer, image_token_id / audio_token_id and the vision / audio offsets agree "
                            "(as in the released checkpoint) by hand", conflict=lay.evidence_conflict))
    embed_rows = lay.rows(TableRole.EMBED_TOKENS)
    if embed_rows is not None and lay.multimodal_end > max(tok, embed_rows):
        out.append(_finding(
            "VF020", f"config.json puts the vision and audio ids up to {lay.multimodal_end:,}, past both the "
            f"tokenizer's {tok:,} ids and embed_tokens' {embed_rows:,} rows: the offsets or the tokenizer are wrong",
            "set vision_config / audio_config vocab_offset to the ids the tokenizer gives the image and audio tokens",
            multimodal_end=lay.multimodal_end, tokenizer_size=tok, embed_rows=embed_rows))
    return out


def _table_findings(lay: Layout) -> list[Finding]:
    """VF005-VF007, VF017, VF019, VF021, VF024, VF027: every vocabulary table against the config and the
    tokenizer."""
    out = []
    embed_rows, tok = lay.rows(TableRole.EMBED_TOKENS), lay.tokenizer.size
    for tensor in lay.malformed:
        out.append(_finding("VF021", f"{tensor.name} has shape {list(tensor.shape)} {tensor.dtype}, not a table of "
                            "non-empty rows: from_pretrained fails with a size mismatch", RESAVE_MODEL,
                            tensor=tensor.name, shape=list(tensor.shape)))
    if embed_rows is None and not any(table_role(t.name) is TableRole.EMBED_TOKENS for t in lay.malformed):
        out.append(_finding("VF017", "no model.language_model.embed_tokens.weight in the shards: from_pretrained "
                            "initialises the text embedding at random", "re-save the model with "
                            "model.save_pretrained(folder)"))
    if not lay.tied and not lay.tables_of(TableRole.LM_HEAD):
        out.append(_finding("VF019", "config.json sets tie_word_embeddings to false but the shards hold no "
                            "lm_head.weight: from_pretrained initialises the output layer at random",
                            "set tie_word_embeddings to true in config.json, or save the trained lm_head with the "
                            "model"))
    if lay.tied and lay.tables_of(TableRole.LM_HEAD):
        out.append(_finding(
            "VF027", "lm_head.weight is saved but tie_word_embeddings is true (the default when absent): transformers "
            "4.5x ties lm_head to embed_tokens and drops the saved one, transformers 5 loads it, so the output layer "
            "depends on the runtime (a LoRA merge with modules_to_save=['lm_head'] saves this way)",
            "set tie_word_embeddings to false in config.json if the saved lm_head is the trained one, else drop it"))
    for table in lay.tables:
        want, key = lay.config_rows(table)
        if table.rows != want and table.holds in (IdKind.EVERY, IdKind.TEXT):
            out.append(_finding(
                "VF005", f"{table.tensor.name} has {table.rows:,} rows but {key} is {want:,}: from_pretrained fails "
                f"with a size mismatch for {table.role.value} (or, with ignore_mismatched_sizes, re-initialises it at "
                "random)", tensor=table.tensor.name, rows=table.rows, config_key=key, config_rows=want))
        elif table.rows != want:
            out.append(_finding(
                "VF024", f"{table.tensor.name} has {table.rows:,} rows but {key} is {want:,}: from_pretrained fails "
                f"with a size mismatch for {table.role.value}, and the rewrite cannot tell which is right",
                f"set {key} to {table.rows} in config.json, or restore the {want}-row table it was trained with",
                tensor=table.tensor.name, rows=table.rows, config_key=key, config_rows=want))
        if table.holds is IdKind.EVERY and table.rows > lay.total:
            out.append(_finding(
                "VF006", f"{table.tensor.name} has {table.rows:,} rows but the tokenizer defines {tok:,} ids: rows "
                f"{lay.total:,}..{table.rows - 1:,} belong to no token (resize_token_embeddings(pad_to_multiple_of=...)"
                " padding), and counting them in vocab_size moves where stock transformers expects the audio range to "
                "end", tensor=table.tensor.name, rows=table.rows, tokenizer_size=tok))
    if embed_rows is not None and tok > embed_rows:
        out.append(_finding(
            "VF007", f"the tokenizer defines {_span(embed_rows, tok)} ({_examples(lay, embed_rows, tok)}) but "
            f"embed_tokens has {embed_rows:,} rows and no other table holds them: tokenizing text with one of them "
            "gives an id the model cannot embed (IndexError); the rewrite gives them the mean of the text rows, to be "
            "fine-tuned", ids=[embed_rows, tok], embed_rows=embed_rows))
    return out


def _companion_findings(ckpt: Checkpoint, lay: Layout) -> list[Finding]:
    """VF026: tensors beside a vocabulary table with one row per id (a quantised save's per-row scales) would keep
    their old rows while the table is re-rowed."""
    out = []
    for table in lay.tables:
        prefix = table.tensor.name[: -len("weight")]
        for name, tensor in ckpt.weights.tensors.items():
            if name != table.tensor.name and name.startswith(prefix) and tensor.rows == table.rows:
                out.append(_finding("VF026", f"{name} has one row per row of {table.tensor.name}: the rewrite would "
                                    "move the table's rows and not its, so they would no longer match",
                                    "dequantise or save the model without per-row companions, then rewrite",
                                    tensor=name, table=table.tensor.name))
    return out


def _special_findings(ckpt: Checkpoint, lay: Layout) -> list[Finding]:
    """VF008, VF009: special ids against the tokenizer, and config.json against generation_config.json."""
    out = [_special_mismatch(v) for v in special_ids(ckpt, lay.tokenizer) if not v.agrees]
    gen = ckpt.generation_config or {}
    for key in GENERATION_KEYS:
        a, b = config_value(ckpt, key), gen.get(key)
        # one a subset of the other (unsloth's config eos 106 beside generation [1, 106]) is a choice, not a clash
        if a is not None and b is not None and not (set(token_ids(a)) <= set(token_ids(b))
                                                    or set(token_ids(b)) <= set(token_ids(a))):
            out.append(_finding("VF009", f"config.json says {key} = {a} but generation_config.json says {b}: "
                                "generate() uses generation_config.json, other engines read config.json",
                                f"make {key} the same in both files", key=key, config=a, generation=b))
    return out


def _where(v: SpecialId) -> str:
    return f"id {v.expected_id}" if v.expected_id is not None else "not in the tokenizer"


def _special_mismatch(v: SpecialId) -> Finding:
    # the file whose value is wrong: config.json's, unless only generation_config.json's is no integer id
    from_generation = v.config is None or (v.generation is not None and not is_token_ids(v.generation)
                                           and is_token_ids(v.config))
    where = "generation_config.json" if from_generation else "config.json"
    value = v.generation if from_generation else v.config
    named = ", ".join(show(t) for t in v.tokens)
    if not is_token_ids(value):
        effect = (f"{v.key} must be an integer token id: stock transformers compares input ids with "
                  f"{json.dumps(value)}, which no id equals")
    elif v.key == "eos_token_id":
        effect = f"generation does not stop at the tokenizer's eos_token {show(v.expected)} ({_where(v)})"
    elif v.key in ("image_token_id", "audio_token_id"):
        kind = v.key.split("_")[0]
        effect = (f"the processor inserts {show(v.expected)} ({_where(v)}) for each {kind} soft token, but "
                  f"get_placeholder_mask looks for id {value}: '{kind.capitalize()} features and {kind} tokens do not "
                  "match'")
    else:
        effect = (f"the tokenizer's {v.tokenizer_key} is {show(v.expected)} ({_where(v)}), so code that reads "
                  f"{v.key} from the config uses a different token than the processor")
    fix = (f"set {v.key} to {v.expected_id} in {where} (the tokenizer's id of {show(v.expected)})"
           if v.expected_id is not None else
           f"make the tokenizer define {show(v.expected)}, or point {v.key} at the token it should name")
    return _finding("VF008", f"{where} says {v.key} = {json.dumps(value)}, which the tokenizer names "
                    f"{named or 'no token'}; {effect}", fix,
                    key=v.key, value=value, tokens=list(v.tokens), expected=v.expected, expected_id=v.expected_id)


def _tokenizer_findings(lay: Layout) -> list[Finding]:
    """VF010, VF018: the tokenizer files against each other."""
    out = [_finding("VF010", _conflict_effect(c), f"make {c.source} and {c.other_source} name id {c.id} the "
                    f"same token (finish or undo the rename in every tokenizer file)", conflict=str(c), id=c.id,
                    tokens=[c.token, c.other], files=[c.source, c.other_source]) for c in lay.tokenizer.conflicts]
    unnamed = lay.tokenizer.first_unnamed_id()
    if unnamed is not None:
        out.append(_finding("VF018", f"the tokenizer files name no token for id {unnamed:,}, below their largest id "
                            f"{lay.tokenizer.size - 1:,}: the ids cannot be renumbered", RESAVE_TOKENIZER, id=unnamed))
    return out


def _conflict_effect(c: Conflict) -> str:
    """What stock transformers does with an id two tokenizer files name differently (checked with transformers 5.24
    on a half-done `<unusedN>` rename: tokenizer_config.json edited, tokenizer.json not)."""
    if c.source == "tokenizer.json":
        return (f"{c}: the fast tokenizer keeps {c.token!r} at id {c.id:,} (tokenizer.json) and registers "
                f"{c.other!r} from {c.other_source} as an extra token numbered past tokenizer.json's vocabulary "
                "(transformers 5.24; the tokens added after it can move up by one), so the model reads a multimodal "
                "or out-of-range row for it: text containing it runs wrong or raises IndexError (a half-done rename "
                "of an <unusedN> token)")
    return (f"{c}: tokenizers built from different files read id {c.id:,} as different tokens, so the same text "
            "encodes differently (and the rewrite cannot tell which name to keep)")


def _weights_findings(ckpt: Checkpoint) -> list[Finding]:
    """VF011-VF016, VF025: model.safetensors.index.json against the shard headers."""
    w, out = ckpt.weights, []
    for name in w.missing_shards:
        out.append(_finding("VF011", f"model.safetensors.index.json names {name!r}, which is not in the checkpoint: "
                            "from_pretrained fails with a missing-file error", RESAVE_MODEL, shard=name))
    for code, names, what in (
            ("VF012", w.listed_not_found, "listed in the index are in no shard ({}): from_pretrained reports them "
             "missing and initialises them at random"),
            ("VF013", w.found_not_listed, "in the shards are not listed in the index ({}): loaders that follow the "
             "index never read them"),
            ("VF014", w.duplicates, "are stored in more than one shard ({}): which copy a loader uses depends on the "
             "order it reads the shards"),
            ("VF015", w.misplaced, "are listed under a shard that does not hold them ({}): a loader that follows the "
             "index looks for them in the wrong file")):
        if names:
            out.append(_finding(code, f"{len(names)} tensor(s) " + what.format(f"e.g. {names[0]!r}"), RESAVE_MODEL,
                                tensors=names[:50], count=len(names)))
    if w.single_beside_index:
        out.append(_finding(
            "VF025", "model.safetensors sits beside model.safetensors.index.json: from_pretrained loads "
            "model.safetensors and never reads the shards the index names, other loaders follow the index, so the "
            "two may run different weights", "remove whichever is stale (the one you did not just save)"))
    total = ((w.index or {}).get("metadata") or {}).get("total_size")
    if isinstance(total, int) and not isinstance(total, bool):
        actual = sum(s.data_bytes for s in w.shards)
        if total != actual and not w.missing_shards:
            out.append(_finding("VF016", f"the index's metadata.total_size is {total:,} bytes but the shards hold "
                                f"{actual:,} bytes of tensors: only progress bars and size estimates read it",
                                RESAVE_MODEL, total_size=total, tensor_bytes=actual))
    return out

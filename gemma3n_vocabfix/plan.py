"""Plan a rewrite: what every output file is made of, computed before a byte is written (but for the tokenizer
files, which a rewrite lets a thread renumber while the writer copies the shards: make_plan's `background`).

`rewrite --dry-run` renders the plan; writer.py executes it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .checkpoint import INDEX_NAME, RECORD_NAME, SENTENCEPIECE_FILE, Checkpoint, tokenizer_json_as_read
from .config_files import FieldChange, dump_json, rewrite_config, rewrite_generation_config
from .errors import CheckpointError, LayoutError, UsageError
from .id_map import IdMap
from .json_splice import Style, Unprovable, dump_like, splice
from .layout import Layout
from .rows import INIT_MODES, MEAN, Init, TablePlan, plan_table
from .safetensors_header import DTYPE_SIZES, ShardHeader
from .tokenizer_files import (
    renumber_added_tokens,
    renumber_sentencepiece,
    renumber_tokenizer_config,
    renumber_tokenizer_json,
)

MEAN_DTYPES = ("F32", "F16", "BF16", "F64")


@dataclass
class ShardPlan:
    """One output shard: the input shard's tensors in their order, with the changed tables re-rowed."""

    name: str  # path relative to the checkpoint, the same in the output
    source: ShardHeader
    tables: dict[str, TablePlan]  # the tensors of this shard that change

    @property
    def changed(self) -> bool:
        return bool(self.tables)

    def out_tensors(self) -> list[tuple[str, str, tuple[int, ...], int]]:
        out = []
        for t in self.source.tensors:
            table = self.tables.get(t.name)
            out.append((t.name, t.dtype, table.shape_out, table.nbytes_out) if table else
                       (t.name, t.dtype, t.shape, t.nbytes))
        return out

    @property
    def metadata(self) -> dict[str, str]:
        return {"format": "pt", **self.source.metadata}


@dataclass(frozen=True)
class SourceBytes:
    """A byte range of an input file, copied as it is."""

    path: Path
    start: int
    stop: int


@dataclass
class FileOutput:
    """One output file other than a shard: copied, or made of new bytes and byte ranges of input files."""

    name: str
    parts: list[bytes | SourceBytes] | None = None  # None: copied unchanged from the input


@dataclass
class Plan:
    """A complete rewrite: what `--dry-run` shows and `write_plan` executes. Computed before a byte is written, but
    for `later` (the tokenizer files, when make_plan ran them in the background), which `settle` waits for."""

    checkpoint: Checkpoint
    layout: Layout
    tables: list[TablePlan]
    shards: list[ShardPlan]
    files: list[FileOutput]
    changes: list[FieldChange] = field(default_factory=list)
    init: Init = MEAN
    later: Future | None = field(default=None, repr=False)  # more of `files`, still being computed (make_plan)

    def settle(self) -> None:
        """Wait for the outputs make_plan computes in the background (the tokenizer files) and add them to `files`.
        Raises what computing them raised (CheckpointError)."""
        if self.later is not None:
            self.files += self.later.result()
            self.later = None

    def raise_if_failed(self) -> None:
        """Raise now what the background outputs raised, if they are done; never waits."""
        if self.later is not None and self.later.done():
            self.later.result()

    def __repr__(self) -> str:  # never waits for `later`
        tables = [t.name for t in self.changed_tables]
        files = [f.name for f in self.files if f.parts is not None] + ["..."] * (self.later is not None)
        return f"Plan({self.checkpoint.label!r}, changed={self.changed}, tables={tables}, files={files})"

    @property
    def changed(self) -> bool:
        return not self.layout.is_consistent

    def summary(self) -> dict:
        """What the rewrite changes: layouts, id map, table rows, config fields (vocabfix.json and --json)."""
        return {
            "appended_tokens": self.layout.appended,
            "moved_text_ids": self.layout.moved_text_ids,
            "layout_before": self.layout.before.to_dict(),
            "layout_after": self.layout.after.to_dict(),
            "id_map": self.layout.id_map.to_json(),
            **self._placement(),
            "tensors": [{"name": t.name, "rows_before": t.source.rows, "rows_after": t.rows_out,
                         "rows_copied": t.rows_copied, "rows_from_row_0": t.rows_from_row_0,
                         "rows_initialised_to_mean": t.rows_initialised if t.init.mode == "mean" else 0,
                         "rows_initialised": t.rows_initialised, "rows_reinitialised": t.rows_reinitialised,
                         "rows_dropped": t.rows_dropped, "new_rows": t.new_rows()} for t in self.changed_tables],
            "init": {"mode": str(self.init), "reinit": self.init.reinit},
            "config_changes": [{"file": c.file, "key": c.key, "old": c.old, "new": c.new} for c in self.changes],
        }

    def _placement(self) -> dict:
        lay = self.layout
        if lay.strategy != "unused":
            return {"strategy": lay.strategy}
        return {"strategy": "unused",
                "slots": {lay.tokenizer.token(old) or str(old): slot for old, slot in lay.slot_of.items()},
                "id_map_dropped": lay.id_map.dropped_json(),
                "id_map_dropped_note": "old ids in each [old_start, old_stop) of id_map_dropped have no new id: they "
                                       "were <unusedN> slots, now the appended tokens' (see slots)"}

    @property
    def shard_bytes(self) -> int:
        """The bytes a write reports progress for: every output tensor of a changed shard, every unchanged shard
        whole (bytes, what the progress display's total is)."""
        return sum(sum(n for *_, n in s.out_tensors()) if s.changed else s.source.file_size for s in self.shards)

    @property
    def changed_tables(self) -> list[TablePlan]:
        return [t for t in self.tables if t.changed]

    @property
    def rewritten_files(self) -> list[str]:
        self.settle()
        return ([f.name for f in self.files if f.parts is not None]
                + [s.name for s in self.shards if s.changed])


def make_plan(ckpt: Checkpoint, layout: Layout, init: Init = MEAN, *, background: bool = False) -> Plan:
    """What every output file is made of: changed tables as row segments, rewritten small files as bytes, every
    other file copied. Opens no file: the tokenizer files and the previous record come with `ckpt` (and `init` was
    resolved by `resolve_init`).

    `background`: renumber the tokenizer files on a thread, for a writer that copies the shards meanwhile (most of
    the rewrite's fixed cost on Gemma's 262k-token files: the kernel copies while Python renumbers); they join
    `files` at `Plan.settle`, which also raises their errors.

    Raises LayoutError when new rows cannot be initialised (an integer table, or a table with no text rows) and
    CheckpointError when a tokenizer file cannot be renumbered (at `settle` with `background`).
    """
    if layout.is_consistent:
        return _copy_plan(ckpt, layout, init)
    tables = [plan_table(t, layout, init) for t in layout.tables]
    check_initialisable(tables)
    changed_tables = {t.name: t for t in tables if t.changed}
    shards = [ShardPlan(_rel(ckpt, s.path), s, {t.name: changed_tables[t.name] for t in s.tensors
                                                if t.name in changed_tables})
              for s in ckpt.weights.shards]
    outputs, changes = rewrite_config_files(ckpt, layout)
    outputs[INDEX_NAME] = _index_bytes(ckpt, shards)
    plan = Plan(ckpt, layout, tables, shards, [], changes, init)
    outputs[RECORD_NAME] = dump_json(_record(plan))
    later = [n for n in ckpt.files if n in TOKENIZER_FILES]
    plan.files = _file_outputs([n for n in ckpt.files if not _is_shard(ckpt, n) and n not in later], outputs)
    if background:
        plan.later = Future()
        # a daemon thread: a run that stops (an error, Ctrl-C) exits without waiting for what it no longer needs
        threading.Thread(target=_run_into, args=(plan.later, _tokenizer_outputs, ckpt, layout, later),
                         name="vocabfix-tokenizer", daemon=True).start()
    else:
        plan.files += _tokenizer_outputs(ckpt, layout, later)
    return plan


def _copy_plan(ckpt: Checkpoint, layout: Layout, init: Init) -> Plan:
    """Nothing to re-lay-out: every file copied. But an earlier rewrite's vocabfix.json would then claim to be the
    record of this one (`verify`, `remap-ids --map OUT` would apply its id map again): it is replaced by this
    rewrite's record, the identity map, with the earlier one kept under "previous"."""
    plan = Plan(ckpt, layout, [], [ShardPlan(_rel(ckpt, s.path), s, {}) for s in ckpt.weights.shards], [], init=init)
    earlier = RECORD_NAME in ckpt.files
    plan.files = [FileOutput(n) for n in ckpt.files if not _is_shard(ckpt, n) and not (earlier and n == RECORD_NAME)]
    if earlier:
        plan.files.append(FileOutput(RECORD_NAME, [dump_json(_record(plan))]))
    return plan


def _run_into(future: Future, fn: Callable, *args: object) -> None:
    future.set_running_or_notify_cancel()
    try:
        future.set_result(fn(*args))
    except BaseException as e:  # noqa: BLE001 - handed to whoever waits for the result
        future.set_exception(e)


def _tokenizer_outputs(ckpt: Checkpoint, layout: Layout, names: list[str]) -> list[FileOutput]:
    return _file_outputs(names, rewrite_tokenizer_files(ckpt, layout))


def _file_outputs(names: list[str], outputs: dict[str, bytes | list | None]) -> list[FileOutput]:
    """A FileOutput for each of `names` (an input file): copied where `outputs` has no new content for it; then
    one for each new file in `outputs` (the record)."""
    copied = [FileOutput(n) for n in names if outputs.get(n) is None]
    return copied + [FileOutput(n, c if isinstance(c, list) else [c]) for n, c in outputs.items() if c is not None]


def _rel(ckpt: Checkpoint, path: Path) -> str:
    return path.relative_to(ckpt.root).as_posix()


def _is_shard(ckpt: Checkpoint, name: str) -> bool:
    return any(name == _rel(ckpt, s.path) for s in ckpt.weights.shards)


def check_initialisable(tables: list[TablePlan]) -> None:
    """New rows need a floating-point table, and (but for init zeros and copy) text rows to average."""
    for t in tables:
        if t.rows_initialised and t.source.dtype not in MEAN_DTYPES:
            raise LayoutError(f"{t.name}: {t.source.dtype} rows cannot be initialised (only {', '.join(MEAN_DTYPES)})")
        if t.rows_initialised and not t.mean_of_rows and t.init.mode not in ("zeros", "copy"):
            raise LayoutError(f"{t.name}: {t.rows_initialised} new rows would be made from the text rows "
                              f"(init {t.init.mode}), but the table has no text rows")


def parse_init(init: str, reinit: bool = False) -> Init:
    """`mean`, `zeros`, `normal`, `subtoken` or `copy:TOKEN` as an unresolved Init; UsageError otherwise."""
    if not isinstance(init, str):
        raise UsageError(f"init must be a string, not {type(init).__name__}")
    mode, sep, token = init.partition(":")
    if mode == "copy" and sep and token:
        return Init("copy", bool(reinit), token=token)
    if mode == "copy":
        raise UsageError("init copy needs a token: copy:TOKEN", hint="e.g. --init 'copy:<eos>'")
    if sep or mode not in INIT_MODES:
        raise UsageError(f"unknown init {init!r}", hint="use mean, zeros, normal, subtoken or copy:TOKEN")
    return Init(mode, bool(reinit))


def resolve_init(init: str | Init, layout: Layout, tokenizer_json: Path | None, reinit: bool = False) -> Init:
    """`init` resolved against the input: copy's token id, subtoken's pieces for every moved text id (the tokens
    the init may apply to), split by the input's tokenizer.json without those tokens (the original tokenizer).

    Raises UsageError for an unknown init, a copy token the input does not have (or one that is not a text token
    below the moved ids), and subtoken without a tokenizer.json (or without the tokenizers library).
    """
    parsed = parse_init(init, reinit) if isinstance(init, str) else init
    moved = layout.moved_ids
    if parsed.mode == "copy":
        token_id = layout.tokenizer.id_of(parsed.token)
        if token_id is None:
            raise UsageError(f"init copy:{parsed.token}: the input's tokenizer has no token {parsed.token!r}",
                             hint="name an existing text token, e.g. copy:<eos>")
        if token_id >= layout.text_end:
            raise UsageError(f"init copy:{parsed.token}: {parsed.token!r} (id {token_id}) is not one of the input's "
                             "text tokens below the image and audio ids", hint="name an existing text token")
        return Init("copy", parsed.reinit, parsed.token, token_id)
    if parsed.mode != "subtoken":
        return parsed
    if tokenizer_json is None or not Path(tokenizer_json).is_file():
        raise UsageError("init subtoken needs the input's tokenizer.json, and the input has none",
                         hint="use another init, or save the tokenizer with a fast tokenizer")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise UsageError("init subtoken needs the tokenizers library", hint="pip install tokenizers") from None
    data = json.loads(Path(tokenizer_json).read_bytes())
    dropped = set(moved)
    data["added_tokens"] = [t for t in data.get("added_tokens") or [] if t.get("id") not in dropped]
    try:
        original = Tokenizer.from_str(json.dumps(data))
    except Exception as e:  # the tokenizers library raises a bare Exception for a tokenizer.json it cannot load
        raise CheckpointError(f"{tokenizer_json}: init subtoken: the tokenizers library cannot load it ({e})",
                              hint="use another init, or re-save the tokenizer") from None
    pieces, texts = {}, {}
    for old in moved:
        text = layout.tokenizer.token(old)
        texts[old] = text
        ids = original.encode(text, add_special_tokens=False).ids if text else []
        pieces[old] = tuple(p for p in ids if 0 <= p < layout.text_end)
        for p in pieces[old]:
            texts.setdefault(p, original.id_to_token(p))
    return Init("subtoken", parsed.reinit, pieces=pieces, texts=texts)


def rewrite_small_files(ckpt: Checkpoint, layout: Layout) -> tuple[dict[str, bytes | list | None], list[FieldChange]]:
    """New contents of the JSON and tokenizer files; None for a file whose content does not change."""
    out, changes = rewrite_config_files(ckpt, layout)
    return {**out, **rewrite_tokenizer_files(ckpt, layout)}, changes


def rewrite_config_files(ckpt: Checkpoint, layout: Layout) -> tuple[dict[str, bytes | None], list[FieldChange]]:
    """New config.json and generation_config.json (None: unchanged), and the fields that change."""
    config, changes = rewrite_config(ckpt.config, layout)
    out: dict[str, bytes | None] = {"config.json": _json_file_if_changed(ckpt, "config.json", ckpt.config, config)}
    if ckpt.generation_config is not None:
        gen, gen_changes = rewrite_generation_config(ckpt.generation_config, layout.id_map)
        out["generation_config.json"] = _json_file_if_changed(ckpt, "generation_config.json",
                                                              ckpt.generation_config, gen)
        changes += gen_changes
    return out, changes


def rewrite_tokenizer_files(ckpt: Checkpoint, layout: Layout) -> dict[str, bytes | list | None]:
    """New contents of the tokenizer files that hold ids (None: unchanged); tokenizer.json as parts."""
    tokenizer = renumber_tokenizer_files(ckpt, layout.id_map, layout.tokenizer.added, layout.new_text_size)
    out: dict[str, bytes | list | None] = {}
    for name, after in tokenizer.items():
        if name == "tokenizer.json":
            out[name] = _tokenizer_json_parts(ckpt, after)
        elif name == SENTENCEPIECE_FILE:
            out[name] = after if after != ckpt.sentencepiece else None
        else:
            out[name] = _json_file_if_changed(ckpt, name, _TOKENIZER_JSON_FILES[name](ckpt), after)
    return out


_TOKENIZER_JSON_FILES = {"tokenizer.json": lambda c: c.tokenizer_json,
                         "tokenizer_config.json": lambda c: c.tokenizer_config,
                         "added_tokens.json": lambda c: c.added_tokens}
TOKENIZER_FILES = (*_TOKENIZER_JSON_FILES, SENTENCEPIECE_FILE)  # the files renumber_tokenizer_files may rewrite


def renumber_tokenizer_files(ckpt: Checkpoint, new_id: IdMap, added: dict[int, str],
                             text_size: int) -> dict[str, dict | bytes]:
    """Every tokenizer file of `ckpt` that holds ids, renumbered by `new_id`: the JSON files parsed, tokenizer.model
    as bytes. `added`: the input's added tokens by old id; `text_size`: the text ids after the rewrite. `verify`
    calls it with the id map a rewrite recorded. Raises CheckpointError when a file cannot be renumbered."""
    added_by_new_id = {new_id(i): tok for i, tok in added.items() if new_id(i) is not None}
    out: dict[str, dict | bytes] = {}
    if ckpt.tokenizer_json is not None:
        out["tokenizer.json"] = renumber_tokenizer_json(ckpt.tokenizer_json, new_id, added_by_new_id)
    if ckpt.tokenizer_config is not None:
        out["tokenizer_config.json"] = renumber_tokenizer_config(ckpt.tokenizer_config, new_id)
    if ckpt.added_tokens is not None:
        out["added_tokens.json"] = renumber_added_tokens(ckpt.added_tokens, new_id)
    if ckpt.sentencepiece is not None:
        out[SENTENCEPIECE_FILE] = renumber_sentencepiece(ckpt.sentencepiece, new_id, added_by_new_id, text_size)
    return out


def _tokenizer_json_parts(ckpt: Checkpoint, renumbered: dict) -> list | None:
    """tokenizer.json renumbered, in the input's formatting: the input's bytes wherever the content does not change
    (the BPE merges, which the reader left out, the other sections, the vocabulary entries that keep their id),
    new text in the input's style where it does (json_splice.py). When the splice cannot be proved, the whole
    document is written again in the input's indentation (compact when the input cannot be read back), the merges
    still copied as bytes."""
    if renumbered == ckpt.tokenizer_json:
        return None
    path, span = ckpt.root / "tokenizer.json", ckpt.tokenizer_json_merges
    doc = tokenizer_json_as_read(path, span)
    if doc is not None:
        try:
            return _spliced_parts(path, doc, span, splice(doc, ckpt.tokenizer_json, renumbered))
        except Unprovable:
            pass
    content = dump_like(renumbered, doc)
    marker = b'"merges"' + (Style(doc).kv.encode() if doc is not None else b":") + b"[]"
    at = content.rfind(marker)
    if span is None or at < 0:
        return [content]
    return [content[:at + len(marker) - 2], SourceBytes(path, *span), content[at + len(marker):]]


_INLINE_BELOW = 1 << 16  # unchanged ranges of tokenizer.json shorter than this are copied into the plan as bytes


def _spliced_parts(path: Path, doc: bytes, merges: tuple[int, int] | None, pieces: list) -> list:
    """json_splice's pieces as parts of the output file: a range of `doc` (the file with its merges cut out as
    `[]`) becomes a range of the file, the merges themselves a range of the file; short ranges are inlined."""
    cut, shift = (merges[0], merges[1] - merges[0] - 2) if merges is not None else (len(doc) + 2, 0)
    out: list[bytes | SourceBytes] = []
    pending = bytearray()

    def copy(start: int, stop: int) -> None:
        if stop - start < _INLINE_BELOW:
            pending.extend(doc[start:stop])
            return
        if pending:
            out.append(bytes(pending))
            pending.clear()
        offset = start if start < cut else start + shift
        out.append(SourceBytes(path, offset, offset + stop - start))

    for piece in pieces:
        if isinstance(piece, bytes):
            pending.extend(piece)
            continue
        start, stop = piece
        if cut < start < cut + 2 or cut < stop < cut + 2:
            raise Unprovable("a spliced range ends inside the merges")
        if start < cut + 2 <= stop and merges is not None:
            copy(start, cut)
            if pending:
                out.append(bytes(pending))
                pending.clear()
            out.append(SourceBytes(path, *merges))
            copy(cut + 2, stop)
        else:
            copy(start, stop)
    if pending:
        out.append(bytes(pending))
    return out


def _json_file_if_changed(ckpt: Checkpoint, name: str, before: dict, after: dict) -> bytes | None:
    """The new content of the JSON file `name` (parsed as `before`, renumbered to `after`), None when unchanged:
    spliced into the input's bytes, so that its formatting is kept and a large file (tokenizer_config.json's
    6.7k added tokens) is not re-serialised. Written whole: in the input's style (dump_like) when the splice
    cannot be proved, by dump_json when the file can no longer be read or no longer parses to `before`."""
    if _unchanged(before, after):
        return None
    try:
        doc = (ckpt.root / name).read_bytes()
        if json.loads(doc) != before:
            return dump_json(after)
    except (OSError, ValueError, RecursionError):  # ValueError: JSON or UTF-8 that does not decode
        return dump_json(after)
    try:
        return b"".join(doc[p[0]:p[1]] if isinstance(p, tuple) else p for p in splice(doc, before, after))
    except Unprovable:
        return dump_like(after, doc)


def _unchanged(before: dict, after: dict) -> bool:
    # Dict equality ignores key order, so a renumbering that moves nothing keeps the file byte for byte.
    return before == after and list(before) == list(after)


def _json_if_changed(before: dict, after: dict) -> bytes | None:
    return None if _unchanged(before, after) else dump_json(after)


def _index_bytes(ckpt: Checkpoint, shards: list[ShardPlan]) -> bytes | None:
    if ckpt.weights.index is None:
        return None
    index = json.loads(json.dumps(ckpt.weights.index))
    metadata = index.setdefault("metadata", {})
    metadata["total_size"] = sum(nbytes for s in shards for *_, nbytes in s.out_tensors())
    if isinstance(metadata.get("total_parameters"), int):
        delta = sum((t.rows_out - t.source.rows) * (t.source.row_bytes // DTYPE_SIZES[t.source.dtype])
                    for s in shards for t in s.tables.values())
        metadata["total_parameters"] += delta
    return _json_if_changed(ckpt.weights.index, index)


def _record(plan: Plan) -> dict:
    record = {"vocabfix_version": __version__, **plan.summary(),
              "id_map_note": "old ids in [old_start, old_stop) became new_start + (id - old_start)"}
    # every file OUT will hold (plan.files is not set yet: the input's files, the shards, this record), so that a
    # later `rewrite --force` replaces this folder only if nothing else was put in it (writer.check_replaceable)
    record["files"] = sorted(set(plan.checkpoint.files) | {s.name for s in plan.shards} | {RECORD_NAME})
    if plan.checkpoint.previous_record is not None:
        record["previous"] = plan.checkpoint.previous_record
    elif plan.checkpoint.previous_record_problem is not None:
        record["previous_unreadable"] = plan.checkpoint.previous_record_problem
    return record

"""`vocabfix remap-adapter`: carry a PEFT adapter trained on an extended checkpoint over to its rewrite.

An adapter saved by `save_pretrained` on the extended model speaks the old ids wherever it holds something indexed by
token id. This module rewrites every such tensor with the id map of the rewrite (OUT/vocabfix.json):

- rows of full vocabulary tables: `modules_to_save` copies of `embed_tokens`, `embed_tokens_per_layer` and `lm_head`,
  and the base tables PEFT saves beside a LoRA on them (`save_embedding_layers`): saved as `<module>.weight` or
  `<module>.base_layer.weight`;
- columns of `lora_embedding_A` (r x num_embeddings: one column per id) of a LoRA on `embed_tokens` /
  `embed_tokens_per_layer` (`lora_embedding_B` has no id dimension: unchanged);
- rows of `lora_B` (num_ids x r) of a LoRA on `lm_head`;
- the adapter config's own id lists: `trainable_token_indices` (a list, or {module: [ids]}), `token_indices`
  (TrainableTokensConfig) and `alora_invocation_tokens`. The saved `trainable_tokens_delta` rows follow the order of
  the indices, which is kept, so they stay aligned with the mapped ids (same bytes).

The output tables have the rewritten base's row counts (the record's `tensors` rows_after, else its `layout_after`
sizes), and each is planned by the rewrite's own `rows.plan_table` on the adapter's tensor: row r holds the input row
of old id `id_map.inverse(r)`; a per-layer row the input lacks for an id the base could embed is row 0 (what stock
transformers reads); rows for ids no runtime could embed are the mean of the table's text rows for full tables and
zeros for LoRA deltas (no adaptation); rows of ids the new layout drops are dropped. Rows move as bytes (the writer's
`_write_table`, streamed; `lora_embedding_A`, at most r x num_ids, is read whole).

Every other tensor keeps its bytes; the output is staged beside OUT, flushed and renamed into place (as `rewrite`);
the input is only read. Anything vocabfix cannot remap is refused with one line: a pickled `adapter_model.bin`, a
tensor of an unknown kind on a vocabulary table (DoRA, IA3, ...), an id dimension that does not match the map's
checkpoint (wrong --map), an id in the config that the new layout drops or the map does not know.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .checkpoint import JSON_TOKENIZER_FILES, RECORD_NAME, SENTENCEPIECE_FILE
from .config_files import dump_json
from .errors import CheckpointError, LayoutError, OutputError
from .id_map import IdMap
from .layout import TableRole, VocabTable
from .rows import CopyRows, Init, InitRows, PadRow, TablePlan, plan_table
from .safetensors_header import DTYPE_SIZES, ShardHeader, TensorInfo, encode_header, read_header
from .writer import (
    CHECKPOINT_FILES,
    STAGE_MARKER,
    ProgressFn,
    _copy_file,
    _copy_range,
    _fsync_folders,
    _fsync_path,
    _make_stage,
    _write_all,
    _write_table,
    move_into_place,
    remove_stale_stages,
    writing_failed,
)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_BIN = "adapter_model.bin"
ADAPTER_RECORD = "vocabfix-adapter.json"
#: Files beside an adapter that hold token ids of the base: replaced by the rewritten checkpoint's copy when the
#: folder of --map has one, otherwise not copied (an old-id tokenizer beside a remapped adapter is a silent trap).
ID_FILES = (*JSON_TOKENIZER_FILES, SENTENCEPIECE_FILE, "config.json", "generation_config.json")
#: What --force may replace in OUT without a record listing it: an adapter folder's files and checkpoint files.
ADAPTER_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_BIN, ADAPTER_RECORD, "training_args.bin")
#: adapter_config.json keys that hold token ids.
ID_KEYS = ("trainable_token_indices", "token_indices", "alora_invocation_tokens")

VOCAB_MODULES = {"embed_tokens": TableRole.EMBED_TOKENS, "embed_tokens_per_layer": TableRole.PER_LAYER,
                 "lm_head": TableRole.LM_HEAD}
_NAME = r"(\.[^.]+)?"  # an adapter name left in a key (in-memory style), or none (saved style)
ROWS, COLUMNS, DELTA_ROWS, SAME = "rows", "columns", "delta rows", "same"
_KINDS = [  # (pattern of what follows the vocabulary module in a key, kind, roles it applies to)
    (re.compile(rf"(base_layer\.|original_module\.|modules_to_save{_NAME}\.)?(weight|bias)"), ROWS, None),
    (re.compile(rf"lora_embedding_A{_NAME}"), COLUMNS, (TableRole.EMBED_TOKENS, TableRole.PER_LAYER)),
    (re.compile(rf"lora_embedding_B{_NAME}"), SAME, (TableRole.EMBED_TOKENS, TableRole.PER_LAYER)),
    (re.compile(rf"lora_A{_NAME}\.weight"), SAME, (TableRole.LM_HEAD,)),
    (re.compile(rf"lora_B{_NAME}\.(weight|bias)"), DELTA_ROWS, (TableRole.LM_HEAD,)),
    (re.compile(rf"(token_adapter\.)?trainable_tokens_delta{_NAME}"), SAME, None),
]
_HINT_MAP = "pass the vocabfix.json of the rewrite of the checkpoint this adapter was trained on"


# --- the rewrite's record ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MapRecord:
    """What remap-adapter needs from a rewrite's vocabfix.json: the id map and each table's rows before/after."""

    path: Path
    id_map: IdMap
    rows_before: dict[TableRole, int]
    rows_after: dict[TableRole, int]
    text_end: int  # the first multimodal id before the rewrite
    new_text_size: int

    @property
    def folder(self) -> Path:
        return self.path.parent


def read_map(source: str | os.PathLike) -> MapRecord:
    """A rewrite's record (the vocabfix.json, or the rewritten folder holding it). Raises CheckpointError."""
    path = Path(source)
    if path.is_dir():
        path = path / RECORD_NAME
    try:
        data = json.loads(path.read_bytes())
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read the id map ({e.strerror or e})",
                              hint="pass --map CKPT/vocabfix.json, written by 'vocabfix rewrite'") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a vocabfix record ({e})", hint=_HINT_MAP) from None
    try:
        id_map = IdMap.from_record(data)
        before, after = data["layout_before"], data["layout_after"]
        rows_before = {TableRole.EMBED_TOKENS: _whole(before["vocab_size"]),
                       TableRole.PER_LAYER: _whole(before["vocab_size_per_layer_input"])}
        rows_after = {TableRole.EMBED_TOKENS: _whole(after["vocab_size"]),
                      TableRole.PER_LAYER: _whole(after["vocab_size_per_layer_input"])}
        recorded = {}
        for t in data.get("tensors") or []:
            role = _role_of(str(t["name"]).split("."))
            if role is not None:
                recorded[role] = (_whole(t["rows_before"]), _whole(t["rows_after"]))
        for role, (b, a) in recorded.items():
            rows_before[role], rows_after[role] = b, a
        # a tied lm_head is embed_tokens: an adapter's lm_head copy has its rows
        lm = recorded.get(TableRole.LM_HEAD, (rows_before[TableRole.EMBED_TOKENS], rows_after[TableRole.EMBED_TOKENS]))
        rows_before[TableRole.LM_HEAD], rows_after[TableRole.LM_HEAD] = lm
        text_end, new_text = _whole(before["text"][1]), _whole(after["text"][1])
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise CheckpointError(f"{path}: not a vocabfix record ({type(e).__name__}: {e})", hint=_HINT_MAP) from None
    return MapRecord(path, id_map, rows_before, rows_after, text_end, new_text)


def _whole(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a non-negative integer")
    return value


class _RecordLayout:
    """What rows.plan_table asks of a Layout, answered from the record (the adapter's tables are the base's)."""

    def __init__(self, record: MapRecord):
        self.record = record
        self.id_map = record.id_map
        self.text_end = record.text_end
        self.new_text_size = record.new_text_size

    def rows(self, role: TableRole) -> int:
        return self.record.rows_before[role]

    def target_rows(self, table: VocabTable) -> int:
        return self.record.rows_after[table.role]


# --- which tensors hold ids ---------------------------------------------------------------------------------------


def _role_of(parts: list[str]) -> TableRole | None:
    at = _vocab_index(parts)
    return None if at is None else VOCAB_MODULES[parts[at]]


def _vocab_index(parts: list[str]) -> int | None:
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in VOCAB_MODULES:
            return i
    return None


def classify(name: str) -> tuple[TableRole, str] | None:
    """(role, kind) of a saved adapter tensor on a vocabulary table; None for a tensor on any other module. Raises
    LayoutError for a tensor on a vocabulary table that vocabfix does not know how to remap."""
    parts = name.split(".")
    at = _vocab_index(parts)
    if at is None:
        return None
    role, rest = VOCAB_MODULES[parts[at]], ".".join(parts[at + 1:])
    for pattern, kind, roles in _KINDS:
        if pattern.fullmatch(rest) and (roles is None or role in roles):
            return role, kind
    raise LayoutError(f"{ADAPTER_WEIGHTS}: tensor {name!r} on {role.value} is of a kind remap-adapter does not remap "
                      "(it knows full tables, LoRA and trainable tokens; not DoRA, IA3 or other methods on the "
                      "vocabulary tables)", hint="merge the adapter into the extended model and rewrite the merged "
                                                 "checkpoint instead")


@dataclass
class _Remap:
    """One tensor that changes: its plan over its id dimension (rows, or columns seen as rows)."""

    info: TensorInfo
    role: TableRole
    kind: str
    plan: TablePlan

    @property
    def shape_out(self) -> tuple[int, ...]:
        if self.kind == COLUMNS:
            return (self.info.shape[0], self.plan.rows_out)
        return self.plan.shape_out

    @property
    def nbytes_out(self) -> int:
        n = DTYPE_SIZES[self.info.dtype]
        for d in self.shape_out:
            n *= d
        return n

    def to_dict(self) -> dict:
        p = self.plan
        ids = "columns" if self.kind == COLUMNS else "rows"
        init = "zeros (no adaptation)" if self.kind != ROWS else "mean of the text rows"
        return {"name": self.info.name, "table": self.role.value, "kind": self.kind, "dtype": self.info.dtype,
                "shape_before": list(self.info.shape), "shape_after": list(self.shape_out), "id_axis": ids,
                f"{ids}_copied": p.rows_copied, f"{ids}_from_row_0": p.rows_from_row_0,
                f"{ids}_initialised": p.rows_initialised, f"{ids}_dropped": p.rows_dropped,
                "new_ids": [{**{k: v for k, v in r.items() if k != "initialised_by"},
                             **({"initialised_by": init} if "initialised_by" in r else {})} for r in p.new_rows()]}


def _plan(info: TensorInfo, role: TableRole, kind: str, record: MapRecord) -> _Remap | None:
    expected = record.rows_before[role]
    if kind == COLUMNS:
        if len(info.shape) != 2:
            raise LayoutError(f"{ADAPTER_WEIGHTS}: {info.name} has shape {list(info.shape)}; lora_embedding_A is "
                              "r x num_embeddings")
        found, what = info.shape[1], "columns"
        ids_first = TensorInfo(info.name, info.dtype, (info.shape[1], info.shape[0]), info.path, info.start,
                               info.end)
    else:
        found, what = (info.shape[0] if info.shape else 0), "rows"
        ids_first = info
    if found != expected:
        raise LayoutError(f"{ADAPTER_WEIGHTS}: {info.name} has {found:,} {what} (one per id of {role.value}), but the "
                          f"checkpoint of {record.path} had {expected:,}: the adapter was not trained on the "
                          "checkpoint that this map rewrote", hint=_HINT_MAP)
    init = Init() if kind == ROWS else Init(mode="zeros")
    plan = plan_table(VocabTable(ids_first, role), _RecordLayout(record), init)
    if not plan.changed:
        return None
    if plan.rows_initialised and kind == ROWS and info.dtype not in ("F32", "F16", "BF16", "F64"):
        raise LayoutError(f"{ADAPTER_WEIGHTS}: {info.name} ({info.dtype}) needs new rows, which vocabfix makes for "
                          "floating-point tables only")
    return _Remap(info, role, kind, plan)


# --- the adapter config -----------------------------------------------------------------------------------------


def _map_ids(ids: object, id_map: IdMap, key: str) -> list[int]:
    if not isinstance(ids, list):
        raise CheckpointError(f"{ADAPTER_CONFIG}: {key} is {type(ids).__name__}, not a list of token ids")
    out = []
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < id_map.size:
            raise LayoutError(f"{ADAPTER_CONFIG}: {key} holds {i!r}, which is not an id of the map's vocabulary "
                              f"[0, {id_map.size:,})", hint=_HINT_MAP)
        new = id_map(i)
        if new is None:
            raise LayoutError(f"{ADAPTER_CONFIG}: {key} holds id {i}, which the new layout drops (its <unusedN> slot "
                              "was given to an appended token)", hint="rewrite with --strategy shift, or with "
                                                                      "--slots that leave this id alone")
        out.append(new)
    return out


def remap_config(config: dict, id_map: IdMap) -> list[dict]:
    """Map the id lists of a parsed adapter_config.json in place; returns the changes (key, old, new)."""
    changes = []
    for key in ID_KEYS:
        value = config.get(key)
        if value is None:
            continue
        if isinstance(value, dict):
            new = {module: _map_ids(ids, id_map, f"{key}[{module!r}]") for module, ids in value.items()}
        else:
            new = _map_ids(value, id_map, key)
        if new != value:
            changes.append({"key": key, "old": value, "new": new})
            config[key] = new
    return changes


# --- the report ---------------------------------------------------------------------------------------------------


@dataclass
class AdapterReport:
    """What remap_adapter did (printed by the CLI, and OUT/vocabfix-adapter.json without the run's own facts)."""

    src: Path
    dst: Path
    map_path: Path
    peft_type: str | None
    tensors: list[_Remap]
    tensors_unchanged: int
    config_changes: list[dict]
    files_copied: list[str] = field(default_factory=list)
    files_from_checkpoint: list[str] = field(default_factory=list)  # id files taken from the rewritten checkpoint
    files_not_copied: list[dict] = field(default_factory=list)  # {"file": name, "why": ...}
    notes: list[str] = field(default_factory=list)
    stale_removed: list[Path] = field(default_factory=list)
    id_map: IdMap | None = None

    @property
    def changed(self) -> bool:
        return bool(self.tensors or self.config_changes)

    def record(self) -> dict:
        return {"vocabfix_version": __version__, "adapter": str(self.src), "map": str(self.map_path),
                "peft_type": self.peft_type, "changed": self.changed,
                "id_map": self.id_map.to_json() if self.id_map is not None else None,
                "tensors": [t.to_dict() for t in self.tensors], "tensors_unchanged": self.tensors_unchanged,
                "config_changes": self.config_changes, "files_copied": self.files_copied,
                "files_from_checkpoint": self.files_from_checkpoint, "files_not_copied": self.files_not_copied,
                "notes": self.notes}

    def to_dict(self) -> dict:
        data = self.record()
        data.pop("id_map")
        return {"out": str(self.dst), **data, "stale_partials_removed": [str(p) for p in self.stale_removed]}


# --- the command ------------------------------------------------------------------------------------------------


def _refuse_a_second_remap(src: Path, record) -> None:
    """An adapter remap-adapter already wrote for this very id map (its vocabfix-adapter.json records it) would have
    its rows moved twice: LayoutError. An identity map moves nothing, so it passes."""
    try:
        earlier = json.loads((src / ADAPTER_RECORD).read_bytes())
    except (OSError, ValueError):
        return
    if not record.id_map.is_identity and isinstance(earlier, dict) and earlier.get("id_map") == record.id_map.to_json():
        raise LayoutError(f"{src}: already remapped with this id map ({ADAPTER_RECORD} records it); remapping it "
                          "again would move its rows a second time",
                          hint="remap the adapter trained on the extended checkpoint, not its remapped copy")


def remap_adapter(adapter_dir: str | os.PathLike, out_dir: str | os.PathLike, id_map_source: str | os.PathLike, *,
                  force: bool = False, progress: ProgressFn | None = None) -> AdapterReport:
    """Rewrite the PEFT adapter folder `adapter_dir` into `out_dir` for the checkpoint rewritten with the record
    `id_map_source` (CKPT/vocabfix.json or CKPT). See the module docstring for what changes.

    Raises CheckpointError (a file missing, unreadable or pickled), LayoutError (the adapter does not fit the map,
    or holds what vocabfix cannot remap), OutputError (OUT exists without `force`, is inside ADAPTER, writing
    failed). Nothing is written until everything was read and planned.
    """
    src, dst = Path(adapter_dir), Path(out_dir)
    progress = progress or (lambda n: None)
    _check_paths(src, dst, force)
    config_path, weights_path = src / ADAPTER_CONFIG, src / ADAPTER_WEIGHTS
    if not weights_path.is_file() and (src / ADAPTER_BIN).is_file():
        raise CheckpointError(f"{src / ADAPTER_BIN}: pickled .bin adapters are not read; re-save with "
                              "safe_serialization=True", hint="PeftModel.from_pretrained(...).save_pretrained(d, "
                                                              "safe_serialization=True)")
    config_bytes = _read(config_path, "the adapter config")
    try:
        config = json.loads(config_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{config_path}: not JSON ({e})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path}: not a PEFT adapter config (not a JSON object)")
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: missing", hint="remap-adapter reads the folder PEFT's "
                                                               "save_pretrained writes")
    header = read_header(weights_path)
    record = read_map(id_map_source)
    _refuse_a_second_remap(src, record)

    remaps, unchanged = [], 0
    for info in header.tensors:
        found = classify(info.name)
        plan = _plan(info, *found, record) if found is not None and found[1] != SAME else None
        if plan is None:
            unchanged += 1
        else:
            remaps.append(plan)
    changes = remap_config(config, record.id_map)
    report = AdapterReport(src, dst, record.path, config.get("peft_type"), remaps, unchanged, changes,
                           id_map=record.id_map)
    others = _other_files(src, record, report)
    if config.get("base_model_name_or_path"):
        report.notes.append(f"adapter_config.json's base_model_name_or_path ({config['base_model_name_or_path']}) "
                            f"is kept: load this adapter on the rewritten checkpoint ({record.folder}), not on the "
                            "extended one")

    stale = remove_stale_stages(dst)
    stage = _make_stage(dst)
    current = None
    try:
        current = ADAPTER_CONFIG
        _write_bytes(stage / ADAPTER_CONFIG, (json.dumps(config, indent=2) + "\n").encode() if changes
                     else config_bytes)
        current = ADAPTER_WEIGHTS
        _write_weights(header, remaps, stage / ADAPTER_WEIGHTS, progress)
        for name, origin in others:
            current = name
            _copy_file(origin, stage / name)
        current = ADAPTER_RECORD
        files = sorted([ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_RECORD, *(n for n, _ in others)])
        _write_bytes(stage / ADAPTER_RECORD, dump_json({**report.record(), "files": files}))
        current = None
        (stage / STAGE_MARKER).unlink()
        _fsync_folders(stage)
        move_into_place(stage, dst, force, check_replaceable)  # with this command's own --force rule
        _fsync_path(dst.parent)
    except OSError as e:
        shutil.rmtree(stage, ignore_errors=True)
        raise writing_failed(dst, e, current) from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    report.stale_removed = stale
    return report


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing ({what})", hint="remap-adapter reads the folder PEFT's "
                                                                "save_pretrained writes") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None


def _check_paths(src: Path, dst: Path, force: bool) -> None:
    if not src.is_dir():
        raise CheckpointError(f"{src}: not a folder" if src.exists() else f"{src}: no such folder",
                              hint="ADAPTER is the folder PEFT's save_pretrained wrote")
    src_r, dst_r = src.resolve(), dst.resolve()
    if dst_r == src_r:
        raise OutputError(f"{dst}: the output must differ from the adapter folder", hint="name a new folder for OUT")
    if src_r in dst_r.parents:
        raise OutputError(f"{dst}: the output cannot be inside the adapter folder", hint="name a folder outside it")
    if dst_r in src_r.parents:
        raise OutputError(f"{dst}: the output cannot contain the adapter folder", hint="name a folder outside it")
    if dst.exists() or dst.is_symlink():
        if not force:
            raise OutputError(f"{dst} already exists", hint="pass --force to replace it")
        check_replaceable(dst)


def check_replaceable(dst: Path) -> None:
    """--force replaces a folder remap-adapter wrote (every entry listed in its record) or a folder of adapter and
    checkpoint files only. Raises OutputError otherwise."""
    if not dst.is_dir() or dst.is_symlink():
        what = "a symbolic link" if dst.is_symlink() else "not a folder"
        raise OutputError(f"{dst} exists and is {what}", hint="name a new folder for OUT")
    try:
        listed = json.loads((dst / ADAPTER_RECORD).read_bytes()).get("files")
    except (OSError, ValueError, AttributeError):
        listed = None
    allowed = (*ADAPTER_FILES, *CHECKPOINT_FILES, "*.jinja")
    with os.scandir(dst) as it:
        entries = sorted(it, key=lambda e: e.name)
    unexpected = [e.name + ("/" if e.is_dir(follow_symlinks=False) else "") for e in entries
                  if not e.is_file(follow_symlinks=False)
                  or not ((isinstance(listed, list) and e.name in listed)
                          or any(fnmatch.fnmatchcase(e.name, p) for p in allowed))]
    if unexpected:
        more = f" and {len(unexpected) - 3} more" if len(unexpected) > 3 else ""
        raise OutputError(f"{dst} holds {', '.join(unexpected[:3])}{more} that vocabfix did not write: --force only "
                          "replaces a folder remap-adapter wrote or an adapter folder with nothing else in it",
                          hint="name a new folder for OUT, or move those files away")


def _other_files(src: Path, record: MapRecord, report: AdapterReport) -> list[tuple[str, Path]]:
    """(name in OUT, file to copy) for the adapter folder's other files; id files from the rewritten checkpoint."""
    out = []
    for entry in sorted(src.iterdir(), key=lambda p: p.name):
        name = entry.name
        if name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, ADAPTER_RECORD):
            continue
        if entry.is_dir():
            if (entry / ADAPTER_CONFIG).is_file():
                raise CheckpointError(f"{entry}: a second adapter inside the adapter folder; remap-adapter remaps one "
                                      "adapter", hint="remap each adapter folder on its own")
            report.files_not_copied.append({"file": name + "/", "why": "a folder"})
        elif name == ADAPTER_BIN:
            report.files_not_copied.append({"file": name, "why": "pickled weights with the old ids (the "
                                                                 "safetensors file was remapped)"})
        elif name in ID_FILES:
            replacement = record.folder / name
            if replacement.is_file():
                out.append((name, replacement))
                report.files_from_checkpoint.append(name)
            else:
                report.files_not_copied.append({"file": name, "why": "holds the old ids; use the rewritten "
                                                                     "checkpoint's"})
        elif entry.is_file():
            out.append((name, entry))
            report.files_copied.append(name)
    return out


def _write_bytes(target: Path, data: bytes) -> None:
    with open(target, "wb", buffering=0) as out:
        _write_all(out, data)
        os.fsync(out.fileno())


def _write_weights(header: ShardHeader, remaps: list[_Remap], target: Path, progress: ProgressFn) -> None:
    """The adapter's safetensors file with `remaps` applied: the same tensors in the same order and metadata."""
    if not remaps:
        _copy_file(header.path, target)
        return
    by_name = {r.info.name: r for r in remaps}
    entries = [(t.name, t.dtype, by_name[t.name].shape_out, by_name[t.name].nbytes_out) if t.name in by_name
               else (t.name, t.dtype, t.shape, t.nbytes) for t in header.tensors]
    with open(header.path, "rb") as src, open(target, "wb", buffering=0) as out:
        _write_all(out, encode_header(entries, header.metadata))
        for t in header.tensors:
            remap = by_name.get(t.name)
            if remap is None:
                _copy_range(src, out, t.start, t.nbytes, progress)
            elif remap.kind == COLUMNS:
                _write_all(out, _columns(src, remap))
            else:
                _write_table(src, out, remap.plan, progress)
        os.fsync(out.fileno())


def _columns(src, remap: _Remap) -> bytes:
    """lora_embedding_A (r x ids) with its columns re-ordered by the plan, as bytes (zeros for InitRows, column 0
    for PadRow)."""
    import numpy as np

    info, size = remap.info, DTYPE_SIZES[remap.info.dtype]
    src.seek(info.start)
    raw = src.read(info.nbytes)
    element = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}[size]
    a = np.frombuffer(raw, dtype=element).reshape(info.shape)
    index, zero = [], []
    for seg in remap.plan.segments:
        if isinstance(seg, CopyRows):
            index.append(np.arange(seg.first_row, seg.first_row + seg.count))
            zero.append(np.zeros(seg.count, bool))
        elif isinstance(seg, (PadRow, InitRows)):
            index.append(np.zeros(seg.count, np.int64))
            zero.append(np.full(seg.count, isinstance(seg, InitRows)))
    cols = np.concatenate(index) if index else np.zeros(0, np.int64)
    out = np.ascontiguousarray(a[:, cols])
    out[:, np.concatenate(zero) if zero else np.zeros(0, bool)] = 0
    return out.tobytes()

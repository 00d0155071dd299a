"""`vocabfix verify IN OUT`: prove that OUT is IN re-laid-out by the id map OUT/vocabfix.json records.

Each check compares OUT with what the record says IN becomes; none reads the plan that wrote OUT:
- files: OUT holds every file of IN, and vocabfix.json besides; a file no rewrite changes is byte-identical.
- config.json, generation_config.json: equal, as JSON, to IN's with every token id mapped and the layout fields set
  to the record's `layout_after` (config_files.relayout_config: the rewrite's own key rules).
- tokenizer files: equal, as JSON (tokenizer.model: as bytes), to IN's renumbered by the recorded map
  (plan.renumber_tokenizer_files); and, checked on its own, every token string IN names has id map(old id) in OUT.
- index: IN's, with total_size (and total_parameters) of OUT's tensors; it names each tensor's shard.
- tensors: every tensor outside the recorded vocabulary tables is byte-identical. In each recorded table, row r is
  IN's row for old id map^-1(r), unless the record lists r among the table's `new_rows`: then it is IN's row 0, or
  the recorded init recomputed from IN (init_rows.RowMaker, the arithmetic the rewrite uses, fed with the source
  rows verify looks up from the recorded token strings).
Bytes are compared in chunks of at most CHUNK_BYTES (memory stays flat); the tokenizer checks build their 262k-entry
tables one pass at a time and free each once compared (_Checks._check_tokenizer). IN may be a Hub repo: its small
files come through the Hub cache, everything else by HTTP range requests.
"""

from __future__ import annotations

import copy
import json
import marshal
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from .checkpoint import INDEX_NAME, RECORD_NAME, SENTENCEPIECE_FILE, Checkpoint, read_checkpoint, read_json
from .config_files import relayout_config, rewrite_generation_config
from .errors import CheckpointError, LayoutError
from .id_map import IdMap
from .layout import IdRanges, VocabTable, table_role
from .rows import Init, InitRows, TablePlan
from .safetensors_header import ShardHeader, TensorInfo
from .sentencepiece_model import piece_strings
from .tokenizer_files import TokenizerIds, read_tokenizer_ids

CHUNK_BYTES = 16 * 1024 * 1024
STAGE_MARKER = ".vocabfix-stage"  # writer.STAGE_MARKER: `rewrite --verify` checks the stage before the rename
IGNORED = (RECORD_NAME, STAGE_MARKER)
MAX_DIFFERENCES = 50
JSON_SLICE = 4096  # values per json.dumps when parsed JSON documents are compared (_same_values)


@dataclass(frozen=True)
class Difference:
    """One way OUT is not IN re-laid-out: the file, where in it (tensor and row, JSON field, token), and how."""

    file: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.message}" if self.where else f"{self.file}: {self.message}"

    def to_dict(self) -> dict:
        return {"file": self.file, "where": self.where, "message": self.message}


@dataclass
class VerifyReport:
    """What `verify` compared and found. `ok`: no difference (and, with --load, the forward pass ran)."""

    source: str
    output: Path
    recorded: bool  # OUT has a vocabfix.json; without one OUT must equal IN byte for byte
    differences: list[Difference] = field(default_factory=list)
    differences_not_listed: int = 0  # past MAX_DIFFERENCES
    files: int = 0  # files compared
    tensors_identical: int = 0
    tables: int = 0  # vocabulary tables checked row by row
    rows_copied: int = 0
    rows_new: int = 0  # rows from row 0 or recomputed from the recorded init
    linked: int = 0  # files of OUT that are IN's own file (rewrite --link): the same bytes, not read
    bytes_read: int = 0  # IN and OUT together
    seconds: float = 0.0
    load: dict | None = None  # --load: what the forward pass ran and found

    def __repr__(self) -> str:
        return (f"VerifyReport({self.source!r} -> {str(self.output)!r}, ok={self.ok}, "
                f"differences={len(self.differences) + self.differences_not_listed})")

    @property
    def ok(self) -> bool:
        return not self.differences and (self.load is None or bool(self.load.get("ok")))

    def add(self, file: str, where: str, message: str) -> None:
        if len(self.differences) < MAX_DIFFERENCES:
            self.differences.append(Difference(file, where, message))
        else:
            self.differences_not_listed += 1

    def to_dict(self) -> dict:
        return {"source": self.source, "output": str(self.output), "ok": self.ok, "recorded": self.recorded,
                "differences": [d.to_dict() for d in self.differences],
                "differences_not_listed": self.differences_not_listed,
                "checked": {"files": self.files, "tensors_identical": self.tensors_identical, "tables": self.tables,
                            "rows_copied": self.rows_copied, "rows_new": self.rows_new, "linked": self.linked},
                "bytes_read": self.bytes_read, "seconds": round(self.seconds, 3), "load": self.load}


# --- the record -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedTable:
    name: str
    rows_before: int
    rows_after: int
    new_rows: tuple[dict, ...]  # {"new_ids": [a, b], "copied_from_row": 0 | "initialised_by": ..., ...}


@dataclass(frozen=True)
class Record:
    """What OUT/vocabfix.json says the rewrite did: the id map, both layouts, the changed tables and the init."""

    id_map: IdMap
    before: IdRanges
    after: IdRanges
    tables: dict[str, RecordedTable]
    init: str


def read_record(out: Path) -> Record | None:
    """OUT/vocabfix.json as a Record; None when OUT has none. Raises CheckpointError when it is malformed."""
    path = out / RECORD_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes())
        tables = {t["name"]: RecordedTable(str(t["name"]), _int(t["rows_before"]), _int(t["rows_after"]),
                                           tuple(_new_rows(t.get("new_rows") or [])))
                  for t in data.get("tensors") or []}
        init = (data.get("init") or {}).get("mode", "mean")
        return Record(IdMap.from_record(data), IdRanges.from_dict(data["layout_before"]),
                      IdRanges.from_dict(data["layout_after"]), tables, str(init))
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: not a vocabfix record ({type(e).__name__}: {e})",
                              hint="verify needs the vocabfix.json that 'vocabfix rewrite' wrote into OUT") from None


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a non-negative integer")
    return value


def _new_rows(entries: list) -> Iterator[dict]:
    for e in entries:
        lo, hi = e["new_ids"]
        _int(lo), _int(hi)
        yield e


# --- reading bytes ----------------------------------------------------------------------------------------------


class _Bytes:
    """Byte ranges of a checkpoint's files: local files by pread, a Hub input's others by range requests."""

    def __init__(self, ckpt: Checkpoint, report: VerifyReport):
        self.ckpt, self.report, self.fds = ckpt, report, {}

    def read(self, name: str, start: int, stop: int) -> bytes:
        path = self.ckpt.root / name
        if path.is_file():
            data = self._pread(name, path, start, stop)
        elif self.ckpt.remote is not None and self.ckpt.remote.read_range is not None:
            data = self.ckpt.remote.read_range(name, start, stop)
        else:
            raise CheckpointError(f"{self.ckpt.label}: cannot read {name}")
        if len(data) != stop - start:
            raise CheckpointError(f"{self.ckpt.label}: {name} ends before byte {stop} (a truncated file)")
        self.report.bytes_read += len(data)
        return data

    def _pread(self, name: str, path: Path, start: int, stop: int) -> bytes:
        try:
            if name not in self.fds:
                self.fds[name] = os.open(path, os.O_RDONLY)
            parts, at = [], start
            while at < stop:
                chunk = os.pread(self.fds[name], stop - at, at)
                if not chunk:
                    break
                parts.append(chunk)
                at += len(chunk)
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
        return b"".join(parts)

    def size(self, name: str) -> int | None:
        return self.ckpt.file_size(name)

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def _first_difference(a: bytes, b: bytes) -> int:
    """Index of the first byte where `a` and `b` differ (they are known to differ)."""
    lo, hi = 0, min(len(a), len(b))
    while hi - lo > 4096:  # halve by slice comparisons (memcmp) rather than a Python loop over every byte
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return next((i for i in range(lo, hi) if a[i] != b[i]), hi)


def _compare_ranges(rin: _Bytes, name_in: str, start_in: int, rout: _Bytes, name_out: str, start_out: int,
                    length: int, chunk: int = CHUNK_BYTES) -> int | None:
    """Compare `length` bytes of two files `chunk` bytes at a time: None when equal, else the offset of the first
    difference from the start of the range."""
    done = 0
    while done < length:
        n = min(chunk, length - done)
        a = rin.read(name_in, start_in + done, start_in + done + n)
        b = rout.read(name_out, start_out + done, start_out + done + n)
        if a != b:
            return done + _first_difference(a, b)
        done += n
    return None


# --- the checks -------------------------------------------------------------------------------------------------


def verify_checkpoint(src: str | Path, dst: str | Path, *, revision: str | None = None, load: bool = False,
                      in_checkpoint: Checkpoint | None = None) -> VerifyReport:
    """Prove that the folder `dst` is the checkpoint `src` (a folder or a Hub repo id at `revision`) rewritten by
    the id map `dst/vocabfix.json` records (the module docstring lists every check). A `dst` without vocabfix.json
    must equal `src` byte for byte (what a rewrite of an already consistent checkpoint writes).

    Returns a report whose `differences` name each file, tensor and row, or field that does not match (at most
    MAX_DIFFERENCES listed). Raises CheckpointError / NotGemma3nError / HubError when IN, OUT or the record cannot
    be read. `in_checkpoint`: IN already read (`merges=False`, as the rewrite reads it). `load`: also load OUT with
    stock transformers and run the appended tokens' new ids and the multimodal special ids through it
    (load_check.py; needs the torch extra, UsageError without it).
    """
    from .hub import read_source, resolve_source
    started = time.monotonic()
    dst = Path(dst)
    if not dst.is_dir():
        raise CheckpointError(f"{dst}: not a folder", hint="pass the OUT folder 'vocabfix rewrite' wrote")
    record = read_record(dst)
    before = in_checkpoint or read_source(resolve_source(str(src), revision), merges=False)
    after = read_checkpoint(dst, merges=False)
    report = VerifyReport(before.label, dst, record is not None)
    rin, rout = _Bytes(before, report), _Bytes(after, report)
    try:
        _Checks(before, after, record, report, rin, rout).run()
    finally:
        rin.close()
        rout.close()
    report.seconds = time.monotonic() - started  # the comparison only: --load reports its own time
    if load:
        from .load_check import forward_check, ids_to_run
        report.load = forward_check(dst, ids_to_run(after.config, appended_new_ids(record)))
    return report


def appended_new_ids(record: Record | None) -> list[int]:
    """The new ids of the tokens the input had appended past the multimodal ranges (none without a record)."""
    if record is None:
        return []
    lo, hi = record.before.appended
    return [n for n in map(record.id_map, range(lo, hi)) if n is not None]


@dataclass
class _Checks:
    before: Checkpoint
    after: Checkpoint
    record: Record | None
    report: VerifyReport
    rin: _Bytes
    rout: _Bytes
    _by_string: dict[str, int] | None = None

    def token_id(self, token: str) -> int | None:
        """IN's id of a token string (looked up once for the whole vocabulary)."""
        if self._by_string is None:
            self._by_string = token_ids_by_string(self.before)
        return self._by_string.get(token)

    def run(self) -> None:
        shards = {self._rel(self.before, s) for s in self.before.weights.shards}
        structured = set() if self.record is None else {"config.json", "generation_config.json", INDEX_NAME,
                                                        "tokenizer.json", "tokenizer_config.json",
                                                        "added_tokens.json", SENTENCEPIECE_FILE}
        self._check_files(skip=shards | structured)
        if self.record is not None:
            self._check_configs()
            self._check_tokenizer()
            self._check_index()
        self._check_shards()

    def _linked(self, name: str) -> bool:
        """OUT's file is IN's own (a hard link from `rewrite --link`): proven without reading it."""
        try:
            same = os.path.samefile(self.before.root / name, self.after.root / name)
        except OSError:
            return False
        self.report.linked += same
        return same

    @staticmethod
    def _rel(ckpt: Checkpoint, shard: ShardHeader) -> str:
        return shard.path.relative_to(ckpt.root).as_posix()

    # files

    def _check_files(self, skip: set[str]) -> None:
        ins = {f for f in self.before.files if f not in IGNORED}
        outs = {f for f in self.after.files if f not in IGNORED}
        if self.record is None and RECORD_NAME in self.before.files:
            ins.add(RECORD_NAME)
            outs |= {RECORD_NAME} & set(self.after.files)
        for name in sorted(ins - outs):
            self.report.add(name, "", "in IN, missing from OUT")
        for name in sorted(outs - ins):
            self.report.add(name, "", "in OUT, not in IN")
        for name in sorted((ins & outs) - skip):
            self.report.files += 1
            if self._linked(name):
                continue
            size_in, size_out = self.rin.size(name), self.rout.size(name)
            if size_in is not None and size_in != size_out:
                self.report.add(name, "", f"{size_out} bytes, IN has {size_in} (the rewrite copies this file)")
                continue
            at = _compare_ranges(self.rin, name, 0, self.rout, name, 0, size_out or 0)
            if at is not None:
                self.report.add(name, f"byte {at}", "differs from IN (the rewrite copies this file)")

    # config and tokenizer files

    def _check_json(self, name: str, expected: object, actual: object, why: str) -> None:
        self.report.files += 1
        found = _json_difference(expected, actual)
        if found is not None:
            path, message = found
            self.report.add(name, path or "(whole file)", f"{message} ({why})")

    def _check_configs(self) -> None:
        rec = self.record
        try:
            config, _ = relayout_config(self.before.config, rec.id_map, rec.after)
        except LayoutError as e:
            self.report.add("config.json", "", f"IN cannot be re-laid-out by the recorded id map: {e.message}")
        else:
            self._check_json("config.json", config, self.after.config, "IN's with ids mapped and layout_after's sizes")
        if self.before.generation_config is not None and self.after.generation_config is not None:
            try:
                gen, _ = rewrite_generation_config(self.before.generation_config, rec.id_map)
            except LayoutError as e:
                self.report.add("generation_config.json", "", f"IN names an id the recorded map drops: {e.message}")
            else:
                self._check_json("generation_config.json", gen, self.after.generation_config, "IN's with ids mapped")

    def _check_merges(self) -> None:
        """tokenizer.json's BPE merges (no ids; three quarters of Gemma's file) compared as bytes when both readers
        could cut them out, else both files parsed whole."""
        spans = self.before.tokenizer_json_merges, self.after.tokenizer_json_merges
        if self.before.tokenizer_json is None or self.after.tokenizer_json is None:
            return
        if None in spans:
            self.before = replace(self.before, tokenizer_json=read_json(self.before.root / "tokenizer.json"))
            self.after = replace(self.after, tokenizer_json=read_json(self.after.root / "tokenizer.json"))
            return
        (a, b), (c, d) = spans
        # small chunks: both parsed tokenizer files are in memory now, and tokenizer.json is local (for a Hub IN too)
        at = None if b - a != d - c else _compare_ranges(self.rin, "tokenizer.json", a, self.rout, "tokenizer.json",
                                                         c, b - a, chunk=CHUNK_BYTES // 16)
        if b - a != d - c or at is not None:
            self.report.add("tokenizer.json", "model.merges", "differ from IN's (the rewrite copies them)")

    def _check_tokenizer(self) -> None:
        """OUT's tokenizer files against IN's renumbered, then token by token. Memory: each 262k-entry table (a
        renumbered vocabulary, an id -> token map, a piece list) is freed once compared, and OUT's parsed files as
        soon as the last table built from them is."""
        self._check_merges()
        # only IN's added tokens go into the renumbering: its vocabulary map is built again for the token check
        if not self._check_renumbered(_tokenizer_ids(self.before).added):
            return
        out_ids = _tokenizer_ids(self.after)
        # OUT is verify_checkpoint's own read, for these checks alone: out_ids holds all they still need of it
        self.after.tokenizer_json = self.after.tokenizer_config = self.after.added_tokens = None
        self._check_token_ids(_tokenizer_ids(self.before), out_ids)
        del out_ids
        if self.before.sentencepiece is not None and self.after.sentencepiece is not None:
            self._same_tokens(SENTENCEPIECE_FILE, piece_strings(self.before.sentencepiece),
                              piece_strings(self.after.sentencepiece))

    def _check_renumbered(self, added: dict[int, str]) -> bool:
        """Each tokenizer file of OUT equal to IN's renumbered by the recorded map; False when IN cannot be."""
        try:
            expected = self._renumbered_in(added)
        except CheckpointError as e:
            self.report.add("tokenizer files", "", f"IN cannot be renumbered by the recorded id map: {e.message}")
            return False
        after = self.after
        actual = {"tokenizer.json": after.tokenizer_json, "tokenizer_config.json": after.tokenizer_config,
                  "added_tokens.json": after.added_tokens, SENTENCEPIECE_FILE: after.sentencepiece}
        for name in list(expected):
            self._check_renumbered_file(name, expected.pop(name), actual[name])  # freed once compared
        return True

    def _renumbered_in(self, added: dict[int, str]) -> dict[str, dict | bytes]:
        """IN's tokenizer files renumbered by the recorded map (plan.renumber_tokenizer_files). Meanwhile OUT's parsed
        tokenizer.json waits as marshal bytes (an eighth of its size; marshal gives back the same types and values):
        the renumbering's transient 262k-entry tables would otherwise come on top of both checkpoints' vocabularies,
        the peak of verify's memory."""
        from .plan import renumber_tokenizer_files
        parked = marshal.dumps(self.after.tokenizer_json)  # OUT is verify_checkpoint's own read: no one else holds it
        self.after.tokenizer_json = None
        try:
            return renumber_tokenizer_files(self.before, self.record.id_map, added, self.record.after.text[1])
        finally:
            self.after.tokenizer_json = marshal.loads(parked)

    def _check_renumbered_file(self, name: str, want: dict | bytes, actual: dict | bytes | None) -> None:
        if actual is None:
            return  # reported as missing by the file check
        if isinstance(want, bytes):
            self.report.files += 1
            if want != actual:
                self.report.add(name, f"byte {_first_difference(want, actual)}",
                                "differs from IN's pieces renumbered by the recorded id map")
        else:
            self._check_json(name, want, actual, "IN's renumbered by the recorded id map")

    def _check_token_ids(self, before: TokenizerIds, after: TokenizerIds) -> None:
        """Every token string of IN at id map(old) in OUT, file by file kind: added tokens and the tokenizer.json
        vocabulary here, the tokenizer.model pieces in _check_tokenizer (once these tables are freed)."""
        self._same_tokens("added tokens", before.added, after.added)
        self._same_tokens("tokenizer.json vocab", before.vocab, after.vocab)

    def _same_tokens(self, what: str, old_names: dict[int, str] | list[str],
                     new_names: dict[int, str] | list[str]) -> None:
        """Report the first token of `old_names` that `new_names` does not name at its new id (both by id: a dict,
        or a list whose positions are the ids)."""
        if not new_names and old_names:
            return  # the file is missing from OUT: reported by the file check
        new_id = self.record.id_map
        for old, token in old_names.items() if isinstance(old_names, dict) else enumerate(old_names):
            new = new_id(old)
            if new is not None and _token_at(new_names, new) != token:
                self.report.add(what, f"token {token!r}", f"id {old} in IN, so id {new} in OUT, where OUT has "
                                f"{_token_at(new_names, new)!r}")
                return

    def _check_index(self) -> None:
        index_in = self.before.weights.index
        weights = self.after.weights
        for kind, names in (("named by the index, missing", weights.missing_shards),
                            ("listed, in no shard", weights.listed_not_found),
                            ("in a shard, not listed", weights.found_not_listed),
                            ("listed under the wrong shard", weights.misplaced),
                            ("in more than one shard", weights.duplicates)):
            for name in names[:3]:
                self.report.add(INDEX_NAME, name, kind)
        if index_in is None or weights.index is None:
            return
        expected = copy.deepcopy(index_in)
        metadata = expected.setdefault("metadata", {})
        metadata["total_size"] = sum(t.nbytes for s in weights.shards for t in s.tensors)
        if isinstance(metadata.get("total_parameters"), int):
            metadata["total_parameters"] += sum(
                (t.rows_after - t.rows_before) * _columns(self.before.weights.tensors[t.name])
                for t in self.record.tables.values() if t.name in self.before.weights.tensors)
        self._check_json(INDEX_NAME, expected, weights.index, "IN's with OUT's total_size")

    # tensors

    def _check_shards(self) -> None:
        outs = {self._rel(self.after, s): s for s in self.after.weights.shards}
        for shard in self.before.weights.shards:
            name = self._rel(self.before, shard)
            out = outs.get(name)
            if out is None:
                continue  # reported as missing by the file or index check
            self.report.files += 1
            if self._linked(name) and not any(t.name in (self.record.tables if self.record else {})
                                              for t in shard.tensors):
                self.report.tensors_identical += len(shard.tensors)
                continue
            metadata = dict(out.metadata)
            if "format" not in shard.metadata and metadata.get("format") == "pt":
                del metadata["format"]  # the rewrite adds what from_pretrained requires
            if metadata != shard.metadata:
                self.report.add(name, "metadata", f"{out.metadata} differs from IN's {shard.metadata}")
            tensors_out = {t.name: t for t in out.tensors}
            for gone in sorted({t.name for t in shard.tensors} - set(tensors_out))[:3]:
                self.report.add(name, gone, "a tensor of IN missing from this shard of OUT")
            for extra in sorted(set(tensors_out) - {t.name for t in shard.tensors})[:3]:
                self.report.add(name, extra, "a tensor this shard of OUT holds and IN's does not")
            for t in shard.tensors:
                if t.name in tensors_out:
                    self._check_tensor(name, t, tensors_out[t.name])

    def _check_tensor(self, shard: str, t: TensorInfo, u: TensorInfo) -> None:
        recorded = self.record.tables.get(t.name) if self.record is not None else None
        if t.dtype != u.dtype:
            self.report.add(shard, t.name, f"dtype {u.dtype}, IN has {t.dtype}")
        elif recorded is not None:
            _TableCheck(self, shard, t, u, recorded).run()
        elif t.shape != u.shape:
            self.report.add(shard, t.name, f"shape {list(u.shape)}, IN has {list(t.shape)} (the rewrite copies it)")
        else:
            at = _compare_ranges(self.rin, shard, t.start, self.rout, shard, u.start, t.nbytes)
            if at is None:
                self.report.tensors_identical += 1
            else:
                self.report.add(shard, t.name, f"differs from IN at byte {at} of the tensor (the rewrite copies it)")


def _columns(t: TensorInfo) -> int:
    n = 1
    for d in t.shape[1:]:
        n *= d
    return n


def _token_at(names: dict[int, str] | list[str], token_id: int) -> str | None:
    if isinstance(names, dict):
        return names.get(token_id)
    return names[token_id] if token_id < len(names) else None


def _tokenizer_ids(ckpt: Checkpoint) -> TokenizerIds:
    return read_tokenizer_ids(ckpt.tokenizer_json, ckpt.tokenizer_config, ckpt.added_tokens, ckpt.sentencepiece)


def _json_difference(a: object, b: object, path: str = "") -> tuple[str, str] | None:
    """(dotted path, what differs) of the first difference between two parsed JSON documents; None when equal.
    Key order is not compared; 1, 1.0 and true are different values."""
    if not path and _same_document(a, b):  # the usual case; the walk below only names a difference
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a:
            where = f"{path}.{key}" if path else str(key)
            if key not in b:
                return where, "missing"
            found = _json_difference(a[key], b[key], where)
            if found:
                return found
        extra = next((k for k in b if k not in a), None)
        return (f"{path}.{extra}" if path else str(extra), "not expected") if extra is not None else None
    if isinstance(a, list) and isinstance(b, list):
        for n, (x, y) in enumerate(zip(a, b, strict=False)):
            found = _json_difference(x, y, f"{path}[{n}]")
            if found:
                return found
        return (path, f"{len(b)} entries, expected {len(a)}") if len(a) != len(b) else None
    if type(a) is not type(b) or a != b:
        return path, f"{_short(b)}, expected {_short(a)}"
    return None


def _same_document(a: object, b: object) -> bool:
    try:
        return _same_json(a, b)
    except RecursionError:  # nested deeper than the slice-wise walk goes (a hand-made file): compared as text
        return _canonical(a) == _canonical(b)


def _same_json(a: object, b: object) -> bool:
    """_canonical(a) == _canonical(b) without writing out a whole document (the text of a 262k-entry vocabulary
    and json.dumps's sorted copy of it run to tens of MB): dicts member by member, lists in slices."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and _same_values(list(a.values()), [b[k] for k in a])
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and _same_values(a, b)
    return _canonical(a) == _canonical(b)


def _same_values(a: list, b: list) -> bool:
    """_same_json of each pair, JSON_SLICE pairs at a time: a slice holding a dict pair by pair (one dict can be
    the whole vocabulary), any other slice as one text."""
    for at in range(0, len(a), JSON_SLICE):
        xs, ys = a[at:at + JSON_SLICE], b[at:at + JSON_SLICE]
        if any(isinstance(x, dict) for x in xs):
            same = all(map(_same_json, xs, ys))
        else:
            same = _canonical(xs) == _canonical(ys)
        if not same:
            return False
    return True


def _canonical(value: object) -> str:
    """JSON text in which equal documents are equal strings (keys sorted) and 1, 1.0 and true stay apart."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


# --- one vocabulary table ---------------------------------------------------------------------------------------


class _TableCheck:
    """Row by row: copied runs as byte ranges, then the new rows (row 0, or the recorded init recomputed)."""

    def __init__(self, checks: _Checks, shard: str, t: TensorInfo, u: TensorInfo, recorded: RecordedTable):
        self.c, self.shard, self.t, self.u, self.rec = checks, shard, t, u, recorded
        self.rb = t.row_bytes

    def run(self) -> None:
        t, u, rec, report = self.t, self.u, self.rec, self.c.report
        report.tables += 1
        if t.rows != rec.rows_before:
            report.add(self.shard, t.name, f"IN has {t.rows} rows, the record says {rec.rows_before}")
            return
        if u.shape != (rec.rows_after, *t.shape[1:]):
            report.add(self.shard, t.name, f"shape {list(u.shape)}, the record gives {[rec.rows_after, *t.shape[1:]]}")
            return
        new = sorted((e["new_ids"][0], e["new_ids"][1], e) for e in self.rec.new_rows)
        for lo, hi, old in self._copied_runs([(lo, hi) for lo, hi, _ in new]):
            self._check_copied(lo, hi, old)
        self._check_new(new)

    def _copied_runs(self, new: list[tuple[int, int]]) -> Iterator[tuple[int, int, int | None]]:
        """(first new row, stop, old row of the first) of every run of rows that must be IN's rows (old None: the
        rows stand for ids IN has no row for, which the record lists nowhere)."""
        rows_after, id_map = self.rec.rows_after, self.c.record.id_map
        covered = 0
        for r in id_map.in_new_order():
            lo, hi = r.new_start, min(r.new_stop, rows_after)
            for a, b in _subtract((lo, hi), new):
                old = r.old_start + (a - r.new_start)
                have = max(0, min(old + (b - a), self.t.rows) - old)
                if have:
                    yield a, a + have, old
                if have < b - a:
                    yield a + have, b, None
            covered = max(covered, hi)
        if covered < rows_after:  # rows past every id of the map
            for a, b in _subtract((covered, rows_after), new):
                yield a, b, None

    def _check_copied(self, lo: int, hi: int, old: int | None) -> None:
        report = self.c.report
        if old is None:
            report.add(self.shard, f"{self.t.name} rows [{lo}, {hi})", "no row of IN stands for these ids, and the "
                       "record lists them among no new rows")
            return
        at = _compare_ranges(self.c.rin, self.shard, self.t.start + old * self.rb, self.c.rout, self.shard,
                             self.u.start + lo * self.rb, (hi - lo) * self.rb)
        if at is None:
            report.rows_copied += hi - lo
        else:
            row = lo + at // self.rb
            report.add(self.shard, f"{self.t.name} row {row}",
                       f"differs from IN's row {old + row - lo} (old id {self.c.record.id_map.inverse(row)})")

    def _check_new(self, new: list[tuple[int, int, dict]]) -> None:
        maker = None
        for lo, hi, entry in new:
            if hi > self.rec.rows_after or lo >= hi:
                self.c.report.add(self.shard, self.t.name, f"the record's new rows [{lo}, {hi}) are not rows of it")
                continue
            if "copied_from_row" in entry:
                row = self.c.rin.read(self.shard, self.t.start + entry["copied_from_row"] * self.rb,
                                      self.t.start + (entry["copied_from_row"] + 1) * self.rb)
                expected: Iterator[bytes] = iter([row * (hi - lo)])
            else:
                maker = maker or self._row_maker()
                expected = self._init_rows(maker, entry, hi - lo)
            self._compare_rows(lo, hi, expected, entry)

    def _compare_rows(self, lo: int, hi: int, expected: Iterator[bytes], entry: dict) -> None:
        at = lo
        for want in expected:
            got = self.c.rout.read(self.shard, self.u.start + at * self.rb, self.u.start + at * self.rb + len(want))
            if got != want:
                row = at + _first_difference(want, got) // self.rb
                how = f"row {entry['copied_from_row']} of IN" if "copied_from_row" in entry else \
                    f"initialised by {entry.get('initialised_by')}, recomputed"
                self.c.report.add(self.shard, f"{self.t.name} row {row}", f"differs from the recorded new row ({how})")
                return
            at += len(want) // self.rb
        self.c.report.rows_new += hi - lo

    def _row_maker(self):
        from .init_rows import RowMaker
        role = table_role(self.t.name)
        mode = _init_mode(self.c.record.init)
        plan = TablePlan(VocabTable(self.t, role), self.rec.rows_after, [],
                         min(self.c.record.before.text[1], self.t.rows), Init(mode))
        return RowMaker(plan, self._reader())

    def _reader(self) -> Callable:
        from .init_rows import to_float

        def read(first: int, count: int):
            raw = self.c.rin.read(self.shard, self.t.start + first * self.rb, self.t.start + (first + count) * self.rb)
            return to_float(raw, self.t.dtype).reshape(count, -1)
        return read

    def _init_rows(self, maker, entry: dict, count: int) -> Iterator[bytes]:
        from .init_rows import from_float
        mode = _init_mode(entry.get("initialised_by"))
        seg = InitRows(count, mode, (), self._sources(entry, count, mode))
        for values in maker.rows(seg):
            yield from_float(values, self.t.dtype)

    def _sources(self, entry: dict, count: int, mode: str) -> tuple[tuple[int, ...], ...]:
        """The IN rows a copy / subtoken row is the mean of, looked up from the recorded token strings."""
        if mode == "copy":
            return ((self._row_of(entry["token"]),),) * count
        if mode != "subtoken":
            return ()
        pieces = entry["pieces"]
        if len(pieces) != count:
            raise CheckpointError(f"{RECORD_NAME}: {self.t.name}: {len(pieces)} subtoken entries for {count} rows")
        return tuple(tuple(self._row_of(p) for p in e["pieces"]) if not e.get("fallback") else () for e in pieces)

    def _row_of(self, token: str) -> int:
        token_id = self.c.token_id(token)
        if token_id is None:
            raise CheckpointError(f"{RECORD_NAME}: new rows of {self.t.name} are made from {token!r}, which IN's "
                                  "tokenizer does not have")
        return token_id if token_id < self.t.rows else 0  # past the per-layer table, the input reads row 0


def _init_mode(text: object) -> str:
    from .rows import INIT_MEAN, INIT_MODES
    mode = "mean" if text == INIT_MEAN else str(text).partition(":")[0]
    if mode not in INIT_MODES:
        raise CheckpointError(f"{RECORD_NAME}: new rows initialised by {text!r}, which this version of vocabfix "
                              "cannot recompute", hint="verify with the vocabfix version that wrote OUT")
    return mode


def _subtract(run: tuple[int, int], holes: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """The parts of [run) outside the sorted, disjoint `holes`."""
    at, stop = run
    for lo, hi in holes:
        if hi <= at or lo >= stop:
            continue
        if lo > at:
            yield at, lo
        at = max(at, hi)
    if at < stop:
        yield at, stop


def token_ids_by_string(ckpt: Checkpoint) -> dict[str, int]:
    """Token string -> id over IN's tokenizer files (added tokens over the vocabulary, as TokenizerIds.id_of)."""
    ids = _tokenizer_ids(ckpt)
    found: dict[str, int] = {}
    if ids.sentencepiece is not None:
        found.update((p, i) for i, p in reversed(list(enumerate(piece_strings(ids.sentencepiece)))))
    found.update((tok, i) for i, tok in sorted(ids.vocab.items(), reverse=True))
    found.update((tok, i) for i, tok in sorted(ids.added.items(), reverse=True))
    return found

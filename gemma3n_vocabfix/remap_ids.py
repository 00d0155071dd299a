"""`vocabfix remap-ids`: carry a dataset tokenised with the old ids over to the rewritten layout.

DATA is read one record batch (Parquet: one row group) at a time and written beside OUT in the same form:

- Parquet: a file, or a folder of them; the same schema (and its metadata), the same row groups (a row group of
  more than ROW_GROUP_MAX_BYTES uncompressed is written as several smaller ones), each column's codec and
  dictionary encoding as the input's;
- Arrow: a `datasets` `save_to_disk` folder (state.json + dataset_info.json + data-*.arrow, IPC stream format; a
  DatasetDict's dataset_dict.json + one such folder per split), a `datasets` cache folder or a single .arrow file
  (IPC stream or IPC file format, written back in the same one), with the same record batches;
- JSON lines: only the ids in the mapped columns are rewritten; every other byte of each line stays as it was.

In every id column (an integer column or a list of integers, nested lists too) each id goes through the map's
lookup table in numpy, a whole batch at a time; list offsets and validity are reused as they are, and every other
column is passed through untouched. Ids below 0 (the -100 of ignored labels) and ids past the map stay unchanged;
an id the map drops (an `<unusedN>` slot that `--strategy unused` gave an appended token) stops the run with one
line naming the file, row and column. OUT is staged in a hidden folder beside it, flushed (fsync) and renamed into
place; DATA is only read. Needs pyarrow for Parquet and Arrow (the `data` extra); JSON lines need only numpy.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from json.decoder import scanstring
from pathlib import Path

from .errors import OutputError, VocabfixError
from .id_map import IdMap

DEFAULT_COLUMNS = ("input_ids", "labels")

#: A Parquet row group larger than this (uncompressed, as the footer says) is read and written in pieces.
ROW_GROUP_MAX_BYTES = 128 * 1024 * 1024
#: The size of those pieces.
PIECE_BYTES = 32 * 1024 * 1024
#: JSON lines: lines mapped together (one numpy pass per chunk).
JSONL_CHUNK_LINES = 4096

INSTALL_HINT = "pip install 'gemma3n-vocabfix[data]'"

#: What `--force` may replace: files a dataset folder of these formats holds.
_DATA_SUFFIXES = (".parquet", ".arrow", ".feather", ".jsonl", ".json", ".lock")


class DatasetError(VocabfixError):
    """DATA cannot be remapped: unknown format, unreadable, a missing or non-integer column, a dropped id."""


class MissingDependency(VocabfixError):
    """pyarrow (the `data` extra) is needed for Parquet and Arrow."""


# --- the report -------------------------------------------------------------------------------------------------


@dataclass
class FileReport:
    path: str  # relative to DATA (its name for a single file)
    format: str  # parquet | arrow-stream | arrow-file | jsonl | copied
    rows: int = 0
    columns: list[str] = field(default_factory=list)  # the columns mapped in this file
    ids: int = 0  # ids looked at in those columns (negative and past-the-map ones included)
    changed: int = 0  # ids that got a different id
    batches: int = 0  # Parquet row groups / Arrow record batches written (JSON lines: 0)

    def to_dict(self) -> dict:
        return {"path": self.path, "format": self.format, "rows": self.rows, "columns": self.columns,
                "ids": self.ids, "ids_changed": self.changed, "batches": self.batches}


@dataclass
class RemapReport:
    data: Path
    out: Path
    format: str  # parquet | arrow | jsonl | save_to_disk | dataset_dict | folder
    map_source: Path
    columns: list[str]  # the columns asked for
    files: list[FileReport] = field(default_factory=list)
    stale_removed: list[Path] = field(default_factory=list)
    fingerprints: dict[str, str] = field(default_factory=dict)  # save_to_disk: state.json path -> new fingerprint

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def ids(self) -> int:
        return sum(f.ids for f in self.files)

    @property
    def changed(self) -> int:
        return sum(f.changed for f in self.files)

    @property
    def mapped_columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for f in self.files:
            seen.update(dict.fromkeys(f.columns))
        return list(seen)

    @property
    def copied(self) -> list[str]:
        return [f.path for f in self.files if f.format == "copied"]

    def summary(self) -> str:
        cols = ", ".join(self.mapped_columns) or "no column"
        data_files = [f for f in self.files if f.format in ("parquet", "arrow-stream", "arrow-file", "jsonl")]
        n = len(data_files)
        what = f"{n} file{'s' if n != 1 else ''}, " if self.format not in ("parquet", "arrow", "jsonl") else ""
        return (f"Remapped {self.data} ({self.format}, {what}{self.rows:,} rows) into {self.out}: {self.ids:,} ids in "
                f"{cols}, {self.changed:,} changed; negative ids (-100) and ids past the map kept.")

    def to_dict(self) -> dict:
        return {"ok": True, "data": str(self.data), "out": str(self.out), "format": self.format,
                "map": str(self.map_source),
                "columns_requested": self.columns, "columns_mapped": self.mapped_columns, "rows": self.rows,
                "ids": self.ids, "ids_changed": self.changed, "files": [f.to_dict() for f in self.files],
                "copied_unchanged": self.copied, "fingerprints": self.fingerprints,
                "stale_removed": [str(p) for p in self.stale_removed]}


# --- the entry point --------------------------------------------------------------------------------------------


def remap_ids(data: str | os.PathLike, out: str | os.PathLike, id_map_source: str | os.PathLike | IdMap,
              columns: Sequence[str] = DEFAULT_COLUMNS, *, force: bool = False) -> RemapReport:
    """Write DATA with every id in `columns` mapped old -> new into OUT, in DATA's form (see the module docstring).

    `id_map_source`: a rewrite's vocabfix.json, the rewritten folder holding it, or an IdMap. `columns`: by default
    input_ids and labels, whichever DATA has (at least one); other names must all be present. `force` replaces an
    existing OUT that holds nothing but dataset files. Raises DatasetError (DATA), MissingDependency, OutputError
    (OUT), CheckpointError (the map): each a VocabfixError with a one-line message.
    """
    data, out = Path(data), Path(out)
    spec = _ColumnSpec.of(columns)
    id_map = id_map_source if isinstance(id_map_source, IdMap) else IdMap.from_file(id_map_source)
    map_source = Path("<IdMap>") if isinstance(id_map_source, IdMap) else Path(id_map_source)
    kind, files = _detect(data)
    _check_output(data, out, is_folder=data.is_dir(), force=force)
    mapper = _Mapper(id_map)
    if any(f.fmt in _FORMAT_NAMES for f in files):
        _pyarrow()  # before anything is written
    for f in files:  # every schema checked before anything is written
        f.check(spec)
    report = RemapReport(data, out, kind, map_source, list(spec.names))

    from .writer import _fsync_folders, _fsync_path, _make_stage, remove_stale_stages, writing_failed

    report.stale_removed = remove_stale_stages(out)
    stage = _make_stage(out)
    current: Path | None = None
    try:
        if data.is_dir():
            for f in files:
                target = current = stage / f.rel
                target.parent.mkdir(parents=True, exist_ok=True)
                report.files.append(f.write(target, mapper, spec))
                _fsync_path(target)
            current = None
            _finish_save_to_disk(data, stage, files, id_map, spec, report)
        else:
            (f,) = files
            target = current = stage / out.name
            report.files.append(f.write(target, mapper, spec))
            _fsync_path(target)
            current = None
        _check_found(spec, files, report)
        from .writer import STAGE_MARKER
        (stage / STAGE_MARKER).unlink()
        _fsync_folders(stage)
        _publish(stage, out, single=not data.is_dir(), force=force)
        _fsync_path(out.parent)
    except OSError as e:
        shutil.rmtree(stage, ignore_errors=True)
        raise writing_failed(out, e, current.relative_to(stage) if current else None) from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return report


# --- columns ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ColumnSpec:
    names: tuple[str, ...]
    all_required: bool  # False for the default: input_ids and labels, whichever are there

    @classmethod
    def of(cls, columns: Sequence[str] | str) -> _ColumnSpec:
        if isinstance(columns, str):
            columns = columns.split(",")
        names = tuple(dict.fromkeys(c.strip() for c in columns if c.strip()))
        if not names:
            raise DatasetError("no column to remap was named", hint="e.g. --columns input_ids,labels")
        return cls(names, all_required=names != DEFAULT_COLUMNS)

    def pick(self, present: Sequence[str], where: str, *, none_ok: bool = False) -> list[str]:
        """The named columns `present` has; raises DatasetError for a required one it lacks (or for none at all,
        unless `none_ok`: a cache folder's file without id columns is copied)."""
        found = [c for c in self.names if c in present]
        missing = [c for c in self.names if c not in present]
        if none_ok and not found:
            return []
        if (self.all_required and missing) or not found:
            absent = missing if self.all_required else list(self.names)
            what = " or ".join(repr(c) for c in absent) if not self.all_required else \
                ", ".join(repr(c) for c in absent)
            have = ", ".join(present) if present else "none"
            raise DatasetError(f"{where}: no column {what} (its columns: {have})",
                               hint="name the id columns with --columns")
        return found


def _check_found(spec: _ColumnSpec, files: list, report: RemapReport) -> None:
    """A folder or JSON lines file: the columns asked for must have been found somewhere."""
    mapped = report.mapped_columns
    missing = [c for c in spec.names if c not in mapped]
    if mapped and not (spec.all_required and missing):
        return
    present: dict[str, None] = {}
    for f in files:
        present.update(dict.fromkeys(f.present))
    spec.pick(list(present), str(report.data))  # raises


# --- formats ----------------------------------------------------------------------------------------------------


def _detect(data: Path) -> tuple[str, list[_DataFile]]:
    """(the form of DATA, its files in the order written)."""
    if not data.exists():
        raise DatasetError(f"{data}: no such file or folder")
    if data.is_file():
        fmt = _sniff(data)
        if fmt is None:
            raise DatasetError(f"{data}: unknown format (not Parquet, Arrow IPC or JSON lines)",
                               hint="remap-ids reads .parquet, .arrow (datasets), .jsonl and save_to_disk folders")
        return ("parquet" if fmt == "parquet" else "jsonl" if fmt == "jsonl" else "arrow"), \
            [_DataFile(data, data.name, fmt, data)]
    try:
        if (data / "dataset_dict.json").is_file():
            return "dataset_dict", _dataset_dict_files(data)
        if (data / "state.json").is_file() and (data / "dataset_info.json").is_file():
            return "save_to_disk", _save_to_disk_files(data, "")
        files, any_data = _folder_files(data)
    except OSError as e:
        raise DatasetError(f"{data}: cannot read: {e.strerror or e}") from None
    if not any_data:
        raise DatasetError(f"{data}: unknown format: no .parquet, .arrow or .jsonl file, and not a datasets "
                           "save_to_disk folder (state.json, dataset_info.json)",
                           hint="remap-ids reads Parquet, Arrow (datasets) and JSON lines")
    return "folder", files


def _sniff(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            text = head + f.read(4088)
    except OSError as e:
        raise DatasetError(f"{path}: cannot read: {e.strerror or e}") from None
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:6] == b"ARROW1":
        return "arrow-file"
    if head[:4] == b"\xff\xff\xff\xff":
        return "arrow-stream"
    stripped = text.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] == b"{":
        return "jsonl"
    if stripped[:1] == b"[":
        raise DatasetError(f"{path}: a JSON array, not JSON lines (one object per line)",
                           hint="write it with to_json(..., lines=True)")
    if path.suffix.lower() in (".jsonl", ".json") and not stripped:
        return "jsonl"
    return None


def _folder_files(data: Path) -> tuple[list[_DataFile], bool]:
    files, any_data = [], False
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        rel = path.relative_to(data).as_posix()
        fmt = None
        if path.suffix.lower() in (".parquet", ".arrow", ".feather", ".jsonl"):
            fmt = _sniff(path)
            if fmt is None:
                raise DatasetError(f"{path}: not {_EXPECTED.get(path.suffix.lower(), 'JSON lines')} (its first bytes "
                                   "say otherwise)", hint="move it out of DATA, or repair it")
            any_data = True
        files.append(_DataFile(path, rel, fmt or "copy", data, in_folder=True))
    return files, any_data


_EXPECTED = {".parquet": "Parquet", ".arrow": "Arrow IPC", ".feather": "Arrow IPC"}


def _read_json(path: Path):
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def _save_to_disk_files(root: Path, prefix: str) -> list[_DataFile]:
    folder = root / prefix if prefix else root
    state = _read_json(folder / "state.json")
    listed = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(listed, list) or not listed or not all(
            isinstance(d, dict) and isinstance(d.get("filename"), str) for d in listed):
        raise DatasetError(f"{folder / 'state.json'}: no _data_files list (not a datasets save_to_disk folder)")
    names = [d["filename"] for d in listed]
    files = []
    for name in names:
        path = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not path.is_file():
            raise DatasetError(f"{folder}: state.json lists {name}, which is not there")
        fmt = _sniff(path)
        if fmt not in ("arrow-stream", "arrow-file"):
            raise DatasetError(f"{path}: not an Arrow IPC file")
        files.append(_DataFile(path, prefix + name, fmt, root))
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        if path.name not in names and path.name != "state.json":
            files.append(_DataFile(path, prefix + path.name, "copy", root))
    files.append(_DataFile(folder / "state.json", prefix + "state.json", "state", root))
    return files


def _dataset_dict_files(root: Path) -> list[_DataFile]:
    meta = _read_json(root / "dataset_dict.json")
    splits = meta.get("splits") if isinstance(meta, dict) else None
    if not isinstance(splits, list) or not all(isinstance(s, str) and s and "/" not in s and s not in (".", "..")
                                               for s in splits):
        raise DatasetError(f"{root / 'dataset_dict.json'}: no list of splits")
    files = [_DataFile(root / "dataset_dict.json", "dataset_dict.json", "copy", root)]
    for split in splits:
        if not (root / split / "state.json").is_file():
            raise DatasetError(f"{root}: split {split!r} has no state.json")
        files += _save_to_disk_files(root, split + "/")
    return files


def _finish_save_to_disk(data: Path, stage: Path, files: list[_DataFile], id_map: IdMap, spec: _ColumnSpec,
                         report: RemapReport) -> None:
    """state.json of every save_to_disk folder: its keys as they were, `_fingerprint` replaced by one derived from
    the old fingerprint, the map and the columns (so a `.map()` cached for the old ids is never reused)."""
    from .writer import _fsync_path

    for f in files:
        if f.fmt != "state":
            continue
        state = _read_json(f.path)
        old = state.get("_fingerprint")
        if isinstance(old, str):
            basis = json.dumps([old, id_map.to_json(), id_map.dropped_json(), report.mapped_columns])
            state["_fingerprint"] = hashlib.sha256(basis.encode()).hexdigest()[:16]
            report.fingerprints[f.rel] = state["_fingerprint"]
        target = stage / f.rel
        with open(target, "w", encoding="utf-8") as out:
            json.dump(state, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        _fsync_path(target)
        report.files[files.index(f)] = FileReport(f.rel, "state.json")


@dataclass
class _DataFile:
    path: Path
    rel: str
    fmt: str  # parquet | arrow-stream | arrow-file | jsonl | copy | state
    root: Path
    in_folder: bool = False  # a file of a plain folder (cache folder): copied when it has no id column
    present: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return str(self.path)

    def check(self, spec: _ColumnSpec) -> None:
        """Arrow and Parquet: the columns and their types, from the schema alone."""
        if self.fmt not in ("parquet", "arrow-stream", "arrow-file"):
            return
        schema = _read_schema(self.path, self.fmt)
        self.present = list(schema.names)
        self.targets = spec.pick(self.present, self.label, none_ok=self.in_folder)
        for name in self.targets:
            _check_id_type(schema.field(name).type, name, self.label)
        if self.in_folder and not self.targets:
            self.fmt = "copy"

    def write(self, target: Path, mapper: _Mapper, spec: _ColumnSpec) -> FileReport:
        if self.fmt in ("copy", "state"):
            from .writer import _copy_file
            _copy_file(self.path, target)
            return FileReport(self.rel, "copied")
        report = FileReport(self.rel, self.fmt, columns=list(self.targets))
        if self.fmt == "parquet":
            _remap_parquet(self, target, mapper, report)
        elif self.fmt in ("arrow-stream", "arrow-file"):
            _remap_arrow(self, target, mapper, report)
        else:
            _remap_jsonl(self, target, mapper, spec, report)
        return report


# --- Arrow and Parquet ------------------------------------------------------------------------------------------


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise MissingDependency("remap-ids needs pyarrow for Parquet and Arrow data: " + INSTALL_HINT,
                                hint=INSTALL_HINT) from None
    return pyarrow


def _read_errors(path: Path):
    pa = _pyarrow()
    return (pa.ArrowException, OSError, ValueError)


def _read_schema(path: Path, fmt: str):
    pa = _pyarrow()
    try:
        if fmt == "parquet":
            return pa.parquet.ParquetFile(path).schema_arrow
        with pa.memory_map(str(path)) as source:
            reader = pa.ipc.open_stream(source) if fmt == "arrow-stream" else pa.ipc.open_file(source)
            return reader.schema
    except _read_errors(path) as e:
        raise DatasetError(f"{path}: cannot read as {_FORMAT_NAMES[fmt]}: {_oneline(e)}") from None


_FORMAT_NAMES = {"parquet": "Parquet", "arrow-stream": "an Arrow IPC stream", "arrow-file": "an Arrow IPC file"}


def _oneline(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]


def _check_id_type(t, name: str, where: str) -> None:
    pa = _pyarrow()
    inner = t
    while pa.types.is_list(inner) or pa.types.is_large_list(inner) or pa.types.is_fixed_size_list(inner):
        inner = inner.value_type
    if not pa.types.is_integer(inner):
        raise DatasetError(f"{where}: column {name!r} holds {t}, not integer ids (remap-ids maps columns of "
                           "integers or lists of integers)", hint="name the id columns with --columns")


def _iter_guarded(path: Path, it: Iterator):
    """`it`'s items; a read error (a damaged file) becomes one DatasetError naming the file."""
    errors = _read_errors(path)
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except errors as e:
            raise DatasetError(f"{path}: cannot read: {_oneline(e)}") from None
        yield item


def _remap_arrow(f: _DataFile, target: Path, mapper: _Mapper, report: FileReport) -> None:
    pa = _pyarrow()
    with pa.OSFile(str(f.path)) as source:  # read, not mapped: memory holds one batch, not the file's pages
        try:
            reader = pa.ipc.open_stream(source) if f.fmt == "arrow-stream" else pa.ipc.open_file(source)
        except _read_errors(f.path) as e:
            raise DatasetError(f"{f.path}: cannot read: {_oneline(e)}") from None
        schema = reader.schema
        if f.fmt == "arrow-stream":
            batches = iter(reader)
        else:
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        targets = [schema.get_field_index(c) for c in f.targets]
        with pa.OSFile(str(target), "wb") as sink:
            writer = pa.ipc.new_stream(sink, schema) if f.fmt == "arrow-stream" else pa.ipc.new_file(sink, schema)
            with writer:
                for batch in _iter_guarded(f.path, batches):
                    columns = list(batch.columns)
                    for j in targets:
                        columns[j] = mapper.map_arrow(columns[j], report, _Where(f.label, schema.names[j],
                                                                                 report.rows))
                    writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
                    report.rows += batch.num_rows
                    report.batches += 1


def _remap_parquet(f: _DataFile, target: Path, mapper: _Mapper, report: FileReport) -> None:
    pa = _pyarrow()
    pq = pa.parquet
    try:
        pf = pq.ParquetFile(f.path)
        md = pf.metadata
        schema = pf.schema_arrow
    except _read_errors(f.path) as e:
        raise DatasetError(f"{f.path}: cannot read: {_oneline(e)}") from None
    compression, dictionary = {}, []
    if md.num_row_groups:
        rg = md.row_group(0)
        for j in range(rg.num_columns):
            col = rg.column(j)
            compression[col.path_in_schema] = col.compression if col.compression != "UNCOMPRESSED" else "NONE"
            if col.has_dictionary_page:
                dictionary.append(col.path_in_schema)
    options = {"compression": compression or "snappy", "use_dictionary": dictionary}
    if md.format_version in ("1.0", "2.4", "2.6"):
        options["version"] = md.format_version
    targets = [schema.get_field_index(c) for c in f.targets]
    if any(md.row_group(i).total_byte_size > ROW_GROUP_MAX_BYTES for i in range(md.num_row_groups)):
        try:  # pages streamed through a small buffer, not each column chunk read whole first
            pf = pq.ParquetFile(f.path, pre_buffer=False, buffer_size=8 * 1024 * 1024)
        except _read_errors(f.path) as e:
            raise DatasetError(f"{f.path}: cannot read: {_oneline(e)}") from None

    def pieces():
        for i in range(md.num_row_groups):
            size = md.row_group(i).total_byte_size
            rows = md.row_group(i).num_rows
            if size <= ROW_GROUP_MAX_BYTES:
                yield pf.read_row_group(i)
            else:
                per = max(1, rows * PIECE_BYTES // max(1, size))
                for batch in pf.iter_batches(batch_size=per, row_groups=[i], use_threads=True):
                    yield pa.Table.from_batches([batch], schema=schema)

    with pq.ParquetWriter(str(target), schema, **options) as writer:
        for table in _iter_guarded(f.path, pieces()):
            columns = list(table.columns)
            for j in targets:
                where = _Where(f.label, schema.names[j], report.rows)
                chunks = []
                for chunk in columns[j].chunks:
                    chunks.append(mapper.map_arrow(chunk, report, where))
                    where = _Where(where.file, where.column, where.row0 + len(chunk))
                columns[j] = pa.chunked_array(chunks, type=columns[j].type)
            out = pa.Table.from_arrays(columns, schema=schema)
            writer.write_table(out, row_group_size=max(1, out.num_rows))
            report.rows += out.num_rows
            report.batches += 1


# --- the mapping ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Where:
    file: str
    column: str
    row0: int  # the file's row number of the array's first row
    line_based: bool = False


class _DroppedId(Exception):
    def __init__(self, position: int, old: int):
        self.position, self.old = position, old


class _Mapper:
    """The map as numpy lookup tables (old id -> new id, -1 for a dropped one)."""

    #: Ids down to -NEG (the -100 of ignored labels, -1 padding) are looked up in the table too (as themselves).
    NEG = 1024

    def __init__(self, id_map: IdMap):
        import numpy as np

        self.np = np
        self.table = id_map.lookup_table()
        self.size = len(self.table)
        self.has_dropped = bool(id_map.dropped)
        self.new_max = int(self.table.max()) if self.size else -1
        self._tables: dict = {}

    def _table_for(self, dtype):
        """(table, neg): table[i + neg] is the new id of i for -neg <= i < size, in `dtype` when every new id fits
        it (a gather in the column's own width: half the cache lines of int64 for int32 ids), else int64."""
        np = self.np
        if dtype not in self._tables:
            info = np.iinfo(dtype)
            neg = min(self.NEG, -info.min)
            out = dtype if self.new_max <= info.max else np.dtype(np.int64)
            table = np.empty(neg + self.size, dtype=out)
            table[:neg] = np.arange(-neg, 0)
            table[neg:] = self.table
            self._tables[dtype] = (table, neg)
        return self._tables[dtype]

    def map_np(self, values, valid=None):
        """(new values, how many changed): in the values' dtype where every new id fits it, else int64. `valid`: a
        bool mask of the positions to map (nulls are not); raises _DroppedId for an id the map drops."""
        np = self.np
        if values.size == 0:
            return values.copy(), 0
        lo, hi = int(values.min()), int(values.max())
        table, neg = self._table_for(values.dtype)
        if valid is None and not self.has_dropped and lo >= -neg and hi < self.size:
            # the usual case: one gather, no mask (ids below 0 are in the table as themselves)
            # values + neg in a wide type: in int8, -100 + 128 would not fit
            new = np.take(table[neg:], values) if lo >= 0 else np.take(table, values.astype(np.intp, copy=False) + neg)
        else:
            inside = (values >= 0) & (values < self.size)
            if valid is not None:
                inside &= valid
            looked = np.take(table[neg:], np.where(inside, values, 0))
            if self.has_dropped:
                bad = (looked < 0) & inside
                if bad.any():
                    pos = int(np.argmax(bad))
                    raise _DroppedId(pos, int(values[pos]))
            new = np.where(inside, looked, values)
        changed = int(np.count_nonzero(new != values))
        return new, changed

    def map_arrow(self, arr, report: FileReport, where: _Where):
        """`arr` (an integer array, or lists of them at any depth) with its ids mapped; its offsets, validity and
        every other buffer reused. Only the ids `arr`'s rows reach are looked at (a sliced array's child may hold
        more)."""
        np = self.np
        pa = _pyarrow()
        levels = []  # (list array, its offsets as numpy or None for a fixed-size list), outermost first
        node, lo, hi = arr, 0, len(arr)  # the logical positions of `node` that `arr`'s rows reach
        while not pa.types.is_integer(node.type):
            if pa.types.is_fixed_size_list(node.type):
                n = node.type.list_size
                levels.append((node, None))
                lo, hi = (node.offset + lo) * n, (node.offset + hi) * n
            else:
                width = np.int64 if pa.types.is_large_list(node.type) else np.int32
                offsets = np.frombuffer(node.buffers()[1], dtype=width, count=node.offset + len(node) + 1)
                levels.append((node, offsets))
                lo, hi = int(offsets[node.offset + lo]), int(offsets[node.offset + hi])
            node = node.values  # the whole child: list offsets index it (from its own offset on)

        dtype = np.dtype(node.type.to_pandas_dtype())
        whole = np.frombuffer(node.buffers()[1], dtype=dtype, count=node.offset + len(node))
        first, last = node.offset + lo, node.offset + hi
        values = whole[first:last]
        valid = None
        if node.null_count:
            valid = np.asarray(node.slice(lo, hi - lo).is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        try:
            new, changed = self.map_np(values, valid)
        except _DroppedId as e:
            raise DatasetError(_dropped_line(where, where.row0 + self._row_of(lo + e.position, levels), e.old)) \
                from None
        limit = np.iinfo(dtype).max
        if self.new_max > limit and new.size and int(new.max()) > limit:
            raise DatasetError(f"{where.file}: column {where.column!r} holds {node.type} ids, too narrow for new id "
                               f"{int(new.max())}", hint="cast the column to int32 or int64 first")
        if first == 0 and last == len(whole):
            raw = new.astype(dtype, copy=False)
        else:  # positions no row reaches (a sliced array): kept as they are
            raw = whole.copy()
            raw[first:last] = new
        report.ids += int(values.size)
        report.changed += changed
        rebuilt = pa.Array.from_buffers(node.type, len(node), [node.buffers()[0], pa.py_buffer(raw)],
                                        null_count=node.null_count, offset=node.offset)
        for parent, offsets in reversed(levels):
            keep = 1 if offsets is None else 2  # validity (+ offsets): the parent's own buffers, reused
            rebuilt = pa.Array.from_buffers(parent.type, len(parent), parent.buffers()[:keep],
                                            null_count=parent.null_count, offset=parent.offset, children=[rebuilt])
        return rebuilt

    def _row_of(self, pos: int, levels) -> int:
        """The row of the outermost array that holds the leaf value at logical position `pos`."""
        np = self.np
        for node, offsets in reversed(levels):
            if offsets is None:
                pos = pos // node.type.list_size - node.offset
            else:
                pos = int(np.searchsorted(offsets, pos, side="right")) - 1 - node.offset
        return pos


def _dropped_line(where: _Where, row: int, old: int) -> str:
    place = f"line {row}" if where.line_based else f"row {row}"
    return (f"{where.file}: {place}, column {where.column!r}: id {old} has no new id (the rewrite gave its "
            "<unusedN> slot to an appended token)")


# --- JSON lines -------------------------------------------------------------------------------------------------

_WS = re.compile(r"[ \t\n\r]*")


class _JsonLineError(ValueError):
    pass


def _fields(line: str, decoder: json.JSONDecoder) -> Iterator[tuple[str, int, int, object]]:
    """(key, value start, value end, value) of each member of the JSON object on `line`, in order."""
    ws = _WS.match
    i = ws(line, 1 if line.startswith("\ufeff") else 0).end()
    if line[i:i + 1] != "{":
        raise _JsonLineError("not a JSON object")
    i = ws(line, i + 1).end()
    if line[i:i + 1] == "}":
        end = i + 1
    else:
        while True:
            if line[i:i + 1] != '"':
                raise _JsonLineError(f"expected a key at character {i}")
            key, i = scanstring(line, i + 1)
            i = ws(line, i).end()
            if line[i:i + 1] != ":":
                raise _JsonLineError(f"expected ':' at character {i}")
            i = ws(line, i + 1).end()
            value, end = decoder.raw_decode(line, i)
            yield key, i, end, value
            i = ws(line, end).end()
            if line[i:i + 1] == ",":
                i = ws(line, i + 1).end()
                continue
            if line[i:i + 1] != "}":
                raise _JsonLineError(f"expected ',' or '}}' at character {i}")
            end = i + 1
            break
    if line[ws(line, end).end():]:
        raise _JsonLineError(f"extra data at character {end}")


def _remap_jsonl(f: _DataFile, target: Path, mapper: _Mapper, spec: _ColumnSpec, report: FileReport) -> None:
    np = mapper.np
    decoder = json.JSONDecoder()
    wanted = set(spec.names)
    seen: dict[str, None] = {}
    first_keys: list[str] | None = None
    lineno = 0

    encoders = {",": json.JSONEncoder(separators=(",", ":")), ", ": json.JSONEncoder(separators=(", ", ": "))}

    def not_ids(n: int, column: str, value: object) -> DatasetError:
        return DatasetError(f"{f.label}: line {n}, column {column!r} holds {_json_kind(value)}, not integer ids "
                            "(remap-ids maps integers or lists of integers)", hint="name the id columns with --columns")

    def flush(chunk: list, out) -> None:
        # chunk: (lineno, line, ending, spans); span: (start, end, column, first value in flat, count, scalar, values)
        flat = list(itertools.chain.from_iterable(span[6] for _, _, _, spans in chunk for span in spans))
        if not flat:
            for _, line, ending, _ in chunk:
                out.write((line + ending).encode("utf-8"))
            return
        try:  # one C pass checks every id: a float, string, null or nested list gives another dtype
            values = np.array(flat)
        except (ValueError, OverflowError, TypeError):
            values = None
        # numpy reads true/false among integers as 1/0: JSON booleans are no ids
        if values is None or values.ndim != 1 or values.dtype.kind not in "iu" or bool in set(map(type, flat)):
            for n, _, _, spans in chunk:  # only now, one by one: which line and column
                for _, _, column, _, _, _, vals in spans:
                    if any(type(v) is not int for v in vals):
                        raise not_ids(n, column, vals)
            raise DatasetError(f"{f.label}: ids that do not fit 64 bits")
        try:
            new, changed = mapper.map_np(values)
        except _DroppedId as e:
            for n, _, _, spans in chunk:
                for _, _, column, first, count, _, _ in spans:
                    if first <= e.position < first + count:
                        raise DatasetError(_dropped_line(_Where(f.label, column, 0, True), n, e.old)) from None
            raise AssertionError("dropped id outside every span") from None
        report.ids += int(values.size)
        report.changed += changed
        new_list = new.tolist()
        for _, line, ending, spans in chunk:
            parts, at = [], 0
            for start, end, _, first, count, scalar, old_vals in spans:
                vals = new_list[first:first + count]
                if vals == old_vals:
                    continue  # the original text, spacing and all
                parts.append(line[at:start])
                if scalar:
                    parts.append(str(vals[0]))
                else:
                    parts.append(encoders[", " if ", " in line[start:end] else ","].encode(vals))
                at = end
            parts.append(line[at:])
            out.write(("".join(parts) + ending).encode("utf-8"))

    chunk: list = []
    count_in_chunk = 0
    with open(f.path, "rb") as inp, open(target, "wb") as out:
        for raw in inp:
            lineno += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DatasetError(f"{f.label}: line {lineno} is not UTF-8 ({e.reason})") from None
            body = text.rstrip("\r\n")
            ending = text[len(body):]
            spans = []
            if body.strip():
                report.rows += 1
                try:
                    members = list(_fields(body, decoder))
                except (ValueError, IndexError) as e:
                    raise DatasetError(f"{f.label}: line {lineno} is not a JSON object "
                                       f"({_oneline(e)})", hint="remap-ids reads JSON lines: one object per line") \
                        from None
                if first_keys is None:
                    first_keys = [k for k, _, _, _ in members]
                for key, start, end, value in members:
                    if key not in wanted or value is None:
                        continue
                    seen[key] = None
                    if type(value) is not int and not isinstance(value, list):
                        raise not_ids(lineno, key, value)
                    vals = [value] if type(value) is int else value  # a list's items: checked in flush, in numpy
                    spans.append((start, end, key, count_in_chunk, len(vals), type(value) is int, vals))
                    count_in_chunk += len(vals)
            chunk.append((lineno, body, ending, spans))
            if len(chunk) >= JSONL_CHUNK_LINES:
                flush(chunk, out)
                chunk, count_in_chunk = [], 0
        if chunk:
            flush(chunk, out)
        out.flush()
        os.fsync(out.fileno())
    f.present = first_keys or []
    report.columns = [c for c in spec.names if c in seen]


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        inner = next((v for v in value if type(v) is not int), None)
        return f"a list with {_json_kind(inner)}" if inner is not None or not value else "a list"
    return {str: "a string", float: "a number with a fraction", bool: "a boolean", dict: "an object",
            type(None): "null"}.get(type(value), type(value).__name__)


# --- output -----------------------------------------------------------------------------------------------------


def _check_output(data: Path, out: Path, *, is_folder: bool, force: bool) -> None:
    """OUT must not be DATA, inside it or hold it; an existing OUT only with `force`, and only one that holds dataset
    files alone."""
    d, o = data.resolve(), out.resolve()
    if d == o or (is_folder and d in o.parents) or o in d.parents:
        raise OutputError(f"{out}: OUT must not be DATA, inside it, or hold it", hint="name a folder beside DATA")
    if not (out.exists() or out.is_symlink()):
        return
    if not force:
        raise OutputError(f"{out} already exists", hint="pass --force to replace it")
    if out.is_symlink():
        raise OutputError(f"{out} exists and is a symbolic link", hint="name a new path for OUT")
    if is_folder != out.is_dir():
        what = "a folder" if out.is_dir() else "a file"
        raise OutputError(f"{out} exists and is {what}, but the output is {'a folder' if is_folder else 'a file'}",
                          hint="name a new path for OUT")
    if not is_folder:
        if out.suffix.lower() not in _DATA_SUFFIXES:
            raise OutputError(f"{out} exists and is not a dataset file (.parquet, .arrow, .jsonl): --force does not "
                              "replace it", hint="name a new path for OUT")
        return
    _check_replaceable_folder(out)


def _check_replaceable_folder(out: Path) -> None:
    others = [p.relative_to(out).as_posix() + ("/" if p.is_dir() else "") for p in sorted(out.rglob("*"))
              if not (p.is_dir() and not p.is_symlink()) and not (
                  p.is_file() and not p.is_symlink() and (p.suffix.lower() in _DATA_SUFFIXES))]
    if others:
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        raise OutputError(f"{out} holds {', '.join(others[:3])}{more}, not dataset files: --force only replaces a "
                          "folder of dataset files", hint="name a new folder for OUT, or move those files away")


def _publish(stage: Path, out: Path, *, single: bool, force: bool) -> None:
    """The finished stage becomes OUT (a single file: the one file inside it). An existing OUT (with `force`) is
    replaced only once the new one is complete: a file by one rename, a folder moved aside first and put back if the
    rename fails."""
    if single:
        if out.exists() and not force:
            raise OutputError(f"{out} already exists", hint="pass --force to replace it")
        os.replace(stage / out.name, out)
        os.rmdir(stage)
        return
    from .writer import move_into_place
    move_into_place(stage, out, force, _check_replaceable_folder)

"""Execute a plan: stream tensor bytes into a staged folder beside the output, then rename it into place.

Memory stays bounded: bytes move in chunks of at most CHUNK_BYTES (by the kernel where it can),
and the only array ever built is one chunk of rows while averaging rows for new tokens.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import OutputError
from .plan import Plan, ShardPlan, SourceBytes
from .rows import CopyRows, MeanRows, PadRow, TablePlan
from .safetensors_header import encode_header

CHUNK_BYTES = 16 * 1024 * 1024
ProgressFn = Callable[[int], None]


def write_plan(plan: Plan, dst: Path, *, force: bool = False, progress: ProgressFn | None = None) -> None:
    """Write `plan` to `dst`: every file into a hidden stage folder beside it, then one rename.

    On any failure or interrupt the stage is removed and an existing `dst` (with `force`) is left as it was.
    Raises OutputError for I/O errors (disk full, unwritable parent), naming the file.
    """
    progress = progress or (lambda n: None)
    stage = _make_stage(dst)
    try:
        src = plan.checkpoint.root
        for f in plan.files:
            target = stage / f.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if f.parts is None:
                shutil.copyfile(src / f.name, target)
            else:
                _write_parts(f.parts, target)
        for shard in plan.shards:
            target = stage / shard.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if shard.changed:
                _write_shard(shard, target, progress)
            else:
                shutil.copyfile(shard.source.path, target)
                progress(shard.source.file_size)
        _move_into_place(stage, dst, force)
    except OSError as e:  # disk full, I/O error, a file vanishing under us: nothing may be left behind
        shutil.rmtree(stage, ignore_errors=True)
        where = f" ({e.filename})" if e.filename else ""
        kept = "; the existing OUT was left as it was" if dst.exists() else ""
        raise OutputError(f"{dst}: writing failed: {e.strerror or e}{where}; nothing was written{kept}",
                          hint="free space or fix the cause and run again") from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _make_stage(dst: Path) -> Path:
    """The hidden folder beside OUT that becomes OUT. Made with mkdir, so its mode follows the umask as
    save_pretrained's folders do (tempfile.mkdtemp's 0700 would hide the checkpoint from other users)."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        stage = dst.parent / f".{dst.name}.{secrets.token_hex(4)}.vocabfix-partial"
        stage.mkdir()
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        raise OutputError(f"{dst}: cannot create the output folder: {e.strerror or e}{where}",
                          hint="OUT's parent must be a writable folder") from None
    return stage


def _write_parts(parts: list[bytes | SourceBytes], target: Path) -> None:
    with open(target, "wb", buffering=0) as out:
        for part in parts:
            if isinstance(part, SourceBytes):
                with open(part.path, "rb") as src:
                    _copy_range(src, out, part.start, part.stop - part.start, lambda n: None)
            else:
                _write_all(out, part)


def _move_into_place(stage: Path, dst: Path, force: bool) -> None:
    """Rename the finished stage to OUT. With --force an old OUT is moved aside first and deleted only once the new
    one is in place; if that rename fails, the old OUT is put back before the error propagates."""
    if not dst.exists():
        os.rename(stage, dst)
        return
    if not force:
        raise OutputError(f"{dst} already exists", hint="pass --force to replace it")
    aside = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".vocabfix-old", dir=dst.parent))
    old = aside / "replaced"
    os.rename(dst, old)
    try:
        os.rename(stage, dst)
    except BaseException:
        os.rename(old, dst)
        os.rmdir(aside)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _write_shard(shard: ShardPlan, target: Path, progress: ProgressFn) -> None:
    with open(shard.source.path, "rb") as src, open(target, "wb", buffering=0) as out:
        _write_all(out, encode_header(shard.out_tensors(), shard.metadata))
        for tensor in shard.source.tensors:
            table = shard.tables.get(tensor.name)
            if table is None:
                _copy_range(src, out, tensor.start, tensor.nbytes, progress)
            else:
                _write_table(src, out, table, progress)


def _write_table(src: BinaryIO, out: BinaryIO, table: TablePlan, progress: ProgressFn) -> None:
    row_bytes = table.source.row_bytes
    mean_row = None
    for seg in table.segments:
        if isinstance(seg, CopyRows):
            _copy_range(src, out, table.source.start + seg.first_row * row_bytes, seg.count * row_bytes, progress)
        elif isinstance(seg, PadRow):
            src.seek(table.source.start)
            _repeat_row(out, src.read(row_bytes), seg.count, progress)
        elif isinstance(seg, MeanRows):
            if mean_row is None:
                mean_row = mean_of_rows(src, table)
            _repeat_row(out, mean_row, seg.count, progress)


def _copy_range(src: BinaryIO, out: BinaryIO, offset: int, length: int, progress: ProgressFn) -> None:
    done = 0
    while done < length:
        n = min(CHUNK_BYTES, length - done)
        try:
            copied = os.copy_file_range(src.fileno(), out.fileno(), n, offset + done)
        except OSError:  # not supported across these file systems: plain reads and writes
            src.seek(offset + done)
            copied = _write_all(out, src.read(n))
        if copied <= 0:
            raise OSError(f"short copy from {src.name} at byte {offset + done}")
        done += copied
        progress(copied)


def _write_all(out: BinaryIO, data: bytes) -> int:
    view = memoryview(data)
    while view:
        view = view[out.write(view):]
    return len(data)


def _repeat_row(out: BinaryIO, row: bytes, count: int, progress: ProgressFn) -> None:
    per_chunk = max(1, CHUNK_BYTES // max(1, len(row)))
    while count:
        n = min(per_chunk, count)
        _write_all(out, row * n)
        progress(len(row) * n)
        count -= n


# --- the mean of a table's text rows, for rows the input does not have ---------------------------------

def _to_float(raw: bytes, dtype: str) -> np.ndarray:
    """Rows as float32 (float64 for F64 rows, which float32 would round)."""
    if dtype == "BF16":
        return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    if dtype == "F64":
        return np.frombuffer(raw, dtype="<f8")
    return np.frombuffer(raw, dtype={"F32": "<f4", "F16": "<f2"}[dtype]).astype(np.float32)


def _from_float32(values: np.ndarray, dtype: str) -> bytes:
    if dtype == "BF16":  # round to nearest even, as torch does
        bits = values.astype(np.float32).view(np.uint32)
        rounded = (bits + (((bits >> 16) & 1) + 0x7FFF)) >> 16
        return rounded.astype("<u2").tobytes()
    return values.astype({"F32": "<f4", "F16": "<f2", "F64": "<f8"}[dtype]).tobytes()


def mean_of_rows(src: BinaryIO, table: TablePlan) -> bytes:
    """Mean of the first `table.mean_of_rows` rows, cast to the table's dtype.

    Accumulated in float64: float32 running sums over 262k rows lose low bits that bf16 rounding can expose.
    """
    info, rows = table.source, table.mean_of_rows
    width = info.row_bytes
    rows_per_chunk = max(1, CHUNK_BYTES // width)
    total = None
    for first in range(0, rows, rows_per_chunk):
        n = min(rows_per_chunk, rows - first)
        src.seek(info.start + first * width)
        chunk = _to_float(src.read(n * width), info.dtype).reshape(n, -1)
        part = chunk.sum(axis=0, dtype=np.float64)
        total = part if total is None else total + part
    mean = total / rows
    return _from_float32(mean if info.dtype == "F64" else mean.astype(np.float32), info.dtype)

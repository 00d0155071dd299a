"""Read safetensors headers (8-byte little-endian length + JSON) without touching tensor bytes."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from math import prod
from pathlib import Path

from .errors import CheckpointError

MAX_HEADER_BYTES = 100 * 1024 * 1024

DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor's bytes sit: `start`/`end` are absolute offsets in `path`."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    path: Path
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 0

    @property
    def row_bytes(self) -> int:
        return prod(self.shape[1:]) * DTYPE_SIZES[self.dtype]


@dataclass(frozen=True)
class ShardHeader:
    path: Path
    metadata: dict[str, str]
    tensors: tuple[TensorInfo, ...]  # in byte order
    file_size: int

    @property
    def data_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


def read_header(path: Path) -> ShardHeader:
    """Parse and validate one safetensors file's header."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise CheckpointError(f"{path.name}: truncated safetensors file (no header length)")
            (n,) = struct.unpack("<Q", prefix)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise CheckpointError(f"{path.name}: safetensors header length {n} is impossible for a "
                                      f"{size}-byte file")
            raw = f.read(n)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path.name}: malformed safetensors header ({e})") from None
    except RecursionError:
        raise CheckpointError(f"{path.name}: malformed safetensors header (JSON nested too deeply)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path.name}: malformed safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", None)
    return shard_header(path, metadata, header, 8 + n, size)


def shard_header(path: Path, metadata: object, entries: dict, data_start: int, file_size: int) -> ShardHeader:
    """Validate a header's metadata and tensor entries; the tensors' bytes must tile the data section exactly,
    as the safetensors format requires (no overlap, no hole, nothing after the last tensor)."""
    metadata = metadata or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path.name}: malformed safetensors header (__metadata__ is not a string -> string "
                              "map)")
    tensors = sorted((_tensor_info(path, name, entry, data_start, file_size) for name, entry in entries.items()),
                     key=lambda t: (t.start, t.end))
    cursor = data_start
    for t in tensors:
        if t.start != cursor:
            what = "overlaps the tensor before it" if t.start < cursor else "leaves a hole before it"
            raise CheckpointError(f"{path.name}: tensor {t.name!r} at bytes {t.start - data_start}.."
                                  f"{t.end - data_start} {what}")
        cursor = t.end
    if cursor != file_size:
        raise CheckpointError(f"{path.name}: {file_size - cursor} bytes after the last tensor (truncated header or "
                              "trailing garbage)")
    return ShardHeader(path=path, metadata=dict(metadata), tensors=tuple(tensors), file_size=file_size)


def _natural(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tensor_info(path: Path, name: str, entry: object, data_start: int, file_size: int) -> TensorInfo:
    try:
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    except (TypeError, KeyError):
        raise CheckpointError(f"{path.name}: tensor {name!r} has a malformed header entry") from None
    if not (isinstance(shape, list) and all(map(_natural, shape))
            and isinstance(offsets, list) and len(offsets) == 2 and all(map(_natural, offsets))):
        raise CheckpointError(f"{path.name}: tensor {name!r} has a malformed header entry (shape {shape!r}, "
                              f"data_offsets {offsets!r}: lists of non-negative integers expected)")
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise CheckpointError(f"{path.name}: tensor {name!r} has unknown dtype {dtype!r}")
    shape, (begin, end) = tuple(shape), offsets
    expected = prod(shape) * DTYPE_SIZES[dtype]
    if end - begin != expected or data_start + end > file_size:
        raise CheckpointError(f"{path.name}: tensor {name!r} byte range {begin}..{end} does not fit "
                              f"shape {list(shape)} {dtype} in a {file_size}-byte file")
    return TensorInfo(name, dtype, shape, path, data_start + begin, data_start + end)


def encode_header(tensors: list[tuple[str, str, tuple[int, ...], int]], metadata: dict[str, str]) -> bytes:
    """Header bytes for tensors given as (name, dtype, shape, nbytes) in the order their data follows."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, nbytes in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors aligns the data start to 8 bytes
    return struct.pack("<Q", len(raw)) + raw

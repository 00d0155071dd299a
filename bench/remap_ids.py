"""Throughput and peak RSS of `vocabfix remap-ids` (issue 11) on a synthetic tokenised dataset.

Writes `--rows` rows of `--seq` ids (input_ids int32, labels int64 with -100 on the first quarter of each row,
attention_mask int8; text ids drawn from a Zipf law over the E4B text range as words are, 1% image, audio and
appended ids, which are the ones that move), in the ways users store such data:

- Parquet with row groups of 1,000 rows (what `datasets` `to_parquet` writes),
- Parquet as pyarrow writes it by default (one row group of up to 1M rows: remap-ids reads it in ~32 MB pieces),
- a `datasets` `save_to_disk` folder (Arrow IPC stream, record batches of 1,000 rows),

then runs `vocabfix remap-ids DATA OUT --map ...` once on each in a fresh process under `/usr/bin/time -v`
(wall time, peak RSS). Tokens per second = rows x seq / wall seconds (both id columns are mapped: twice as many ids).

    .venv/bin/python bench/remap_ids.py [--rows 200000] [--seq 256] [--dir bench/out/remap_ids]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

T, V, A, K = 262144, 128, 128, 3  # the E4B id space and three appended tokens


def write_map(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"id_map": [{"old_start": 0, "old_stop": T, "new_start": 0},
                         {"old_start": T, "old_stop": T + V + A, "new_start": T + K},
                         {"old_start": T + V + A, "old_stop": T + V + A + K, "new_start": T}]}
    (folder / "vocabfix.json").write_text(json.dumps(record))
    return folder / "vocabfix.json"


def batches(rows: int, seq: int, per: int = 10_000):
    rng = np.random.default_rng(0)
    for start in range(0, rows, per):
        n = min(per, rows - start)
        ids = np.minimum(rng.zipf(1.2, size=(n, seq)), T - 1).astype(np.int32)  # text ids, a word-like spread
        moved = rng.random((n, seq)) < 0.01  # 1%: image, audio and appended ids (the ones that move)
        ids[moved] = rng.integers(T, T + V + A + K, size=int(moved.sum()), dtype=np.int32)
        labels = ids.astype(np.int64)
        labels[:, : seq // 4] = -100
        offsets = pa.array(np.arange(0, n * seq + 1, seq, dtype=np.int32))
        yield pa.record_batch({
            "input_ids": pa.ListArray.from_arrays(offsets, pa.array(ids.ravel())),
            "labels": pa.ListArray.from_arrays(offsets, pa.array(labels.ravel())),
            "attention_mask": pa.ListArray.from_arrays(offsets, pa.array(np.ones(n * seq, dtype=np.int8))),
        })


def build(root: Path, rows: int, seq: int) -> dict[str, Path]:
    """The save_to_disk folder first (the ids are drawn once), then both Parquet files from its batches."""
    out = {}
    schema = next(batches(1, seq)).schema
    folder = root / "sd"
    folder.mkdir()
    arrow = folder / "data-00000-of-00001.arrow"
    with pa.OSFile(str(arrow), "wb") as sink, pa.ipc.new_stream(sink, schema) as w:
        for b in batches(rows, seq, 1000):
            w.write_batch(b)
    features = {n: {"feature": {"dtype": str(t.value_type), "_type": "Value"}, "_type": "List"}
                for n, t in zip(schema.names, schema.types, strict=True)}
    (folder / "dataset_info.json").write_text(json.dumps({"features": features}))
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": arrow.name}],
                                                   "_fingerprint": "0123456789abcdef"}))
    path = out["parquet, row groups of 1,000 rows (datasets' to_parquet)"] = root / "rg1000.parquet"
    with pq.ParquetWriter(path, schema) as w, pa.OSFile(str(arrow)) as src:
        for b in pa.ipc.open_stream(src):
            w.write_batch(b)
    path = out["parquet, pyarrow's default row groups (one of 200k rows)"] = root / "default.parquet"
    with pa.OSFile(str(arrow)) as src:
        pq.write_table(pa.ipc.open_stream(src).read_all(), path)
    out["save_to_disk folder (Arrow stream, batches of 1,000 rows)"] = folder
    return out


COPY = """
import sys, pyarrow.parquet as pq
pf = pq.ParquetFile(sys.argv[1])
md = pf.metadata.row_group(0)
cols = [md.column(j) for j in range(md.num_columns)]
with pq.ParquetWriter(sys.argv[2], pf.schema_arrow, compression={c.path_in_schema: c.compression for c in cols},
                      use_dictionary=[c.path_in_schema for c in cols if c.has_dictionary_page]) as w:
    for i in range(pf.num_row_groups):
        w.write_table(pf.read_row_group(i))
"""


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of cmd under /usr/bin/time -v."""
    t = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024
    return wall, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent / "out" / "remap_ids")
    args = ap.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    the_map = write_map(args.dir / "ckpt")
    t = time.perf_counter()
    inputs = build(args.dir, args.rows, args.seq)
    print(f"built {args.rows:,} rows x {args.seq} ids in {time.perf_counter() - t:.1f} s")
    tokens = args.rows * args.seq
    for what, path in inputs.items():
        out = path.with_name(path.stem + "-fixed" + path.suffix)
        wall, rss = timed([sys.executable, "-m", "gemma3n_vocabfix.cli", "remap-ids", str(path), str(out),
                           "--map", str(the_map)])
        size = sum(p.stat().st_size for p in ([path] if path.is_file() else path.rglob("*")))
        print(f"{what}: {tokens / 1e6:.1f}M tokens ({size / 2**20:,.0f} MiB) in {wall:.2f} s = "
              f"{tokens / wall / 1e6:.1f}M tokens/s, peak RSS {rss:,.0f} MiB")
        if path.suffix == ".parquet":  # what pyarrow alone takes to decode and re-encode the same file
            wall, rss = timed([sys.executable, "-c", COPY, str(path), str(path.with_suffix(".copy"))])
            print(f"    for comparison, a plain pyarrow read + write of it: {wall:.2f} s, peak RSS {rss:,.0f} MiB")


if __name__ == "__main__":
    main()

"""`vocabfix remap-ids` (issue 11): datasets tokenised with the extended checkpoint's ids, carried over to the rewrite.

The end-to-end tests tokenise texts holding the appended tokens and the image/audio special tokens with the OLD
tokenizer of the tiny `small-resized` case (conftest.py) into a `datasets.Dataset`, save it the ways users do
(save_to_disk, a DatasetDict, to_parquet, to_json lines, a `.map()` cache file) and run `vocabfix remap-ids` as a user
does (a fresh process): the ids must be those the NEW (rewritten) tokenizer produces for the same texts, -100 labels
kept, every other column unchanged, DATA untouched. The Arrow/Parquet edge cases (nested, large and fixed-size lists,
nulls, slices, narrow ints, row groups) run the Python API on synthetic tables with a synthetic map.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import assert_one_line_error, invoke, run_cli, snapshot

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
datasets = pytest.importorskip("datasets")

from gemma3n_vocabfix.id_map import IdMap, IdRange  # noqa: E402
from gemma3n_vocabfix.remap_ids import remap_ids  # noqa: E402

TEXTS = [
    "hello <tool_call>zqxj</tool_call> world",
    "<start_of_image><image_soft_token><image_soft_token><end_of_image> look <start_of_audio><audio_soft_token>"
    "<end_of_audio>",
    "plain text, nothing new",
    "zqxj zqxj <tool_call>",
    "mixed <tool_call><image_soft_token></tool_call>",
]


def _labels(ids: list[int]) -> list[int]:
    """The prompt-masking a training script does: -100 on the first position and on every third one."""
    return [-100 if i == 0 or i % 3 == 1 else t for i, t in enumerate(ids)]


@pytest.fixture(scope="module")
def tok(case_factory, tmp_path_factory):
    """The case, the old and new tokenizers, and DATA saved every way, once for the module."""
    from transformers import AutoTokenizer

    case = case_factory("small-resized")
    old, new = AutoTokenizer.from_pretrained(case.extended), AutoTokenizer.from_pretrained(case.out)
    enc = old(TEXTS)
    ds = datasets.Dataset.from_dict({
        "text": TEXTS,
        "input_ids": enc["input_ids"],
        "labels": [_labels(ids) for ids in enc["input_ids"]],
        "attention_mask": enc["attention_mask"],
        "n": [len(ids) for ids in enc["input_ids"]],
    })
    root = tmp_path_factory.mktemp("remap")
    ds.save_to_disk(root / "sd")
    datasets.DatasetDict(train=ds, test=ds.select([1, 3])).save_to_disk(root / "dd")
    ds.to_parquet(root / "data.parquet")
    ds.to_json(root / "data.jsonl", lines=True)
    expected = new(TEXTS)["input_ids"]
    assert expected != enc["input_ids"]  # the texts do hold moved ids
    return {"case": case, "root": root, "ds": ds, "expected": expected, "map": case.out / "vocabfix.json",
            "before": snapshot(root)}


def _check_rows(rows: dict, tok: dict, pick=None) -> None:
    """Columns of the remapped data against the new tokenizer (labels: -100 kept where the old ones had it)."""
    idx = list(range(len(TEXTS))) if pick is None else pick
    expected = [tok["expected"][i] for i in idx]
    old = tok["ds"].select(idx)
    assert rows["input_ids"] == expected
    assert rows["labels"] == [[-100 if o == -100 else n for o, n in zip(lab, exp, strict=True)]
                              for lab, exp in zip(old["labels"], expected, strict=True)]
    for name in ("text", "attention_mask", "n"):
        assert rows[name] == old[name], name


def _untouched(tok) -> None:
    assert snapshot(tok["root"]) == tok["before"], "DATA was modified"


def test_save_to_disk_folder(tok, tmp_path) -> None:
    out = tmp_path / "out"
    proc = run_cli("remap-ids", tok["root"] / "sd", out, "--map", tok["map"])
    assert proc.returncode == 0, proc.stderr
    assert "Remapped" in proc.stdout and "changed" in proc.stdout
    loaded = datasets.load_from_disk(str(out))
    assert loaded.features == tok["ds"].features
    _check_rows(loaded[:], tok)
    src = tok["root"] / "sd"
    assert (out / "dataset_info.json").read_bytes() == (src / "dataset_info.json").read_bytes()
    old_state, new_state = json.loads((src / "state.json").read_text()), json.loads((out / "state.json").read_text())
    assert new_state["_fingerprint"] != old_state["_fingerprint"]
    assert {k: v for k, v in new_state.items() if k != "_fingerprint"} == \
        {k: v for k, v in old_state.items() if k != "_fingerprint"}
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in src.iterdir())
    arrow_in = pa.ipc.open_stream(pa.memory_map(str(next(src.glob("*.arrow"))))).schema
    arrow_out = pa.ipc.open_stream(pa.memory_map(str(next(out.glob("*.arrow"))))).schema
    assert arrow_out.equals(arrow_in, check_metadata=True)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no stage left
    _untouched(tok)


def test_dataset_dict_folder_json_report(tok, tmp_path) -> None:
    out = tmp_path / "out"
    proc = run_cli("remap-ids", tok["root"] / "dd", out, "--map", tok["map"].parent, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["format"] == "dataset_dict"
    assert report["columns_mapped"] == ["input_ids", "labels"]
    assert report["rows"] == len(TEXTS) + 2 and report["ids_changed"] > 0
    loaded = datasets.load_from_disk(str(out))
    _check_rows(loaded["train"][:], tok)
    _check_rows(loaded["test"][:], tok, [1, 3])
    _untouched(tok)


def test_parquet_file(tok, tmp_path) -> None:
    src, out = tok["root"] / "data.parquet", tmp_path / "fixed.parquet"
    proc = run_cli("remap-ids", src, out, "--map", tok["map"])
    assert proc.returncode == 0, proc.stderr
    _check_rows(pq.read_table(out).to_pydict(), tok)
    a, b = pq.ParquetFile(src), pq.ParquetFile(out)
    assert b.schema_arrow.equals(a.schema_arrow, check_metadata=True)
    assert [b.metadata.row_group(i).num_rows for i in range(b.num_row_groups)] == \
        [a.metadata.row_group(i).num_rows for i in range(a.num_row_groups)]
    assert [c.compression for c in _chunks(b)] == [c.compression for c in _chunks(a)]
    _untouched(tok)


def _chunks(pf):
    rg = pf.metadata.row_group(0)
    return [rg.column(j) for j in range(rg.num_columns)]


ID_SPANS = re.compile(r'"(input_ids|labels)":\[[^\]]*\]')


def test_json_lines_only_the_ids_change(tok, tmp_path) -> None:
    src, out = tok["root"] / "data.jsonl", tmp_path / "fixed.jsonl"
    proc = run_cli("remap-ids", src, out, "--map", tok["map"])
    assert proc.returncode == 0, proc.stderr
    before, after = src.read_text().splitlines(keepends=True), out.read_text().splitlines(keepends=True)
    assert len(after) == len(before) == len(TEXTS)
    rows = [json.loads(line) for line in after]
    _check_rows({k: [r[k] for r in rows] for k in rows[0]}, tok)
    for b, a in zip(before, after, strict=True):  # everything but the id lists: the same bytes
        assert ID_SPANS.sub("", a) == ID_SPANS.sub("", b)
        assert list(json.loads(a)) == list(json.loads(b))  # key order
    unchanged = [i for i, t in enumerate(TEXTS) if "<" not in t and "zqxj" not in t]
    assert unchanged and all(after[i] == before[i] for i in unchanged)
    _untouched(tok)


def test_datasets_cache_folder_and_arrow_file(tok, tmp_path) -> None:
    """A `.map(tokenize)` cache: the cache file with the ids is remapped, the source file without them copied."""
    from transformers import AutoTokenizer

    old = AutoTokenizer.from_pretrained(tok["case"].extended)
    cache = tmp_path / "cache"
    cache.mkdir()
    raw = datasets.Dataset.from_dict({"text": TEXTS}).map(lambda b: b, batched=True,
                                                          cache_file_name=str(cache / "cache-src.arrow"))
    raw.map(lambda b: old(b["text"]), batched=True, batch_size=2, cache_file_name=str(cache / "cache-tok.arrow"))
    before = snapshot(cache)
    out = tmp_path / "cache-fixed"
    proc = run_cli("remap-ids", cache, out, "--map", tok["map"], "--columns", "input_ids")
    assert proc.returncode == 0, proc.stderr
    assert "copied unchanged: cache-src.arrow" in proc.stdout
    got = datasets.Dataset.from_file(str(out / "cache-tok.arrow"))
    assert got["input_ids"] == tok["expected"] and got["text"] == TEXTS
    assert (out / "cache-src.arrow").read_bytes() == (cache / "cache-src.arrow").read_bytes()
    n_batches = pa.ipc.open_stream(pa.memory_map(str(cache / "cache-tok.arrow"))).read_all().column(0).num_chunks
    assert pa.ipc.open_stream(pa.memory_map(str(out / "cache-tok.arrow"))).read_all().column(0).num_chunks == \
        n_batches  # the same record batches
    single = tmp_path / "one.arrow"
    proc = run_cli("remap-ids", cache / "cache-tok.arrow", single, "--map", tok["map"])
    assert proc.returncode == 0, proc.stderr
    assert datasets.Dataset.from_file(str(single))["input_ids"] == tok["expected"]
    assert snapshot(cache) == before


# --- errors -----------------------------------------------------------------------------------------------------


def test_one_line_errors(tok, tmp_path) -> None:
    root, m = tok["root"], tok["map"]
    out = tmp_path / "out"
    cases = [
        (["remap-ids", root / "sd", out, "--map", m, "--columns", "input_ids,token_ids"],
         ["no column 'token_ids'", "its columns: text, input_ids, labels, attention_mask, n"]),
        (["remap-ids", root / "data.parquet", tmp_path / "o.parquet", "--map", m, "--columns", "text"],
         ["column 'text' holds string, not integer ids"]),
        (["remap-ids", root / "data.jsonl", tmp_path / "o.jsonl", "--map", m, "--columns", "text"],
         ["line 1, column 'text' holds a string, not integer ids"]),
        (["remap-ids", _write(tmp_path / "b.jsonl", '{"input_ids": [2, true, 5]}\n'), tmp_path / "ob.jsonl", "--map",
          m], ["line 1, column 'input_ids' holds a list with a boolean, not integer ids"]),  # numpy would read 1
        (["remap-ids", root / "data.jsonl", tmp_path / "o.jsonl", "--map", m, "--columns", "ids"],
         ["no column 'ids'", "its columns: text, input_ids, labels, attention_mask, n"]),
        (["remap-ids", _write(tmp_path / "d.csv", "a,b\n1,2\n"), out, "--map", m], ["unknown format"]),
        (["remap-ids", _write(tmp_path / "arr.json", "[{\"input_ids\": [1]}]"), out, "--map", m],
         ["a JSON array, not JSON lines"]),
        (["remap-ids", _write(tmp_path / "bad.jsonl", '{"input_ids": [1, 2]}\n{"input_ids": [1,\n'), out,
          "--map", m], ["line 2 is not a JSON object"]),
        (["remap-ids", tmp_path / "missing", out, "--map", m], ["no such file or folder"]),
        (["remap-ids", root / "sd", out, "--map", tmp_path / "nope.json"], ["cannot read"]),
        (["remap-ids", root / "sd", root / "sd" / "inside", "--map", m], ["must not be DATA, inside it"]),
        (["remap-ids", root / "sd", root, "--map", m, "--force"], ["must not be DATA, inside it, or hold it"]),
    ]
    for args, needles in cases:
        assert_one_line_error(invoke(*args), *needles)
    as_json = invoke("remap-ids", root / "sd", out, "--map", m, "--columns", "text", "--json")
    assert_one_line_error(as_json, "column 'text' holds string")
    doc = json.loads(as_json.stdout)  # a CI step reading stdout gets one error document
    assert doc["command"] == "vocabfix remap-ids" and doc["error"]["type"] == "DatasetError"
    assert not out.exists() and not (tmp_path / "o.parquet").exists() and not (tmp_path / "o.jsonl").exists()
    assert not [p for p in tmp_path.iterdir() if "vocabfix" in p.name], "a stage was left behind"
    _untouched(tok)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_existing_out_needs_force_and_only_dataset_files_are_replaced(tok, tmp_path) -> None:
    src, out = tok["root"] / "sd", tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert_one_line_error(invoke("remap-ids", src, out, "--map", tok["map"]), "already exists")
    assert_one_line_error(invoke("remap-ids", src, out, "--map", tok["map"], "--force"), "notes.txt")
    (out / "notes.txt").unlink()
    (out / "old.arrow").write_bytes(b"x")
    result = invoke("remap-ids", src, out, "--map", tok["map"], "--force")
    assert result.exit_code == 0, result.stderr
    assert not (out / "old.arrow").exists() and (out / "state.json").is_file()
    _check_rows(datasets.load_from_disk(str(out))[:], tok)


def test_dropped_id_names_row_and_column(tok, tmp_path) -> None:
    """--strategy unused gives <unusedN> slots to the appended tokens: data holding such a slot's old id cannot be
    carried over, and the error says where it is."""
    from transformers import AutoTokenizer

    from gemma3n_vocabfix import rewrite_checkpoint

    case = tok["case"]
    rewrite_checkpoint(case.extended, tmp_path / "unused", strategy="unused")
    old = AutoTokenizer.from_pretrained(case.extended)
    texts = ["fine <tool_call>", "also fine", "oops <unused1> here"]
    ds = datasets.Dataset.from_dict({"input_ids": old(texts)["input_ids"]})
    ds.to_parquet(tmp_path / "d.parquet")
    ds.to_json(tmp_path / "d.jsonl", lines=True)
    m = tmp_path / "unused" / "vocabfix.json"
    slot = old.convert_tokens_to_ids("<unused1>")
    line = assert_one_line_error(invoke("remap-ids", tmp_path / "d.parquet", tmp_path / "o.parquet", "--map", m),
                                 "row 2, column 'input_ids'", f"id {slot} has no new id")
    assert "d.parquet" in line
    assert_one_line_error(invoke("remap-ids", tmp_path / "d.jsonl", tmp_path / "o.jsonl", "--map", m),
                          "line 3, column 'input_ids'", f"id {slot} has no new id")
    assert not (tmp_path / "o.parquet").exists() and not (tmp_path / "o.jsonl").exists()
    ok = invoke("remap-ids", tmp_path / "d.parquet", tmp_path / "o.parquet", "--map", m, "--force")
    assert ok.exit_code == 2  # still the same id: nothing is written
    ds.select([0, 1]).to_parquet(tmp_path / "fine.parquet")
    assert invoke("remap-ids", tmp_path / "fine.parquet", tmp_path / "o.parquet", "--map", m).exit_code == 0
    new = AutoTokenizer.from_pretrained(tmp_path / "unused")
    assert pq.read_table(tmp_path / "o.parquet")["input_ids"].to_pylist() == new(texts[:2])["input_ids"]


def test_without_pyarrow(tok, tmp_path) -> None:
    """Parquet and Arrow need the `data` extra (one line saying how to install it); JSON lines work without it."""
    fake = tmp_path / "fake"
    (fake / "pyarrow").mkdir(parents=True)
    (fake / "pyarrow" / "__init__.py").write_text("raise ImportError(\"No module named 'pyarrow'\")\n")
    env = {"PYTHONPATH": str(fake)}
    proc = run_cli("remap-ids", tok["root"] / "sd", tmp_path / "out", "--map", tok["map"], env=env)
    assert_one_line_error(proc, "needs pyarrow", "pip install 'gemma3n-vocabfix[data]'")
    proc = run_cli("remap-ids", tok["root"] / "data.jsonl", tmp_path / "o.jsonl", "--map", tok["map"], env=env)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["input_ids"] for r in rows] == tok["expected"]


# --- the Python API, on synthetic maps and tables ---------------------------------------------------------------

#: old [0, 10) text, [10, 14) multimodal, [14, 16) appended -> text, appended [10, 12), multimodal [12, 16)
SHIFT = IdMap([IdRange(0, 0, 10), IdRange(10, 12, 4), IdRange(14, 10, 2)])


def test_id_map_on_numpy_arrays_and_lists() -> None:
    ids = np.array([[0, 9, 10, 13], [14, 15, -100, 99]], dtype=np.int32)
    got = SHIFT.map(ids)
    assert got.dtype == np.int64 and got.shape == ids.shape
    assert got.tolist() == [[0, 9, 12, 15], [10, 11, -100, 99]]  # -100 and past-the-map ids unchanged
    assert ids.tolist() == [[0, 9, 10, 13], [14, 15, -100, 99]]  # the input is not modified
    assert SHIFT.map([14, -1, 3]) == [10, -1, 3]
    assert SHIFT.lookup_table().tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 15, 10, 11]
    dropped = IdMap([IdRange(0, 0, 6), IdRange(7, 6, 3)], dropped=[(6, 7)])
    with pytest.raises(ValueError, match="id 6 has no new id"):
        dropped.map(np.array([1, 6]))
    with pytest.raises(TypeError):
        SHIFT.map(np.array([1.0]))


def _expected(value):
    if value is None:
        return None
    if isinstance(value, list):
        return [_expected(v) for v in value]
    return SHIFT(value)


def test_arrow_list_kinds_nulls_slices_and_scalars(tmp_path) -> None:
    ids = [[1, 14, 15], None, [], [10, -100, 13, 20]]
    table = pa.table({
        "input_ids": pa.array(ids, pa.list_(pa.int32())),
        "labels": pa.array(ids, pa.large_list(pa.int64())),
        "nested": pa.array([[[14], [15, 1]], None, [[]], [None, [13, None]]], pa.list_(pa.list_(pa.int64()))),
        "fixed": pa.array([[14, 1], [10, 11], [15, 15], [0, -1]], pa.list_(pa.int16(), 2)),
        "token": pa.array([14, None, 3, 13], pa.uint32()),
        "other": pa.array([[14], [15], [10], [13]], pa.list_(pa.int32())),
    }).replace_schema_metadata({"huggingface": "{}"})
    sliced = table.slice(1)  # offsets into the same buffers
    for name, data in (("whole", table), ("sliced", sliced)):
        src = tmp_path / f"{name}.arrow"
        with pa.OSFile(str(src), "wb") as sink, pa.ipc.new_stream(sink, data.schema) as w:
            for batch in data.to_batches(max_chunksize=2):
                w.write_batch(batch)
        cols = ("input_ids", "labels", "nested", "fixed", "token")
        report = remap_ids(src, tmp_path / f"{name}-out.arrow", SHIFT, columns=cols)
        got = pa.ipc.open_stream(pa.memory_map(str(tmp_path / f"{name}-out.arrow"))).read_all()
        assert got.schema.equals(data.schema, check_metadata=True)
        for col in cols:
            assert got[col].to_pylist() == _expected(data[col].to_pylist()), (name, col)
        assert got["other"].to_pylist() == data["other"].to_pylist()
        assert report.rows == data.num_rows and report.mapped_columns == list(cols)


def test_arrow_ipc_file_format_and_narrow_ints(tmp_path) -> None:
    src = tmp_path / "f.arrow"
    # int8 labels with -100 (and -1): the lookup of negative ids must not overflow int8 (-100 + 128)
    table = pa.table({"input_ids": pa.array([[14, 1], [13]], pa.list_(pa.int8())),
                      "labels": pa.array([[-100, 14], [-1]], pa.list_(pa.int8()))})
    with pa.OSFile(str(src), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    remap_ids(src, tmp_path / "o.arrow", SHIFT)
    out = pa.ipc.open_file(pa.memory_map(str(tmp_path / "o.arrow"))).read_all()  # still the IPC file format
    assert out["input_ids"].to_pylist() == [[10, 1], [15]]
    assert out["labels"].to_pylist() == [[-100, 10], [-1]] and out.schema == table.schema
    big = IdMap([IdRange(0, 0, 10), IdRange(10, 300, 4), IdRange(14, 10, 290)])
    with pytest.raises(Exception, match="holds int8 ids, too narrow for new id 303"):
        remap_ids(src, tmp_path / "o2.arrow", big)
    assert not (tmp_path / "o2.arrow").exists()


def test_parquet_row_groups_kept_and_big_ones_split(tmp_path, monkeypatch) -> None:
    from gemma3n_vocabfix import remap_ids as module

    rows = 1000
    rng = np.random.default_rng(0)
    ids = [rng.integers(-1, 16, size=int(n)).tolist() for n in rng.integers(0, 20, size=rows)]
    table = pa.table({"input_ids": pa.array(ids, pa.list_(pa.int32())), "k": np.arange(rows)})
    src = tmp_path / "d.parquet"
    pq.write_table(table, src, row_group_size=300, compression={"input_ids.list.element": "zstd", "k": "gzip"})
    remap_ids(src, tmp_path / "o.parquet", SHIFT)
    out = pq.ParquetFile(tmp_path / "o.parquet")
    assert [out.metadata.row_group(i).num_rows for i in range(out.num_row_groups)] == [300, 300, 300, 100]
    assert [c.compression for c in _chunks(out)] == ["ZSTD", "GZIP"]
    assert out.read()["input_ids"].to_pylist() == _expected(ids)
    monkeypatch.setattr(module, "ROW_GROUP_MAX_BYTES", 1000)  # every row group is "too big": read in pieces
    monkeypatch.setattr(module, "PIECE_BYTES", 500)
    remap_ids(src, tmp_path / "p.parquet", SHIFT)
    pieces = pq.ParquetFile(tmp_path / "p.parquet")
    assert pieces.num_row_groups > 4
    assert pieces.read().equals(out.read())


def test_json_lines_spacing_scalars_nulls_and_line_endings(tmp_path) -> None:
    src = tmp_path / "d.jsonl"
    src.write_bytes('{"input_ids": [14, 1, 10], "text": "ünï <x>", "labels": [-100, 15]}\r\n'
                    '\n'
                    '{"labels":null,"input_ids":[],"meta":{"input_ids":[14]}}\n'
                    '{"input_ids":13,"labels":[1,2]}'.encode())
    report = remap_ids(src, tmp_path / "o.jsonl", SHIFT)
    assert (tmp_path / "o.jsonl").read_bytes() == (
        '{"input_ids": [10, 1, 12], "text": "ünï <x>", "labels": [-100, 11]}\r\n'
        '\n'
        '{"labels":null,"input_ids":[],"meta":{"input_ids":[14]}}\n'  # only top-level keys are columns
        '{"input_ids":15,"labels":[1,2]}').encode()
    assert report.rows == 3 and report.ids == 8 and report.changed == 4
    for i, bad in enumerate(('[1, 2.5]', '[[1], [2]]', '"7"', '[1, null]', 'true')):
        path = tmp_path / f"bad{i}.jsonl"
        path.write_text('{"input_ids": [1]}\n{"input_ids": [2]}\n{"input_ids": ' + bad + '}\n')
        with pytest.raises(Exception, match=r"line 3, column 'input_ids' holds .*, not integer ids"):
            remap_ids(path, tmp_path / f"o{i}.jsonl", SHIFT)
        assert not (tmp_path / f"o{i}.jsonl").exists()


def test_parquet_folder_mirrored_and_a_killed_runs_stage_removed(tmp_path) -> None:
    data = tmp_path / "data"
    (data / "lang=en").mkdir(parents=True)
    for i, rel in enumerate(("part-0.parquet", "lang=en/part-1.parquet")):
        pq.write_table(pa.table({"input_ids": pa.array([[14, i], [15]], pa.list_(pa.int64()))}), data / rel)
    (data / "README.md").write_text("notes")
    stale = tmp_path / ".out.deadbeef.vocabfix-partial"  # what SIGKILL leaves: a stage whose process is gone
    stale.mkdir()
    (stale / ".vocabfix-stage").write_text("999999999\n")
    before = snapshot(data)
    report = remap_ids(data, tmp_path / "out", SHIFT, columns=["input_ids"])
    assert report.stale_removed == [stale] and not stale.exists()
    assert report.format == "folder" and report.copied == ["README.md"]
    assert (tmp_path / "out" / "README.md").read_text() == "notes"
    for i, rel in enumerate(("part-0.parquet", "lang=en/part-1.parquet")):
        assert pq.read_table(tmp_path / "out" / rel)["input_ids"].to_pylist() == [[10, i], [11]]
    assert snapshot(data) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out"]

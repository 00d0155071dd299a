"""`vocabfix verify IN OUT` (gemma3n_vocabfix/verify.py): exit 0 on what `rewrite` writes (every init, both
strategies, tiny real Gemma 3n checkpoints of every compat variant), exit 1 naming the file and place of each kind
of difference a damaged or hand-edited OUT can have, exit 2 with one line when IN, OUT or the record cannot be
read. `rewrite --verify` proves the staged folder before it becomes OUT; `--load` runs OUT in stock transformers.

The damage is done here with plain file edits (json, bytes), never with the package.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import on_variants
from fixtures.helpers import (
    COLUMNS,
    EMBED,
    INDEX,
    NEW,
    ROOT,
    SHARD1,
    SHARD2,
    A,
    T,
    V,
    assert_one_line_error,
    edit_json,
    hash_tree,
    invoke,
    lines,
    read_json,
    run_cli,
)
from fixtures.oracle import DocLayout
from fixtures.synthetic import build

from gemma3n_vocabfix import rewrite_checkpoint

IDS = DocLayout(T, V, A, len(NEW))


def verify(src: Path, out: Path, *extra: str) -> dict:
    """verify --json in process: the exit code and the parsed report."""
    result = invoke("verify", src, out, "--json", *extra)
    assert result.exit_code in (0, 1), result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is (result.exit_code == 0)
    return data


def differences(data: dict) -> list[str]:
    return [f"{d['file']}: {d['where']}: {d['message']}" for d in data["differences"]]


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(raw)


def tensor_offset(path: Path, name: str, row: int = 0) -> int:
    """Absolute offset of row `row` of tensor `name`, read from the safetensors header with json only."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    entry = json.loads(raw[8:8 + n])[name]
    row_bytes = (entry["data_offsets"][1] - entry["data_offsets"][0]) // entry["shape"][0]
    return 8 + n + entry["data_offsets"][0] + row * row_bytes


# --- proven --------------------------------------------------------------------------------------------------


NOT_RESIZED = dict(embed_rows=T + V + A, per_layer_rows=T)  # the new ids have no rows: they are initialised
REWRITES = {
    "resized": ({}, {}),
    "not-resized-mean": (NOT_RESIZED, {}),
    "not-resized-zeros": (NOT_RESIZED, {"init": "zeros"}),
    "not-resized-normal": (NOT_RESIZED, {"init": "normal"}),
    "not-resized-subtoken": (NOT_RESIZED, {"init": "subtoken"}),
    "not-resized-copy": (NOT_RESIZED, {"init": "copy:tok7"}),
    "reinit-normal": ({}, {"init": "normal", "reinit": True}),
    "reinit-subtoken": ({}, {"init": "subtoken", "reinit": True}),
    "padded-untied-short-lm-head": ({"embed_rows": 64, "lm_head_rows": T + V + A}, {}),
    "f16": ({"dtype": "float16"}, {}),
    "unused-slots": ({"unused": {10: 0, 11: 1, 12: 2, 13: 3}}, {"strategy": "unused"}),
    "unused-slots-not-resized": ({"unused": {10: 0, 11: 1, 12: 2}, **NOT_RESIZED}, {"strategy": "unused"}),
}


@pytest.mark.parametrize("name", list(REWRITES))
def test_every_rewrite_is_proven(name: str, tmp_path: Path) -> None:
    import numpy as np
    build_kw, rewrite_kw = REWRITES[name]
    if "dtype" in build_kw:
        build_kw = {**build_kw, "dtype": getattr(np, build_kw["dtype"])}
    src = build(tmp_path / "in", text=T, vision=V, audio=A, new_tokens=NEW, **build_kw)
    before = hash_tree(src)
    out = tmp_path / "out"
    report = rewrite_checkpoint(src, out, **rewrite_kw)
    data = verify(src, out)
    assert data["ok"], differences(data)
    initialised = sum(t["rows_initialised"] + t["rows_from_row_0"] for t in report.to_dict()["tensors"])
    assert data["checked"]["rows_new"] == initialised
    assert data["checked"]["tables"] == len(report.plan.changed_tables)
    assert hash_tree(src) == before  # verify reads only


@on_variants("small-resized", "small-not-resized", "small-pad64-processor-save", "small-untied-base",
             "small-untie-on-extend", "real-bf16-resized-v4tok", "real-f32-untie-pad128")
def test_rewrites_of_real_tiny_checkpoints_are_proven(case) -> None:
    proc = run_cli("verify", case.extended, case.out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines(proc.stdout)[0].startswith("Verified:") and proc.stderr == ""


def test_an_out_without_record_must_be_a_byte_copy(tmp_path: Path) -> None:
    released = build(tmp_path / "rel", text=T, vision=V, audio=A)
    out = tmp_path / "out"
    rewrite_checkpoint(released, out)  # nothing to change: a copy, no vocabfix.json
    assert not (out / "vocabfix.json").exists()
    data = verify(released, out)
    assert data["ok"] and not data["recorded"]
    flip(out / SHARD2, (out / SHARD2).stat().st_size - 1)
    data = verify(released, out)
    assert not data["ok"] and data["differences"][0]["file"] == SHARD2


def test_a_rewrite_of_a_rewrite_records_itself(tmp_path: Path) -> None:
    """Rewriting an earlier output changes nothing, but OUT must not carry the earlier vocabfix.json as its record:
    verify would check (and remap-ids --map would apply) the earlier id map a second time. OUT's record is the
    identity, the earlier one under "previous"; verify proves it, and remapped ids stay where they are."""
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    first, second = tmp_path / "first", tmp_path / "second"
    rewrite_checkpoint(src, first)
    report = rewrite_checkpoint(first, second, verify=True)
    assert not report.changed and report.verified.ok
    record = json.loads((second / "vocabfix.json").read_text())
    assert record["previous"] == json.loads((first / "vocabfix.json").read_text())
    assert verify(first, second)["ok"]
    ids = list(range(T + len(NEW) + V + A))
    data = tmp_path / "ids.jsonl"
    data.write_text(json.dumps({"input_ids": ids}) + "\n")
    result = invoke("remap-ids", data, tmp_path / "remapped.jsonl", "--map", second)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert json.loads((tmp_path / "remapped.jsonl").read_text())["input_ids"] == ids


# --- each kind of difference, named ------------------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """IN not resized (so OUT has rows initialised to the mean) and its rewrite."""
    src = build(tmp_path / "in", text=T, vision=V, audio=A, new_tokens=NEW, **NOT_RESIZED)
    rewrite_checkpoint(src, tmp_path / "out")
    return src, tmp_path / "out"


def _set(path: Path, keys: str, value) -> None:
    def edit(data):
        *parents, last = keys.split(".")
        for k in parents:
            data = data[k]
        data[last] = value
    edit_json(path, edit)


def _swap_added_token_ids(out: Path) -> None:
    def edit(data):
        a, b = data["added_tokens"][-1], data["added_tokens"][-2]
        a["id"], b["id"] = b["id"], a["id"]
    edit_json(out / "tokenizer.json", edit)


def _move_tensor_in_index(out: Path) -> None:
    edit_json(out / INDEX, lambda d: d["weight_map"].update({EMBED: SHARD2}))


UP_PROJ = "model.language_model.layers.0.mlp.up_proj.weight"
DAMAGE = {
    # name: (what is done to OUT, the file named, a word of where)
    "byte of a copied tensor": (lambda o: flip(o / SHARD1, tensor_offset(o / SHARD1, UP_PROJ) + 5), SHARD1,
                                "up_proj"),
    "byte of a moved row": (lambda o: flip(o / SHARD1, tensor_offset(o / SHARD1, EMBED, IDS.pi(45)) + 1),
                            SHARD1, f"row {IDS.pi(45)}"),
    "byte of a mean row": (lambda o: flip(o / SHARD1, tensor_offset(o / SHARD1, EMBED, IDS.pi(T + V + A)) + 2),
                           SHARD1, f"row {IDS.pi(T + V + A)}"),
    "two rows swapped": (lambda o: _swap_rows(o / SHARD1, EMBED, 3, 4), SHARD1, "row 3"),
    "a non-layout config key": (lambda o: _set(o / "config.json", "text_config.rms_norm_eps", 0.5),
                                "config.json", "text_config.rms_norm_eps"),
    "a layout field": (lambda o: _set(o / "config.json", "text_config.vocab_size_per_layer_input", T + V + A),
                       "config.json", "text_config.vocab_size_per_layer_input"),
    "a special id left unmapped": (lambda o: _set(o / "config.json", "image_token_id", T + 1),
                                   "config.json", "image_token_id"),
    "a generation_config id": (lambda o: _set(o / "generation_config.json", "pad_token_id", 7),
                               "generation_config.json", "pad_token_id"),
    "two tokens' ids swapped": (_swap_added_token_ids, "tokenizer.json", "added_tokens"),
    "a key added to tokenizer_config": (lambda o: _set(o / "tokenizer_config.json", "model_max_length", 12),
                                        "tokenizer_config.json", "model_max_length"),
    "a piece of tokenizer.model": (lambda o: _replace_bytes(o / "tokenizer.model", b"tok17", b"tok71"),
                                   "tokenizer.model", "byte"),
    "the index's total_size": (lambda o: _set(o / INDEX, "metadata.total_size", 1), INDEX, "metadata.total_size"),
    "a tensor under the wrong shard": (_move_tensor_in_index, INDEX, EMBED),
    "a copied file edited": (lambda o: (o / "README.md").write_text("edited\n"), "README.md", ""),
    "a file added": (lambda o: (o / "notes.txt").write_text("x"), "notes.txt", ""),
    "a file removed": (lambda o: (o / "chat_template.jinja").unlink(), "chat_template.jinja", ""),
    "the record's id map": (lambda o: _set(o / "vocabfix.json", "layout_after.vocab_size", T + V + A + 1),
                            "config.json", "text_config.vocab_size"),
}


def _swap_rows(path: Path, name: str, a: int, b: int) -> None:
    raw = bytearray(path.read_bytes())
    ra, rb = tensor_offset(path, name, a), tensor_offset(path, name, b)
    size = rb - ra if b == a + 1 else None
    assert size
    raw[ra:ra + size], raw[rb:rb + size] = raw[rb:rb + size], raw[ra:ra + size]
    path.write_bytes(raw)


def _replace_bytes(path: Path, old: bytes, new: bytes) -> None:
    raw = path.read_bytes()
    assert raw.count(old) == 1
    path.write_bytes(raw.replace(old, new))


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_each_difference_is_named_and_exits_1(damage: str, pair: tuple[Path, Path]) -> None:
    src, out = pair
    assert verify(src, out)["ok"]
    do, file, where = DAMAGE[damage]
    do(out)
    result = invoke("verify", src, out)
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    named = lines(result.stdout)[1:]
    assert any(line.strip().startswith(f"{file}:") and where in line for line in named), result.stdout


def test_verify_against_another_input_is_a_difference(pair: tuple[Path, Path], tmp_path: Path) -> None:
    src, out = pair
    other = build(tmp_path / "other", text=T, vision=V, audio=A, new_tokens=["<x>", "<y>", "<z>"], **NOT_RESIZED)
    data = verify(other, out)
    assert not data["ok"] and any(d["file"] == "tokenizer.json" for d in data["differences"])


# --- cannot read: exit 2, one line ------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["no OUT", "OUT is a file", "record not JSON", "record without id_map",
                                  "record with a bad id map", "no IN", "IN not Gemma 3n", "truncated OUT shard"])
def test_unreadable_input_exits_2_with_one_line(what: str, pair: tuple[Path, Path], tmp_path: Path) -> None:
    src, out = pair
    if what == "no OUT":
        out = tmp_path / "missing"
    elif what == "OUT is a file":
        out = out / "README.md"
    elif what == "record not JSON":
        (out / "vocabfix.json").write_text("{")
    elif what == "record without id_map":
        edit_json(out / "vocabfix.json", lambda d: d.pop("id_map"))
    elif what == "record with a bad id map":
        edit_json(out / "vocabfix.json", lambda d: d["id_map"][0].update(new_start=5))
    elif what == "no IN":
        src = tmp_path / "nothing-here"
    elif what == "IN not Gemma 3n":
        edit_json(src / "config.json", lambda d: d.update(model_type="llama"))
    elif what == "truncated OUT shard":
        shard = out / SHARD2
        shard.write_bytes(shard.read_bytes()[:-3])
    assert_one_line_error(invoke("verify", src, out), code=2)


# --- formats -----------------------------------------------------------------------------------------------------


def test_json_and_github_formats(pair: tuple[Path, Path]) -> None:
    src, out = pair
    data = verify(src, out)
    assert data["checked"]["files"] >= 10 and data["bytes_read"] > 2 * (out / SHARD1).stat().st_size
    (out / "README.md").write_text("edited\n")
    gh = invoke("verify", src, out, "--format", "github")
    assert gh.exit_code == 1
    assert gh.stdout.startswith("::error title=vocabfix verify%3A README.md::README.md")


# --- rewrite --verify ---------------------------------------------------------------------------------------------


def test_rewrite_verify_proves_the_output(extended: Path, tmp_path: Path) -> None:
    proc = run_cli("rewrite", extended, tmp_path / "out", "--verify")
    assert proc.returncode == 0, proc.stderr
    assert any(line.startswith("Verified before it became OUT") for line in lines(proc.stdout))
    data = invoke("rewrite", extended, tmp_path / "out2", "--verify", "--json")
    assert data.exit_code == 0 and json.loads(data.stdout)["verify"]["ok"] is True


def test_rewrite_verify_publishes_nothing_when_the_stage_differs(extended: Path, tmp_path: Path,
                                                                 monkeypatch) -> None:
    """A writer that damages one copied file: the proof fails, the stage goes, no OUT, exit 1, one line."""
    from gemma3n_vocabfix import writer

    real_copy = writer._copy_file

    def damaging_copy(src, target, *args, **kwargs):
        real_copy(src, target, *args, **kwargs)
        if Path(target).name == "README.md":
            with open(target, "ab") as f:
                f.write(b"!")

    monkeypatch.setattr(writer, "_copy_file", damaging_copy)
    line = assert_one_line_error(invoke("rewrite", extended, tmp_path / "out", "--verify"), "README.md", code=1)
    assert "nothing was written" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext"]


# --- --load -----------------------------------------------------------------------------------------------------


@on_variants("small-resized")
def test_load_runs_the_new_and_multimodal_ids_in_stock_transformers(case) -> None:
    proc = run_cli("verify", case.extended, case.out, "--load", "--json", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    load = json.loads(proc.stdout)["load"]
    config = read_json(case.out / "config.json")
    special = {config[k] for k in ("boi_token_id", "eoi_token_id", "image_token_id", "boa_token_id",
                                   "eoa_token_id", "audio_token_id")}
    assert load["ok"] and load["ids"] == case.k + len(special)
    assert set(load["first_ids"]) == set(case.new_ids_new) | special


@on_variants("small-resized")
def test_load_reports_the_index_error_of_a_broken_layout(case, tmp_path: Path) -> None:
    """The un-fixed input itself: its appended ids raise in stock transformers, and --load says so."""
    from gemma3n_vocabfix.load_check import forward_check

    result = forward_check(case.extended, case.new_ids_old)
    assert not result["ok"] and "IndexError" in result["problem"]


def test_load_without_torch_is_one_line(pair: tuple[Path, Path]) -> None:
    src, out = pair
    code = ("import sys\nsys.modules['torch'] = None\nfrom gemma3n_vocabfix.__main__ import main\n"
            "sys.argv = ['vocabfix', *sys.argv[1:]]\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", code, "verify", str(src), str(out), "--load"], capture_output=True,
                          text=True, cwd=ROOT, env={"PATH": "/usr/bin:/bin", "COLUMNS": str(COLUMNS)}, timeout=120)
    assert_one_line_error(proc, "--load needs torch", code=2)


def test_verify_copies_nothing_and_leaves_both_folders_alone(pair: tuple[Path, Path], tmp_path: Path) -> None:
    src, out = pair
    before = (hash_tree(src), hash_tree(out))
    shutil.rmtree(tmp_path / "unrelated", ignore_errors=True)
    assert verify(src, out)["ok"]
    assert (hash_tree(src), hash_tree(out)) == before


@on_variants("small-resized")
def test_a_changed_bpe_merge_is_named(case, tmp_path: Path) -> None:
    """The merges hold no ids and are compared as bytes; a swapped pair is still a difference."""
    out = tmp_path / "out"
    shutil.copytree(case.out, out)
    data = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    merges = data["model"]["merges"]
    assert len(merges) >= 2
    merges[0], merges[1] = merges[1], merges[0]
    (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    result = verify(case.extended, out)
    assert not result["ok"]
    assert ("tokenizer.json", "model.merges") in {(d["file"], d["where"].split("[")[0])
                                                   for d in result["differences"]}

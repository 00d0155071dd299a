"""Rewrite behaviour on synthetic checkpoints (no torch): rows, tokenizer files, configs, output rules.

Expected ids come from the doc's formula (docs/gemma3n-vocab-layout.md), not from the code under test.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from fixtures.synthetic import build, row_values, token_names
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from gemma3n_vocabfix import rewrite_checkpoint
from gemma3n_vocabfix.errors import VocabfixError

T, V, A = 300, 8, 8
NEW = ["<new_a>", "<new_b>", "domainword"]
K = len(NEW)
EMBED = "model.language_model.embed_tokens.weight"
PER_LAYER = "model.language_model.embed_tokens_per_layer.weight"


def doc_pi(old: int, k: int = K) -> int:
    """The id map as the layout doc states it."""
    if old < T:
        return old
    if old < T + V + A:
        return old + k
    return old - V - A


def doc_pi_inverse(new: int, k: int = K) -> int:
    return next(o for o in range(T + V + A + k) if doc_pi(o, k) == new)


def tensors(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def folder_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def extended(tmp_path: Path) -> Path:
    return build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)


def test_resized_extension_rows_move_with_the_id_map(extended: Path, tmp_path: Path) -> None:
    before = folder_digest(extended)
    report = rewrite_checkpoint(extended, tmp_path / "out")
    assert report.changed
    out = tensors(tmp_path / "out")
    total = T + V + A + K
    expected_embed = row_values([doc_pi_inverse(r) for r in range(total)])
    np.testing.assert_array_equal(out[EMBED], expected_embed)
    expected_pl = -row_values([doc_pi_inverse(r) for r in range(T + K)], 8)
    np.testing.assert_array_equal(out[PER_LAYER], expected_pl)
    # tensors without a vocabulary dimension, and the vision/audio tables, are the same bytes
    src = tensors(extended)
    for name in ("model.embed_vision.embedding.weight", "model.embed_audio.embedding.weight",
                 "model.language_model.layers.0.mlp.up_proj.weight", "model.language_model.norm.weight"):
        np.testing.assert_array_equal(out[name], src[name])
    assert folder_digest(extended) == before, "the input folder was modified"


def test_config_and_generation_config(extended: Path, tmp_path: Path) -> None:
    rewrite_checkpoint(extended, tmp_path / "out")
    old = json.loads((extended / "config.json").read_text())
    new = json.loads((tmp_path / "out" / "config.json").read_text())
    assert new["text_config"]["vocab_size"] == T + K + V + A
    assert new["text_config"]["vocab_size_per_layer_input"] == T + K
    assert new["vision_config"]["vocab_offset"] == T + K
    assert new["audio_config"]["vocab_offset"] == T + K + V
    for key in ("boi_token_id", "boa_token_id", "eoi_token_id", "image_token_id", "eoa_token_id", "audio_token_id"):
        assert new[key] == doc_pi(old[key]), key
    assert new["eos_token_id"] == [1, 106]
    # every key other than the layout fields is kept, in the same order
    assert list(new) == list(old)
    assert list(new["text_config"]) == list(old["text_config"])
    untouched = {k: v for k, v in old["text_config"].items() if k not in ("vocab_size", "vocab_size_per_layer_input")}
    assert all(new["text_config"][k] == v for k, v in untouched.items())


def test_tokenizer_files_are_renumbered(extended: Path, tmp_path: Path) -> None:
    rewrite_checkpoint(extended, tmp_path / "out")
    out = tmp_path / "out"
    names = token_names(T, V, A, NEW)
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tok.get_vocab_size() == len(names)
    for old_id, name in enumerate(names):
        assert tok.token_to_id(name) == doc_pi(old_id), name
    assert tok.encode("<mask><new_a>domainword<image_soft_token>").ids == [4, T, T + 2, doc_pi(T + 1)]
    decoder = json.loads((out / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    for key, entry in decoder.items():
        assert names.index(entry["content"]) == doc_pi_inverse(int(key))
    added = json.loads((out / "added_tokens.json").read_text())
    assert added == {name: T + i for i, name in enumerate(NEW)}
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    assert sp.get_piece_size() == len(names)
    for old_id, name in enumerate(names):
        assert sp.id_to_piece(doc_pi(old_id)) == name


def test_record_gives_the_id_map(extended: Path, tmp_path: Path) -> None:
    rewrite_checkpoint(extended, tmp_path / "out")
    record = json.loads((tmp_path / "out" / "vocabfix.json").read_text())
    assert record["vocabfix_version"]
    for old in range(T + V + A + K):
        r = next(r for r in record["id_map"] if r["old_start"] <= old < r["old_stop"])
        assert r["new_start"] + old - r["old_start"] == doc_pi(old)


def test_index_matches_the_written_shards(extended: Path, tmp_path: Path) -> None:
    rewrite_checkpoint(extended, tmp_path / "out")
    out = tmp_path / "out"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    sizes, where = 0, {}
    for f in sorted(out.glob("*.safetensors")):
        for name, array in load_file(str(f)).items():
            sizes += array.nbytes
            where[name] = f.name
    assert index["metadata"]["total_size"] == sizes
    assert index["weight_map"] == where


def test_not_resized_rows_get_the_mean_of_text_rows(tmp_path: Path) -> None:
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW, embed_rows=T + V + A,
                per_layer_rows=T, vocab_size=T + V + A, per_layer_size=T)
    report = rewrite_checkpoint(src, tmp_path / "out")
    out = tensors(tmp_path / "out")
    mean = row_values(range(T)).astype(np.float64).mean(axis=0)
    for r in range(T, T + K):
        np.testing.assert_allclose(out[EMBED][r], mean, rtol=1e-6)
        np.testing.assert_allclose(out[PER_LAYER][r], -row_values(range(T), 8).astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_array_equal(out[EMBED][T + K:], row_values(range(T, T + V + A)))
    assert {t["name"]: t["rows_initialised_to_mean"] for t in report.to_dict()["tensors"]} == {EMBED: K, PER_LAYER: K}


def test_padding_rows_are_dropped_and_untied_lm_head_moves(tmp_path: Path) -> None:
    total = T + V + A + K
    padded = total + (-total % 64)
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW, embed_rows=padded,
                per_layer_rows=padded, lm_head_rows=padded)
    rewrite_checkpoint(src, tmp_path / "out")
    out = tensors(tmp_path / "out")
    order = [doc_pi_inverse(r) for r in range(total)]
    np.testing.assert_array_equal(out[EMBED], row_values(order))
    np.testing.assert_array_equal(out["lm_head.weight"], row_values(order) * 3)
    assert out[PER_LAYER].shape == (T + K, 8)
    assert json.loads((tmp_path / "out" / "config.json").read_text())["text_config"]["vocab_size"] == total


def test_bf16_mean_matches_torch(tmp_path: Path) -> None:
    """New bf16 rows: float32 mean of the text rows, rounded to bf16 the way torch rounds."""
    import torch
    from safetensors.torch import load_file as load_torch
    from safetensors.torch import save_file as save_torch

    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW, embed_rows=T + V + A,
                per_layer_rows=T, vocab_size=T + V + A, per_layer_size=T)
    for shard in src.glob("*.safetensors"):
        noisy = {k: (v + torch.randn_like(v) * 0.37).to(torch.bfloat16) for k, v in load_torch(str(shard)).items()}
        save_torch(noisy, str(shard), metadata={"format": "pt"})
    index = json.loads((src / "model.safetensors.index.json").read_text())
    index["metadata"]["total_size"] //= 2
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    rewrite_checkpoint(src, tmp_path / "out")
    before = {}
    for shard in src.glob("*.safetensors"):
        before.update(load_torch(str(shard)))
    after = {}
    for shard in (tmp_path / "out").glob("*.safetensors"):
        after.update(load_torch(str(shard)))
    for name in (EMBED, PER_LAYER):
        expected = before[name][:T].float().mean(dim=0).to(torch.bfloat16)
        got = after[name][T:T + K]
        assert got.dtype == torch.bfloat16
        # float32 sums in a different order may differ in the last float32 bits, which bf16 rounding hides
        # except at a rounding boundary: allow one bf16 step
        assert torch.allclose(got.float(), expected.float().expand_as(got), rtol=2 ** -7, atol=0), name
        assert torch.equal(after[name][:T], before[name][:T])


def test_released_layout_is_copied_unchanged(tmp_path: Path) -> None:
    src = build(tmp_path / "released", text=T, vision=V, audio=A)
    report = rewrite_checkpoint(src, tmp_path / "out")
    assert not report.changed
    assert folder_digest(tmp_path / "out") == folder_digest(src)


def test_rewriting_the_output_again_changes_nothing(extended: Path, tmp_path: Path) -> None:
    rewrite_checkpoint(extended, tmp_path / "out")
    again = rewrite_checkpoint(tmp_path / "out", tmp_path / "again")
    assert not again.changed
    assert folder_digest(tmp_path / "again") == folder_digest(tmp_path / "out")


def test_audio_before_vision_is_reordered(tmp_path: Path) -> None:
    """A checkpoint whose tokenizer and config both put audio first: the ranges are reordered, tokens and all."""
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW, audio_first=True)
    rewrite_checkpoint(src, tmp_path / "out")
    new = json.loads((tmp_path / "out" / "config.json").read_text())
    assert new["vision_config"]["vocab_offset"] == T + K
    assert new["audio_config"]["vocab_offset"] == T + K + V
    out = tensors(tmp_path / "out")
    # old audio ids [T, T+A) now sit at the end; old vision ids [T+A, T+A+V) right after the text
    np.testing.assert_array_equal(out[EMBED][T + K:T + K + V], row_values(range(T + A, T + A + V)))
    np.testing.assert_array_equal(out[EMBED][T + K + V:], row_values(range(T, T + A)))


def test_dry_run_writes_nothing(extended: Path, tmp_path: Path) -> None:
    """A dry run writes nothing, and reports what the real run then does."""
    report = rewrite_checkpoint(extended, tmp_path / "out", dry_run=True)
    assert report.changed and not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == [extended]
    dry = report.to_dict()
    real = rewrite_checkpoint(extended, tmp_path / "out").to_dict()
    assert (dry.pop("dry_run"), real.pop("dry_run")) == (True, False)
    assert dry == real


@pytest.mark.parametrize("where", ["same", "inside", "parent"])
def test_output_may_not_overlap_the_input(extended: Path, where: str) -> None:
    dst = {"same": extended, "inside": extended / "fixed", "parent": extended.parent}[where]
    with pytest.raises(VocabfixError):
        rewrite_checkpoint(extended, dst, force=True)


def test_existing_output_needs_force(extended: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("x")
    with pytest.raises(VocabfixError, match="already exists"):
        rewrite_checkpoint(extended, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["old.txt"]  # refused: left as it was
    assert (tmp_path / "out" / "old.txt").read_text() == "x"
    rewrite_checkpoint(extended, tmp_path / "out", force=True)
    assert not (tmp_path / "out" / "old.txt").exists()
    assert (tmp_path / "out" / "vocabfix.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext", "out"]


def test_failure_leaves_no_output(extended: Path, tmp_path: Path, monkeypatch) -> None:
    from gemma3n_vocabfix import writer

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(writer, "_write_table", boom)
    with pytest.raises(VocabfixError, match="disk full"):
        rewrite_checkpoint(extended, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext"]


def test_single_file_checkpoint(tmp_path: Path) -> None:
    """`model.safetensors` without an index: rewritten in place of the single file, no index invented."""
    from safetensors.numpy import save_file

    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    merged = tensors(src)
    for f in list(src.glob("model*")):
        f.unlink()
    save_file(merged, str(src / "model.safetensors"), metadata={"format": "pt"})
    rewrite_checkpoint(src, tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("model*")) == ["model.safetensors"]
    got = load_file(str(out / "model.safetensors"))
    np.testing.assert_array_equal(got[EMBED], row_values([doc_pi_inverse(r) for r in range(T + V + A + K)]))
    assert got[PER_LAYER].shape == (T + K, 8)


def test_force_keeps_the_old_output_when_the_final_rename_fails(extended: Path, tmp_path: Path, monkeypatch) -> None:
    """--force moves the old OUT aside; if the new one cannot take its place, the old one is put back."""
    from gemma3n_vocabfix import writer

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("keep me")
    real_rename = writer.os.rename

    def rename(src, dst):
        if str(src).endswith(".vocabfix-partial"):
            raise OSError(28, "No space left on device")
        return real_rename(src, dst)

    monkeypatch.setattr(writer.os, "rename", rename)
    with pytest.raises(VocabfixError, match="left as it was"):
        rewrite_checkpoint(extended, tmp_path / "out", force=True)
    assert (tmp_path / "out" / "old.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext", "out"]  # no hidden stage or aside folder


def test_plan_opens_no_file(tmp_path: Path) -> None:
    """Only the read step opens input files: planning works on what read_checkpoint carried."""
    import shutil

    from gemma3n_vocabfix.checkpoint import read_checkpoint
    from gemma3n_vocabfix.layout import analyse
    from gemma3n_vocabfix.plan import make_plan

    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    (src / "vocabfix.json").write_text(json.dumps({"vocabfix_version": "0.0.1", "note": "an earlier rewrite"}))
    ckpt = read_checkpoint(src, merges=False)
    layout = analyse(ckpt)
    moved = shutil.move(src, tmp_path / "elsewhere")  # every input file is gone from where it was read
    plan = make_plan(ckpt, layout)
    record = json.loads(next(b"".join(f.parts) for f in plan.files if f.name == "vocabfix.json"))
    assert record["previous"]["note"] == "an earlier rewrite"
    assert any(f.name == "tokenizer.model" and f.parts for f in plan.files)
    assert Path(moved).is_dir()


def test_unreadable_previous_record_is_named_in_the_new_one(tmp_path: Path) -> None:
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    (src / "vocabfix.json").write_bytes(b"\xff\xfe[[")
    rewrite_checkpoint(src, tmp_path / "out")
    record = json.loads((tmp_path / "out" / "vocabfix.json").read_text())
    assert "previous" not in record and "not valid JSON" in record["previous_unreadable"]


def test_text_only_tokenizer_model_gets_the_new_tokens_after_the_text(tmp_path: Path) -> None:
    """A tokenizer.model with only the T text pieces: OUT's has T + k (the new tokens at their new ids), no
    multimodal pieces invented, and the fast tokenizer files agree with it."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    model = pb.ModelProto()
    model.ParseFromString((src / "tokenizer.model").read_bytes())
    del model.pieces[T:]
    (src / "tokenizer.model").write_bytes(model.SerializeToString())
    rewrite_checkpoint(src, tmp_path / "out")
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "out" / "tokenizer.model"))
    assert sp.get_piece_size() == T + K
    assert [sp.id_to_piece(T + i) for i in range(K)] == NEW
    fast = Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    assert [fast.token_to_id(t) for t in NEW] == [doc_pi(T + V + A + i) for i in range(K)]

"""Where rows move (gemma3n_vocabfix/rows.py): every vocabulary table of the output, row by row, on synthetic
checkpoints whose row i holds the value i (tests/fixtures/synthetic.py), so a test reads which old id landed where.

Output row r holds old id π⁻¹(r)'s input row (π from tests/fixtures/oracle.py, the layout doc's map); rows the input
lacks for ids no runtime can embed are the mean of its text rows; padding rows and per-layer rows of multimodal ids
are dropped; every other tensor is the same bytes. The row plan itself is a property test over all small layouts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import EMBED, EMBED_AUDIO, EMBED_VISION, LM_HEAD, PER_LAYER, A, T, V, hash_tree, numpy_tensors
from fixtures.oracle import DocLayout
from fixtures.synthetic import build, row_values
from hypothesis import given
from hypothesis import strategies as st

from gemma3n_vocabfix import rewrite_checkpoint
from gemma3n_vocabfix.layout import TableRole
from gemma3n_vocabfix.rows import CopyRows, InitRows, PadRow

NEW = ["<new_a>", "<new_b>", "domainword"]
K = len(NEW)
IDS = DocLayout(T, V, A, K)
sizes = st.integers(min_value=0, max_value=40)


@pytest.fixture
def extended(tmp_path: Path) -> Path:
    return build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)


def test_resized_extension_rows_move_with_the_id_map(extended: Path, tmp_path: Path) -> None:
    before = hash_tree(extended)
    report = rewrite_checkpoint(extended, tmp_path / "out")
    assert report.changed
    out = numpy_tensors(tmp_path / "out")
    expected_embed = row_values(IDS.old_ids_in_new_order())
    np.testing.assert_array_equal(out[EMBED], expected_embed)
    expected_pl = -row_values(IDS.old_ids_in_new_order(T + K), 8)
    np.testing.assert_array_equal(out[PER_LAYER], expected_pl)
    # tensors without a vocabulary dimension, and the vision/audio tables, are the same bytes
    src = numpy_tensors(extended)
    for name in (EMBED_VISION, EMBED_AUDIO, "model.language_model.layers.0.mlp.up_proj.weight",
                 "model.language_model.norm.weight"):
        np.testing.assert_array_equal(out[name], src[name])
    assert hash_tree(extended) == before, "the input folder was modified"


def test_not_resized_rows_get_the_mean_of_text_rows(tmp_path: Path) -> None:
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW, embed_rows=T + V + A,
                per_layer_rows=T, vocab_size=T + V + A, per_layer_size=T)
    report = rewrite_checkpoint(src, tmp_path / "out")
    out = numpy_tensors(tmp_path / "out")
    mean = row_values(range(T)).astype(np.float64).mean(axis=0)
    per_layer_mean = -row_values(range(T), 8).astype(np.float64).mean(0)
    for r in range(T, T + K):
        np.testing.assert_allclose(out[EMBED][r], mean, rtol=1e-6)
        np.testing.assert_allclose(out[PER_LAYER][r], per_layer_mean, rtol=1e-6)
    np.testing.assert_array_equal(out[EMBED][T + K:], row_values(range(T, T + V + A)))
    assert {t["name"]: t["rows_initialised_to_mean"] for t in report.to_dict()["tensors"]} == {EMBED: K, PER_LAYER: K}


def test_padding_rows_are_dropped_and_untied_lm_head_moves(tmp_path: Path) -> None:
    total = T + V + A + K
    padded = total + (-total % 64)
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW, embed_rows=padded,
                per_layer_rows=padded, lm_head_rows=padded)
    rewrite_checkpoint(src, tmp_path / "out")
    out = numpy_tensors(tmp_path / "out")
    order = IDS.old_ids_in_new_order()
    np.testing.assert_array_equal(out[EMBED], row_values(order))
    np.testing.assert_array_equal(out[LM_HEAD], row_values(order) * 3)
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


def test_audio_before_vision_is_reordered(tmp_path: Path) -> None:
    """A checkpoint whose tokenizer and config both put audio first: the ranges are reordered, tokens and all."""
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW, audio_first=True)
    rewrite_checkpoint(src, tmp_path / "out")
    new = json.loads((tmp_path / "out" / "config.json").read_text())
    assert new["vision_config"]["vocab_offset"] == T + K
    assert new["audio_config"]["vocab_offset"] == T + K + V
    out = numpy_tensors(tmp_path / "out")
    # old audio ids [T, T+A) now sit at the end; old vision ids [T+A, T+A+V) right after the text
    np.testing.assert_array_equal(out[EMBED][T + K:T + K + V], row_values(range(T + A, T + A + V)))
    np.testing.assert_array_equal(out[EMBED][T + K + V:], row_values(range(T, T + A)))


class _Tensor:
    def __init__(self, rows: int, name: str):
        self.rows, self.shape, self.name = rows, (rows, 2), name


@given(text=st.integers(1, 30), v=sizes, a=sizes, k=sizes, rows_delta=st.integers(-20, 20),
       embed_delta=st.integers(-20, 20), role=st.sampled_from([TableRole.EMBED_TOKENS, TableRole.PER_LAYER]))
def test_table_plan_reads_the_row_of_each_old_id(text, v, a, k, rows_delta, embed_delta, role) -> None:
    """Output row r of a table holds what a runtime reads for old id π⁻¹(r) (README, "The function-preserving
    rule"): the id's own row when the table has it; for the per-layer table, row 0 when embed_tokens has a row for
    the id (the per-layer input reads row 0 past its table); otherwise a new row (the mean of the text rows)."""
    from gemma3n_vocabfix.layout import Layout, VocabTable
    from gemma3n_vocabfix.rows import plan_table
    from gemma3n_vocabfix.tokenizer_files import TokenizerIds

    ids = DocLayout(text, v, a, k)
    total = ids.total
    embed = VocabTable(_Tensor(max(0, total + embed_delta), EMBED), TableRole.EMBED_TOKENS)
    if role is TableRole.EMBED_TOKENS:
        table, rows_out = embed, total
    else:
        table, rows_out = VocabTable(_Tensor(max(0, text + rows_delta), PER_LAYER), TableRole.PER_LAYER), text + k
    layout = Layout(text, v, text + v, a, total, text, TokenizerIds(total, {}),
                    tables=[embed] if table is embed else [embed, table])
    plan = plan_table(table, layout)
    produced = []
    for seg in plan.segments:
        produced += (list(range(seg.first_row, seg.first_row + seg.count)) if isinstance(seg, CopyRows)
                     else ["row 0"] * seg.count if isinstance(seg, PadRow)
                     else ["mean"] * seg.count if isinstance(seg, InitRows) else [seg])
    rows_in, embed_rows = table.tensor.rows, embed.tensor.rows

    def reads(old: int):
        if old < rows_in:
            return old
        if table is not embed and rows_in > 0 and old < embed_rows:
            return "row 0"
        return "mean"

    assert plan.rows_out == rows_out
    assert produced == [reads(old) for old in ids.old_ids_in_new_order(rows_out)]

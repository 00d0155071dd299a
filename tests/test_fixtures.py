"""The test fixtures themselves, independent of the core: the id-map oracle (tests/fixtures/oracle.py) against the
layout doc, and the tiny real Gemma 3n bases (tests/fixtures/tiny.py) that tests/test_compat.py extends.

A fixture that is wrong makes every test built on it pass or fail for the wrong reason, so each is checked here
against what the doc and the published checkpoint say, and against stock transformers / tokenizers / sentencepiece.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from fixtures import REFERENCE, tiny
from fixtures.helpers import SPECIAL_TOKENS, read_json
from fixtures.oracle import DocLayout, target_order
from hypothesis import given
from hypothesis import strategies as st

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# ------------------------------------------------------------------------------------------------------------------
# the id-map oracle
# ------------------------------------------------------------------------------------------------------------------


def test_oracle_on_the_released_id_space() -> None:
    """Three tokens appended to google/gemma-3n-E4B-it (text 262144, vision and audio 128 each), worked by hand from
    the doc's ranges: the new tokens take 262144.., <end_of_image> 262144 moves to 262147, audio ends at 262403."""
    ids = DocLayout(262144, 128, 128, 3)
    assert [ids.pi(i) for i in (0, 2, 255999, 262143)] == [0, 2, 255999, 262143]
    assert [ids.pi(i) for i in (262144, 262145, 262272, 262399)] == [262147, 262148, 262275, 262402]
    assert [ids.pi(i) for i in (262400, 262401, 262402)] == [262144, 262145, 262146]
    assert ids.new_ids_old == [262400, 262401, 262402] and ids.new_ids_new == [262144, 262145, 262146]
    assert (ids.text_new, ids.vision_new, ids.audio_new) == ((0, 262147), (262147, 262275), (262275, 262403))
    assert ids.config_after() == {"text_config.vocab_size": 262403,
                                  "text_config.vocab_size_per_layer_input": 262147,
                                  "vision_config.vocab_offset": 262147, "audio_config.vocab_offset": 262275}
    for outside in (-1, 262403):
        with pytest.raises(ValueError):
            ids.pi(outside)
        with pytest.raises(ValueError):
            ids.inverse(outside)


@given(T=st.integers(0, 30), V=st.integers(0, 10), A=st.integers(0, 10), k=st.integers(0, 10))
def test_oracle_is_a_bijection_into_the_target_layout(T: int, V: int, A: int, k: int) -> None:
    """π is a permutation of [0, T+V+A+k), inverse undoes it, and the new order is [text+appended | vision | audio]."""
    ids = DocLayout(T, V, A, k)
    assert sorted(ids.pi(i) for i in range(ids.total)) == list(range(ids.total))
    assert all(ids.inverse(ids.pi(i)) == i for i in range(ids.total))
    assert ids.old_ids_in_new_order() == target_order(ids.total, (T, V), (T + V, A))
    assert ids.old_ids_in_new_order(T + k) == list(range(T)) + ids.new_ids_old


def test_oracle_imports_nothing_from_the_core() -> None:
    """An oracle computed by the code under test could not catch its mistakes."""
    tree = ast.parse((FIXTURES / "oracle.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "dataclasses"}, imported


# ------------------------------------------------------------------------------------------------------------------
# the tiny real bases (tests/fixtures/tiny.py)
# ------------------------------------------------------------------------------------------------------------------


def test_base_per_layer_table_matters(base_factory):
    """A fresh random Gemma 3n ignores per-layer rows; tiny.build_base must not (incl. row 0 for mm ids)."""
    from transformers import Gemma3nForConditionalGeneration

    base = base_factory("small")
    model = Gemma3nForConditionalGeneration.from_pretrained(base).eval()  # fresh copy: it is mutated below
    s = tiny.get_id_space("small").special_ids()
    ids = torch.tensor([[2, 40, 41, 42, s["boi_token_id"], s["image_token_id"], s["eoi_token_id"], 50,
                         s["boa_token_id"], s["audio_token_id"], s["eoa_token_id"], 60]])
    table = model.model.language_model.embed_tokens_per_layer.weight
    mm_positions = [5, 6, 9, 10]
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        for row, positions in ((41, [2]), (0, mm_positions)):
            saved = table[row].clone()
            table[row] = torch.randn(table.shape[1], generator=torch.Generator().manual_seed(row)) * saved.std()
            changed = (model(input_ids=ids).logits - ref).abs().amax(-1)[0]
            table[row] = saved
            for p in positions:
                assert changed[p] > 1e-2, f"per-layer row {row} does not reach position {p}: {changed.tolist()}"


def test_base_files_are_consistent(base_factory):
    """Base tokenizer (tokenizers, transformers, sentencepiece), processor and config agree on every id."""
    import sentencepiece as spm
    from tokenizers import Tokenizer
    from transformers import AutoProcessor, AutoTokenizer, Gemma3nForConditionalGeneration

    base = base_factory("small")
    sp = tiny.get_id_space("small")
    strings = tiny.base_token_strings(sp)
    tk = Tokenizer.from_file(str(base / "tokenizer.json"))
    assert tk.get_vocab_size(with_added_tokens=True) == sp.vocab_size
    assert all(tk.token_to_id(s) == i for i, s in enumerate(strings))
    spp = spm.SentencePieceProcessor(model_file=str(base / "tokenizer.model"))
    assert spp.get_piece_size() == sp.vocab_size
    assert all(spp.id_to_piece(i) == s for i, s in enumerate(strings))
    tok = AutoTokenizer.from_pretrained(base)
    assert len(tok) == sp.vocab_size
    cfg = read_json(base / "config.json")
    for f, s in SPECIAL_TOKENS.items():
        assert tok.convert_tokens_to_ids(s) == cfg[f]
        assert tok(s, add_special_tokens=False).input_ids == [cfg[f]]
    proc = AutoProcessor.from_pretrained(base)
    assert (proc.image_token_id, proc.audio_token_id) == (cfg["image_token_id"], cfg["audio_token_id"])
    _, info = Gemma3nForConditionalGeneration.from_pretrained(base, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]


def test_real_base_tokenizer_config_is_the_released_one(base_factory):
    base = base_factory("real", "bfloat16")
    assert (base / "tokenizer_config.json").read_bytes() == (REFERENCE / "tokenizer_config.json").read_bytes()
    assert (base / "special_tokens_map.json").read_bytes() == (REFERENCE / "special_tokens_map.json").read_bytes()
    assert (base / "chat_template.jinja").read_bytes() == (REFERENCE / "chat_template.jinja").read_bytes()
    ref_cfg, cfg = read_json(REFERENCE / "config.json"), read_json(base / "config.json")
    for f in list(SPECIAL_TOKENS) + ["eos_token_id"]:
        assert cfg[f] == ref_cfg[f]
    for sub in ("text_config", "audio_config", "vision_config"):
        assert set(cfg[sub]) == set(ref_cfg[sub]), sub
    assert set(cfg) == set(ref_cfg)
    for key in ("vocab_size", "vocab_size_per_layer_input"):
        assert cfg["text_config"][key] == ref_cfg["text_config"][key]
    for sub in ("audio_config", "vision_config"):
        assert cfg[sub]["vocab_offset"] == ref_cfg[sub]["vocab_offset"]

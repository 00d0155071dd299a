"""The rewrite preserves what the input computes, judged by stock transformers on checkpoints saved by 4.5x.

The fixtures in tests/fixtures/legacy/ were extended and saved by transformers 4.56 / 4.53 (their README says how):
4.5x's resize grows `embed_tokens` only, so the per-layer table keeps T rows and stock `Gemma3nForCausalLM` runs the
new ids reading per-layer row 0. After the rewrite the new ids are text ids below `vocab_size_per_layer_input`, so
the output must hold that row 0 in their per-layer rows: the logits of every stock class that runs the input are the
same before and after, with OUT's columns mapped through the layout doc's id map.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gemma3n_vocabfix import rewrite_checkpoint

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy"
FIXTURES = ["resize-special", "resize-pad64", "chat-format", "slow-tokenizer", "lora-merge", "resize-special-tf4.53"]
T, V, A = 384, 128, 128  # the small id space the fixtures were built in (their README)
TEXT = "Weather? <think>look</think><tool_call>get</tool_call> <start_of_image><end_of_image> ok"
CHAT_TEXT = "<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\nsunny <start_of_image><end_of_image><|im_end|>"
PER_LAYER = "model.language_model.embed_tokens_per_layer.weight"


def doc_pi(old: int, k: int) -> int:
    """docs/gemma3n-vocab-layout.md: id < T -> id; T <= id < T+V+A -> id + k; id >= T+V+A -> id - V - A."""
    return old if old < T else old + k if old < T + V + A else old - V - A


@pytest.fixture(scope="module")
def rewritten(tmp_path_factory):
    root = tmp_path_factory.mktemp("legacy")
    cache = {}

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = root / name
            rewrite_checkpoint(LEGACY / name, cache[name])
        return cache[name]

    return get


def _logits(cls, folder: Path, text: str) -> tuple[torch.Tensor, list[int]]:
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok(text, return_tensors="pt").input_ids
    model = cls.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(input_ids=ids).logits[0], ids[0].tolist()


def _tokenizer_size(folder: Path) -> int:
    from transformers import AutoTokenizer
    return len(AutoTokenizer.from_pretrained(folder))


@pytest.mark.parametrize("name", FIXTURES)
def test_causal_lm_logits_are_unchanged(name: str, rewritten) -> None:
    from transformers import Gemma3nForCausalLM
    src, out = LEGACY / name, rewritten(name)
    text = CHAT_TEXT if name == "chat-format" else TEXT
    k = _tokenizer_size(src) - (T + V + A)
    want, ids_in = _logits(Gemma3nForCausalLM, src, text)
    got, ids_out = _logits(Gemma3nForCausalLM, out, text)
    assert any(i >= T + V + A for i in ids_in), "the text must hold a new token"
    assert ids_out == [doc_pi(i, k) for i in ids_in]
    columns = [doc_pi(i, k) for i in range(T + V + A + k)]
    diff = (got[:, columns] - want[:, : T + V + A + k]).abs().max().item()
    assert diff == 0.0, f"{name}: max |logit diff| {diff}"


@pytest.mark.parametrize("name", ["resize-special", "lora-merge"])
def test_multimodal_logits_are_unchanged_where_the_input_runs(name: str, rewritten) -> None:
    """The multimodal class runs the input only on text without the new tokens; there it must not change."""
    from transformers import Gemma3nForConditionalGeneration
    src, out = LEGACY / name, rewritten(name)
    k = _tokenizer_size(src) - (T + V + A)
    text = "Weather? <start_of_image><end_of_image> ok"
    want, ids_in = _logits(Gemma3nForConditionalGeneration, src, text)
    got, ids_out = _logits(Gemma3nForConditionalGeneration, out, text)
    assert ids_out == [doc_pi(i, k) for i in ids_in]
    columns = [doc_pi(i, k) for i in range(T + V + A + k)]
    assert (got[:, columns] - want[:, : T + V + A + k]).abs().max().item() == 0.0


@pytest.mark.parametrize("name", ["resize-special", "slow-tokenizer"])
def test_output_runs_the_new_tokens_in_the_multimodal_class(name: str, rewritten) -> None:
    """OUT's multimodal model runs the text with the new tokens and computes what the input's CausalLM did there."""
    from transformers import Gemma3nForCausalLM, Gemma3nForConditionalGeneration
    src, out = LEGACY / name, rewritten(name)
    k = _tokenizer_size(src) - (T + V + A)
    text = "Weather? <think>look</think><tool_call>get</tool_call> ok"  # no multimodal ids: the classes agree on text
    want, _ = _logits(Gemma3nForCausalLM, src, text)
    got, _ = _logits(Gemma3nForConditionalGeneration, out, text)
    columns = [doc_pi(i, k) for i in range(T + V + A + k)]
    assert (got[:, columns] - want[:, : T + V + A + k]).abs().max().item() == 0.0


def test_new_per_layer_rows_are_row_0_and_the_record_says_so(rewritten) -> None:
    from safetensors import safe_open
    out = rewritten("resize-special")

    def per_layer(folder: Path) -> torch.Tensor:
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        with safe_open(str(folder / index["weight_map"][PER_LAYER]), "pt") as f:
            return f.get_tensor(PER_LAYER)

    w_in, w_out = per_layer(LEGACY / "resize-special"), per_layer(out)
    assert w_in.shape[0] == T and w_out.shape[0] == T + 4
    assert torch.equal(w_out[:T], w_in) and all(torch.equal(w_out[T + i], w_in[0]) for i in range(4))
    record = json.loads((out / "vocabfix.json").read_text())
    entry = next(t for t in record["tensors"] if t["name"] == PER_LAYER)
    assert entry["new_rows"] == [{"new_ids": [T, T + 4], "copied_from_row": 0}]
    assert entry["rows_initialised_to_mean"] == 0

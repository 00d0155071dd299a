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
from fixtures.oracle import DocLayout

from gemma3n_vocabfix import rewrite_checkpoint

LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy"
FIXTURES = ["resize-special", "resize-pad64", "chat-format", "slow-tokenizer", "lora-merge", "resize-special-tf4.53",
            "unsloth-style"]
T, V, A = 384, 128, 128  # the small id space the fixtures were built in (their README)
TEXT = "Weather? <think>look</think><tool_call>get</tool_call> <start_of_image><end_of_image> ok"
CHAT_TEXT = ("<|im_start|>user\nWeather?<|im_end|>\n<|im_start|>assistant\nsunny <start_of_image><end_of_image>"
             "<|im_end|>")
PER_LAYER = "model.language_model.embed_tokens_per_layer.weight"


def doc_pi(old: int, k: int) -> int:
    return DocLayout(T, V, A, k).pi(old)


def unsloth_style(dst: Path) -> Path:
    """resize-special re-saved the way unsloth's Gemma 3n uploads are (tests/fixtures/reference/gemma3n/SOURCES.md:
    "unsloth_fixed", bos/pad/eos ids in config.json, eos_token <end_of_turn>, left padding, torch_dtype)."""
    import shutil
    shutil.copytree(LEGACY / "resize-special", dst)
    config = json.loads((dst / "config.json").read_text())
    config["torch_dtype"] = config.pop("dtype", "float32")
    config.update(bos_token_id=2, pad_token_id=0, eos_token_id=17, unsloth_fixed=True)  # 17: <end_of_turn>
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    tok_config = json.loads((dst / "tokenizer_config.json").read_text())
    tok_config.update(eos_token="<end_of_turn>", padding_side="left", model_max_length=32768)
    (dst / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))
    return dst


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    made = tmp_path_factory.mktemp("unsloth") / "unsloth-style"
    return lambda name: (made if made.exists() else unsloth_style(made)) if name == "unsloth-style" else LEGACY / name


@pytest.fixture(scope="module")
def rewritten(tmp_path_factory, source):
    root = tmp_path_factory.mktemp("legacy")
    cache = {}

    def get(name: str) -> Path:
        if name not in cache:
            cache[name] = root / name
            rewrite_checkpoint(source(name), cache[name])
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
def test_causal_lm_logits_are_unchanged(name: str, source, rewritten) -> None:
    from transformers import Gemma3nForCausalLM
    src, out = source(name), rewritten(name)
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


def test_half_done_unused_rename_says_what_stock_transformers_does(tmp_path: Path) -> None:
    """Only tokenizer_config.json renames <unused0>: stock transformers gives the new name an id of its own past the
    vocabulary (measured here), and VF010 says so instead of a generic disagreement."""
    import shutil

    from transformers import AutoTokenizer
    from typer.testing import CliRunner

    from gemma3n_vocabfix import cli

    src = tmp_path / "half"
    shutil.copytree(LEGACY / "resize-special", src)
    config = json.loads((src / "tokenizer_config.json").read_text())
    assert config["added_tokens_decoder"]["6"]["content"] == "<unused0>"
    config["added_tokens_decoder"]["6"]["content"] = "<my_tool>"
    (src / "tokenizer_config.json").write_text(json.dumps(config))
    tok = AutoTokenizer.from_pretrained(src)
    assert tok.convert_ids_to_tokens(6) == "<unused0>" and tok.convert_tokens_to_ids("<my_tool>") >= T + V
    result = CliRunner().invoke(cli.app, ["inspect", str(src), "--json"])
    finding = next(f for f in json.loads(result.stdout)["findings"] if f["code"] == "VF010")
    assert "registers '<my_tool>'" in finding["message"] and "IndexError" in finding["message"]
    assert finding["details"]["files"] == ["tokenizer.json", "tokenizer_config.json"]

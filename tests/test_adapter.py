"""`vocabfix remap-adapter` (issue 11): PEFT adapters trained on an extended checkpoint, carried over to its rewrite.

Adapters are built with stock peft on the tiny extended model (conftest's `small-resized` case: T=384, V=A=128, three
appended tokens, tied lm_head), their trainable weights set to random values (so nothing is an identity), saved with
`save_pretrained`, remapped with the command line as a user runs it (a fresh process), and loaded with stock
`PeftModel.from_pretrained` on the rewritten base. The old adapter on the old base and the remapped one on the new
base must compute the same logits, with ids and logit columns mapped through the layout doc's π (fixtures/oracle.py):
for a sequence of pre-existing tokens (text, image and audio ids; full multimodal forward on both) and for one with
the appended tokens (the old model cannot run those through its multimodal forward, which routes them to the audio
table: that is the bug; there it runs its text decoder, which is what the multimodal forward computes for text ids,
checked on the new model).

Adapter kinds: modules_to_save copies of embed_tokens and lm_head (and embed_tokens_per_layer: 643 -> 387 rows),
LoRA on embed_tokens (lora_embedding_A columns, and the base table PEFT saves beside it), LoRA on lm_head and on
embed_tokens_per_layer (lora_B rows, columns dropped), trainable_token_indices (the config's ids mapped), and
modules_to_save on the "unused" strategy's rewrite (tables cut back, slots given to the new tokens). Refused with one
line: a pickled .bin, a map of another checkpoint, a missing config, an id the map drops, an existing OUT.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import Case
from fixtures import tiny
from fixtures.helpers import assert_one_line_error, hash_tree, invoke, read_json, run_cli, snapshot

from gemma3n_vocabfix.id_map import IdMap

SP = tiny.get_id_space("small")
S = SP.special_ids()
T, V, A = SP.T, SP.V, SP.A
OLD_TOKENS = [2, 30, 100, S["boi_token_id"], S["image_token_id"], S["image_token_id"], S["eoi_token_id"], 7,
              S["boa_token_id"], S["audio_token_id"], S["eoa_token_id"], T + V - 1, T + V + A - 1, 200, T - 1]
EMBED = "base_model.model.model.language_model.embed_tokens"
PER_LAYER = "base_model.model.model.language_model.embed_tokens_per_layer"
LM_HEAD = "base_model.model.lm_head"


@pytest.fixture(scope="module")
def case(case_factory) -> Case:
    case = case_factory("small-resized")
    assert case.out.is_dir()  # the rewrite runs here, once
    return case


def new_token_sequence(case: Case) -> list[int]:
    a, b, c = case.new_ids_old
    return [2, a, 30, b, c, 100, a, 1]


# --- building adapters with stock peft ------------------------------------------------------------------------------


def _peft_config(kind: str, case: Case):
    from peft import LoraConfig

    q = r"model\.language_model\.layers\.\d+\.self_attn\.q_proj"
    if kind == "modules_to_save":
        return LoraConfig(r=2, target_modules=q, modules_to_save=["embed_tokens", "lm_head"])
    if kind == "modules_to_save+per_layer":
        return LoraConfig(r=2, target_modules=q, modules_to_save=["embed_tokens", "embed_tokens_per_layer", "lm_head"])
    if kind == "lora_embed":
        return LoraConfig(r=2, target_modules=rf"{q}|model\.language_model\.embed_tokens")
    if kind == "lora_head_per_layer":
        return LoraConfig(r=2, target_modules=["lm_head", "embed_tokens_per_layer"])
    if kind == "trainable_tokens":
        return LoraConfig(r=2, target_modules=q,
                          trainable_token_indices=[5, 30, S["image_token_id"], *case.new_ids_old])
    raise AssertionError(kind)


def build_adapter(base: Path, kind: str, case: Case, dst: Path, seed: int = 0) -> Path:
    """A peft adapter of `kind` on stock `from_pretrained(base)`, every trainable tensor random, saved to `dst`."""
    from peft import get_peft_model
    from transformers import Gemma3nForConditionalGeneration

    model = Gemma3nForConditionalGeneration.from_pretrained(base)
    peft_model = get_peft_model(model, _peft_config(kind, case))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in peft_model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    peft_model.save_pretrained(dst)
    return dst


def load_adapter(base: Path, adapter: Path):
    from peft import PeftModel
    from transformers import Gemma3nForConditionalGeneration

    model = Gemma3nForConditionalGeneration.from_pretrained(base)  # fresh: peft wraps the model it is given
    return PeftModel.from_pretrained(model, adapter).eval()


def full_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


def text_logits(model, ids: list[int]) -> torch.Tensor:
    """The text decoder and lm_head (softcapped) of a (peft-wrapped) Gemma3nForConditionalGeneration: what its
    multimodal forward computes for text ids, without routing ids past the audio offset to the audio table."""
    inner = model.get_base_model()
    with torch.no_grad():
        hidden = inner.model.language_model(input_ids=torch.tensor([ids])).last_hidden_state
        logits = inner.lm_head(hidden)
        cap = inner.config.get_text_config().final_logit_softcapping
        if cap is not None:
            logits = torch.tanh(logits / cap) * cap
    return logits[0].float()


def released_per_layer_logits(model, ids: list[int]) -> torch.Tensor:
    """The full forward with image and audio ids reading per-layer row 0, as in the released model: the rewrite drops
    the per-layer rows transformers 5's resize made for them (README, the function-preserving rule's one exception;
    the adapter's per-layer copies follow it), so the old model is the reference with its per-layer table cut at T."""
    text_config = model.get_base_model().model.language_model.config
    size = text_config.vocab_size_per_layer_input
    text_config.vocab_size_per_layer_input = T
    try:
        return full_logits(model, ids)
    finally:
        text_config.vocab_size_per_layer_input = size


def assert_same_function(old, new, pi, old_ids: list[int], *, old_fn=released_per_layer_logits,
                         columns: list[int]) -> None:
    want = old_fn(old, old_ids)
    got = full_logits(new, [pi(i) for i in old_ids])
    assert want.shape[-1] >= max(columns) + 1
    diff = (got[:, [pi(j) for j in columns]] - want[:, columns]).abs().max().item()
    assert diff <= 1e-5, f"max |logit difference| {diff:g}"


def remap(adapter: Path, out: Path, record: Path, *extra, run=run_cli) -> dict:
    """`vocabfix remap-adapter ADAPTER OUT --map RECORD --json` (a fresh process unless `run` is invoke): exit 0, the
    adapter as it was; returns the JSON report."""
    before = snapshot(adapter)
    result = run("remap-adapter", adapter, out, "--map", record, "--json", *extra)
    code = result.returncode if run is run_cli else result.exit_code
    assert code == 0, result.stdout + result.stderr
    assert snapshot(adapter) == before, "the input adapter was modified"
    return json.loads(result.stdout)


def tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


# --- same function after the remap ----------------------------------------------------------------------------------


ADAPTER_KINDS = ["modules_to_save", "modules_to_save+per_layer", "lora_embed", "lora_head_per_layer",
                 "trainable_tokens"]


@pytest.mark.parametrize("kind", ADAPTER_KINDS)
def test_remapped_adapter_computes_what_the_old_one_did(case: Case, tmp_path: Path, kind: str):
    adapter = build_adapter(case.extended, kind, case, tmp_path / "adapter")
    if kind == "trainable_tokens":  # users save the tokenizer beside an adapter that trains new tokens
        from transformers import AutoTokenizer
        AutoTokenizer.from_pretrained(case.extended).save_pretrained(adapter)
    out = tmp_path / "remapped"
    report = remap(adapter, out, case.out / "vocabfix.json")

    old, new = load_adapter(case.extended, adapter), load_adapter(case.out, out)
    every_old_id = list(range(case.ids.total))
    assert_same_function(old, new, case.pi, OLD_TOKENS, columns=every_old_id)
    seq = new_token_sequence(case)
    torch.testing.assert_close(text_logits(new, [case.pi(i) for i in seq]),
                               full_logits(new, [case.pi(i) for i in seq]), rtol=0, atol=1e-6)
    assert_same_function(old, new, case.pi, seq, old_fn=text_logits, columns=every_old_id)

    # what changed, and nothing else
    before, after = tensors(adapter), tensors(out)
    assert before.keys() == after.keys()
    changed = {t["name"] for t in report["tensors"]}
    assert all(torch.equal(before[n], after[n]) for n in before if n not in changed)
    expected = {
        "modules_to_save": {f"{EMBED}.weight", f"{LM_HEAD}.weight"},
        "modules_to_save+per_layer": {f"{EMBED}.weight", f"{PER_LAYER}.weight", f"{LM_HEAD}.weight"},
        "lora_embed": {f"{EMBED}.base_layer.weight", f"{EMBED}.lora_embedding_A"},
        "lora_head_per_layer": {f"{LM_HEAD}.base_layer.weight", f"{LM_HEAD}.lora_B.weight",
                                f"{PER_LAYER}.lora_embedding_A"},
        "trainable_tokens": set(),
    }[kind]
    assert changed == expected
    inverse = [case.ids.inverse(r) for r in range(case.ids.total)]
    for name in changed:
        if name.endswith("lora_embedding_A"):
            cols = after[name].shape[1]
            assert torch.equal(after[name], before[name][:, inverse[:cols]]), name
        else:
            rows = after[name].shape[0]
            assert rows == (T + case.k if "per_layer" in name else case.ids.total), name
            assert torch.equal(after[name], before[name][inverse[:rows]]), name
    config_before, config_after = read_json(adapter / "adapter_config.json"), read_json(out / "adapter_config.json")
    assert config_before.keys() == config_after.keys()
    if kind == "trainable_tokens":
        ids = config_before.pop("trainable_token_indices")
        assert config_after.pop("trainable_token_indices") == [case.pi(i) for i in ids]
        assert report["config_changes"] == [{"key": "trainable_token_indices", "old": ids,
                                             "new": [case.pi(i) for i in ids]}]
        for name in ("tokenizer.json", "tokenizer_config.json"):  # the old-id tokenizer is not carried over
            assert (out / name).read_bytes() == (case.out / name).read_bytes(), name
        assert set(report["files_from_checkpoint"]) >= {"tokenizer.json", "tokenizer_config.json"}
    assert config_before == config_after
    record = read_json(out / "vocabfix-adapter.json")
    assert sorted(record["files"]) == sorted(hash_tree(out))
    assert record["tensors"] == report["tensors"] and record["config_changes"] == report["config_changes"]


def test_unused_strategy_rewrite(case: Case, tmp_path: Path):
    """The "unused" rewrite cuts the tables back to the released sizes and gives <unusedN> slots to the new tokens:
    a modules_to_save adapter follows, and a trainable token on a slot (an id the new layout drops) is refused."""
    from gemma3n_vocabfix import rewrite_checkpoint

    rewritten = tmp_path / "unused-out"
    rewrite_checkpoint(case.extended, rewritten, strategy="unused")
    id_map = IdMap.from_file(rewritten)
    dropped = [i for lo, hi in id_map.dropped for i in range(lo, hi)]
    assert len(dropped) == case.k
    adapter = build_adapter(case.extended, "modules_to_save", case, tmp_path / "adapter", seed=1)
    out = tmp_path / "remapped"
    report = remap(adapter, out, rewritten)
    assert {t["name"]: t["shape_after"][0] for t in report["tensors"]} == {f"{EMBED}.weight": T + V + A,
                                                                           f"{LM_HEAD}.weight": T + V + A}
    old, new = load_adapter(case.extended, adapter), load_adapter(rewritten, out)
    kept = [j for j in range(case.ids.total) if id_map(j) is not None]
    assert_same_function(old, new, id_map, [i for i in OLD_TOKENS if i not in dropped], columns=kept)
    assert_same_function(old, new, id_map, new_token_sequence(case), old_fn=text_logits, columns=kept)

    config = read_json(adapter / "adapter_config.json")
    config["trainable_token_indices"] = [5, dropped[0]]
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    result = run_cli("remap-adapter", adapter, tmp_path / "refused", "--map", rewritten / "vocabfix.json")
    assert_one_line_error(result, "trainable_token_indices", f"id {dropped[0]}", "drops")
    assert not (tmp_path / "refused").exists()


# --- refused with one line, nothing written -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_adapter(case: Case, tmp_path_factory) -> Path:
    return build_adapter(case.extended, "modules_to_save+per_layer", case,
                         tmp_path_factory.mktemp("adapter") / "adapter", seed=2)


def _copy(adapter: Path, dst: Path) -> Path:
    shutil.copytree(adapter, dst)
    return dst


def _refused(adapter: Path, out: Path, record: Path, *needles: str, run=invoke) -> str:
    """One line, exit 2, the adapter as it was and nothing beside OUT (in process unless `run` is run_cli)."""
    before = snapshot(adapter)
    line = assert_one_line_error(run("remap-adapter", adapter, out, "--map", record), *needles)
    assert snapshot(adapter) == before
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.*")), "something was written"
    return line


def test_pickled_bin_is_refused(case: Case, saved_adapter: Path, tmp_path: Path):
    from safetensors.torch import load_file

    adapter = _copy(saved_adapter, tmp_path / "adapter")
    torch.save(load_file(str(adapter / "adapter_model.safetensors")), adapter / "adapter_model.bin")
    (adapter / "adapter_model.safetensors").unlink()
    _refused(adapter, tmp_path / "out", case.out / "vocabfix.json",
             "pickled .bin adapters are not read; re-save with safe_serialization=True", run=run_cli)


def test_map_of_another_checkpoint_is_refused(saved_adapter: Path, extended: Path, tmp_path: Path):
    """The synthetic checkpoint's rewrite (a 50-id vocabulary) is not the one this adapter was trained on."""
    from gemma3n_vocabfix import rewrite_checkpoint

    other = tmp_path / "other"
    rewrite_checkpoint(extended, other)
    line = _refused(saved_adapter, tmp_path / "out", other / "vocabfix.json", "643 rows (one per id of",
                    "not trained on")
    assert "other/vocabfix.json" in line


def test_missing_files_are_refused(case: Case, saved_adapter: Path, tmp_path: Path):
    adapter = _copy(saved_adapter, tmp_path / "adapter")
    (adapter / "adapter_config.json").unlink()
    _refused(adapter, tmp_path / "out", case.out / "vocabfix.json", "adapter_config.json", "missing")
    _refused(saved_adapter, tmp_path / "out", tmp_path / "nowhere" / "vocabfix.json", "vocabfix.json", "cannot read")
    _refused(tmp_path / "no-adapter", tmp_path / "out", case.out / "vocabfix.json", "no-adapter", "no such folder")


def test_existing_out_needs_force(case: Case, saved_adapter: Path, tmp_path: Path):
    out = tmp_path / "out"
    remap(saved_adapter, out, case.out, run=invoke)  # --map may name the rewritten folder
    first = hash_tree(out)
    assert_one_line_error(invoke("remap-adapter", saved_adapter, out, "--map", case.out), "already exists")
    assert hash_tree(out) == first
    remap(saved_adapter, out, case.out, "--force", run=invoke)  # a folder remap-adapter wrote: replaced
    assert hash_tree(out) == first
    (out / "notes.txt").write_text("mine")
    assert_one_line_error(invoke("remap-adapter", saved_adapter, out, "--map", case.out, "--force"), "notes.txt")
    assert (out / "notes.txt").read_text() == "mine"


def test_an_adapter_already_remapped_with_this_map_is_refused(case: Case, saved_adapter: Path, tmp_path: Path):
    """Remapping the remapped copy again would move its rows a second time (exit 0 and wrong logits before)."""
    once = tmp_path / "once"
    remap(saved_adapter, once, case.out, run=invoke)
    before = hash_tree(once)
    assert_one_line_error(invoke("remap-adapter", once, tmp_path / "twice", "--map", case.out), "already remapped")
    assert hash_tree(once) == before and not (tmp_path / "twice").exists()


def test_text_output_and_help(case: Case, saved_adapter: Path, tmp_path: Path):
    result = invoke("remap-adapter", saved_adapter, tmp_path / "out", "--map", case.out / "vocabfix.json")
    assert result.exit_code == 0, result.stderr
    assert "Remapped" in result.stdout and "643 -> 387" in result.stdout and result.stderr == ""
    helped = invoke("remap-adapter", "--help")
    assert helped.exit_code == 0 and "Examples:" in helped.stdout


# --- rows the adapter's tables lack (a transformers 4.5x base: per-layer table not resized) -------------------------


def _record(folder: Path, embed_rows: int) -> Path:
    """A rewrite's vocabfix.json for T=4, V=A=2 and k=2 appended tokens (the layout doc's map), with the per-layer
    table at T rows and embed_tokens at `embed_rows` (10: resized the 4.5x way; 8: not resized)."""
    folder.mkdir()
    ids = [{"old_start": 0, "old_stop": 4, "new_start": 0}, {"old_start": 4, "old_stop": 8, "new_start": 6},
           {"old_start": 8, "old_stop": 10, "new_start": 4}]
    layout = {"text": [0, 4], "vision": [4, 6], "audio": [6, 8], "appended": [8, 10], "vocab_size": embed_rows,
              "vocab_size_per_layer_input": 4, "tokenizer_size": 10}
    after = {"text": [0, 6], "vision": [6, 8], "audio": [8, 10], "appended": [6, 6], "vocab_size": 10,
             "vocab_size_per_layer_input": 6, "tokenizer_size": 10}
    tensors = [{"name": "model.language_model.embed_tokens.weight", "rows_before": embed_rows, "rows_after": 10},
               {"name": "model.language_model.embed_tokens_per_layer.weight", "rows_before": 4, "rows_after": 6}]
    (folder / "vocabfix.json").write_text(json.dumps({"id_map": ids, "layout_before": layout, "layout_after": after,
                                                      "tensors": tensors}))
    return folder / "vocabfix.json"


@pytest.mark.parametrize("embed_rows", [10, 8], ids=["embed-resized", "embed-not-resized"])
def test_rows_the_adapter_lacks_follow_the_rewrite_rule(tmp_path: Path, embed_rows: int):
    """Per-layer rows (and lora_embedding_A columns) of ids the base embeds but its per-layer table lacks: row 0, as
    stock transformers reads; rows of ids no runtime could embed: the mean of the text rows in a full table, zeros
    in a LoRA delta. Rows move as bytes (bf16 included); other tensors keep their bytes."""
    from safetensors.torch import load_file, save_file

    from gemma3n_vocabfix.adapter import remap_adapter

    record = _record(tmp_path / "ckpt", embed_rows)
    gen = torch.Generator().manual_seed(5)
    lm = "base_model.model.model.language_model"
    names = {"embed": f"{lm}.embed_tokens.weight", "per_layer": f"{lm}.embed_tokens_per_layer.weight",
             "lora_a": f"{lm}.embed_tokens_per_layer.lora_embedding_A",
             "lora_b": f"{lm}.embed_tokens_per_layer.lora_embedding_B", "head_b": f"{LM_HEAD}.lora_B.weight",
             "head_a": f"{LM_HEAD}.lora_A.weight", "other": f"{lm}.layers.0.mlp.down_proj.lora_A.weight"}
    before = {names["embed"]: torch.randn(embed_rows, 3, generator=gen).to(torch.bfloat16),
              names["per_layer"]: torch.randn(4, 5, generator=gen), names["lora_a"]: torch.randn(2, 4, generator=gen),
              names["lora_b"]: torch.randn(5, 2, generator=gen), names["head_b"]: torch.randn(embed_rows, 2,
                                                                                              generator=gen),
              names["head_a"]: torch.randn(2, 3, generator=gen), names["other"]: torch.randn(2, 3, generator=gen)}
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    save_file(before, str(adapter / "adapter_model.safetensors"), metadata={"format": "pt"})
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "trainable_token_indices": [1, 8]}))

    report = remap_adapter(adapter, tmp_path / "out", record)
    after = load_file(str(tmp_path / "out" / "adapter_model.safetensors"))
    inverse = [0, 1, 2, 3, 8, 9, 4, 5, 6, 7]  # old id of each new id
    for key in ("lora_b", "head_a", "other"):
        assert torch.equal(after[names[key]], before[names[key]]), key
    embed, head_b = after[names["embed"]], after[names["head_b"]]
    assert embed.dtype == torch.bfloat16 and embed.shape == (10, 3) and head_b.shape == (10, 2)
    assert after[names["per_layer"]].shape == (6, 5) and after[names["lora_a"]].shape == (2, 6)
    assert torch.equal(after[names["per_layer"]][:4], before[names["per_layer"]])
    assert torch.equal(after[names["lora_a"]][:, :4], before[names["lora_a"]])
    moved = [r for r in range(10) if inverse[r] < embed_rows]
    assert torch.equal(embed[moved], before[names["embed"]][[inverse[r] for r in moved]])
    assert torch.equal(head_b[moved], before[names["head_b"]][[inverse[r] for r in moved]])
    if embed_rows == 10:  # the appended ids have embed rows: per-layer row 0 for them
        assert torch.equal(after[names["per_layer"]][4:], before[names["per_layer"]][[0, 0]])
        assert torch.equal(after[names["lora_a"]][:, 4:], before[names["lora_a"]][:, [0, 0]])
    else:  # no runtime could embed them: the mean of the text rows; no adaptation in a LoRA delta
        mean = before[names["embed"]][:4].double().mean(0)
        torch.testing.assert_close(embed[4:6].double(), mean.expand(2, 3), rtol=0, atol=1e-2)
        mean = before[names["per_layer"]].double().mean(0)
        torch.testing.assert_close(after[names["per_layer"]][4:].double(), mean.expand(2, 5), rtol=0, atol=1e-6)
        assert not after[names["lora_a"]][:, 4:].any() and not head_b[4:6].any()
    assert report.config_changes == [{"key": "trainable_token_indices", "old": [1, 8], "new": [1, 4]}]
    kinds = {t.info.name: t.kind for t in report.tensors}
    assert kinds == {names["embed"]: "rows", names["per_layer"]: "rows", names["lora_a"]: "columns",
                     names["head_b"]: "delta rows"}

"""Strategy "unused" (issue 8): appended tokens take `<unusedN>` slots of the text range; the released sizes, config
and multimodal ids stay.

Synthetic checkpoints (tests/fixtures/synthetic.py with some text ids named `<unusedN>`) check every file, row,
config field and the record against expectations computed here; tiny real models (tests/fixtures/tiny.py, whose
small id space has `<unused0..9>` at ids 6..15) and a checkpoint saved by transformers 4.56
(tests/fixtures/legacy/resize-special) check what stock transformers does with the output; `add_tokens` /
`fix_model` do the same in memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import (
    EMBED,
    LM_HEAD,
    NEW,
    PER_LAYER,
    A,
    T,
    V,
    assert_one_line_error,
    edit_json,
    hash_tree,
    invoke,
    numpy_tensors,
    read_json,
    save_inspect_reload,
)
from fixtures.synthetic import build, row_values

from gemma3n_vocabfix import rewrite_checkpoint
from gemma3n_vocabfix.errors import UsageError

UNUSED = {i: i - 10 for i in range(10, 20)}  # text ids 10..19 are <unused0..9>
M = T + V + A  # the first appended id
K = len(NEW)


def _build(tmp_path: Path, name: str = "ext", **kwargs) -> Path:
    kwargs.setdefault("unused", UNUSED)
    kwargs.setdefault("new_tokens", NEW)
    return build(tmp_path / name, text=T, vision=V, audio=A, **kwargs)


def _mapped(slots: list[int]):
    """The expected map: appended id M+n -> slots[n], slot ids dropped (None), every other id its own."""
    def new(old: int):
        if old >= M:
            return slots[old - M]
        return None if old in slots else old
    return new


# --- synthetic: files, rows, config, record ------------------------------------------------------------------------


@pytest.mark.parametrize("resized", [True, False], ids=["resized", "not-resized"])
def test_rows_config_and_record(tmp_path, resized):
    """Default slots: the lowest free <unusedN> ids. Rows: the new token's own rows in embed_tokens / lm_head,
    its own per-layer row (transformers 5 resize) or per-layer row 0 (not resized: embed_tokens has the row),
    everything else unchanged; tables cut to the released sizes."""
    kwargs = {} if resized else {"embed_rows": M + K, "per_layer_rows": T, "per_layer_size": T}
    src = _build(tmp_path, lm_head_rows=M + K, **kwargs)
    edit_json(src / "config.json", lambda c: c.update(tie_word_embeddings=False))  # an untied lm_head
    out = tmp_path / "out"
    report = rewrite_checkpoint(src, out, strategy="unused")
    slots = [10, 11, 12]
    new = _mapped(slots)
    assert [report.id_map(i) for i in range(M + K)] == [new(i) for i in range(M + K)]

    tensors = numpy_tensors(out)
    assert tensors[EMBED].shape == (M, 4) and tensors[LM_HEAD].shape == (M, 4) and tensors[PER_LAYER].shape == (T, 8)
    source_of = {new(i): i for i in range(M + K) if new(i) is not None}  # output row -> old id
    np.testing.assert_array_equal(tensors[EMBED], row_values([source_of[r] for r in range(M)]))
    np.testing.assert_array_equal(tensors[LM_HEAD], row_values([source_of[r] for r in range(M)]) * 3)
    per_layer_src = [source_of[r] if source_of[r] < (M + K if resized else T) else 0 for r in range(T)]
    np.testing.assert_array_equal(tensors[PER_LAYER], -row_values(per_layer_src, 8))

    config = read_json(out / "config.json")
    assert config["text_config"]["vocab_size"] == M and config["text_config"]["vocab_size_per_layer_input"] == T
    assert (config["vision_config"]["vocab_offset"], config["audio_config"]["vocab_offset"]) == (T, T + V)
    assert config["image_token_id"] == T + 1 and config["audio_token_id"] == T + V + 1

    record = read_json(out / "vocabfix.json")
    assert record["strategy"] == "unused"
    assert record["slots"] == dict(zip(NEW, slots, strict=True))
    assert record["id_map_dropped"] == [[s, s + 1] for s in slots]
    for entry in record["id_map"]:  # every kept old id is remapped by its range
        for old in range(entry["old_start"], entry["old_stop"]):
            assert entry["new_start"] + old - entry["old_start"] == new(old)
    assert record["layout_after"]["vocab_size"] == M and record["layout_after"]["vocab_size_per_layer_input"] == T
    assert invoke("inspect", out, "--strict").exit_code == 0


def test_tokenizer_files(tmp_path):
    """The slot's string becomes the new token in every tokenizer file; the token keeps its own flags."""
    src = _build(tmp_path, sentencepiece=True)
    edit_json(src / "tokenizer.json", lambda d: [e.update(special=True) for e in d["added_tokens"]
                                                 if e["content"] == NEW[1]])
    out = tmp_path / "out"
    rewrite_checkpoint(src, out, strategy="unused", slots=[14, 11, 17])
    slots = dict(zip(NEW, [14, 11, 17], strict=True))
    gone = {f"<unused{s - 10}>" for s in slots.values()}

    tj = read_json(out / "tokenizer.json")
    vocab = tj["model"]["vocab"]
    assert all(vocab[tok] == i for tok, i in slots.items()) and not gone & set(vocab)
    assert sorted(vocab.values()) == list(range(M))
    added = {e["content"]: e for e in tj["added_tokens"]}
    assert all(added[tok]["id"] == i for tok, i in slots.items()) and not gone & set(added)
    assert [added[t]["special"] for t in NEW] == [False, True, False]
    decoder = read_json(out / "tokenizer_config.json")["added_tokens_decoder"]
    assert all(decoder[str(i)]["content"] == tok for tok, i in slots.items())
    assert not gone & {v["content"] for v in decoder.values()} and len(decoder) == len(added)
    assert read_json(out / "added_tokens.json") == dict(sorted(slots.items(), key=lambda kv: kv[1]))

    from sentencepiece import sentencepiece_model_pb2 as pb
    model = pb.ModelProto()
    model.ParseFromString((out / "tokenizer.model").read_bytes())
    assert len(model.pieces) == M
    for tok, i in slots.items():
        assert model.pieces[i].piece == tok and model.pieces[i].type == 4  # USER_DEFINED
    assert model.pieces[10].piece == "<unused0>" and model.pieces[13].piece == "<unused3>"

    from tokenizers import Tokenizer
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tokenizer.get_vocab_size() == M and [tokenizer.token_to_id(t) for t in NEW] == [14, 11, 17]


def test_config_ids_move_to_their_slot_and_reserve_theirs(tmp_path):
    """An id naming an appended token (TRL chat format's eos) moves to its slot; a slot id named by the config or
    the generation config is not free."""
    src = _build(tmp_path)
    edit_json(src / "config.json", lambda c: c.update(eos_token_id=[1, M + 2]))
    edit_json(src / "generation_config.json", lambda c: c.update(eos_token_id=[1, M + 2], suppress_tokens=[10]))
    out = tmp_path / "out"
    rewrite_checkpoint(src, out, strategy="unused")
    assert read_json(out / "config.json")["eos_token_id"] == [1, 13]
    gen = read_json(out / "generation_config.json")
    assert gen["eos_token_id"] == [1, 13] and gen["suppress_tokens"] == [10]
    assert read_json(out / "vocabfix.json")["slots"] == dict(zip(NEW, [11, 12, 13], strict=True))
    with pytest.raises(UsageError, match="slot 10 is not a free <unusedN> token"):
        rewrite_checkpoint(src, tmp_path / "out2", strategy="unused", slots=[10, 11, 12])


def test_cli_slots_and_dry_run(tmp_path):
    src = _build(tmp_path)
    result = invoke("rewrite", src, tmp_path / "out", "--strategy", "unused", "--slots", "15-16,19")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert read_json(tmp_path / "out" / "vocabfix.json")["slots"] == dict(zip(NEW, [15, 16, 19], strict=True))
    dry = invoke("rewrite", src, tmp_path / "dry", "--strategy", "unused", "--dry-run")
    assert dry.exit_code == 0 and "slots 10, 11, 12" in dry.stdout and not (tmp_path / "dry").exists()
    as_json = invoke("rewrite", src, tmp_path / "dry", "--strategy", "unused", "--dry-run", "--json")
    assert json.loads(as_json.stdout)["slots"] == dict(zip(NEW, [10, 11, 12], strict=True))


@pytest.mark.parametrize("args, needles", [
    (["--slots", "10,11"], ["--slots names 2 slots for 3 appended tokens"]),
    (["--slots", "10,11,5"], ["slot 5 is not a free <unusedN> token"]),  # [multimodal]
    (["--slots", "10,11,25"], ["slot 25 is not a free <unusedN> token"]),  # tok25
    (["--slots", "10,11,41"], ["slot 41 is not a free <unusedN> token"]),  # a vision id
    (["--slots", "10,11,11"], ["slot"]),
    (["--slots", "10,x"], ["--slots: 'x' is not an id"]),
    (["--slots", "0-99999999999999"], ["--slots: '0-99999999999999' makes more than"]),  # not built in memory
    (["--strategy", "middle"], ["unknown strategy 'middle'"]),
])
def test_cli_refuses_bad_slots_in_one_line(tmp_path, args, needles):
    src = _build(tmp_path)
    strategy = [] if "--strategy" in args else ["--strategy", "unused"]
    result = invoke("rewrite", src, tmp_path / "out", *strategy, *args)
    assert_one_line_error(result, *needles)
    assert not (tmp_path / "out").exists()


def test_too_few_slots_and_other_layouts_are_refused(tmp_path):
    few = _build(tmp_path, "few", unused={10: 0, 11: 1})
    assert_one_line_error(invoke("rewrite", few, tmp_path / "out", "--strategy", "unused"),
                          "3 appended tokens but only 2 free <unusedN> slots")
    swapped = _build(tmp_path, "swapped", audio_first=True)
    assert_one_line_error(invoke("rewrite", swapped, tmp_path / "out", "--strategy", "unused"),
                          "strategy unused needs the image and audio ids as released")
    assert invoke("rewrite", swapped, tmp_path / "out").exit_code == 0  # shift fixes it
    assert_one_line_error(invoke("rewrite", few, tmp_path / "o2", "--slots", "10"), "slots are only for")


def test_consistent_checkpoint_is_copied(tmp_path):
    src = build(tmp_path / "base", text=T, vision=V, audio=A, unused=UNUSED)
    report = rewrite_checkpoint(src, tmp_path / "out", strategy="unused")
    assert not report.changed and report.id_map.is_identity


# --- tiny real models, stock transformers --------------------------------------------------------------------------

SMALL_SLOTS = [6, 7, 8]  # <unused0..2> of the small id space


def _logits(model, ids):
    import torch
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def _shapes(folder: Path) -> dict:
    from safetensors import safe_open
    out = {}
    for shard in folder.glob("*.safetensors"):
        with safe_open(str(shard), "np") as f:
            out.update({k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})  # noqa: SIM118
    return out


LAYOUT_KEYS = ("text_config.vocab_size", "text_config.vocab_size_per_layer_input", "vision_config.vocab_offset",
               "audio_config.vocab_offset", "image_token_id", "audio_token_id", "boi_token_id", "eoi_token_id",
               "boa_token_id", "eoa_token_id")


def _field(config: dict, key: str):
    for part in key.split("."):
        config = config[part]
    return config


@pytest.mark.parametrize("variant", ["small-resized", "small-not-resized"])
def test_rewrite_unused_runs_in_stock_transformers(case_factory, variant, tmp_path):
    import torch
    from conftest import NEW_TOKENS, load_model
    from fixtures import tiny
    from transformers import AutoTokenizer, Gemma3nForConditionalGeneration

    case = case_factory(variant)
    out = tmp_path / "out"
    result = invoke("rewrite", case.extended, out, "--strategy", "unused")
    assert result.exit_code == 0, result.stdout + result.stderr
    base_config, out_config = read_json(case.base / "config.json"), read_json(out / "config.json")
    assert {k: _field(out_config, k) for k in LAYOUT_KEYS} == {k: _field(base_config, k) for k in LAYOUT_KEYS}
    assert _shapes(out) == _shapes(case.base)
    tok, base_tok = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(case.base)
    assert len(tok) == len(base_tok)
    assert tok.convert_tokens_to_ids(NEW_TOKENS) == SMALL_SLOTS
    assert [tiny.base_token_strings("small")[i] for i in SMALL_SLOTS] == ["<unused0>", "<unused1>", "<unused2>"]
    assert set(SMALL_SLOTS) <= set(tok(" ".join(NEW_TOKENS)).input_ids)

    model = Gemma3nForConditionalGeneration.from_pretrained(out).eval()
    special = read_json(out / "config.json")
    mixed = [2, *SMALL_SLOTS, special["image_token_id"], special["audio_token_id"], case.T + case.V + case.A - 1, 30]
    logits = _logits(model, mixed)
    assert logits.shape == (len(mixed), case.T + case.V + case.A) and torch.isfinite(logits).all()
    old = [2, 30, 100, special["boi_token_id"], special["eoi_token_id"], special["image_token_id"], 20,
           special["eoa_token_id"], special["audio_token_id"], case.T + case.V + case.A - 1]
    keep = [c for c in range(case.T + case.V + case.A) if c not in SMALL_SLOTS]
    got, want = _logits(model, old), _logits(load_model(case.base), old)
    assert torch.equal(got[:, keep], want[:, keep])
    assert invoke("inspect", out, "--strict").exit_code == 0


def test_legacy_causal_lm_logits_map_to_the_slots(tmp_path):
    """A checkpoint saved by transformers 4.56 (resize grows embed_tokens only): Gemma3nForCausalLM gives the same
    logits on text with the new tokens, the new tokens' columns now at their slots."""
    import torch
    from test_function_preserving import LEGACY, TEXT, _logits
    from transformers import Gemma3nForCausalLM

    src, out = LEGACY / "resize-special", tmp_path / "out"
    rewrite_checkpoint(src, out, strategy="unused")
    t, m = 384, 640
    k = len(read_json(src / "added_tokens.json"))
    slots = read_json(out / "vocabfix.json")["slots"]
    added = {tok: i for tok, i in read_json(src / "added_tokens.json").items()}
    new = {added[tok]: slot for tok, slot in slots.items()}
    assert sorted(new) == list(range(m, m + k)) and sorted(new.values()) == [6, 7, 8, 9]

    def mapped(old: int) -> int | None:
        return new.get(old, None if old in new.values() else old)

    want, ids_in = _logits(Gemma3nForCausalLM, src, TEXT)
    got, ids_out = _logits(Gemma3nForCausalLM, out, TEXT)
    assert any(i >= m for i in ids_in) and ids_out == [mapped(i) for i in ids_in]
    assert got.shape[1] == m and read_json(out / "config.json")["text_config"]["vocab_size_per_layer_input"] == t
    old_columns = [i for i in range(m + k) if mapped(i) is not None]
    assert torch.equal(got[:, [mapped(i) for i in old_columns]], want[:, old_columns])


# --- in memory -----------------------------------------------------------------------------------------------------


def _in_memory_checks(model, result, base, tmp_path):
    import torch
    from conftest import NEW_TOKENS

    base_config = read_json(base / "config.json")
    config = json.loads(model.config.to_json_string(use_diff=False))
    assert {k: _field(config, k) for k in LAYOUT_KEYS} == {k: _field(base_config, k) for k in LAYOUT_KEYS}
    lm = model.model.language_model
    total = base_config["text_config"]["vocab_size"]
    t = base_config["text_config"]["vocab_size_per_layer_input"]
    assert lm.embed_tokens.weight.shape[0] == total and lm.embed_tokens_per_layer.weight.shape[0] == t
    assert model.lm_head.weight.shape[0] == total
    assert result.token_ids == SMALL_SLOTS
    tok = getattr(result.tokenizer, "tokenizer", result.tokenizer)
    assert tok.convert_tokens_to_ids(NEW_TOKENS) == SMALL_SLOTS and len(tok) == total
    mixed = [2, *SMALL_SLOTS, base_config["image_token_id"], base_config["audio_token_id"], total - 1, 30]
    logits = _logits(model, mixed)
    assert logits.shape == (len(mixed), total) and torch.isfinite(logits).all()
    out = tmp_path / "saved"
    reloaded = save_inspect_reload(model, result.tokenizer, out)
    assert torch.equal(_logits(reloaded, mixed), logits)
    assert _shapes(out) == _shapes(base)


def test_add_tokens_unused_in_memory(base_factory, tmp_path):
    import torch
    from conftest import NEW_TOKENS
    from transformers import AutoProcessor, Gemma3nForConditionalGeneration

    from gemma3n_vocabfix import add_tokens

    base = base_factory("small", "float32", True, "launch")
    model = Gemma3nForConditionalGeneration.from_pretrained(base).eval()
    embed = model.model.language_model.embed_tokens.weight
    mean = (embed.detach()[:384].double().sum(0) / 384).float()
    result = add_tokens(model, AutoProcessor.from_pretrained(base), NEW_TOKENS, strategy="unused")
    assert all(torch.equal(embed.detach()[s], mean) for s in SMALL_SLOTS)
    _in_memory_checks(model, result, base, tmp_path)


def test_fix_model_unused_in_memory(base_factory, tmp_path):
    import torch
    from conftest import NEW_TOKENS
    from transformers import AutoTokenizer, Gemma3nForConditionalGeneration

    from gemma3n_vocabfix import fix_model

    base = base_factory("small", "float32", True, "launch")
    model = Gemma3nForConditionalGeneration.from_pretrained(base).eval()
    tok = AutoTokenizer.from_pretrained(base)
    tok.add_tokens(NEW_TOKENS)
    model.resize_token_embeddings(len(tok))
    embed = model.model.language_model.embed_tokens.weight
    trained = embed.detach()[640:643].clone()
    result = fix_model(model, tok, strategy="unused")
    assert result.changed and torch.equal(model.model.language_model.embed_tokens.weight.detach()[SMALL_SLOTS],
                                          trained)
    assert [result.id_map(i) for i in (640, 641, 642, 6, 5, 650 - 1)] == [6, 7, 8, None, 5, 649]
    _in_memory_checks(model, result, base, tmp_path)


def test_a_tokenizer_that_cannot_be_renumbered_fails_before_anything_is_published(tmp_path):
    """The tokenizer files are renumbered on a thread while the shards are copied (plan.make_plan background): a
    failure there (here the post-processor names a slot the rewrite gives away) is still one line and exit 2, with
    neither OUT nor a stage left behind; with --dry-run the API call itself raises it."""
    from gemma3n_vocabfix.errors import CheckpointError

    src = _build(tmp_path)
    tokenizer = json.loads((src / "tokenizer.json").read_text())
    tokenizer["post_processor"] = {"type": "TemplateProcessing", "single": [], "pair": [], "special_tokens": {
        "<unused4>": {"id": "<unused4>", "ids": [14], "tokens": ["<unused4>"]}}}
    (src / "tokenizer.json").write_text(json.dumps(tokenizer))
    before = hash_tree(src)
    result = invoke("rewrite", src, tmp_path / "out", "--strategy", "unused", "--slots", "14,11,17")
    assert_one_line_error(result, "post_processor", "names id 14")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ext"]  # no OUT, no stage
    assert hash_tree(src) == before
    with pytest.raises(CheckpointError, match="names id 14"):
        rewrite_checkpoint(src, tmp_path / "out", strategy="unused", slots=[14, 11, 17], dry_run=True)

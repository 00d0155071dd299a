"""`fix_model` and `add_tokens` (issue 8, strategy "shift", init "mean") on tiny real Gemma 3n models in memory.

Stock transformers, nothing patched: a model loaded with `from_pretrained`, extended the transformers way
(`tokenizer.add_tokens` + `model.resize_token_embeddings`), fixed in place; then it runs with the new and the
multimodal ids, gives the original's logits on old tokens (ids and columns mapped through the layout doc's π,
tests/fixtures/oracle.py), keeps the new tokens' trained rows, trains, and saves a checkpoint that `vocabfix inspect
--strict` finds clean and stock `from_pretrained` reloads with the same logits. One base (small id space, float32) is
built for the session (conftest.base_factory); the bf16 and untied models are made from it in memory.
"""

from __future__ import annotations

import pytest
import torch  # (the torch extra is installed by make test; a missing one must fail, not skip)
from conftest import NEW_TOKENS
from fixtures import tiny
from fixtures.helpers import save_inspect_reload
from fixtures.oracle import DocLayout

from gemma3n_vocabfix import fix_model

SP = tiny.get_id_space("small")
DOC = DocLayout(SP.T, SP.V, SP.A, len(NEW_TOKENS))
SPECIAL = SP.special_ids()
# old ids: text (bos, plain, <start_of_image>, <start_of_audio>), vision (<end_of_image>, the soft token, the last
# vision id), audio (<end_of_audio>, the soft token, the last audio id)
OLD_IDS = [2, 30, 100, SPECIAL["boi_token_id"], SPECIAL["eoi_token_id"], SPECIAL["image_token_id"],
           SP.T + SP.V - 1, 7, SPECIAL["boa_token_id"], SPECIAL["eoa_token_id"], SPECIAL["audio_token_id"],
           SP.T + SP.V + SP.A - 1, 200]


@pytest.fixture(scope="module")
def base(base_factory):
    return base_factory("small", "float32", True, "launch")


def _dtype(name: str):
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def _load(base, dtype: str, untied: bool):
    """A fresh stock model from `base`; `untied`: lm_head made a separate, different Parameter (tie_word_embeddings
    off), the same way (same noise) every time it is asked for."""
    from transformers import Gemma3nForConditionalGeneration

    model = Gemma3nForConditionalGeneration.from_pretrained(base, dtype=_dtype(dtype)).eval()
    if untied:
        gen = torch.Generator().manual_seed(7)
        with torch.no_grad():
            head = model.lm_head.weight.detach().clone()
            head += (torch.randn(head.shape, generator=gen) * 0.1).to(head.dtype)
            model.lm_head.weight = torch.nn.Parameter(head)
        model.config.tie_word_embeddings = False
        model.config.get_text_config().tie_word_embeddings = False
    return model


def _tokenizer(base, kind: str):
    from transformers import AutoProcessor, AutoTokenizer

    return AutoProcessor.from_pretrained(base) if kind == "processor" else AutoTokenizer.from_pretrained(base)


def _text_tok(tok):
    return getattr(tok, "tokenizer", tok)


def _logits(model, ids: list[int]):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


_REF: dict[tuple, object] = {}


def _reference_logits(base, dtype: str, untied: bool):
    """The original model's logits on OLD_IDS, once per (dtype, untied)."""
    key = (dtype, untied)
    if key not in _REF:
        _REF[key] = _logits(_load(base, dtype, untied), OLD_IDS)
    return _REF[key]


def _tables(model):
    lm = model.model.language_model
    return lm.embed_tokens.weight, lm.embed_tokens_per_layer.weight, model.lm_head.weight


def _check_fixed(model, result, base, dtype: str, untied: bool, tmp_path, kind: str) -> None:
    """Everything issue 8 asks of a fixed model, except the rows of the new tokens (the callers check those)."""
    from transformers import AutoProcessor

    # ids, config, tokenizer
    assert result.token_ids == DOC.new_ids_new
    assert [result.id_map(i) for i in range(DOC.total)] == [DOC.pi(i) for i in range(DOC.total)]
    tok = _text_tok(result.tokenizer)
    assert type(result.tokenizer).__name__ == ("Gemma3nProcessor" if kind == "processor" else type(tok).__name__)
    assert tok.convert_tokens_to_ids(NEW_TOKENS) == DOC.new_ids_new
    assert len(tok) == DOC.total
    cfg = model.config
    for key, value in DOC.config_after().items():
        section, field = key.split(".")
        assert getattr(getattr(cfg, section), field) == value, key
    for key, old in SPECIAL.items():
        assert getattr(cfg, key) == DOC.pi(old), key
    if kind == "processor":
        assert result.tokenizer.image_token_id == cfg.image_token_id
        assert result.tokenizer.audio_token_id == cfg.audio_token_id
    assert model.model.embed_vision.vocab_offset == DOC.vision_new[0]
    assert model.model.embed_audio.vocab_offset == DOC.audio_new[0]
    assert model.model.vocab_size == DOC.total and model.model.vocab_size_per_layer_input == DOC.T + DOC.k
    assert model.generation_config.eos_token_id == [1, SP.end_of_turn_id]
    embed, per_layer, head = _tables(model)
    assert tuple(embed.shape) == (DOC.total, embed.shape[1]) and tuple(per_layer.shape)[0] == DOC.T + DOC.k
    assert head.shape[0] == DOC.total and (head is embed) == (not untied)
    assert embed.dtype == per_layer.dtype == head.dtype == _dtype(dtype)

    # old tokens: the original's logits, ids and columns mapped through π
    new_logits = _logits(model, [DOC.pi(i) for i in OLD_IDS])
    ref = _reference_logits(base, dtype, untied)
    perm = [DOC.pi(i) for i in range(DOC.T + DOC.V + DOC.A)]
    tol = {} if dtype == "bfloat16" else {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(new_logits[:, perm], ref, **tol)

    # the new and multimodal ids run; the text input the tokenizer makes holds the new ids
    mixed = [2, *DOC.new_ids_new, DOC.pi(SPECIAL["image_token_id"]), DOC.pi(SPECIAL["audio_token_id"]),
             DOC.audio_new[1] - 1, 30]
    mixed_logits = _logits(model, mixed)
    assert mixed_logits.shape == (len(mixed), DOC.total) and torch.isfinite(mixed_logits).all()
    assert set(DOC.new_ids_new) <= set(tok(" ".join(NEW_TOKENS)).input_ids)

    # save, inspect --strict, reload with the same logits
    out = tmp_path / "saved"
    reloaded = save_inspect_reload(model, result.tokenizer, out)
    torch.testing.assert_close(_logits(reloaded, mixed), mixed_logits, rtol=0, atol=0)
    if kind == "processor":
        processor = AutoProcessor.from_pretrained(out)
        assert (processor.image_token_id, processor.audio_token_id) == (cfg.image_token_id, cfg.audio_token_id)

    # one optimizer step on a batch with the new tokens runs and moves their rows
    before = embed.detach()[DOC.new_ids_new].clone()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    batch = torch.tensor([[2, DOC.new_ids_new[0], 30, DOC.new_ids_new[1], 100, DOC.new_ids_new[2], 1]])
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    optimizer.step()
    model.eval()
    assert torch.isfinite(loss)
    assert not torch.equal(embed.detach()[DOC.new_ids_new], before)


def _mark_rows(model, ids: list[int], seed: int) -> dict[str, object]:
    """Give the rows of `ids` distinctive "trained" values in each table that has them; returns them by table."""
    gen = torch.Generator().manual_seed(seed)
    marked = {}
    embed, per_layer, head = _tables(model)
    tables = {"embed": embed, "per_layer": per_layer} | ({} if head is embed else {"head": head})
    with torch.no_grad():
        for name, w in tables.items():
            if w.shape[0] > max(ids):
                rows = (torch.randn(len(ids), w.shape[1], generator=gen) * 0.5 + 1.0).to(w.dtype)
                w[ids] = rows
                marked[name] = rows.clone()
    return marked


FIX_CASES = [
    # (dtype, untied, tokenizer or processor, pad_to_multiple_of, mean_resizing)
    pytest.param("float32", False, "processor", None, False, id="f32-tied-processor"),
    pytest.param("float32", False, "tokenizer", 64, True, id="f32-tied-tokenizer-pad64-meanresize"),
    pytest.param("float32", True, "processor", 64, True, id="f32-untied-processor-pad64-meanresize"),
    pytest.param("bfloat16", False, "processor", None, True, id="bf16-tied-processor-meanresize"),
]


@pytest.mark.parametrize("dtype, untied, kind, pad, mean_resizing", FIX_CASES)
def test_fix_model_after_resize(base, tmp_path, dtype, untied, kind, pad, mean_resizing):
    model, tok = _load(base, dtype, untied), _tokenizer(base, kind)
    assert _text_tok(tok).add_tokens(NEW_TOKENS) == len(NEW_TOKENS)
    model.resize_token_embeddings(len(_text_tok(tok)), pad_to_multiple_of=pad, mean_resizing=mean_resizing)
    assert _text_tok(tok).convert_tokens_to_ids(NEW_TOKENS) == DOC.new_ids_old
    marked = _mark_rows(model, DOC.new_ids_old, seed=3)
    assert set(marked) == {"embed", "per_layer"} | ({"head"} if untied else set())
    embed, per_layer, head = _tables(model)
    if not untied:
        per_layer.requires_grad_(False)  # a frozen table stays frozen
    params = {name: p for name, p in model.named_parameters()}

    result = fix_model(model, tok)

    assert result.changed
    assert {name: p for name, p in model.named_parameters()}.keys() == params.keys()
    assert all(p is params[name] for name, p in model.named_parameters()), "a Parameter was replaced"
    assert per_layer.requires_grad is untied and embed.requires_grad
    kept = {"embed": embed, "per_layer": per_layer, "head": head}
    for name, rows in marked.items():
        assert torch.equal(kept[name].detach()[DOC.new_ids_new], rows), name
    _check_fixed(model, result, base, dtype, untied, tmp_path, kind)


ADD_CASES = [
    pytest.param("float32", False, "processor", id="f32-tied-processor"),
    pytest.param("float32", True, "tokenizer", id="f32-untied-tokenizer"),
    pytest.param("bfloat16", False, "processor", id="bf16-tied-processor"),
]


def _text_mean(w, rows: int):
    """The mean of the first `rows` rows the way the rewrite makes it: float64 sum, then float32, then the dtype."""
    return (w.detach()[:rows].double().sum(0) / rows).float().to(w.dtype)


@pytest.mark.parametrize("dtype, untied, kind", ADD_CASES)
def test_add_tokens_shift(base, tmp_path, dtype, untied, kind):
    from gemma3n_vocabfix import add_tokens

    model, tok = _load(base, dtype, untied), _tokenizer(base, kind)
    size_before = len(_text_tok(tok))
    means = {name: _text_mean(w, SP.T) for name, w in zip(("embed", "per_layer", "head"), _tables(model),
                                                          strict=True)}

    result = add_tokens(model, tok, NEW_TOKENS, strategy="shift", init="mean")

    assert len(_text_tok(tok)) == size_before, "the tokenizer passed in was modified"
    for name, w in zip(("embed", "per_layer", "head"), _tables(model), strict=True):
        for i in DOC.new_ids_new:
            assert torch.equal(w.detach()[i], means[name]), (name, i)
    _check_fixed(model, result, base, dtype, untied, tmp_path, kind)


def test_add_tokens_special_and_known(base):
    """special=True marks the tokens special; a token the tokenizer already has keeps its id."""
    from gemma3n_vocabfix import add_tokens

    model, tok = _load(base, "float32", False), _tokenizer(base, "tokenizer")
    result = add_tokens(model, tok, ["<think>", "<end_of_turn>"], special=True)
    assert result.token_ids == [SP.T, SP.end_of_turn_id]
    assert result.tokenizer.convert_ids_to_tokens(SP.T) == "<think>"
    assert result.tokenizer.decode([2, SP.T], skip_special_tokens=True) == ""
    assert model.config.get_text_config().vocab_size == SP.T + 1 + SP.V + SP.A


def test_fix_model_on_a_consistent_model_changes_nothing(base):
    from gemma3n_vocabfix import fix_model

    model, tok = _load(base, "float32", False), _tokenizer(base, "processor")
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "embed" in n}
    result = fix_model(model, tok)
    assert not result.changed and result.tokenizer is tok and result.token_ids == []
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before)


@pytest.mark.parametrize("kwargs, needle", [({"strategy": "middle"}, "unknown strategy 'middle'"),
                                            ({"init": "median"}, "unknown init 'median'")])
def test_add_tokens_refuses_what_does_not_exist_yet(base, kwargs, needle):
    from gemma3n_vocabfix import VocabfixError, add_tokens
    from gemma3n_vocabfix.errors import UsageError

    model, tok = _load(base, "float32", False), _tokenizer(base, "tokenizer")
    with pytest.raises(UsageError) as e:
        add_tokens(model, tok, NEW_TOKENS, **kwargs)
    assert needle in str(e.value) and isinstance(e.value, VocabfixError)
    assert len(tok) == SP.vocab_size and model.config.get_text_config().vocab_size == SP.vocab_size


def test_refuses_other_models_and_quantized_tables(base):
    from gemma3n_vocabfix import fix_model
    from gemma3n_vocabfix.errors import NotGemma3nError, UsageError

    tok = _tokenizer(base, "tokenizer")
    with pytest.raises(NotGemma3nError, match="not a Gemma3nForConditionalGeneration"):
        fix_model(torch.nn.Linear(2, 2), tok)
    model = _load(base, "float32", False)
    emb = model.model.language_model.embed_tokens_per_layer
    emb.weight = torch.nn.Parameter(emb.weight.detach().to(torch.int8), requires_grad=False)
    with pytest.raises(UsageError, match="quantized"):
        fix_model(model, tok)



@pytest.mark.parametrize("variant", ["small-resized", "small-not-resized", "small-untie-on-extend"])
def test_same_rows_and_files_as_the_rewrite(case_factory, variant, tmp_path):
    """fix_model on an extended checkpoint loaded in memory gives the tables and tokenizer the on-disk rewrite
    writes: one plan, the same copied, padded and mean rows (the mean: the writer's numpy vs torch)."""
    from transformers import AutoTokenizer, Gemma3nForConditionalGeneration

    case = case_factory(variant)
    model = Gemma3nForConditionalGeneration.from_pretrained(case.extended).eval()
    result = fix_model(model, AutoTokenizer.from_pretrained(case.extended))
    written = tiny.read_tensors(case.out)
    state = model.state_dict()
    for name in ("model.language_model.embed_tokens.weight", "model.language_model.embed_tokens_per_layer.weight",
                 "lm_head.weight"):
        if name in written:
            assert torch.equal(state[name], written[name]), name
    assert result.token_ids == case.new_ids_new
    on_disk = AutoTokenizer.from_pretrained(case.out)
    assert result.tokenizer.get_vocab() == on_disk.get_vocab()


def test_fix_model_through_a_peft_wrapper(base, tmp_path):
    """A LoRA-wrapped model (peft) is fixed through its base model; the wrapper keeps working, and the merged model
    passes every check of a plain fixed model."""
    from peft import LoraConfig, get_peft_model

    model, tok = _load(base, "float32", False), _tokenizer(base, "processor")
    _text_tok(tok).add_tokens(NEW_TOKENS)
    model.resize_token_embeddings(len(_text_tok(tok)), mean_resizing=False)
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))

    result = fix_model(wrapped, tok)

    assert result.changed and result.token_ids == DOC.new_ids_new
    new_logits = _logits(wrapped, [DOC.pi(i) for i in OLD_IDS])  # LoRA's B starts at zero: the base model's output
    perm = [DOC.pi(i) for i in range(DOC.T + DOC.V + DOC.A)]
    ref = _reference_logits(base, "float32", False)
    torch.testing.assert_close(new_logits[:, perm], ref, rtol=1e-5, atol=1e-5)
    merged = wrapped.merge_and_unload()
    for p in merged.parameters():  # peft froze the base model; train it as a plain model from here
        p.requires_grad_(True)
    _check_fixed(merged, result, base, "float32", False, tmp_path, "processor")

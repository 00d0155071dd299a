"""`--init` / `--reinit` (issue 8): how rows the input does not have are made, each mode against its definition.

The on-disk rewrite runs on synthetic checkpoints (tests/fixtures/synthetic.py: row i of embed_tokens is i plus a
column ramp, the per-layer row its negative over 8 columns, an untied lm_head 3 times the row) that were not resized,
so the new ids have no row in any table; the expected rows are computed here with numpy from the input tables. The
in-memory `add_tokens` runs once per mode on the tiny real model (tests/fixtures/tiny.py). The row values come from
one module (gemma3n_vocabfix/init_rows.py) in both paths.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import EMBED, LM_HEAD, PER_LAYER, A, T, V, assert_one_line_error, invoke, numpy_tensors
from fixtures.synthetic import build
from safetensors.numpy import load_file, save_file

from gemma3n_vocabfix import rewrite_checkpoint
from gemma3n_vocabfix.errors import UsageError

# new tokens the synthetic tokenizer (whitespace split, whole words) splits into existing pieces
SPLIT = ["tok11 tok22", "tok6 tok7 tok8", "tok30 <eos> tok9"]
PIECES = [[11, 22], [6, 7, 8], [30, 1, 9]]
K = len(SPLIT)
TABLES = (EMBED, PER_LAYER, LM_HEAD)


def _build(tmp_path: Path, name: str = "ext", *, new=SPLIT, resized: bool = False, dtype=np.float32,
           noise: bool = False) -> Path:
    """A synthetic checkpoint with `new` appended; not resized (no table has rows for the new ids) unless `resized`;
    an untied lm_head; `noise`: random table values (a covariance that is positive definite)."""
    rows = {} if resized else {"embed_rows": T + V + A, "per_layer_rows": T, "vocab_size": T + V + A,
                               "per_layer_size": T}
    if resized:
        rows["lm_head_rows"] = T + V + A + len(new)
    else:
        rows["lm_head_rows"] = T + V + A
    src = build(tmp_path / name, text=T, vision=V, audio=A, new_tokens=new, dtype=dtype, **rows)
    tok = json.loads((src / "tokenizer.json").read_text())
    tok["pre_tokenizer"] = {"type": "WhitespaceSplit"}
    tok["model"]["ignore_merges"] = True  # whole words of the vocabulary are pieces
    (src / "tokenizer.json").write_text(json.dumps(tok))
    if noise:
        rng = np.random.default_rng(3)
        for shard in src.glob("*.safetensors"):
            tensors = load_file(str(shard))
            tensors = {k: (v + rng.standard_normal(v.shape).astype(np.float32)).astype(v.dtype)
                       if k in TABLES else v for k, v in tensors.items()}
            save_file(tensors, str(shard), metadata={"format": "pt"})
    return src


def _rewrite(src: Path, out: Path, **kwargs) -> tuple[dict, dict]:
    report = rewrite_checkpoint(src, out, **kwargs)
    record = json.loads((out / "vocabfix.json").read_text())
    assert record["tensors"] == report.to_dict()["tensors"]
    return numpy_tensors(out), record


def _new_runs(record: dict, name: str) -> list[dict]:
    return [r for t in record["tensors"] if t["name"] == name for r in t["new_rows"] if "initialised_by" in r]


def test_zeros(tmp_path: Path) -> None:
    src = _build(tmp_path)
    out, record = _rewrite(src, tmp_path / "out", init="zeros")
    inp = numpy_tensors(src)
    for name in TABLES:
        np.testing.assert_array_equal(out[name][T:T + K], np.zeros_like(out[name][T:T + K]))
        np.testing.assert_array_equal(out[name][:T], inp[name][:T])
        assert [r["initialised_by"] for r in _new_runs(record, name)] == ["zeros"]
    assert record["init"] == {"mode": "zeros", "reinit": False}


def test_copy(tmp_path: Path) -> None:
    src = _build(tmp_path)
    out, record = _rewrite(src, tmp_path / "out", init="copy:tok7")
    inp = numpy_tensors(src)
    for name in TABLES:
        np.testing.assert_array_equal(out[name][T:T + K], np.repeat(inp[name][7:8], K, axis=0))
        assert _new_runs(record, name) == [{"new_ids": [T, T + K], "initialised_by": "copy", "token": "tok7"}]


def test_subtoken_is_the_mean_of_the_pieces_rows(tmp_path: Path) -> None:
    src = _build(tmp_path)
    out, record = _rewrite(src, tmp_path / "out", init="subtoken")
    inp = numpy_tensors(src)
    for name in TABLES:
        for k, pieces in enumerate(PIECES):
            expected = inp[name][pieces].astype(np.float64).mean(axis=0).astype(np.float32)
            np.testing.assert_array_equal(out[name][T + k], expected, err_msg=f"{name} {SPLIT[k]}")
        [run] = _new_runs(record, name)
        assert run["initialised_by"] == "subtoken"
        assert run["pieces"] == [{"token": "tok11 tok22", "pieces": ["tok11", "tok22"]},
                                 {"token": "tok6 tok7 tok8", "pieces": ["tok6", "tok7", "tok8"]},
                                 {"token": "tok30 <eos> tok9", "pieces": ["tok30", "<eos>", "tok9"]}]


def test_subtoken_pieces_are_those_of_the_original_tokenizer(tmp_path: Path) -> None:
    """Pieces named in the record are the token's own split, each new row from its own token, never a new token."""
    src = _build(tmp_path, new=["tok12 tok19", "tok12 tok19 tok12"])
    out, record = _rewrite(src, tmp_path / "out", init="subtoken")
    inp = numpy_tensors(src)
    np.testing.assert_array_equal(out[EMBED][T], inp[EMBED][[12, 19]].astype(np.float64).mean(0).astype(np.float32))
    np.testing.assert_array_equal(out[EMBED][T + 1],
                                  inp[EMBED][[12, 19, 12]].astype(np.float64).mean(0).astype(np.float32))
    [run] = _new_runs(record, PER_LAYER)
    assert [p["pieces"] for p in run["pieces"]] == [["tok12", "tok19"], ["tok12", "tok19", "tok12"]]


def test_normal_full_covariance(tmp_path: Path) -> None:
    new = [f"tok{i} tok{i + 1}" for i in range(6, 36)] * 1
    src = _build(tmp_path, new=new, noise=True)
    out, record = _rewrite(src, tmp_path / "out", init="normal")
    again, _ = _rewrite(src, tmp_path / "again", init="normal")
    inp = numpy_tensors(src)
    n = len(new)
    for name in TABLES:
        rows = out[name][T:T + n]
        assert np.isfinite(rows).all()
        np.testing.assert_array_equal(rows, again[name][T:T + n])  # deterministic
        mean = inp[name][:T].astype(np.float64).mean(0)
        np.testing.assert_allclose(rows.mean(0), mean, atol=1e-3)
        assert np.ptp(rows, axis=0).max() > 0, "samples, not the mean repeated"
        assert np.abs(rows - mean).max() < 1e-2  # the covariance is scaled by 1e-9, as transformers does
        [run] = _new_runs(record, name)
        assert run["initialised_by"] == "normal" and run["covariance"] == "full"


def test_normal_falls_back_to_the_mean(tmp_path: Path) -> None:
    """Synthetic rows are i + a column ramp: a rank-1 covariance, not positive definite: the mean."""
    src = _build(tmp_path)
    out, _ = _rewrite(src, tmp_path / "out", init="normal")
    inp = numpy_tensors(src)
    for name in TABLES:
        mean = inp[name][:T].astype(np.float64).mean(0).astype(np.float32)
        np.testing.assert_array_equal(out[name][T:T + K], np.repeat(mean[None], K, axis=0))


def test_normal_wide_table_uses_the_diagonal() -> None:
    """A table wider than 4096 columns: diagonal covariance (said in the record); constant rows give the mean."""
    from gemma3n_vocabfix.init_rows import RowMaker
    from gemma3n_vocabfix.layout import TableRole, VocabTable
    from gemma3n_vocabfix.rows import Init, InitRows, TablePlan
    from gemma3n_vocabfix.safetensors_header import TensorInfo

    rng = np.random.default_rng(0)
    width, rows = 5000, 64
    table = (rng.standard_normal((rows, width)) * 2 + 5).astype(np.float32)
    info = TensorInfo(PER_LAYER, "F32", (rows + 200, width), Path("x"), 0, (rows + 200) * width * 4)
    seg = InitRows(200, "normal", tuple(range(rows, rows + 200)))
    plan = TablePlan(VocabTable(info, TableRole.PER_LAYER), rows + 200, [seg], rows, Init("normal"))
    assert plan.covariance == "diagonal" and plan.new_rows()[0]["covariance"] == "diagonal"
    got = np.concatenate(list(RowMaker(plan, lambda f, n: table[f:f + n]).rows(seg)))
    mean, std = table.astype(np.float64).mean(0), table.astype(np.float64).std(0)
    assert got.shape == (200, width) and np.isfinite(got).all()
    z = (got - mean) / (std * np.sqrt(1e-9))
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05
    constant = np.full((rows, width), 0.25, np.float32)
    got = np.concatenate(list(RowMaker(plan, lambda f, n: constant[f:f + n]).rows(seg)))
    np.testing.assert_array_equal(got, np.full((200, width), 0.25, np.float32))


def test_reinit_replaces_trained_rows_and_row_0_copies(tmp_path: Path) -> None:
    src = _build(tmp_path, resized=True)
    inp = numpy_tensors(src)
    kept, _ = _rewrite(src, tmp_path / "kept", init="zeros")  # without --reinit the rows the input has stay
    for name in TABLES:
        np.testing.assert_array_equal(kept[name][T:T + K], inp[name][T + V + A:T + V + A + K])
    out, record = _rewrite(src, tmp_path / "out", init="copy:tok7", reinit=True)
    for name in TABLES:
        np.testing.assert_array_equal(out[name][T:T + K], np.repeat(inp[name][7:8], K, axis=0))
        np.testing.assert_array_equal(out[name][:T], inp[name][:T])
        entry = next(t for t in record["tensors"] if t["name"] == name)
        assert entry["rows_reinitialised"] == K
    assert record["init"] == {"mode": "copy:tok7", "reinit": True}
    # the transformers 4.5x shape: the per-layer table not grown, the new ids read its row 0
    src = build(tmp_path / "pad", text=T, vision=V, audio=A, new_tokens=SPLIT, per_layer_rows=T, per_layer_size=T)
    pad, _ = _rewrite(src, tmp_path / "pad-out")
    np.testing.assert_array_equal(pad[PER_LAYER][T:T + K], np.repeat(numpy_tensors(src)[PER_LAYER][:1], K, 0))
    zeros, record = _rewrite(src, tmp_path / "pad-zeros", init="zeros", reinit=True)
    assert not zeros[PER_LAYER][T:T + K].any() and not zeros[EMBED][T:T + K].any()
    assert [r["initialised_by"] for r in _new_runs(record, PER_LAYER)] == ["zeros"]


@pytest.mark.parametrize("init", ["subtoken", "normal"])
def test_bf16_rounds_as_torch(tmp_path: Path, init: str) -> None:
    import torch
    from safetensors.torch import load_file as load_torch

    src = _build(tmp_path, noise=True, dtype=np.float32)
    for shard in src.glob("*.safetensors"):  # bf16 tables with float32 noise in them
        from safetensors.torch import save_file as save_torch
        tensors = {k: v.to(torch.bfloat16) for k, v in load_torch(str(shard)).items()}
        save_torch(tensors, str(shard), metadata={"format": "pt"})
    index = json.loads((src / "model.safetensors.index.json").read_text())
    index["metadata"]["total_size"] //= 2
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    rewrite_checkpoint(src, tmp_path / "out", init=init)
    before, after = {}, {}
    for shard in src.glob("*.safetensors"):
        before.update(load_torch(str(shard)))
    for shard in (tmp_path / "out").glob("*.safetensors"):
        after.update(load_torch(str(shard)))
    for name in TABLES:
        got = after[name][T:T + K]
        assert got.dtype == torch.bfloat16
        if init == "subtoken":
            expected = torch.stack([before[name][p].double().mean(0).float() for p in PIECES]).to(torch.bfloat16)
            assert torch.equal(got, expected), name
        else:  # samples within 1e-9 of the covariance: the float32 mean, rounded as torch rounds
            mean = (before[name][:T].double().sum(0) / T).float()
            assert torch.allclose(got.float(), mean.to(torch.bfloat16).float().expand_as(got), rtol=2 ** -7, atol=0)


def test_dry_run_shows_the_init(tmp_path: Path) -> None:
    src = _build(tmp_path)
    result = invoke("rewrite", src, tmp_path / "out", "--init", "subtoken", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["init"] == {"mode": "subtoken", "reinit": False}
    assert {r["initialised_by"] for t in data["tensors"] for r in t["new_rows"] if "initialised_by" in r} == \
        {"subtoken"}
    assert not (tmp_path / "out").exists()
    text = invoke("rewrite", src, tmp_path / "out", "--init", "copy:tok7", "--dry-run")
    assert text.exit_code == 0 and "new (copy:tok7)" in text.stdout


@pytest.mark.parametrize("args, needle", [
    (["--init", "median"], "unknown init 'median'"),
    (["--init", "copy:"], "init copy needs a token"),
    (["--init", "copy:<nope>"], "has no token '<nope>'"),
    (["--init", "copy:<image_soft_token>"], "is not one of the input's text tokens"),
])
def test_bad_init_is_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    src = _build(tmp_path)
    assert_one_line_error(invoke("rewrite", src, tmp_path / "out", *args), needle)
    assert not (tmp_path / "out").exists()


def test_subtoken_without_tokenizer_json(tmp_path: Path) -> None:
    src = _build(tmp_path)
    (src / "tokenizer.json").unlink()
    assert_one_line_error(invoke("rewrite", src, tmp_path / "out", "--init", "subtoken"),
                          "init subtoken needs the input's tokenizer.json")
    with pytest.raises(UsageError):
        rewrite_checkpoint(src, tmp_path / "out", init="subtoken")
    rewrite_checkpoint(src, tmp_path / "out", init="zeros")  # the other modes do not need it


# --- in memory: add_tokens on the tiny real model -----------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_base(base_factory):
    return base_factory("small", "float32", True, "launch")


@pytest.mark.parametrize("init", ["mean", "zeros", "normal", "subtoken", "copy:<eos>"])
def test_add_tokens_init(tiny_base, init: str) -> None:
    import torch
    from fixtures import tiny
    from transformers import AutoTokenizer, Gemma3nForConditionalGeneration

    from gemma3n_vocabfix import add_tokens

    sp = tiny.get_id_space("small")
    model = Gemma3nForConditionalGeneration.from_pretrained(tiny_base, dtype=torch.bfloat16).eval()
    tok = AutoTokenizer.from_pretrained(tiny_base)
    tokens = ["<tool_call>", "hello world"]
    lm = model.model.language_model
    before = [lm.embed_tokens.weight.detach().clone(), lm.embed_tokens_per_layer.weight.detach().clone()]
    pieces = [tok.backend_tokenizer.encode(t, add_special_tokens=False).ids for t in tokens]

    result = add_tokens(model, tok, tokens, init=init)

    assert result.token_ids == [sp.T, sp.T + 1]
    for w, old in zip((lm.embed_tokens.weight, lm.embed_tokens_per_layer.weight), before, strict=True):
        got = w.detach()[sp.T:sp.T + 2]
        mean = (old[:sp.T].double().sum(0) / sp.T).float().to(old.dtype)
        if init == "mean":
            expected = mean.expand_as(got)
        elif init == "zeros":
            expected = torch.zeros_like(got)
        elif init == "copy:<eos>":
            expected = old[1:2].expand_as(got)
        elif init == "subtoken":
            expected = torch.stack([old[p].double().mean(0).float() for p in pieces]).to(old.dtype)
        else:
            assert torch.isfinite(got.float()).all()
            # samples within sqrt(1e-9) standard deviations of the mean: in bf16 the mean, up to a rounding step
            assert torch.allclose(got.float(), mean.float().expand_as(got), rtol=2 ** -7, atol=1e-4)
            continue
        assert torch.equal(got, expected), (init, w.shape)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[2, sp.T, sp.T + 1]])).logits
    assert torch.isfinite(logits.float()).all()


def test_fix_model_reinit_replaces_the_resized_rows(tiny_base) -> None:
    """After tokenizer.add_tokens + resize_token_embeddings, fix_model keeps the new rows the resize made; with
    reinit=True they are replaced by the init, in every table."""
    import torch
    from fixtures import tiny
    from transformers import AutoTokenizer, Gemma3nForConditionalGeneration

    from gemma3n_vocabfix import fix_model

    sp = tiny.get_id_space("small")
    for reinit in (False, True):
        model = Gemma3nForConditionalGeneration.from_pretrained(tiny_base).eval()
        tok = AutoTokenizer.from_pretrained(tiny_base)
        tok.add_tokens(["<tool_call>", "zqxj"])
        model.resize_token_embeddings(len(tok))
        lm = model.model.language_model
        tables = (lm.embed_tokens.weight, lm.embed_tokens_per_layer.weight)
        resized = [w.detach()[-2:].clone() for w in tables]  # the rows the resize sampled (mean_resizing)
        fix_model(model, tok, init="copy:<eos>", reinit=reinit)
        for w, old in zip(tables, resized, strict=True):
            got = w.detach()[sp.T:sp.T + 2]
            assert torch.equal(got, w.detach()[1:2].expand_as(got) if reinit else old), (reinit, w.shape)

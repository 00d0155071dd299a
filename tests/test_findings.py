"""Finding rules that guard the rewrite (findings.py): each one is reported by inspect, and the ones the rewrite
cannot fix make it refuse with the same code. Checkpoints are synthetic (tests/fixtures/synthetic.py), each broken in
one way by hand; expected codes follow from that one change."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from fixtures.helpers import invoke
from fixtures.synthetic import build
from safetensors.numpy import load_file, save_file

T, V, A = 40, 4, 4
SHARD1, SHARD2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy"


def inspect_codes(folder: Path) -> list[str]:
    result = invoke(*["inspect", str(folder), "--json"])
    assert result.exit_code in (0, 1), result.output
    return [f["code"] for f in json.loads(result.stdout)["findings"]]


def refused_with(folder: Path, tmp_path: Path) -> str:
    result = invoke(*["rewrite", str(folder), str(tmp_path / "out")])
    assert result.exit_code == 2 and not (tmp_path / "out").exists(), result.output
    return result.stderr


def add_tensor(folder: Path, shard: str, name: str, value: np.ndarray) -> None:
    tensors = load_file(folder / shard)
    tensors[name] = value
    save_file(tensors, str(folder / shard), metadata={"format": "pt"})
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"][name] = shard
    index["metadata"]["total_size"] += value.nbytes
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def test_multimodal_embedder_rows_against_the_config_are_refused(tmp_path: Path) -> None:
    src = build(tmp_path / "src", text=T, vision=V, audio=A, new_tokens=["<a>"])
    tensors = load_file(src / SHARD1)
    tensors["model.embed_vision.embedding.weight"] = np.zeros((V + 1, 4), np.float32)
    save_file(tensors, str(src / SHARD1), metadata={"format": "pt"})
    index = json.loads((src / "model.safetensors.index.json").read_text())
    index["metadata"]["total_size"] += 16
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    assert "VF024" in inspect_codes(src)
    assert "VF024" in refused_with(src, tmp_path)


def test_single_file_beside_an_index_is_refused(tmp_path: Path) -> None:
    """transformers loads model.safetensors before the index: a stale one would be what runs."""
    src = build(tmp_path / "src", text=T, vision=V, audio=A, new_tokens=["<a>"])
    merged = {**load_file(src / SHARD1), **load_file(src / SHARD2)}
    save_file(merged, str(src / "model.safetensors"), metadata={"format": "pt"})
    assert "VF025" in inspect_codes(src)
    assert "VF025" in refused_with(src, tmp_path)


def test_per_row_companion_of_a_table_is_refused(tmp_path: Path) -> None:
    src = build(tmp_path / "src", text=T, vision=V, audio=A, new_tokens=["<a>", "<b>"])
    rows = T + V + A + 2
    add_tensor(src, SHARD1, "model.language_model.embed_tokens.weight_scale", np.ones((rows, 1), np.float32))
    assert "VF026" in inspect_codes(src)
    assert "VF026" in refused_with(src, tmp_path)


def test_saved_lm_head_with_tied_config_is_a_warning(tmp_path: Path) -> None:
    src = tmp_path / "lora"
    shutil.copytree(LEGACY / "lora-merge", src)
    assert "VF027" in inspect_codes(src)
    clean = build(tmp_path / "clean", text=T, vision=V, audio=A)
    assert "VF027" not in inspect_codes(clean)


def test_inspect_says_to_fix_a_refusing_finding_before_the_rewrite(tmp_path: Path) -> None:
    src = build(tmp_path / "src", text=T, vision=V, audio=A, new_tokens=["<a>"])
    merged = {**load_file(src / SHARD1), **load_file(src / SHARD2)}
    save_file(merged, str(src / "model.safetensors"), metadata={"format": "pt"})
    result = invoke(*["inspect", str(src)])
    assert result.exit_code == 1 and "Fix VF025 first" in result.stdout, result.stdout


def test_the_suggested_command_works_from_inside_the_checkpoint(tmp_path: Path, monkeypatch) -> None:
    src = build(tmp_path / "ckpt", text=T, vision=V, audio=A, new_tokens=["<a>"])
    monkeypatch.chdir(src)
    result = invoke(*["inspect", ".", "--json"])
    command = json.loads(result.stdout)["fix_command"].split()
    assert command[:3] == ["vocabfix", "rewrite", "."]
    rewritten = invoke(*command[1:])
    assert rewritten.exit_code == 0, rewritten.output
    assert (tmp_path / "ckpt-vocabfix" / "vocabfix.json").is_file()

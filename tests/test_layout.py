"""layout.py is the one source of layout facts: inspect, rewrite and the findings agree on them.

Expected numbers come from how each checkpoint is built here (ranges set by hand), not from the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from fixtures.helpers import INDEX, SHARD2, A, T, V
from fixtures.helpers import invoke as run
from fixtures.synthetic import build, clone_config
from safetensors.numpy import load_file, save_file

from gemma3n_vocabfix.checkpoint import read_checkpoint
from gemma3n_vocabfix.findings import find_problems
from gemma3n_vocabfix.layout import TableRole, analyse


def _gap_checkpoint(tmp_path: Path) -> Path:
    """vision [40, 44), two ids between, audio [46, 50), three tokens appended at [50, 53). The multimodal tokens
    have neutral names, so only the config says where the ranges are."""
    src = build(tmp_path / "gap", text=T, vision=V, audio=A, new_tokens=[f"<n{i}>" for i in range(5)],
                multimodal_names=False)
    config = json.loads((src / "config.json").read_text())
    config["audio_config"]["vocab_offset"] = T + V + 2
    (src / "config.json").write_text(json.dumps(config))
    return src


def test_inspect_and_rewrite_count_the_same_appended_tokens(tmp_path: Path) -> None:
    src = _gap_checkpoint(tmp_path)
    inspected = run("inspect", str(src), "--json")
    rewritten = run("rewrite", str(src), str(tmp_path / "out"), "--dry-run", "--json")
    assert inspected.exit_code == 1 and rewritten.exit_code == 0, (inspected.output, rewritten.output)
    inspect_layout = json.loads(inspected.stdout)["layout"]
    rewrite_data = json.loads(rewritten.stdout)
    assert inspect_layout["appended_tokens"] == rewrite_data["appended_tokens"] == 3
    assert inspect_layout["appended"] == rewrite_data["layout_before"]["appended"] == [T + V + 2 + A, T + V + 2 + A + 3]
    assert rewrite_data["moved_text_ids"] == 5  # the 3 appended and the 2 between the ranges
    assert rewrite_data["layout_after"]["text"] == [0, T + 5]


def test_untied_lm_head_missing_is_an_error(tmp_path: Path) -> None:
    src = build(tmp_path / "untied", text=T, vision=V, audio=A)
    clone_config(src, tie_word_embeddings=False)
    result = run("inspect", str(src), "--json", "--strict")
    codes = [f["code"] for f in json.loads(result.stdout)["findings"]]
    assert result.exit_code == 1 and codes == ["VF019"], result.stdout
    refused = run("rewrite", str(src), str(tmp_path / "out"))
    assert refused.exit_code == 2 and "VF019" in refused.stderr and not (tmp_path / "out").exists()


def test_untied_lm_head_present_is_clean(tmp_path: Path) -> None:
    src = build(tmp_path / "untied", text=T, vision=V, audio=A, lm_head_rows=T + V + A)
    clone_config(src, tie_word_embeddings=False)
    result = run("inspect", str(src), "--strict")
    assert result.exit_code == 0, result.stdout


def test_every_table_of_a_role_is_checked(tmp_path: Path) -> None:
    """A second tensor whose name ends in embed_tokens.weight is a table too; its rows are checked."""
    src = build(tmp_path / "two", text=T, vision=V, audio=A)
    tensors = load_file(src / SHARD2)
    tensors["model.extra.embed_tokens.weight"] = np.zeros((T + V + A + 7, 4), np.float32)
    save_file(tensors, str(src / SHARD2), metadata={"format": "pt"})
    index = json.loads((src / INDEX).read_text())
    index["weight_map"]["model.extra.embed_tokens.weight"] = SHARD2
    index["metadata"]["total_size"] += (T + V + A + 7) * 16
    (src / INDEX).write_text(json.dumps(index))
    ckpt = read_checkpoint(src)
    layout = analyse(ckpt)
    assert len(layout.tables_of(TableRole.EMBED_TOKENS)) == 2
    assert layout.table(TableRole.EMBED_TOKENS).tensor.name == "model.language_model.embed_tokens.weight"
    flagged = [f.details.get("tensor") for f in find_problems(ckpt, layout) if f.code in ("VF005", "VF006")]
    assert "model.extra.embed_tokens.weight" in flagged


def test_rewrite_refuses_with_inspects_wording(tmp_path: Path) -> None:
    """The rewrite refuses by finding code: the same sentence as inspect's finding."""
    src = build(tmp_path / "conflict", text=T, vision=V, audio=A, new_tokens=["<a>", "<b>"])
    added = json.loads((src / "added_tokens.json").read_text())
    added = {("<other>" if tok == "<a>" else tok): i for tok, i in added.items()}
    (src / "added_tokens.json").write_text(json.dumps(added))
    finding = next(f for f in json.loads(run("inspect", str(src), "--json").stdout)["findings"]
                   if f["code"] == "VF010")
    refused = run("rewrite", str(src), str(tmp_path / "out"))
    assert refused.exit_code == 2
    assert "VF010" in refused.stderr and " ".join(finding["message"].split()) in " ".join(refused.stderr.split())

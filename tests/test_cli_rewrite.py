"""`vocabfix rewrite` as a user runs it: exit codes, one-line errors, --json, --dry-run, --force."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.synthetic import build

NEW = ["<new_a>", "<new_b>"]


def vocabfix(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gemma3n_vocabfix.cli", *map(str, args)],
                          capture_output=True, text=True, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def extended(tmp_path: Path) -> Path:
    return build(tmp_path / "ext", text=40, vision=4, audio=4, new_tokens=NEW)


def test_rewrite_json_report(extended: Path, tmp_path: Path) -> None:
    proc = vocabfix("rewrite", extended, tmp_path / "out", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["changed"] is True
    assert report["appended_tokens"] == 2
    assert report["layout_after"]["vision"] == [42, 46]
    assert (tmp_path / "out" / "vocabfix.json").is_file()


def test_rewrite_human_output_names_the_move(extended: Path, tmp_path: Path) -> None:
    proc = vocabfix("rewrite", extended, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "[40, 42)" in proc.stdout and "embed_tokens_per_layer" in proc.stdout


def test_dry_run_writes_nothing(extended: Path, tmp_path: Path) -> None:
    proc = vocabfix("rewrite", extended, tmp_path / "out", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "Dry run" in proc.stdout
    assert not (tmp_path / "out").exists()


def test_released_checkpoint_says_nothing_to_change(tmp_path: Path) -> None:
    src = build(tmp_path / "released", text=40, vision=4, audio=4)
    proc = vocabfix("rewrite", src, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "Nothing to change" in proc.stdout


def test_existing_output_is_refused_without_force(extended: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert_one_line_error(vocabfix("rewrite", extended, tmp_path / "out"), "already exists", "--force")
    assert vocabfix("rewrite", extended, tmp_path / "out", "--force").returncode == 0


def test_output_inside_input_is_refused(extended: Path) -> None:
    assert_one_line_error(vocabfix("rewrite", extended, extended / "fixed"), "inside the input")
    assert not (extended / "fixed").exists()


def test_missing_input(tmp_path: Path) -> None:
    assert_one_line_error(vocabfix("rewrite", tmp_path / "nope", tmp_path / "out"), "not a folder")


def test_not_gemma3n(extended: Path, tmp_path: Path) -> None:
    config = json.loads((extended / "config.json").read_text())
    config["model_type"] = "llama"
    (extended / "config.json").write_text(json.dumps(config))
    assert_one_line_error(vocabfix("rewrite", extended, tmp_path / "out"), "llama", "gemma3n")


def test_malformed_config_json(extended: Path, tmp_path: Path) -> None:
    (extended / "config.json").write_text("{not json")
    assert_one_line_error(vocabfix("rewrite", extended, tmp_path / "out"), "config.json", "not valid JSON")


def test_truncated_shard(extended: Path, tmp_path: Path) -> None:
    shard = extended / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-10])
    assert_one_line_error(vocabfix("rewrite", extended, tmp_path / "out"), "model-00002-of-00002.safetensors")
    assert not (tmp_path / "out").exists()


def test_garbage_shard_header(extended: Path, tmp_path: Path) -> None:
    (extended / "model-00001-of-00002.safetensors").write_bytes(b"\xff" * 64)
    assert_one_line_error(vocabfix("rewrite", extended, tmp_path / "out"), "model-00001-of-00002.safetensors")


def test_index_naming_a_missing_shard(extended: Path, tmp_path: Path) -> None:
    (extended / "model-00002-of-00002.safetensors").unlink()
    assert_one_line_error(vocabfix("rewrite", extended, tmp_path / "out"), "missing")


def test_no_weights(extended: Path, tmp_path: Path) -> None:
    for f in extended.glob("model*"):
        f.unlink()
    assert_one_line_error(vocabfix("rewrite", extended, tmp_path / "out"), "no safetensors")


def test_usage_error_exits_2(tmp_path: Path) -> None:
    proc = vocabfix("rewrite")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_malformed_tokenizer_entry(extended: Path, tmp_path: Path) -> None:
    data = json.loads((extended / "tokenizer.json").read_text())
    del data["added_tokens"][0]["id"]
    (extended / "tokenizer.json").write_text(json.dumps(data))
    assert_one_line_error(vocabfix("rewrite", extended, tmp_path / "out"), "tokenizer")


def test_truncated_sentencepiece_model(extended: Path, tmp_path: Path) -> None:
    sp = extended / "tokenizer.model"
    sp.write_bytes(sp.read_bytes()[:-3])
    assert_one_line_error(vocabfix("rewrite", extended, tmp_path / "out"), "tokenizer.model")

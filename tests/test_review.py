"""Review findings: inputs the other tests never saw, each a bug that was reproduced and then fixed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import sentencepiece as spm
from fixtures.synthetic import build
from tokenizers import Tokenizer

from gemma3n_vocabfix import rewrite_checkpoint
from gemma3n_vocabfix.errors import OutputError

T, V, A = 40, 4, 4


def test_token_with_a_nul_character_keeps_tokenizer_model_loadable(tmp_path: Path) -> None:
    """SentencePiece refuses a piece holding NUL ('piece must not include null character'): the new token's
    slot gets a placeholder piece, as for a token that is already a piece; tokenizer.json still names it."""
    new = ["<a>", "nul\x00inside"]
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=new)
    rewrite_checkpoint(src, tmp_path / "out")
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "out" / "tokenizer.model"))
    assert sp.get_piece_size() == T + len(new) + V + A
    assert sp.id_to_piece(T) == "<a>"
    assert "\x00" not in sp.id_to_piece(T + 1)
    assert Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json")).token_to_id("nul\x00inside") == T + 1


def test_output_under_a_file_is_an_output_error(tmp_path: Path) -> None:
    """OUT whose parent is a file: one clear OutputError (exit 2), not an unexpected FileExistsError."""
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=["<a>"])
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(OutputError, match="a_file"):
        rewrite_checkpoint(src, tmp_path / "a_file" / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "ext"]


def test_files_in_a_symlinked_subfolder_are_copied(tmp_path: Path) -> None:
    """A subfolder that is a symlink (its files, not only HF-cache file symlinks) must not be silently dropped."""
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=["<a>"])
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "notes.txt").write_text("keep me\n")
    os.symlink(assets, src / "assets")
    os.symlink("..", assets / "loop")  # a link back up must not recurse forever
    rewrite_checkpoint(src, tmp_path / "out")
    assert (tmp_path / "out" / "assets" / "notes.txt").read_text() == "keep me\n"
    assert json.loads((tmp_path / "out" / "config.json").read_text())["vision_config"]["vocab_offset"] == T + 1


def test_generation_config_id_fields_in_every_shape_are_mapped(tmp_path: Path) -> None:
    """GenerationConfig also saves ids in force_words_ids, forced_decoder_ids ([position, id]) and sequence_bias
    (keys like "(640, 641)"): a bias or forced word on a new token must follow the token to its new id."""
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=["<a>", "<b>"])
    a, b = T + V + A, T + V + A + 1  # the new tokens' ids before; after the rewrite: T and T + 1
    gen = json.loads((src / "generation_config.json").read_text())
    gen.update(force_words_ids=[[a], [b, 5]], forced_decoder_ids=[[1, a], [2, 7]],
               sequence_bias={f"({a},)": 5.0, f"({b}, {T + 1})": -2.0, "(3,)": 1.0})
    (src / "generation_config.json").write_text(json.dumps(gen))
    rewrite_checkpoint(src, tmp_path / "out")
    out = json.loads((tmp_path / "out" / "generation_config.json").read_text())
    assert out["force_words_ids"] == [[T], [T + 1, 5]]
    assert out["forced_decoder_ids"] == [[1, T], [2, 7]]
    assert out["sequence_bias"] == {f"({T},)": 5.0, f"({T + 1}, {T + 3})": -2.0, "(3,)": 1.0}


def test_output_folder_mode_follows_the_umask(tmp_path: Path) -> None:
    """OUT is made like save_pretrained's folders (0777 & ~umask), not 0700 like a tempfile.mkdtemp folder that
    other users and serving containers cannot read."""
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=["<a>"])
    old = os.umask(0o022)
    try:
        rewrite_checkpoint(src, tmp_path / "out")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755

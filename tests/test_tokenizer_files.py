"""Renumbering the tokenizer files (gemma3n_vocabfix/tokenizer_files.py, sentencepiece_model.py) in a whole rewrite:
tokenizer.json, tokenizer_config.json's added_tokens_decoder, added_tokens.json and tokenizer.model name every token
at its new id π(old) (tests/fixtures/oracle.py), checked by loading them with tokenizers and sentencepiece. The
protobuf-level renumbering of tokenizer.model on its own is in test_sentencepiece_model.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import sentencepiece as spm
from fixtures.helpers import NEW, A, K, T, V
from fixtures.oracle import DocLayout
from fixtures.synthetic import build, token_names
from tokenizers import Tokenizer

from gemma3n_vocabfix import rewrite_checkpoint

IDS = DocLayout(T, V, A, K)


def test_tokenizer_files_are_renumbered(extended: Path, tmp_path: Path) -> None:
    rewrite_checkpoint(extended, tmp_path / "out")
    out = tmp_path / "out"
    names = token_names(T, V, A, NEW)
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tok.get_vocab_size() == len(names)
    for old_id, name in enumerate(names):
        assert tok.token_to_id(name) == IDS.pi(old_id), name
    text = ("<mask>", "<new_a>", "domainword", "<image_soft_token>")
    assert tok.encode("".join(text)).ids == [IDS.pi(names.index(t)) for t in text]
    decoder = json.loads((out / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    for key, entry in decoder.items():
        assert names.index(entry["content"]) == IDS.inverse(int(key))
    added = json.loads((out / "added_tokens.json").read_text())
    assert added == {name: IDS.pi(old) for old, name in zip(IDS.new_ids_old, NEW, strict=True)}
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer.model"))
    assert sp.get_piece_size() == len(names)
    for old_id, name in enumerate(names):
        assert sp.id_to_piece(IDS.pi(old_id)) == name


def test_text_only_tokenizer_model_gets_the_new_tokens_after_the_text(tmp_path: Path) -> None:
    """A tokenizer.model with only the T text pieces: OUT's has T + k (the new tokens at their new ids), no
    multimodal pieces invented, and the fast tokenizer files agree with it."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)
    model = pb.ModelProto()
    model.ParseFromString((src / "tokenizer.model").read_bytes())
    del model.pieces[T:]
    (src / "tokenizer.model").write_bytes(model.SerializeToString())
    rewrite_checkpoint(src, tmp_path / "out")
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "out" / "tokenizer.model"))
    assert sp.get_piece_size() == T + K
    assert [sp.id_to_piece(new) for new in IDS.new_ids_new] == NEW
    fast = Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    assert [fast.token_to_id(t) for t in NEW] == [IDS.pi(old) for old in IDS.new_ids_old]


def test_token_with_a_nul_character_keeps_tokenizer_model_loadable(tmp_path: Path) -> None:
    """SentencePiece refuses a piece holding NUL ('piece must not include null character'): the new token's
    slot gets a placeholder piece, as for a token that is already a piece; tokenizer.json still names it."""
    new = ["<a>", "nul\x00inside"]
    ids = DocLayout(T, V, A, len(new))
    a, nul = (ids.pi(old) for old in ids.new_ids_old)
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=new)
    rewrite_checkpoint(src, tmp_path / "out")
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "out" / "tokenizer.model"))
    assert sp.get_piece_size() == ids.total
    assert sp.id_to_piece(a) == "<a>"
    assert "\x00" not in sp.id_to_piece(nul)
    assert Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json")).token_to_id("nul\x00inside") == nul

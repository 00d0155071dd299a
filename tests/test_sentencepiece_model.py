"""tokenizer.model (gemma3n_vocabfix/sentencepiece_model.py) at the protobuf wire level: renumbering its pieces and
counting them, checked with the sentencepiece library."""

from __future__ import annotations

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

from gemma3n_vocabfix.layout import build_id_map
from gemma3n_vocabfix.sentencepiece_model import PIECES_FIELD, _records, count_pieces, make_piece, renumber_pieces

PIECES = ["<pad>", "<eos>", "<bos>", "<unk>", "a", "b", "c", "<img>", "<aud>"]  # text 0..6, vision 7, audio 8


def model_bytes(pieces: list[str]) -> bytes:
    m = pb.ModelProto()
    for i, text in enumerate(pieces):
        p = m.pieces.add()
        p.piece, p.score = text, -float(i)
        p.type = {0: 3, 1: 3, 2: 3, 3: 2}.get(i, 1)
    m.trainer_spec.model_type = 1
    m.trainer_spec.unk_id, m.trainer_spec.bos_id, m.trainer_spec.eos_id, m.trainer_spec.pad_id = 3, 2, 1, 0
    m.normalizer_spec.add_dummy_prefix = False
    return m.SerializeToString()


def load(buf: bytes, tmp_path) -> spm.SentencePieceProcessor:
    path = tmp_path / "tokenizer.model"
    path.write_bytes(buf)
    return spm.SentencePieceProcessor(model_file=str(path))


def test_new_tokens_become_user_defined_pieces_at_their_ids(tmp_path) -> None:
    id_map = build_id_map(11, (7, 1), (8, 1))  # two tokens appended at old ids 9, 10
    out = renumber_pieces(model_bytes(PIECES), id_map, {7: "<x>", 8: "<y>"})
    sp = load(out, tmp_path)
    assert [sp.id_to_piece(i) for i in range(sp.get_piece_size())] == PIECES[:7] + ["<x>", "<y>", "<img>", "<aud>"]
    assert sp.is_control(0) and sp.is_unknown(3)
    assert count_pieces(out) == 11
    assert sp.encode("<x>b") == [7, 5]  # a user-defined piece is matched whole


def test_a_new_token_that_is_already_a_piece_gets_a_placeholder_slot(tmp_path) -> None:
    id_map = build_id_map(10, (7, 1), (8, 1))
    out = renumber_pieces(model_bytes(PIECES), id_map, {7: "b"})
    sp = load(out, tmp_path)  # a duplicate piece would make sentencepiece refuse the model
    assert sp.id_to_piece(7) == "<vocabfix_slot_7>"
    assert sp.piece_to_id("b") == 5
    assert sp.id_to_piece(8) == "<img>"


def test_identity_map_keeps_the_bytes() -> None:
    buf = model_bytes(PIECES)
    assert renumber_pieces(buf, build_id_map(9, (7, 1), (8, 1)), {}) == buf


def test_a_model_with_only_the_text_pieces_gets_the_new_tokens_after_them(tmp_path) -> None:
    """tokenizer.model may hold the text pieces only (T of them, no multimodal pieces): the new tokens go right after
    the text pieces and nothing is invented for the multimodal ids."""
    text_only = PIECES[:7]
    id_map = build_id_map(11, (7, 1), (8, 1))  # text 0..6, vision 7, audio 8, two tokens appended at 9, 10
    out = renumber_pieces(model_bytes(text_only), id_map, {7: "<x>", 8: "<y>"}, text_size=9)
    sp = load(out, tmp_path)
    assert [sp.id_to_piece(i) for i in range(sp.get_piece_size())] == text_only + ["<x>", "<y>"]
    assert sp.encode("<y>a") == [8, 4]


def test_a_full_model_keeps_its_multimodal_pieces_behind_the_new_tokens(tmp_path) -> None:
    id_map = build_id_map(11, (7, 1), (8, 1))
    out = renumber_pieces(model_bytes(PIECES), id_map, {7: "<x>", 8: "<y>"}, text_size=9)
    sp = load(out, tmp_path)
    assert [sp.id_to_piece(i) for i in range(sp.get_piece_size())] == PIECES[:7] + ["<x>", "<y>", "<img>", "<aud>"]


def test_count_pieces_matches_the_record_walk() -> None:
    model = b"".join(make_piece(p) for p in ["a", "x" * 200, "<b>", "\u2581" * 60]) + b"\x12\x03abc" + make_piece("z")
    expected = sum(1 for f, w, *_ in _records(model) if f == PIECES_FIELD and w == 2)
    assert count_pieces(model) == expected == 5

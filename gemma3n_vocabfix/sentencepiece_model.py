"""Reorder the pieces of a SentencePiece `tokenizer.model` at the protobuf wire level.

A SentencePiece id is a piece's position in ModelProto's repeated field 1, so renumbering means
reordering those records. Every other field is copied byte for byte; no protobuf runtime is needed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import CheckpointError

PIECES_FIELD = 1
USER_DEFINED = 4
UNUSED = 5


@dataclass
class ModelProto:
    pieces: list[bytes]  # each a complete field-1 record (tag, length, payload)
    rest: list[bytes]  # every other top-level record, in file order


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError("tokenizer.model: truncated protobuf varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointError("tokenizer.model: malformed protobuf varint")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _records(buf: bytes):
    """Yield (field_number, wire_type, payload_start, payload_end, record_start, record_end)."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(buf, pos)
            yield field, wire, start, pos, start, pos
            continue
        if wire == 1:
            payload_start, pos = pos, pos + 8
        elif wire == 5:
            payload_start, pos = pos, pos + 4
        elif wire == 2:
            length, payload_start = _varint(buf, pos)
            pos = payload_start + length
        else:
            raise CheckpointError(f"tokenizer.model: unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise CheckpointError("tokenizer.model: truncated protobuf record")
        yield field, wire, payload_start, pos, start, pos


def parse_model(buf: bytes) -> ModelProto:
    model = ModelProto(pieces=[], rest=[])
    for field, wire, _, _, start, end in _records(buf):
        (model.pieces if field == PIECES_FIELD and wire == 2 else model.rest).append(buf[start:end])
    if not model.pieces:
        raise CheckpointError("tokenizer.model: no pieces (not a SentencePiece model?)")
    return model


def count_pieces(buf: bytes) -> int:
    """The number of pieces. Same answer as counting _records, about 4x faster on a 262k-piece model."""
    count = pos = 0
    size, view = len(buf), memoryview(buf)
    while pos < size:
        # Fast path: a piece record with a one-byte length (tag 0x0A = field 1, wire type 2), the usual case.
        if buf[pos] == 0x0A and pos + 1 < size and buf[pos + 1] < 0x80:
            pos += 2 + buf[pos + 1]
            if pos > size:
                raise CheckpointError("tokenizer.model: truncated protobuf record")
            count += 1
            continue
        field, wire, _, end, _, _ = next(_records(view[pos:]))
        count += field == PIECES_FIELD and wire == 2
        pos += end
    return count


def piece_text(record: bytes) -> str:
    """The piece string of one field-1 record."""
    _, payload_start = _varint(record, 0)
    _, payload_start = _varint(record, payload_start)
    payload = record[payload_start:]
    for field, wire, start, end, _, _ in _records(payload):
        if field == 1 and wire == 2:
            return payload[start:end].decode("utf-8", errors="replace")
    return ""


def make_piece(text: str, piece_type: int = USER_DEFINED) -> bytes:
    raw = text.encode("utf-8")
    payload = (b"\x0a" + _encode_varint(len(raw)) + raw  # field 1: piece
               + b"\x15" + struct.pack("<f", 0.0)  # field 2: score
               + b"\x18" + _encode_varint(piece_type))  # field 3: type
    return b"\x0a" + _encode_varint(len(payload)) + payload


def serialize(model: ModelProto) -> bytes:
    return b"".join(model.pieces) + b"".join(model.rest)


def renumber_pieces(buf: bytes, new_id_of, filler: dict[int, str]) -> bytes:
    """Move piece i to position new_id_of(i); fill positions left empty from `filler` (new id -> token).

    A filler token that already exists as a piece would make SentencePiece refuse the model, so that
    slot gets an unused placeholder piece instead; the Hugging Face tokenizer files still name the token.
    """
    model = parse_model(buf)
    placed: dict[int, bytes] = {new_id_of(i): rec for i, rec in enumerate(model.pieces)}
    if len(placed) != len(model.pieces):
        raise CheckpointError("tokenizer.model: the id map sends two pieces to one id")
    existing = {piece_text(rec) for rec in model.pieces}
    pieces = []
    for new_id in range(max(placed) + 1):
        rec = placed.get(new_id)
        if rec is None:
            token = filler.get(new_id)
            if token is None:
                raise CheckpointError(f"tokenizer.model: no token is known for id {new_id}, which the rewrite "
                                      "would leave empty")
            rec = make_piece(token) if token not in existing else make_piece(f"<vocabfix_slot_{new_id}>", UNUSED)
            existing.add(token)
        pieces.append(rec)
    model.pieces = pieces
    return serialize(model)

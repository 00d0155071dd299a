"""Reorder the pieces of a SentencePiece `tokenizer.model` at the protobuf wire level.

A SentencePiece id is a piece's position in ModelProto's repeated field 1, so renumbering means
reordering those records. Every other field is copied byte for byte; no protobuf runtime is needed.
"""

from __future__ import annotations

import bisect
import struct
from array import array

from .errors import CheckpointError
from .id_map import IdMap

PIECES_FIELD = 1
USER_DEFINED = 4
UNUSED = 5


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


def _short_pieces(buf: bytes, pos: int, found: list[int]) -> int:
    """Append the starts of the back-to-back piece records from `pos` on whose length fits one byte (tag 0x0A =
    field 1, wire type 2: nearly every piece) to `found`; return where that run stops. The loop is this module's
    hot path (262k pieces), so it checks nothing else: a record that runs past the end shows as a position past
    len(buf)."""
    append = found.append
    try:
        while buf[pos] == 0x0A and (length := buf[pos + 1]) < 0x80:
            append(pos)
            pos += 2 + length
    except IndexError:  # at or past the end
        pass
    return pos


def count_pieces(buf: bytes) -> int:
    """The number of pieces: the records of ModelProto's field 1."""
    starts, _, _ = _piece_spans(buf, required=False)
    return len(starts)


def piece_strings(buf: bytes) -> list[str]:
    """Every piece's string, by id (the first field of each piece record, as protobuf writes it); [] for none."""
    out = []
    starts, ends, _ = _piece_spans(buf, required=False)
    for start, end in zip(starts, ends, strict=True):
        payload = start + 1 + (1 if buf[start + 1] < 0x80 else _varint(buf, start + 1)[1] - start - 1)
        if buf[payload:payload + 1] != b"\x0a":
            out.append("")
            continue
        if payload + 1 < end and buf[payload + 1] < 0x80:  # a one-byte length, the usual case
            length, text_start = buf[payload + 1], payload + 2
        else:
            length, text_start = _varint(buf, payload + 1)
        out.append(buf[text_start:min(text_start + length, end)].decode("utf-8", errors="replace"))
    return out


def make_piece(text: str, piece_type: int = USER_DEFINED) -> bytes:
    raw = text.encode("utf-8")
    payload = (b"\x0a" + _encode_varint(len(raw)) + raw  # field 1: piece
               + b"\x15" + struct.pack("<f", 0.0)  # field 2: score
               + b"\x18" + _encode_varint(piece_type))  # field 3: type
    return b"\x0a" + _encode_varint(len(payload)) + payload


def _piece_spans(buf: bytes, required: bool = True) -> tuple[array, array, list[tuple[int, int]]]:
    """Byte offsets where each piece record starts and ends, and the spans of every other record. CheckpointError
    for a model without pieces, when `required`."""
    starts, ends, rest = array("Q"), array("Q"), []
    pos, size, view = 0, len(buf), memoryview(buf)
    run: list[int] = []
    while pos < size:
        run.clear()
        stop = _short_pieces(buf, pos, run)
        if run:
            if stop > size:
                raise CheckpointError("tokenizer.model: truncated protobuf record")
            starts.extend(run)
            ends.extend(run[1:])
            ends.append(stop)
            pos = stop
            continue
        field, wire, _, end, _, _ = next(_records(view[pos:]))
        if field == PIECES_FIELD and wire == 2:
            starts.append(pos)
            ends.append(pos + end)
        else:
            rest.append((pos, pos + end))
        pos += end
    if not starts and required:
        raise CheckpointError("tokenizer.model: no pieces (not a SentencePiece model?)")
    return starts, ends, rest


def _copy_pieces(buf: bytes, starts: array, ends: array, first: int, stop: int) -> list[bytes]:
    """Pieces [first, stop) as few slices as possible: one when their records are back to back."""
    if ends[first:stop - 1] == starts[first + 1:stop]:  # array slices: compared at C speed
        return [buf[starts[first]:ends[stop - 1]]]
    return [buf[starts[i]:ends[i]] for i in range(first, stop)]


def _is_piece(buf: bytes, starts: array, text: str) -> bool:
    """Whether some piece record's string is `text` (protobuf writes the piece string, field 1, first)."""
    raw = text.encode("utf-8")
    needle = b"\x0a" + _encode_varint(len(raw)) + raw
    at = buf.find(needle)
    while at >= 0:
        i = bisect.bisect_right(starts, at) - 1
        if i >= 0:
            _, payload = _varint(buf, starts[i] + 1)  # past the record's tag and length
            if payload == at:
                return True
        at = buf.find(needle, at + 1)
    return False


def renumber_pieces(buf: bytes, id_map: IdMap, filler: dict[int, str], text_size: int | None = None) -> bytes:
    """Move piece i to position id_map(i); fill text ids the input has no piece for from `filler` (new id -> token).

    `text_size` is the output's text range [0, text_size) (default: every id of the map). Every text id gets a
    piece: its input piece, or the filler token. Past the text range only the input's own pieces are copied, so a
    model that holds just the text pieces (no multimodal ones) stays that way, with the new tokens after the text.
    The id map shifts whole blocks of ids, so the output is a few slices of the input plus the new pieces.
    A filler token that SentencePiece would refuse as a piece (one that already exists, is empty or holds a NUL)
    gets an unused placeholder piece in its slot instead; the Hugging Face tokenizer files still name the token.
    """
    starts, ends, rest = _piece_spans(buf)
    count = len(starts)
    if count > id_map.size:
        raise CheckpointError(f"tokenizer.model: {count} pieces, more than the {id_map.size} ids of the layout")
    text_size = id_map.size if text_size is None else text_size
    out: list[bytes] = []
    for r in id_map.in_new_order():
        have = max(0, min(r.old_stop, count) - r.old_start)
        if r.new_start >= text_size and not have:
            break  # multimodal ids the input has no pieces for: nothing is invented
        if have:
            out += _copy_pieces(buf, starts, ends, r.old_start, r.old_start + have)
        for new_id in range(r.new_start + have, min(r.new_stop, text_size)):
            out.append(_filler_piece(buf, starts, filler, new_id))
        if r.new_start >= text_size and have < r.length:
            break
    return b"".join(out) + b"".join(buf[s:e] for s, e in rest)


def _filler_piece(buf: bytes, starts: array, filler: dict[int, str], new_id: int) -> bytes:
    token = filler.get(new_id)
    if token is None:
        raise CheckpointError(f"tokenizer.model: no token is known for id {new_id}, which the rewrite would "
                              "leave empty")
    if not token or "\x00" in token or _is_piece(buf, starts, token):
        return make_piece(f"<vocabfix_slot_{new_id}>", UNUSED)
    return make_piece(token)

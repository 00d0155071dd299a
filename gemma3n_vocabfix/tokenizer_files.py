"""Token ids in the tokenizer files: read them, and renumber them through an id map.

Files and where they keep ids:
- tokenizer.json: `added_tokens[].id`, the model vocabulary (a dict token -> id, or for Unigram a list
  whose positions are ids), Unigram's `unk_id`, and the post-processor's special-token ids.
- tokenizer_config.json: the keys of `added_tokens_decoder`.
- added_tokens.json: token -> id.
- tokenizer.model: piece positions (see sentencepiece_model.py).
special_tokens_map.json names tokens by string only and never changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import sentencepiece_model
from .checkpoint import read_bytes
from .errors import CheckpointError
from .id_map import IdMap

IdFn = Callable[[int], int]


@dataclass
class TokenizerIds:
    """What the tokenizer files say about ids, merged across files."""

    size: int  # len(tokenizer): one past the largest id any file defines
    added: dict[int, str]  # added tokens by id
    file_sizes: dict[str, int] = field(default_factory=dict)  # per file: one past its largest id
    vocab: dict[int, str] = field(default_factory=dict)  # tokenizer.json model vocabulary by id
    conflicts: list[str] = field(default_factory=list)  # one id named differently by two files

    def token(self, token_id: int) -> str | None:
        return self.added.get(token_id, self.vocab.get(token_id))

    def id_of(self, token: str) -> int | None:
        for token_id, content in self.added.items():
            if content == token:
                return token_id
        for token_id, content in self.vocab.items():
            if content == token:
                return token_id
        return None


def model_vocab_ids(tokenizer_json: dict) -> dict[int, str]:
    model = tokenizer_json.get("model") or {}
    vocab = model.get("vocab")
    if isinstance(vocab, dict):
        return {int(i): tok for tok, i in vocab.items()}
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        return {i: entry[0] for i, entry in enumerate(vocab)}
    return {}


def read_tokenizer_ids(tokenizer_json: dict | None, tokenizer_config: dict | None,
                       added_tokens: dict | None, sentencepiece_path: Path | None) -> TokenizerIds:
    try:
        return _read_tokenizer_ids(tokenizer_json, tokenizer_config, added_tokens, sentencepiece_path)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"tokenizer files: malformed id entry ({type(e).__name__}: {e})",
                              hint="re-save the tokenizer with tokenizer.save_pretrained(folder)") from None


def _read_tokenizer_ids(tokenizer_json: dict | None, tokenizer_config: dict | None,
                        added_tokens: dict | None, sentencepiece_path: Path | None) -> TokenizerIds:
    ids = TokenizerIds(size=0, added={})

    def add(source: str, token_id: int, content: str) -> None:
        known = ids.added.get(token_id)
        if known is not None and known != content:
            ids.conflicts.append(f"id {token_id} is {known!r} in one file and {content!r} in {source}")
        ids.added.setdefault(token_id, content)
        ids.file_sizes[source] = max(ids.file_sizes.get(source, 0), token_id + 1)

    if tokenizer_json is not None:
        ids.vocab = model_vocab_ids(tokenizer_json)
        ids.file_sizes["tokenizer.json"] = max(ids.vocab, default=-1) + 1
        for entry in tokenizer_json.get("added_tokens") or []:
            add("tokenizer.json", int(entry["id"]), entry["content"])
    if tokenizer_config is not None:
        for key, entry in (tokenizer_config.get("added_tokens_decoder") or {}).items():
            add("tokenizer_config.json", int(key), entry["content"] if isinstance(entry, dict) else str(entry))
    if added_tokens is not None:
        for content, token_id in added_tokens.items():
            add("added_tokens.json", int(token_id), content)
    if sentencepiece_path is not None:
        ids.file_sizes["tokenizer.model"] = sentencepiece_model.count_pieces(read_bytes(sentencepiece_path))
    ids.size = max(ids.file_sizes.values(), default=0)
    return ids


# --- renumbering -------------------------------------------------------------------------------------


def renumber_tokenizer_json(data: dict, new_id: IdFn, added: dict[int, str]) -> dict:
    """A renumbered copy of tokenizer.json. `added` maps new ids to added-token strings (fills vocab gaps)."""
    out = dict(data)
    moved = ({**entry, "id": new_id(int(entry["id"]))} for entry in data.get("added_tokens") or [])
    out["added_tokens"] = sorted(moved, key=lambda entry: entry["id"])
    if data.get("model"):
        out["model"] = _renumber_model(data["model"], new_id, added)
    if data.get("post_processor"):
        out["post_processor"] = _renumber_post_processor(data["post_processor"], new_id)
    return out


def _renumber_model(model: dict, new_id: IdFn, added: dict[int, str]) -> dict:
    out = dict(model)
    vocab = model.get("vocab")
    if isinstance(vocab, dict):
        moved = {tok: new_id(int(i)) for tok, i in vocab.items()}
        taken = set(moved.values())
        # tokenizers gives an added token missing from the vocabulary the next free id past the vocabulary,
        # so a vocabulary with a hole would push the token that belongs there elsewhere: fill every hole.
        for hole in (i for i in range(max(taken, default=-1) + 1) if i not in taken):
            token = _filler(added, hole)
            if token in moved:
                raise CheckpointError(f"tokenizer.json: token {token!r} at id {hole} is also in the vocabulary "
                                      f"at id {moved[token]}")
            moved[token] = hole
        out["vocab"] = dict(sorted(moved.items(), key=lambda kv: kv[1]))
    elif isinstance(vocab, list):
        placed = {new_id(i): entry for i, entry in enumerate(vocab)}
        out["vocab"] = [placed.get(i) or [_filler(added, i), 0.0] for i in range(max(placed, default=-1) + 1)]
    if isinstance(model.get("unk_id"), int):
        out["unk_id"] = new_id(model["unk_id"])
    return out


def _filler(added: dict[int, str], token_id: int) -> str:
    token = added.get(token_id)
    if token is None:
        raise CheckpointError(f"tokenizer.json: the rewrite would leave id {token_id} without a token")
    return token


def _renumber_post_processor(proc: dict, new_id: IdFn) -> dict:
    out = dict(proc)
    if isinstance(proc.get("processors"), list):
        out["processors"] = [_renumber_post_processor(p, new_id) for p in proc["processors"]]
    if isinstance(proc.get("special_tokens"), dict):
        out["special_tokens"] = {name: {**spec, "ids": [new_id(int(i)) for i in spec.get("ids", [])]}
                                 for name, spec in proc["special_tokens"].items()}
    for key in ("cls", "sep"):  # BertProcessing / RobertaProcessing: [token, id]
        if isinstance(proc.get(key), list) and len(proc[key]) == 2:
            out[key] = [proc[key][0], new_id(int(proc[key][1]))]
    return out


def renumber_tokenizer_config(data: dict, new_id: IdFn) -> dict:
    out = dict(data)
    decoder = data.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        moved = sorted(((new_id(int(k)), v) for k, v in decoder.items()), key=lambda kv: kv[0])
        out["added_tokens_decoder"] = {str(k): v for k, v in moved}
    return out


def renumber_added_tokens(data: dict, new_id: IdFn) -> dict:
    return dict(sorted(((tok, new_id(int(i))) for tok, i in data.items()), key=lambda kv: kv[1]))


def renumber_sentencepiece(buf: bytes, id_map: IdMap, added: dict[int, str]) -> bytes:
    return sentencepiece_model.renumber_pieces(buf, id_map, added)

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

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

from . import sentencepiece_model
from .errors import CheckpointError
from .id_map import IdMap

IdFn = Callable[[int], "int | None"]  # None: the id is dropped (an `<unusedN>` slot given to an appended token)


@dataclass(frozen=True)
class Conflict:
    """Two tokenizer files name one id differently: `token` in `source` (read first), `other` in `other_source`."""

    id: int
    token: str
    source: str
    other: str
    other_source: str

    def __str__(self) -> str:
        return f"id {self.id} is {self.token!r} in {self.source} and {self.other!r} in {self.other_source}"


@dataclass
class TokenizerIds:
    """What the tokenizer files say about ids, merged across files."""

    size: int  # len(tokenizer): one past the largest id any file defines
    added: dict[int, str]  # added tokens by id
    file_sizes: dict[str, int] = field(default_factory=dict)  # per file: one past its largest id
    vocab: dict[int, str] = field(default_factory=dict)  # tokenizer.json model vocabulary by id
    conflicts: list[Conflict] = field(default_factory=list)  # one id named differently by two files
    sentencepiece: bytes | None = field(default=None, repr=False)  # tokenizer.model, for ids only it names

    def token(self, token_id: int) -> str | None:
        """The token string of an id: an added token, else tokenizer.json's vocabulary, else tokenizer.model's piece
        (parsed on the first such look-up: a slow-tokenizer save names most ids only there)."""
        found = self.added.get(token_id, self.vocab.get(token_id))
        if found is None and self.sentencepiece is not None and 0 <= token_id < self.file_sizes["tokenizer.model"]:
            found = self._pieces[token_id]
        return found

    @functools.cached_property
    def _pieces(self) -> list[str]:
        return sentencepiece_model.piece_strings(self.sentencepiece)

    def first_unnamed_id(self) -> int | None:
        """The smallest id below `size` that no file names a token (tokenizer.model names its piece count)."""
        first = self.file_sizes.get("tokenizer.model", 0)
        named = set(self.vocab).union(self.added)
        # one of any len(named) + 1 ids is unnamed, so the search stops there (size may be huge: a broken file)
        unnamed = set(range(first, min(self.size, first + len(named) + 1))).difference(named)
        return min(unnamed, default=None)

    def id_of(self, token: str) -> int | None:
        """The id of a token string: an added token, else in tokenizer.json's vocabulary, else a tokenizer.model
        piece. A linear search; inspect asks for a handful."""
        for names in (self.added, self.vocab):
            for token_id, content in names.items():
                if content == token:
                    return token_id
        if self.sentencepiece is not None and token in self._pieces:
            return self._pieces.index(token)
        return None


RESAVE_TOKENIZER = "re-save the tokenizer with tokenizer.save_pretrained(folder)"


def _malformed(file: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{file}: {problem}", hint=RESAVE_TOKENIZER)


def _token_id(value: object, file: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _malformed(file, f"{what} has id {value!r}, not a non-negative integer")
    return value


def _token(value: object, file: str, what: str) -> str:
    if not isinstance(value, str):
        raise _malformed(file, f"{what} is {value!r}, not a string")
    return value


def _of_type(value: object, kind: type, file: str, what: str):
    if not isinstance(value, kind):
        raise _malformed(file, f"{what} is a {type(value).__name__}, not a JSON {'object' if kind is dict else 'list'}")
    return value


def model_vocab_ids(tokenizer_json: dict) -> dict[int, str]:
    model = _of_type(tokenizer_json.get("model") or {}, dict, "tokenizer.json", "model")
    vocab = model.get("vocab")
    if isinstance(vocab, dict):
        ids = list(vocab.values())
        if set(map(type, ids)) <= {int} and min(ids, default=0) >= 0:  # the usual case, checked at C speed
            return dict(zip(ids, vocab, strict=True))
        return {_token_id(i, "tokenizer.json", f"model.vocab token {tok!r}"): tok for tok, i in vocab.items()}
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        return {i: _unigram_piece(entry, i) for i, entry in enumerate(vocab)}
    if vocab is not None:
        raise _malformed("tokenizer.json", f"model.vocab is a {type(vocab).__name__}, not a JSON object or list")
    return {}


def _unigram_piece(entry: object, index: int) -> str:
    if not (isinstance(entry, list) and len(entry) == 2):
        raise _malformed("tokenizer.json", f"model.vocab[{index}] is {entry!r}, not a [piece, score] pair")
    return _token(entry[0], "tokenizer.json", f"the piece of model.vocab[{index}]")


def _added_tokens_json(tokenizer_json: dict):
    """(id, content) of tokenizer.json's added_tokens."""
    entries = _of_type(tokenizer_json.get("added_tokens") or [], list, "tokenizer.json", "added_tokens")
    for n, entry in enumerate(entries):
        what = f"added_tokens[{n}]"
        entry = _of_type(entry, dict, "tokenizer.json", what)
        yield _token_id(entry.get("id"), "tokenizer.json", what), _token(entry.get("content"), "tokenizer.json",
                                                                         f"{what}.content")


def _added_tokens_decoder(tokenizer_config: dict):
    """(id, content) of tokenizer_config.json's added_tokens_decoder, whose keys are ids written as strings."""
    file = "tokenizer_config.json"
    decoder = _of_type(tokenizer_config.get("added_tokens_decoder") or {}, dict, file, "added_tokens_decoder")
    for key, entry in decoder.items():
        what = f"added_tokens_decoder entry {key!r}"
        token_id = _token_id(int(key) if key.isascii() and key.isdigit() else key, file, what)
        yield token_id, _token(entry.get("content") if isinstance(entry, dict) else entry, file, f"{what} content")


def read_tokenizer_ids(tokenizer_json: dict | None, tokenizer_config: dict | None,
                       added_tokens: dict | None, sentencepiece: bytes | None) -> TokenizerIds:
    """The ids each tokenizer file defines, merged; a token named differently by two files is a conflict.

    Raises CheckpointError for a malformed entry (an id that is not a non-negative integer, a token not a string).
    """
    ids = TokenizerIds(size=0, added={})
    named_by: dict[int, str] = {}

    def add(source: str, token_id: int, content: str) -> None:
        known = ids.added.get(token_id)
        if known is not None and known != content:
            ids.conflicts.append(Conflict(token_id, known, named_by[token_id], content, source))
        ids.added.setdefault(token_id, content)
        named_by.setdefault(token_id, source)
        ids.file_sizes[source] = max(ids.file_sizes.get(source, 0), token_id + 1)

    if tokenizer_json is not None:
        ids.vocab = model_vocab_ids(tokenizer_json)
        ids.file_sizes["tokenizer.json"] = max(ids.vocab, default=-1) + 1
        for token_id, content in _added_tokens_json(tokenizer_json):
            add("tokenizer.json", token_id, content)
    if tokenizer_config is not None:
        for token_id, content in _added_tokens_decoder(tokenizer_config):
            add("tokenizer_config.json", token_id, content)
    if added_tokens is not None:
        for content, token_id in added_tokens.items():
            add("added_tokens.json", _token_id(token_id, "added_tokens.json", f"token {content!r}"), content)
    if sentencepiece is not None:
        ids.file_sizes["tokenizer.model"] = sentencepiece_model.count_pieces(sentencepiece)
        ids.sentencepiece = sentencepiece
    ids.size = max(ids.file_sizes.values(), default=0)
    return ids


# --- renumbering -------------------------------------------------------------------------------------


def renumber_tokenizer_json(data: dict, new_id: IdFn, added: dict[int, str]) -> dict:
    """A renumbered copy of tokenizer.json. `added` maps new ids to added-token strings (fills vocab gaps)."""
    out = dict(data)
    moved = ({**entry, "id": new_id(int(entry["id"]))} for entry in data.get("added_tokens") or [])
    out["added_tokens"] = sorted((e for e in moved if e["id"] is not None), key=lambda entry: entry["id"])
    if data.get("model"):
        out["model"] = _renumber_model(data["model"], new_id, added)
    if data.get("post_processor"):
        out["post_processor"] = _renumber_post_processor(data["post_processor"], new_id)
    return out


def _renumber_model(model: dict, new_id: IdFn, added: dict[int, str]) -> dict:
    out = dict(model)
    vocab = model.get("vocab")
    if isinstance(vocab, dict):
        ids = vocab.values()
        mapped = new_id.many(ids) if isinstance(new_id, IdMap) else [new_id(int(i)) for i in ids]
        pairs = zip(vocab, mapped, strict=True)
        moved = dict(pairs) if None not in mapped else {tok: i for tok, i in pairs if i is not None}
        taken = set(moved.values())
        # tokenizers gives an added token missing from the vocabulary the next free id past the vocabulary,
        # so a vocabulary with a hole would push the token that belongs there elsewhere: fill every hole.
        # each hole takes an added token, so the (len(added) + 1)-th hole at the latest raises below; the k-th hole
        # lies below len(taken) + k, so no hole past that bound is ever reached (an id may be huge: a broken file)
        stop = min(max(taken, default=-1) + 1, len(taken) + len(added) + 1)
        for hole in sorted(set(range(stop)).difference(taken)):
            token = _filler(added, hole)
            if token in moved:
                raise CheckpointError(f"tokenizer.json: token {token!r} at id {hole} is also in the vocabulary "
                                      f"at id {moved[token]}")
            moved[token] = hole
        out["vocab"] = dict(sorted(moved.items(), key=operator.itemgetter(1)))
    elif isinstance(vocab, list):
        placed = {new_id(i): entry for i, entry in enumerate(vocab)}
        placed.pop(None, None)
        out["vocab"] = [placed.get(i) or [_filler(added, i), 0.0] for i in range(max(placed, default=-1) + 1)]
    if isinstance(model.get("unk_id"), int):
        out["unk_id"] = _kept(new_id, model["unk_id"], "model.unk_id")
    return out


def _kept(new_id: IdFn, token_id: int, what: str) -> int:
    mapped = new_id(token_id)
    if mapped is None:
        raise CheckpointError(f"tokenizer.json: {what} names id {token_id}, which the rewrite gives to another token")
    return mapped


def _filler(added: dict[int, str], token_id: int) -> str:
    token = added.get(token_id)
    if token is None:
        raise CheckpointError(f"tokenizer.json: the rewrite would leave id {token_id} without a token")
    return token


def _renumber_post_processor(proc: object, new_id: IdFn, what: str = "post_processor") -> dict:
    proc = _of_type(proc, dict, "tokenizer.json", what)
    out = dict(proc)
    if isinstance(proc.get("processors"), list):
        out["processors"] = [_renumber_post_processor(p, new_id, f"{what}.processors[{n}]")
                             for n, p in enumerate(proc["processors"])]
    if isinstance(proc.get("special_tokens"), dict):
        out["special_tokens"] = {name: _renumber_special_token(spec, new_id, f"{what}.special_tokens[{name!r}]")
                                 for name, spec in proc["special_tokens"].items()}
    for key in ("cls", "sep"):  # BertProcessing / RobertaProcessing: [token, id]
        if isinstance(proc.get(key), list) and len(proc[key]) == 2:
            out[key] = [proc[key][0], _kept(new_id, _token_id(proc[key][1], "tokenizer.json", f"{what}.{key}"),
                                            f"{what}.{key}")]
    return out


def _renumber_special_token(spec: object, new_id: IdFn, what: str) -> dict:
    spec = _of_type(spec, dict, "tokenizer.json", what)
    ids = _of_type(spec.get("ids", []), list, "tokenizer.json", f"{what}.ids")
    return {**spec, "ids": [_kept(new_id, _token_id(i, "tokenizer.json", what), what) for i in ids]}


def renumber_tokenizer_config(data: dict, new_id: IdFn) -> dict:
    out = dict(data)
    decoder = data.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        moved = sorted(((new_id(int(k)), v) for k, v in decoder.items() if new_id(int(k)) is not None),
                       key=lambda kv: kv[0])
        out["added_tokens_decoder"] = {str(k): v for k, v in moved}
    return out


def renumber_added_tokens(data: dict, new_id: IdFn) -> dict:
    moved = ((tok, new_id(int(i))) for tok, i in data.items())
    return dict(sorted(((tok, i) for tok, i in moved if i is not None), key=lambda kv: kv[1]))


def renumber_sentencepiece(buf: bytes, id_map: IdMap, added: dict[int, str], text_size: int) -> bytes:
    """tokenizer.model renumbered: see sentencepiece_model.renumber_pieces."""
    return sentencepiece_model.renumber_pieces(buf, id_map, added, text_size)

"""tokenizer.json keeps the input's formatting (issue 12) and is written by splicing byte ranges (issue 10):
gemma3n_vocabfix/json_splice.py through plan._tokenizer_json_parts.

On a synthetic checkpoint whose tokenizer.json the tokenizers library saved, pretty (its default) and compact, OUT's
tokenizer.json (a) parses to the document today's renumbering gives (tokenizer_files.renumber_tokenizer_json, the
parsed result the other tests check), the vocabulary in new-id order; (b) differs from IN's only in the lines of the
vocabulary entries whose id changed or that are new, of the added tokens and of the post-processor; (c) loads in the
tokenizers library with every token at its new id (tests/fixtures/oracle.py). Then the scanner on its own: token
strings that look like JSON structure (quotes, backslashes, \\uXXXX escapes and raw UTF-8, ':' and ',', a token
"merges"), in every style json.dumps and tokenizers write, for vocabularies read whole and read around their changes
from either end; random ones (hypothesis); and the inputs it must refuse, which fall back to a whole re-serialisation
in the input's indentation.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from fixtures.helpers import NEW, A, K, V
from fixtures.oracle import DocLayout
from fixtures.synthetic import build, token_names
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, processors

from gemma3n_vocabfix import rewrite_checkpoint
from gemma3n_vocabfix.checkpoint import read_checkpoint, read_tokenizer_json_without_merges, tokenizer_json_as_read
from gemma3n_vocabfix.json_splice import Unprovable, splice
from gemma3n_vocabfix.plan import SourceBytes, _tokenizer_json_parts, renumber_tokenizer_files
from gemma3n_vocabfix.rewrite import checked_layout
from gemma3n_vocabfix.tokenizer_files import renumber_tokenizer_json

TEXT = 300  # more vocabulary entries than json_splice reads whole: the vocabulary is read around its changes
IDS = DocLayout(TEXT, V, A, K)


def assemble(parts: list) -> bytes:
    out = bytearray()
    for part in parts:
        if isinstance(part, SourceBytes):
            with open(part.path, "rb") as f:
                f.seek(part.start)
                out += f.read(part.stop - part.start)
        else:
            out += part
    return bytes(out)


# --- a whole rewrite, on files the tokenizers library wrote ------------------------------------------------------


def _checkpoint(tmp_path: Path, pretty: bool) -> Path:
    """The synthetic extended checkpoint, tokenizer.json re-saved by tokenizers (with a post-processor naming a
    special token whose id moves, <end_of_image>, and one that stays, <bos>)."""
    src = build(tmp_path / "in", text=TEXT, vision=V, audio=A, new_tokens=NEW)
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    names = token_names(TEXT, V, A, NEW)
    eoi = names.index("<end_of_image>")
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <end_of_image>", pair="<bos> $A <end_of_image> $B:1 <end_of_image>:1",
        special_tokens=[("<bos>", 2), ("<end_of_image>", eoi)])
    tok.save(str(src / "tokenizer.json"), pretty=pretty)
    return src


def _todays_renumbering(src: Path) -> dict:
    """tokenizer.json as today's renumbering gives it (parsed), with the whole file read."""
    ckpt = read_checkpoint(src)
    layout = checked_layout(ckpt)
    return renumber_tokenizer_files(ckpt, layout.id_map, layout.tokenizer.added, layout.new_text_size)[
        "tokenizer.json"]


def _moved_or_new(before: dict, after: dict) -> set[str]:
    """The vocabulary tokens whose id changes, or that are new."""
    return {tok for tok, i in after["model"]["vocab"].items() if before["model"]["vocab"].get(tok) != i}


_MEMBER = re.compile(r'^  "(\w+)":')
_VOCAB_ENTRY = re.compile(r'^ {6}("(?:[^"\\]|\\.)*"): \d+,?$')


def _sections(lines: list[str]) -> list[str | None]:
    """For each line of a pretty tokenizer.json: the top-level member it belongs to."""
    out, member = [], None
    for line in lines:
        m = _MEMBER.match(line)
        member = m.group(1) if m else member if line.startswith("   ") else None
        out.append(member)
    return out


def changed_lines(before: str, after: str, moved: set[str]) -> tuple[int, list[str]]:
    """How many lines a line diff touches (removed + added), and those outside the added tokens, the post-processor
    and the vocabulary entries of `moved` tokens."""
    a, b = before.splitlines(), after.splitlines()
    where_a, where_b = _sections(a), _sections(b)
    touched, stray = 0, []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        for lines, where, lo, hi in ((a, where_a, i1, i2), (b, where_b, j1, j2)):
            for k in range(lo, hi):
                touched += 1
                entry = _VOCAB_ENTRY.match(lines[k])
                if where[k] in ("added_tokens", "post_processor"):
                    continue
                if where[k] == "model" and entry and json.loads(entry.group(1)) in moved:
                    continue
                stray.append(lines[k])
    return touched, stray


def _check_loads(out: Path) -> None:
    names = token_names(TEXT, V, A, NEW)
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert tok.get_vocab_size() == len(names)
    for old_id, name in enumerate(names):
        assert tok.token_to_id(name) == IDS.pi(old_id), name
    assert tok.encode("".join(NEW), add_special_tokens=False).ids == [IDS.pi(names.index(t)) for t in NEW]
    eoi = IDS.pi(names.index("<end_of_image>"))
    assert tok.encode("<mask>").ids == [2, IDS.pi(names.index("<mask>")), eoi]


def test_pretty_tokenizer_json_keeps_its_lines(tmp_path: Path) -> None:
    src = _checkpoint(tmp_path, pretty=True)
    before_text = (src / "tokenizer.json").read_text(encoding="utf-8")
    expected = _todays_renumbering(src)
    rewrite_checkpoint(src, tmp_path / "out")
    after_text = (tmp_path / "out" / "tokenizer.json").read_text(encoding="utf-8")
    after = json.loads(after_text)
    assert after == expected  # (a)
    assert list(after["model"]["vocab"]) == list(expected["model"]["vocab"])
    assert [e["id"] for e in after["added_tokens"]] == sorted(e["id"] for e in after["added_tokens"])
    before = json.loads(before_text)
    moved = _moved_or_new(before, after)
    assert len(moved) == V + A + K
    touched, stray = changed_lines(before_text, after_text, moved)  # (b)
    assert not stray
    assert 0 < touched <= 4 * len(moved) + 9 * 2 * K + 8, touched
    assert len(after_text.splitlines()) - len(before_text.splitlines()) == K  # the new vocabulary entries
    _check_loads(tmp_path / "out")  # (c)


def test_compact_tokenizer_json_stays_compact(tmp_path: Path) -> None:
    src = _checkpoint(tmp_path, pretty=False)
    raw = (src / "tokenizer.json").read_bytes()
    expected = _todays_renumbering(src)
    rewrite_checkpoint(src, tmp_path / "out")
    out = (tmp_path / "out" / "tokenizer.json").read_bytes()
    after = json.loads(out)
    assert after == expected
    assert list(after["model"]["vocab"]) == list(expected["model"]["vocab"])
    assert b"\n" not in out and b'": ' not in out and b", " not in out
    # the vocabulary up to the first moved entry, and everything after it, are IN's bytes
    first_moved = json.dumps(token_names(TEXT, V, A, NEW)[TEXT]).encode()
    head = raw[:raw.index(b'"vocab":{')]
    vocab_prefix = raw[raw.index(b'"vocab":{'):raw.index(first_moved + b":")]
    assert vocab_prefix in out and raw[raw.index(b'"merges":'):] == out[out.index(b'"merges":'):]
    for member in ("normalizer", "pre_tokenizer", "decoder"):
        piece = head[head.index(f'"{member}":'.encode()):]
        piece = piece[:piece.index(b',"', 1)]
        assert piece in out, member
    _check_loads(tmp_path / "out")


# --- the scanner on adversarial token strings ----------------------------------------------------------------------

ADVERSARIAL = ['quo"te', "back\\slash", '\\"', "\\", '""', '"', "\\\\\"", "é", "日本語", "😀", "a:b", ":", "::",
               ":lead", "a,b", ",", '", "', '": 5, "', '"merges": [', "merges", "{", "}", "[", "]", "]}}", " ",
               "", "\n", "\t", "\r\n", "\u2028", "nul\x00x", "\x1f", "\\u0041", "ABC", "a/b", "\x7f", "ctl\x08"]
NEW_ADVERSARIAL = ['new"q', "new\\", "nouveau é", "新", ":new", "new,", "merges2", "🚀"]
STYLES = {
    "tokenizers": dict(indent=2, ensure_ascii=False),
    "python-ascii": dict(indent=2),
    "indent4": dict(indent=4, ensure_ascii=False),
    "tabs": dict(indent="\t", ensure_ascii=False),
    "compact": dict(separators=(",", ":"), ensure_ascii=False),
    "python-default": dict(),
}


def _document(tokens: list[str], added: list[tuple[int, str]], merges: list, all_added: bool = False) -> dict:
    """A BPE tokenizer.json with `tokens` as its vocabulary; the added tokens are the first four (or, `all_added`,
    every token, as Gemma's 6,670 added tokens name its special and multimodal ids) and `added`."""
    named = len(tokens) if all_added else min(4, len(tokens))
    specials = [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True} for i in range(named)]
    specials += [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": False} for i, t in added]
    last = len(tokens) - 1
    special_tokens = {t: {"id": t, "ids": [i], "tokens": [t]} for i, t in ((0, tokens[0]), (last, tokens[last]))}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": specials,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious",
                          "invert": False},
        "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": tokens[0],
                                                                                      "type_id": 0}}],
                           "pair": [], "special_tokens": special_tokens},
        "decoder": None,
        "model": {"type": "BPE", "dropout": None, "unk_token": tokens[min(3, last)], "fuse_unk": True,
                  "byte_fallback": True, "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges},
    }


def _shift(n: int, at: int, k: int):
    """The "shift" map: ids at or past `at` move up by k, the k added tokens (old ids n..n+k-1) come to `at`."""
    def new_id(i: int) -> int:
        if i >= n:
            return at + i - n
        return i if i < at else i + k
    return new_id


def _unused(n: int, slots: list[int]):
    """The "unused" map: the added tokens (old ids n..) take the `slots`, whose tokens are dropped."""
    dropped = set(slots)

    def new_id(i: int) -> int | None:
        if i >= n:
            return slots[i - n]
        return None if i in dropped else i
    return new_id


def _roundtrip(tmp_path: Path, text: str, new_id, new_tokens: list[str], n: int, *, spliced: bool = True) -> bytes:
    """Write `text` as tokenizer.json, read it as a rewrite does, renumber it by `new_id` and write it through
    _tokenizer_json_parts: the result parses to today's renumbering of the whole file (the vocabulary in id order);
    `spliced`: the scanner proved the splice (no fallback)."""
    path = tmp_path / "tokenizer.json"
    path.write_text(text, encoding="utf-8")
    full = json.loads(text)
    data, merges = read_tokenizer_json_without_merges(path)
    added = {new_id(n + j): t for j, t in enumerate(new_tokens)}
    renumbered = renumber_tokenizer_json(data, new_id, added)
    if spliced:
        splice(tokenizer_json_as_read(path, merges), data, renumbered)  # raises Unprovable
    else:
        with pytest.raises(Unprovable):
            splice(tokenizer_json_as_read(path, merges), data, renumbered)
    parts = _tokenizer_json_parts(SimpleNamespace(root=tmp_path, tokenizer_json=data, tokenizer_json_merges=merges),
                                  renumbered)
    out = text.encode("utf-8") if parts is None else assemble(parts)  # None: nothing changes, the file is copied
    expected = renumber_tokenizer_json(full, new_id, added)
    got = json.loads(out)
    assert got == expected
    assert list(got["model"]["vocab"]) == list(expected["model"]["vocab"])
    assert list(got) == list(expected)
    return out


def _adversarial_tokens(fillers: int) -> list[str]:
    return ["<pad>", "<eos>", "<bos>", "<unk>"] + ADVERSARIAL[:len(ADVERSARIAL) // 2] + [
        f"tok{i}" for i in range(fillers)] + ADVERSARIAL[len(ADVERSARIAL) // 2:]


@pytest.mark.parametrize("style", list(STYLES))
@pytest.mark.parametrize("fillers", [0, 200])  # read whole / read around the changes
@pytest.mark.parametrize("where", ["end", "middle", "start"])
@pytest.mark.parametrize("all_added", [False, True])
def test_adversarial_tokens(tmp_path: Path, style: str, fillers: int, where: str, all_added: bool) -> None:
    tokens = _adversarial_tokens(fillers)
    n = len(tokens)
    at = {"end": n - len(ADVERSARIAL) // 2 - 1, "middle": n // 2, "start": 5}[where]
    added = [(n + j, t) for j, t in enumerate(NEW_ADVERSARIAL)]
    merges = [["merges", ":"], ['"', "\\"], ["]}}", "}"], ["a", "b"]]
    doc = _document(tokens, added, merges, all_added)
    text = json.dumps(doc, **STYLES[style])
    out = _roundtrip(tmp_path, text, _shift(n, at, len(NEW_ADVERSARIAL)), NEW_ADVERSARIAL, n)
    if "indent" in STYLES[style] and where == "end":  # (elsewhere most entries move: difflib would be slow)
        before = text.splitlines()
        after = out.decode("utf-8").splitlines()
        touched = sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in
                      difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes() if tag != "equal")
        moved = n - at + len(NEW_ADVERSARIAL)
        per_added = 9 if all_added else 0  # an added token's object spans 9 lines; its "id" line changes
        assert touched <= moved * (1 + (per_added > 0)) + 2 * 9 * len(NEW_ADVERSARIAL) + 16, touched
    elif "indent" not in STYLES[style]:
        assert out.count(b"\n") == text.count("\n")


@pytest.mark.parametrize("fillers", [0, 200])
def test_unused_slots(tmp_path: Path, fillers: int) -> None:
    """Tokens dropped from the middle of the vocabulary and new ones on their ids: only those entries change."""
    tokens = _adversarial_tokens(fillers)
    n = len(tokens)
    slots = [6, 9, n // 2]
    new = ['slot"0', "slot\\1", "slot:2"]
    doc = _document(tokens, [(n + j, t) for j, t in enumerate(new)], [])
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    out = _roundtrip(tmp_path, text, _unused(n, slots), new, n).decode("utf-8")
    removed = set(text.splitlines()) - set(out.splitlines())
    assert all(any(json.dumps(tokens[s], ensure_ascii=False) in line for s in slots) or '"id":' in line
               or '"content":' in line for line in removed), removed


def test_escaped_forms_are_kept(tmp_path: Path) -> None:
    """Tokens written with escapes json.dumps never writes (\\u0041, \\/): unchanged and moved entries keep them."""
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "ABC", "a/b"] + [f"t{i}" for i in range(100)] + ["XYZ", "c/d"]
    n = len(tokens)
    text = json.dumps(_document(tokens, [(n, "new")], []), indent=2, ensure_ascii=False)
    text = text.replace('"ABC": 4', '"\\u0041BC": 4').replace('"a/b": 5', '"a\\/b": 5')
    text = text.replace('"XYZ": 106', '"\\u0058YZ": 106').replace('"c/d": 107', '"c\\/d": 107')
    out = _roundtrip(tmp_path, text, _shift(n, 106, 1), ["new"], n).decode("utf-8")
    for kept in ('"\\u0041BC": 4', '"a\\/b": 5', '"\\u0058YZ": 107', '"c\\/d": 108', '"new": 106'):
        assert kept in out, kept


def test_ascii_input_gets_ascii_new_tokens(tmp_path: Path) -> None:
    """A file written with \\u escapes (json.dumps' default) gets its new tokens escaped too; raw UTF-8 stays raw."""
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "é"] + [f"t{i}" for i in range(10)]
    n = len(tokens)
    doc = _document(tokens, [(n, "日本")], [])
    ascii_out = _roundtrip(tmp_path, json.dumps(doc, indent=2), _shift(n, n - 1, 1), ["日本"], n)
    assert ascii_out.isascii() and b'"\\u65e5\\u672c": 14' in ascii_out
    raw_out = _roundtrip(tmp_path, json.dumps(doc, indent=2, ensure_ascii=False), _shift(n, n - 1, 1), ["日本"], n)
    assert '"日本": 14'.encode() in raw_out


@pytest.mark.parametrize("fillers", [0, 200])
@pytest.mark.parametrize("where", ["near the change", "far from it"])
def test_duplicate_vocabulary_key_falls_back(tmp_path: Path, fillers: int, where: str) -> None:
    """A vocabulary with a key twice (json.loads keeps one): the scanner cannot match entries to ids (a count, or
    the entries it reads, tell), so the whole document is written again, in the input's indentation."""
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "dup"] + [f"t{i}" for i in range(fillers)] + ["z0", "z1"]
    n = len(tokens)
    text = json.dumps(_document(tokens, [(n, "new")], []), indent=2)
    before = '"z0": ' if where == "near the change" else '"t0": ' if fillers else '"z0": '
    text = text.replace(before, '"dup": 4,\n      ' + before)
    assert json.loads(text)["model"]["vocab"] == {t: i for i, t in enumerate(tokens)}
    out = _roundtrip(tmp_path, text, _shift(n, n - 2, 1), ["new"], n, spliced=False)
    assert out.startswith(b'{\n  "version": "1.0",\n')  # indented as the input


def test_fallback_keeps_the_indentation_and_the_merges_bytes(tmp_path: Path) -> None:
    """A value the scanner does not read (NaN) also falls back: 4-space indentation kept, merges copied as bytes."""
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"t{i}" for i in range(20)]
    n = len(tokens)
    doc = _document(tokens, [(n, "new")], [["t1", "t2"], ["t3", "t4"]])
    doc["normalizer"]["weight"] = float("nan")
    text = json.dumps(doc, indent=4)
    path = tmp_path / "tokenizer.json"
    path.write_text(text)
    data, merges = read_tokenizer_json_without_merges(path)
    assert merges is not None
    renumbered = renumber_tokenizer_json(data, _shift(n, n - 1, 1), {n - 1: "new"})
    parts = _tokenizer_json_parts(SimpleNamespace(root=tmp_path, tokenizer_json=data, tokenizer_json_merges=merges),
                                  renumbered)
    assert SourceBytes(path, *merges) in parts
    out = assemble(parts).decode()
    assert out.startswith('{\n    "version": "1.0",') and '"new": 23' in out
    assert out.count("\n") == text.count("\n") + 1


def test_unreadable_input_falls_back_to_compact(tmp_path: Path) -> None:
    """No file to splice from (the in-memory fix names no folder): compact, as before."""
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "a"]
    data = _document(tokens, [(5, "new")], [])
    renumbered = renumber_tokenizer_json(data, _shift(5, 4, 1), {4: "new"})
    parts = _tokenizer_json_parts(SimpleNamespace(root=tmp_path / "nowhere", tokenizer_json=data,
                                                  tokenizer_json_merges=None), renumbered)
    assert len(parts) == 1 and json.loads(parts[0]) == renumbered and b"\n" not in parts[0]


# --- random vocabularies ------------------------------------------------------------------------------------------

_TOKEN_TEXT = st.text(st.characters(blacklist_categories=("Cs",)) | st.sampled_from('"\\:,{}[] \n\t\u2028é😀'),
                      max_size=6)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(tokens=st.lists(_TOKEN_TEXT, min_size=5, max_size=140, unique=True),
       style=st.sampled_from(list(STYLES)), data=st.data())
def test_random_vocabularies(tmp_path: Path, tokens: list[str], style: str, data) -> None:
    n = len(tokens)
    new = data.draw(st.lists(_TOKEN_TEXT.filter(lambda t: t not in tokens), min_size=1, max_size=4, unique=True))
    if data.draw(st.booleans()) or n - 5 < len(new):
        new_id = _shift(n, data.draw(st.integers(0, n - 1)), len(new))
    else:  # never a special token (ids 0..3) nor the last one, which the post-processor names
        new_id = _unused(n, sorted(data.draw(st.lists(st.integers(4, n - 2), min_size=len(new), max_size=len(new),
                                                      unique=True))))
    merges = [[t, t] for t in tokens[:3]]
    doc = _document(tokens, [(n + j, t) for j, t in enumerate(new)], merges, data.draw(st.booleans()))
    _roundtrip(tmp_path, json.dumps(doc, **STYLES[style]), new_id, new, n)


# --- the splice on any JSON document ------------------------------------------------------------------------------


def _spliced(text: str, old: object, new: object) -> bytes:
    """splice's result for `new` over `text` (the input `old` as written): it parses to `new`, with new's key
    orders except where an object of the input kept its bytes (same content: the input's order is kept)."""
    doc = text.encode("utf-8")
    pieces = splice(doc, old, new)
    out = b"".join(doc[p[0]:p[1]] if isinstance(p, tuple) else p for p in pieces)
    got = json.loads(out)  # bytes: a byte order mark is allowed
    assert got == new and _orders_match(got, new, list(_objects(old)))
    return out


def _objects(value: object):
    if isinstance(value, dict):
        yield value
    for child in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
        yield from _objects(child)


def _orders_match(got: object, new: object, olds: list[dict]) -> bool:
    if isinstance(new, dict):
        if list(got) != list(new):
            return any(o == new and list(o) == list(got) for o in olds)
        return all(_orders_match(got[k], v, olds) for k, v in new.items())
    if isinstance(new, list):
        return all(_orders_match(g, v, olds) for g, v in zip(got, new, strict=True))
    return True


LONG = [f"s{i}" for i in range(100)]
EDITS = {
    "empty array gains items": ({"a": [], "b": 1}, {"a": [1, {"x": [2, "y"]}], "b": 1}),
    "empty object gains members": ({"a": {}, "b": 1}, {"a": {"k": [1, 2], "l": None}, "b": 1}),
    "a container empties": ({"a": [1, 2], "b": {"c": 1}}, {"a": [], "b": {}}),
    "a member is added at the end": ({"model": {"vocab": {"a": 0}}}, {"model": {"vocab": {"a": 0}}, "added": []}),
    "a member is removed": ({"a": 1, "b": 2, "c": 3}, {"a": 1, "c": 3}),
    "members are reordered": ({"a": 1, "b": [1], "c": 3}, {"c": 3, "a": 1, "b": [1, 2]}),
    "only the order changes": ({"a": 1, "b": {"x": 1, "y": 2}}, {"a": 2, "b": {"y": 2, "x": 1}}),
    "null becomes a list": ({"added_tokens": None}, {"added_tokens": [{"id": 1}]}),
    "types change": ({"a": True, "b": [True, 1.5, "x"]}, {"a": 2, "b": [None, 1.25, ["x"]]}),
    "a long string array changes at its end": ({"a": LONG + ['q"\\', "x"]}, {"a": LONG + ['q"\\', "y", "z"]}),
    "a long string array changes at its start": ({"a": ['q"\\', "x", *LONG]}, {"a": ["w", 'q"\\', *LONG]}),
    "a long number array": ({"a": [*range(100), 1.5, -2e-05, True, None]},
                            {"a": [*range(100), 1.5, -2e-05, False, None, 7]}),
    "a Unigram vocabulary gains pieces": ({"vocab": [[s, -1.5] for s in LONG]},
                                          {"vocab": [[s, -1.5] for s in LONG[:50]] + [["new", 0.0]]
                                           + [[s, -1.5] for s in LONG[50:]]}),
    "objects with nested values move": ({"l": [{"id": i, "v": [i]} for i in range(80)]},
                                        {"l": [{"id": i + 1, "v": [i]} for i in reversed(range(80))]}),
    "a big token-id object loses an entry": ({"vocab": {s: i for i, s in enumerate(LONG)}},
                                             {"vocab": {s: i for i, s in enumerate(LONG) if i != 70}}),
    "a big token-id object at its first entry": ({"vocab": {s: i for i, s in enumerate(LONG)}},
                                                 {"vocab": {"first": 0, **{s: i + 1 for i, s in enumerate(LONG)}}}),
}


@pytest.mark.parametrize("style", list(STYLES))
@pytest.mark.parametrize("edit", list(EDITS))
@pytest.mark.parametrize("frame", ["plain", "CRLF and a byte order mark"])
def test_edits(style: str, edit: str, frame: str) -> None:
    old, new = EDITS[edit]

    def framed(value: object) -> str:
        text = json.dumps(value, **STYLES[style])
        return "\ufeff" + text.replace("\n", "\r\n") + "\r\n" if frame != "plain" else text
    out = _spliced(framed(old), old, new)
    if "indent" in STYLES[style]:  # new values indented as the input is
        assert framed(new).encode() == out or edit == "only the order changes"
    else:
        assert b"\n" not in out.rstrip(b"\r\n")


_SCALARS = (st.none() | st.booleans() | st.integers(-10**20, 10**20)
            | st.floats(allow_nan=False, allow_infinity=False) | _TOKEN_TEXT)
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(_TOKEN_TEXT, inner,
                                                                                            max_size=5),
                     max_leaves=30)


def _mutate(value: object, draw) -> object:
    """`value` with random edits: values replaced, members and elements added, removed and moved."""
    roll = draw(st.integers(0, 9))
    if roll == 0:
        return draw(_JSON)
    if isinstance(value, dict):
        items = [(k, _mutate(v, draw) if draw(st.booleans()) else v) for k, v in value.items()]
        if items and roll == 1:
            items.pop(draw(st.integers(0, len(items) - 1)))
        if roll == 2:
            key = draw(_TOKEN_TEXT)
            items = [(k, v) for k, v in items if k != key]
            items.insert(draw(st.integers(0, len(items))), (key, draw(_JSON)))
        if roll == 3:
            items = draw(st.permutations(items))
        return dict(items)
    if isinstance(value, list):
        out = [_mutate(v, draw) if draw(st.booleans()) else v for v in value]
        if out and roll == 1:
            out.pop(draw(st.integers(0, len(out) - 1)))
        if roll == 2:
            out.insert(draw(st.integers(0, len(out))), draw(_JSON))
        if roll == 3:
            out = draw(st.permutations(out))
        return out
    return value


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(old=st.dictionaries(_TOKEN_TEXT, _JSON, max_size=6), style=st.sampled_from(list(STYLES)), data=st.data())
def test_random_documents(old: dict, style: str, data) -> None:
    new = _mutate(old, data.draw)
    if not isinstance(new, dict):
        new = {"value": new}
    _spliced(json.dumps(old, **STYLES[style]), old, new)

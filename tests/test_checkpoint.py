"""Reading a checkpoint folder (gemma3n_vocabfix/checkpoint.py) where it is not about broken inputs: tokenizer.json is
read without its merges (the largest part of a 34 MB file) and the merges are kept as a byte range of the input,
falling back to a full parse whenever the fast path is in doubt. Broken inputs of every kind are in
test_broken_inputs.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.helpers import A, T, V
from fixtures.synthetic import build

from gemma3n_vocabfix.checkpoint import read_tokenizer_json_without_merges


def _json_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokenizer.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, fast", [
    (json.dumps({"model": {"vocab": {"a": 0, ":": 1}, "merges": [[":", "a"], ["a:b", " :"]]}}, indent=2), True),
    (json.dumps({"model": {"vocab": {"a": 0}, "merges": ["a b", ": x"]}}, separators=(",", ":")), True),
    (json.dumps({"model": {"vocab": {}, "merges": [["\":", "x"]]}}), False),  # doubtful: parse all
    (json.dumps({"model": {"merges": [["a", "b"]], "vocab": {"a": 0}}}), False),  # vocab after merges
    (json.dumps({"model": {"vocab": {"a": 0}, "merges": [["a", "b"]]}, "post": {"x": [1]}}), False),
    ('{"model": {"vocab": {"a": 0}, "merges": [["a","b"]], "z"  \n :  [["q"]]}}', False),
])
def test_tokenizer_json_without_merges(tmp_path: Path, text: str, fast: bool) -> None:
    path = _json_file(tmp_path, text)
    got, span = read_tokenizer_json_without_merges(path)
    full = json.loads(text)
    assert (span is not None) == fast
    if fast:
        raw = path.read_bytes()
        assert json.loads(raw[span[0]:span[1]]) == full["model"]["merges"]
        full["model"]["merges"] = []
    assert got == full


def test_tokenizer_json_without_merges_on_a_tokenizers_file(tmp_path: Path) -> None:
    """On a file the tokenizers library wrote (tests/fixtures/synthetic.py)."""
    extended = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=["<new_a>", "<new_b>"])
    got, _ = read_tokenizer_json_without_merges(extended / "tokenizer.json")
    full = json.loads((extended / "tokenizer.json").read_text())
    full["model"]["merges"] = []
    assert got == full

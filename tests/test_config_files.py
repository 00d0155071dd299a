"""config.json and generation_config.json (gemma3n_vocabfix/config_files.py): the layout fields and every token id
field move with π (tests/fixtures/oracle.py), in every shape GenerationConfig saves ids; every other key and value
stays as it was, in the same order.
"""

from __future__ import annotations

import json
from pathlib import Path

from fixtures.helpers import A, K, T, V
from fixtures.oracle import DocLayout
from fixtures.synthetic import build

from gemma3n_vocabfix import rewrite_checkpoint

IDS = DocLayout(T, V, A, K)


def test_config_and_generation_config(extended: Path, tmp_path: Path) -> None:
    rewrite_checkpoint(extended, tmp_path / "out")
    old = json.loads((extended / "config.json").read_text())
    new = json.loads((tmp_path / "out" / "config.json").read_text())
    for path, want in IDS.config_after().items():
        section, key = path.split(".")
        assert new[section][key] == want, path
    for key in ("boi_token_id", "boa_token_id", "eoi_token_id", "image_token_id", "eoa_token_id", "audio_token_id"):
        assert new[key] == IDS.pi(old[key]), key
    assert new["eos_token_id"] == [1, 106]
    # every key other than the layout fields is kept, in the same order
    assert list(new) == list(old)
    assert list(new["text_config"]) == list(old["text_config"])
    untouched = {k: v for k, v in old["text_config"].items() if k not in ("vocab_size", "vocab_size_per_layer_input")}
    assert all(new["text_config"][k] == v for k, v in untouched.items())


def test_generation_config_id_fields_in_every_shape_are_mapped(tmp_path: Path) -> None:
    """GenerationConfig also saves ids in force_words_ids, forced_decoder_ids ([position, id]) and sequence_bias
    (keys like "(640, 641)"): a bias or forced word on a new token must follow the token to its new id."""
    src = build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=["<a>", "<b>"])
    ids = DocLayout(T, V, A, 2)
    a, b = ids.new_ids_old  # the new tokens' ids before the rewrite
    gen = json.loads((src / "generation_config.json").read_text())
    gen.update(force_words_ids=[[a], [b, 5]], forced_decoder_ids=[[1, a], [2, 7]],
               sequence_bias={f"({a},)": 5.0, f"({b}, {T + 1})": -2.0, "(3,)": 1.0})
    (src / "generation_config.json").write_text(json.dumps(gen))
    rewrite_checkpoint(src, tmp_path / "out")
    out = json.loads((tmp_path / "out" / "generation_config.json").read_text())
    new_a, new_b, image_soft = ids.pi(a), ids.pi(b), ids.pi(T + 1)
    assert (new_a, new_b) == tuple(ids.new_ids_new)
    assert out["force_words_ids"] == [[new_a], [new_b, 5]]
    assert out["forced_decoder_ids"] == [[1, new_a], [2, 7]]
    assert out["sequence_bias"] == {f"({new_a},)": 5.0, f"({new_b}, {image_soft})": -2.0, "(3,)": 1.0}

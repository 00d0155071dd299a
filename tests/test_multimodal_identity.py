"""Which ids are image and which audio comes from the tokenizer, not from offsets that contradict it.

A config.json whose vision and audio `vocab_offset`s are swapped (a published recipe computes the audio offset
first) must be corrected, not followed: the rewrite puts the offsets back and leaves the tokens where they are;
`inspect` reports VF022 on the input. Where the evidence disagrees with itself the rewrite refuses (VF023).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures.helpers import invoke
from fixtures.synthetic import build

from gemma3n_vocabfix import rewrite_checkpoint

T, V, A = 40, 4, 4
NEW = ["<new_a>", "<new_b>", "word"]


def swap_offsets(folder: Path) -> None:
    """Edit only config.json: the audio offset where the vision range starts, the vision offset after the audio."""
    config = json.loads((folder / "config.json").read_text())
    vision, audio = config["vision_config"], config["audio_config"]
    start = vision["vocab_offset"]
    audio["vocab_offset"], vision["vocab_offset"] = start, start + audio["vocab_size"]
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_output(got_folder: Path, want_folder: Path) -> None:
    """Two rewrite outputs hold the same bytes, but for vocabfix.json (its record) and config.json (same JSON)."""
    got, want = files(got_folder), files(want_folder)
    for out in (got, want):
        out.pop("vocabfix.json")
    assert json.loads(got.pop("config.json")) == json.loads(want.pop("config.json"))
    assert got == want


def codes(folder: Path) -> tuple[int, list[str]]:
    result = invoke(*["inspect", str(folder), "--json"])
    return result.exit_code, [f["code"] for f in json.loads(result.stdout)["findings"]]


def test_released_layout_with_swapped_offsets_gets_its_offsets_back(tmp_path: Path) -> None:
    released = build(tmp_path / "released", text=T, vision=V, audio=A)
    swapped = tmp_path / "swapped"
    shutil.copytree(released, swapped)
    swap_offsets(swapped)
    code, found = codes(swapped)
    assert code == 1 and "VF022" in found
    rewrite_checkpoint(swapped, tmp_path / "out")
    got, want = files(tmp_path / "out"), files(released)
    assert json.loads(got.pop("config.json")) == json.loads(want.pop("config.json"))
    record = json.loads(got.pop("vocabfix.json"))
    assert got == want  # tokenizer files, shards, index: byte for byte
    assert {c["key"] for c in record["config_changes"]} == {"vision_config.vocab_offset", "audio_config.vocab_offset"}
    assert codes(tmp_path / "out") == (0, [])


def test_extended_with_swapped_offsets_renumbers_like_the_unswapped(tmp_path: Path) -> None:
    extended = build(tmp_path / "extended", text=T, vision=V, audio=A, new_tokens=NEW)
    swapped = tmp_path / "swapped"
    shutil.copytree(extended, swapped)
    swap_offsets(swapped)
    rewrite_checkpoint(extended, tmp_path / "out-plain")
    rewrite_checkpoint(swapped, tmp_path / "out-swapped")
    assert_same_output(tmp_path / "out-swapped", tmp_path / "out-plain")


def test_offsets_and_special_ids_against_the_tokenizer_is_refused(tmp_path: Path) -> None:
    """The config is consistent with itself (offsets and image/audio token ids swapped together) but the tokenizer
    says otherwise: nothing tells which is right, so the rewrite refuses and names it."""
    src = build(tmp_path / "src", text=T, vision=V, audio=A, new_tokens=NEW)
    swap_offsets(src)
    config = json.loads((src / "config.json").read_text())
    config["image_token_id"], config["audio_token_id"] = T + A + 1, T + 1
    (src / "config.json").write_text(json.dumps(config))
    code, found = codes(src)
    assert code == 1 and "VF023" in found and "VF022" not in found
    result = invoke(*["rewrite", str(src), str(tmp_path / "out")])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code == 2 and "VF023" in result.stderr and len(lines) == 1, result.stderr
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_that_really_puts_audio_first_is_reordered(tmp_path: Path) -> None:
    """Tokenizer and config agree on audio first: no contradiction, the ranges are reordered (VF003, not VF022)."""
    src = build(tmp_path / "src", text=T, vision=V, audio=A, audio_first=True)
    code, found = codes(src)
    assert "VF003" in found and "VF022" not in found and "VF023" not in found
    rewrite_checkpoint(src, tmp_path / "out")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (config["vision_config"]["vocab_offset"], config["audio_config"]["vocab_offset"]) == (T, T + V)
    assert config["image_token_id"] == T + 1 and config["audio_token_id"] == T + V + 1


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    from fixtures import tiny
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return tiny.build_base(tmp_path_factory.mktemp("mm") / "base", id_space="small")


def test_swapped_config_computes_the_released_model_after_the_rewrite(tiny_base: Path, tmp_path: Path) -> None:
    """Stock transformers, processor with an image and audio: the input crashes (its audio ids read past the audio
    table), the rewritten output computes exactly what the released model does."""
    from PIL import Image
    from transformers import AutoProcessor, Gemma3nForConditionalGeneration

    swapped = tmp_path / "swapped"
    shutil.copytree(tiny_base, swapped)
    swap_offsets(swapped)
    rewrite_checkpoint(swapped, tmp_path / "out")
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8))
    wave = (rng.standard_normal(16000) * 0.1).astype(np.float32)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "audio"}, {"type": "text", "text": "hi"}]}]
    proc = AutoProcessor.from_pretrained(tiny_base)
    text = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = proc(text=text, images=image, audio=wave, return_tensors="pt")
    logits = {}
    for name, folder in (("released", tiny_base), ("out", tmp_path / "out")):
        model = Gemma3nForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
        with torch.no_grad():
            logits[name] = model(**inputs).logits
    assert torch.equal(logits["out"], logits["released"])
    model = Gemma3nForConditionalGeneration.from_pretrained(swapped, dtype=torch.float32).eval()
    with torch.no_grad(), pytest.raises(IndexError):  # audio ids past the audio table's rows
        model(**inputs)


LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy"


def test_names_only_in_tokenizer_model_are_evidence(tmp_path: Path) -> None:
    """A slow-tokenizer save names the multimodal tokens only in tokenizer.model: those pieces count."""
    src = tmp_path / "slow"
    shutil.copytree(LEGACY / "slow-tokenizer", src)
    tok_config = json.loads((src / "tokenizer_config.json").read_text())
    tok_config.pop("added_tokens_decoder")
    (src / "tokenizer_config.json").write_text(json.dumps(tok_config))
    plain = tmp_path / "plain"
    shutil.copytree(src, plain)
    swap_offsets(src)
    assert "VF022" in codes(src)[1]
    rewrite_checkpoint(plain, tmp_path / "out-plain")
    rewrite_checkpoint(src, tmp_path / "out-swapped")
    assert_same_output(tmp_path / "out-swapped", tmp_path / "out-plain")


def test_without_names_the_config_token_ids_decide(tmp_path: Path) -> None:
    """Neutral multimodal names: image_token_id / audio_token_id (left as they were) say the offsets are swapped."""
    plain = build(tmp_path / "plain", text=T, vision=V, audio=A, new_tokens=NEW, multimodal_names=False)
    src = tmp_path / "swapped"
    shutil.copytree(plain, src)
    swap_offsets(src)
    assert "VF022" in codes(src)[1]
    rewrite_checkpoint(src, tmp_path / "out")
    rewrite_checkpoint(plain, tmp_path / "out-plain")
    assert json.loads((tmp_path / "out" / "config.json").read_text()) == \
        json.loads((tmp_path / "out-plain" / "config.json").read_text())


def test_offsets_shifted_by_hand_are_put_back(tmp_path: Path) -> None:
    """Both offsets moved up by the number of new tokens (a hand fix that forgot the tokens): the names say where the
    ranges are, and the rewrite gives the same output as for the untouched checkpoint."""
    plain = build(tmp_path / "plain", text=T, vision=V, audio=A, new_tokens=NEW)
    src = tmp_path / "shifted"
    shutil.copytree(plain, src)
    config = json.loads((src / "config.json").read_text())
    config["vision_config"]["vocab_offset"] += len(NEW)
    config["audio_config"]["vocab_offset"] += len(NEW)
    (src / "config.json").write_text(json.dumps(config))
    assert "VF022" in codes(src)[1]
    rewrite_checkpoint(src, tmp_path / "out")
    rewrite_checkpoint(plain, tmp_path / "out-plain")
    assert_same_output(tmp_path / "out", tmp_path / "out-plain")

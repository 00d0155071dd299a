"""Synthetic Gemma 3n checkpoints built from numpy arrays: no torch, built in milliseconds.

Row i of every vocabulary table is filled with the value of id i (plus a column ramp), so a test can
read which old id landed in each output row. The model is not runnable: the compatibility tests in
test_compat.py use real tiny models; these exercise the planner, the tokenizer files and the CLI.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers import AddedToken, Tokenizer, models

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "gemma3n" / "E4B-it"
HIDDEN = 4


def reference_config() -> dict:
    return json.loads((REFERENCE / "config.json").read_text())


def token_names(text: int, vision: int, audio: int, new_tokens: list[str]) -> list[str]:
    names = [f"tok{i}" for i in range(text)]
    names[:6] = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]"]
    names[text - 2], names[text - 1] = "<start_of_image>", "<start_of_audio>"
    names += ["<end_of_image>", "<image_soft_token>"] + [f"<unused_image{i}>" for i in range(vision - 2)]
    names += ["<end_of_audio>", "<audio_soft_token>"] + [f"<unused_audio{i}>" for i in range(audio - 2)]
    return names + list(new_tokens)


def row_values(ids: range | list[int], width: int = HIDDEN) -> np.ndarray:
    ids = np.asarray(list(ids), dtype=np.float32)
    return ids[:, None] + np.arange(width, dtype=np.float32)[None, :] / 100


def build(path: Path, *, text: int = 300, vision: int = 8, audio: int = 8, new_tokens: list[str] = (),
          embed_rows: int | None = None, per_layer_rows: int | None = None, lm_head_rows: int | None = None,
          vocab_size: int | None = None, per_layer_size: int | None = None, sentencepiece: bool = True,
          dtype=np.float32) -> Path:
    """A checkpoint with `text` text ids, then vision, then audio, then `new_tokens` appended.

    Table sizes default to the user flow 'added tokens + resize_token_embeddings' (transformers 5 also
    grows the per-layer table); pass smaller sizes for the un-resized variants.
    """
    path.mkdir(parents=True)
    names = token_names(text, vision, audio, list(new_tokens))
    total = len(names)
    embed_rows = total if embed_rows is None else embed_rows
    if per_layer_rows is None:  # transformers 5's resize grows the per-layer table to every id
        per_layer_rows = total if new_tokens else text

    config = reference_config()
    config["text_config"]["vocab_size"] = vocab_size or embed_rows
    config["text_config"]["vocab_size_per_layer_input"] = per_layer_size or per_layer_rows
    config["vision_config"]["vocab_size"] = vision
    config["vision_config"]["vocab_offset"] = text
    config["audio_config"]["vocab_size"] = audio
    config["audio_config"]["vocab_offset"] = text + vision
    config.update(boi_token_id=text - 2, boa_token_id=text - 1, eoi_token_id=text, image_token_id=text + 1,
                  eoa_token_id=text + vision, audio_token_id=text + vision + 1)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    gen = json.loads((REFERENCE / "generation_config.json").read_text())
    (path / "generation_config.json").write_text(json.dumps(gen, indent=2))
    for name in ("processor_config.json", "preprocessor_config.json", "chat_template.jinja",
                 "special_tokens_map.json"):
        (path / name).write_bytes((REFERENCE / name).read_bytes())
    (path / "README.md").write_text("a model card that must be copied unchanged\n")

    _write_tokenizer(path, names, total - len(new_tokens), sentencepiece)
    _write_weights(path, text, vision, audio, embed_rows, per_layer_rows, lm_head_rows, dtype)
    return path


def _write_tokenizer(path: Path, names: list[str], base_size: int, sentencepiece: bool) -> None:
    """The base vocabulary (text + multimodal ids) is the BPE model's; appended tokens are added tokens."""
    special = {i for i, n in enumerate(names) if n.startswith("<") or n.startswith("[")}
    base = {n: i for i, n in enumerate(names[:base_size])}
    tok = Tokenizer(models.BPE(vocab=base, merges=[], unk_token="<unk>"))
    tok.add_special_tokens([AddedToken(names[i], special=True, normalized=False)
                            for i in sorted(special) if i < len(base)])
    tok.add_tokens([AddedToken(n, normalized=False) for n in names[len(base):]])
    data = json.loads(tok.to_str())
    (path / "tokenizer.json").write_text(json.dumps(data, indent=2))
    decoder = {str(e["id"]): {"content": e["content"], "lstrip": False, "normalized": False, "rstrip": False,
                              "single_word": False, "special": e["special"]} for e in data["added_tokens"]}
    ref = json.loads((REFERENCE / "tokenizer_config.json").read_text())
    ref.pop("added_tokens_decoder")
    (path / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": decoder, **ref}, indent=2))
    new = names[len(base):]
    if new:
        (path / "added_tokens.json").write_text(json.dumps({n: len(base) + i for i, n in enumerate(new)}))
    if sentencepiece:
        from sentencepiece import sentencepiece_model_pb2 as pb
        m = pb.ModelProto()
        for i, n in enumerate(names[: len(base)]):
            p = m.pieces.add()
            p.piece, p.score = n, -float(i)
            p.type = {0: 3, 1: 3, 2: 3, 3: 2}.get(i, 4 if n.startswith("<") else 1)
        m.trainer_spec.model_type = 1
        m.trainer_spec.unk_id, m.trainer_spec.bos_id, m.trainer_spec.eos_id, m.trainer_spec.pad_id = 3, 2, 1, 0
        (path / "tokenizer.model").write_bytes(m.SerializeToString())


def _write_weights(path, text, vision, audio, embed_rows, per_layer_rows, lm_head_rows, dtype) -> None:
    shard1 = {
        "model.language_model.embed_tokens.weight": row_values(range(embed_rows)),
        "model.embed_vision.embedding.weight": row_values(range(vision)) + 1000,
        "model.language_model.layers.0.mlp.up_proj.weight": np.full((3, HIDDEN), 7, np.float32),
    }
    shard2 = {
        "model.language_model.embed_tokens_per_layer.weight": -row_values(range(per_layer_rows), 2 * HIDDEN),
        "model.embed_audio.embedding.weight": row_values(range(audio)) + 2000,
        "model.language_model.norm.weight": np.ones(HIDDEN, np.float32),
    }
    if lm_head_rows:
        shard2["lm_head.weight"] = row_values(range(lm_head_rows)) * 3
    shards = {"model-00001-of-00002.safetensors": shard1, "model-00002-of-00002.safetensors": shard2}
    weight_map, total = {}, 0
    for name, tensors in shards.items():
        tensors = {k: v.astype(dtype) for k, v in tensors.items()}
        save_file(tensors, str(path / name), metadata={"format": "pt"})
        for k, v in tensors.items():
            weight_map[k] = name
            total += v.nbytes
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (path / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def clone_config(path: Path, **changes) -> None:
    config = json.loads((path / "config.json").read_text())
    config = copy.deepcopy(config)
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config, indent=2))

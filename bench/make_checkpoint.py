"""An E4B-id-space checkpoint with real bytes, for timing `vocabfix rewrite` (no torch needed).

Real ids (262,144 text + 128 vision + 128 audio) and the real tensor names of the vocabulary tables;
hidden sizes divided by `scale` (scale=1 gives the real 5.8 GB of vocabulary tables). The extension is
the transformers-5 resize: `k` tokens appended, embed_tokens and embed_tokens_per_layer grown to every id.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "gemma3n" / "E4B-it"
T, V, A = 262144, 128, 128


def _write_safetensors(path: Path, tensors: list[tuple[str, tuple[int, ...]]], rng: np.random.Generator) -> int:
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in tensors:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        block = rng.integers(0x3C00, 0x3F80, size=8 * 1024 * 1024, dtype=np.uint16).tobytes()  # finite bf16
        left = offset
        while left:
            chunk = block[: min(left, len(block))]
            f.write(chunk)
            left -= len(chunk)
    return offset


def build(path: Path, *, scale: int = 4, k: int = 3) -> Path:
    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    hidden, per_layer = 2048 // scale, 35 * 256 // scale
    total = T + V + A + k
    shards = {
        "model-00001-of-00002.safetensors": [("model.language_model.embed_tokens.weight", (total, hidden)),
                                             ("model.embed_vision.embedding.weight", (V, hidden)),
                                             ("model.embed_audio.embedding.weight", (A, 1536 // scale))],
        "model-00002-of-00002.safetensors": [("model.language_model.embed_tokens_per_layer.weight",
                                              (total, per_layer)),
                                             ("model.language_model.norm.weight", (hidden,))],
    }
    weight_map, size = {}, 0
    for name, tensors in shards.items():
        size += _write_safetensors(path / name, tensors, rng)
        weight_map.update({t: name for t, _ in tensors})
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": size},
                                                                   "weight_map": weight_map}, indent=2))
    config = json.loads((REFERENCE / "config.json").read_text())
    config["text_config"]["vocab_size"] = config["text_config"]["vocab_size_per_layer_input"] = total
    (path / "config.json").write_text(json.dumps(config, indent=2))
    for name in ("generation_config.json", "special_tokens_map.json", "processor_config.json",
                 "preprocessor_config.json", "chat_template.jinja"):
        (path / name).write_bytes((REFERENCE / name).read_bytes())
    tok_config = json.loads((REFERENCE / "tokenizer_config.json").read_text())
    decoder = tok_config["added_tokens_decoder"]
    names = {int(i): e["content"] for i, e in decoder.items()}
    for j in range(k):
        decoder[str(T + V + A + j)] = {**decoder["6"], "content": f"<new_token_{j}>"}
        names[T + V + A + j] = f"<new_token_{j}>"
    (path / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))
    vocab = {names.get(i, f"piece{i}"): i for i in range(T + V + A)}
    added = [{"id": i, "content": names[i], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": bool(decoder[str(i)]["special"])} for i in sorted(names)]
    tokenizer = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
                 "normalizer": None, "pre_tokenizer": None, "post_processor": None, "decoder": None,
                 "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                           "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
                           "ignore_merges": False, "vocab": vocab, "merges": []}}
    (path / "tokenizer.json").write_text(json.dumps(tokenizer, indent=2, ensure_ascii=False))
    return path


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


if __name__ == "__main__":
    import sys
    build(Path(sys.argv[1]), scale=int(sys.argv[2]) if len(sys.argv) > 2 else 4)
    print(os.path.getsize(sys.argv[1]))

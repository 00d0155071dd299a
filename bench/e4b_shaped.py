"""An E4B-shaped Gemma 3n checkpoint made of safetensors headers and sparse files: no real tensor bytes.

The tensor names and the shard each tensor sits in come from the published
google/gemma-3n-E4B-it model.safetensors.index.json (../shared/reference/gemma3n/E4B-it); the shapes of the
vocabulary tables and of the language model are the real ones, derived from its config.json; the vision and
audio towers get plausible small shapes. Each shard is its header followed by a hole (`truncate`), so a
15 GB checkpoint costs a few MB of disk. The tokenizer files have the real sizes and id layout
(tokenizer.json ~33 MB with 262,144 model pieces plus the 6,670 added tokens of the released
tokenizer_config.json; tokenizer.model with 262,144 pieces), but made-up ordinary token strings.

`inspect` reads only headers and small files, so this is what the benchmark times it on.

    python bench/e4b_shaped.py /tmp/e4b [--extended-tokens 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from math import prod
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gemma3n_vocabfix.safetensors_header import DTYPE_SIZES, encode_header  # noqa: E402
from gemma3n_vocabfix.sentencepiece_model import make_piece  # noqa: E402

REFERENCE = ROOT.parent / "shared" / "reference" / "gemma3n" / "E4B-it"
COPIED = ("generation_config.json", "special_tokens_map.json", "processor_config.json", "preprocessor_config.json",
          "chat_template.jinja")
TEXT_PIECES = 262144
MERGES = 490_000  # brings tokenizer.json to about the released 33.4 MB


def _shape(name: str, cfg: dict, extra: int) -> tuple[int, ...]:
    text, audio = cfg["text_config"], cfg["audio_config"]
    h, hd = text["hidden_size"], text["head_dim"]
    nq, nkv = text["num_attention_heads"], text["num_key_value_heads"]
    ffn, pl, layers = text["intermediate_size"], text["hidden_size_per_layer_input"], text["num_hidden_layers"]
    laurel, altup = text["laurel_rank"], text["altup_num_inputs"]
    ah, vocab = audio["hidden_size"], text["vocab_size"]
    vision_h = cfg["vision_config"]["hidden_size"]
    table = {
        "model.language_model.embed_tokens.weight": (vocab + extra, h),
        "model.language_model.embed_tokens_per_layer.weight":
            (text["vocab_size_per_layer_input"] + (vocab + extra - text["vocab_size_per_layer_input"] if extra else 0),
             layers * pl),
        "model.embed_vision.embedding.weight": (cfg["vision_config"]["vocab_size"], vision_h),
        "model.embed_vision.embedding_projection.weight": (h, vision_h),
        "model.embed_audio.embedding.weight": (audio["vocab_size"], ah),
        "model.embed_audio.embedding_projection.weight": (h, ah),
        "model.language_model.per_layer_model_projection.weight": (layers * pl, h),
        "model.language_model.per_layer_projection_norm.weight": (pl,),
    }
    if name in table:
        return table[name]
    if name.startswith("model.language_model."):
        suffix = name.split(".layers.")[-1].split(".", 1)[-1] if ".layers." in name else name
        per_layer = {
            "self_attn.q_proj.weight": (nq * hd, h), "self_attn.k_proj.weight": (nkv * hd, h),
            "self_attn.v_proj.weight": (nkv * hd, h), "self_attn.o_proj.weight": (h, nq * hd),
            "self_attn.q_norm.weight": (hd,), "self_attn.k_norm.weight": (hd,),
            "mlp.gate_proj.weight": (ffn, h), "mlp.up_proj.weight": (ffn, h), "mlp.down_proj.weight": (h, ffn),
            "altup.correction_coefs.weight": (altup, altup), "altup.prediction_coefs.weight": (altup * altup, altup),
            "altup.modality_router.weight": (altup, h), "laurel.linear_left.weight": (laurel, h),
            "laurel.linear_right.weight": (h, laurel), "per_layer_input_gate.weight": (pl, h),
            "per_layer_projection.weight": (h, pl),
        }
        if suffix in per_layer:
            return per_layer[suffix]
        if "altup_projections" in name or "altup_unembed_projections" in name:
            return (h, h)
        return (h,)  # norms, correct_output_scale
    if name.startswith("model.embed_audio.") or name.startswith("model.embed_vision."):
        return (ah,) if "audio" in name else (vision_h,)
    if name.startswith("model.audio_tower."):
        if "norm" in name or "per_dim_scale" in name:
            return (ah,)
        if "ffw_layer_1" in name:
            return (4 * ah, ah)
        if "ffw_layer_2" in name:
            return (ah, 4 * ah)
        if "depthwise" in name:
            return (ah, 1, 5)
        if name.endswith("conv.weight"):
            return (128, 1, 3, 3)
        return (ah, ah)
    # vision tower (mobilenetv5): small plausible shapes
    if name.endswith("conv.weight") or "conv_" in name:
        return (256, 256, 1, 1)
    return (256,)


def _token_string(i: int) -> str:
    letters, n = [], i
    while True:
        n, r = divmod(n, 26)
        letters.append(chr(97 + r))
        if n == 0:
            break
    return "\u2581" + "".join(reversed(letters))


def _write_tokenizer(path: Path, extra: int, n_merges: int) -> dict[int, str]:
    ref = json.loads((REFERENCE / "tokenizer_config.json").read_text())
    decoder = ref["added_tokens_decoder"]
    added = {int(k): v["content"] for k, v in decoder.items()}
    for i in range(extra):
        token_id = 262400 + i
        added[token_id] = f"<extra_token_{i}>"
        decoder[str(token_id)] = {"content": added[token_id], "lstrip": False, "normalized": False, "rstrip": False,
                                  "single_word": False, "special": False}
    (path / "tokenizer_config.json").write_text(json.dumps(ref, indent=2, ensure_ascii=False))
    vocab = {}
    for i in range(262400):
        vocab[added.get(i) or _token_string(i)] = i
    pieces = list(vocab)
    merges = [[pieces[1000 + (i % 200000)], pieces[2000 + (i * 7) % 250000]] for i in range(n_merges)]
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": i < 262400} for i, s in sorted(added.items())],
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious",
                          "invert": False},
        "post_processor": {"type": "TemplateProcessing", "single": [], "pair": [],
                           "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}}},
        "decoder": None,
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    with open(path / "tokenizer.json", "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, indent=2, ensure_ascii=False)
    # tokenizer.model: one SentencePiece piece per text id (the multimodal ids are added tokens)
    with open(path / "tokenizer.model", "wb") as f:
        f.write(b"".join(make_piece(p, 1) for p in pieces[:TEXT_PIECES]))
    if extra:
        (path / "added_tokens.json").write_text(json.dumps({added[262400 + i]: 262400 + i for i in range(extra)}))
    return added


def build_e4b_shaped(path: str | Path, extended_tokens: int = 0, merges: int = MERGES) -> Path:
    """Write the checkpoint to `path` (must not exist). `extended_tokens` > 0 gives the user flow
    'tokenizer.add_tokens + resize_token_embeddings' under transformers 5: ids 262400.. are the new tokens,
    embed_tokens and embed_tokens_per_layer both have 262400 + k rows, vocab_size = vocab_size_per_layer_input.
    `merges` sets the number of BPE merges in tokenizer.json (the default gives the released file size; tests
    pass a small number to build faster)."""
    path = Path(path)
    path.mkdir(parents=True)
    cfg = json.loads((REFERENCE / "config.json").read_text())
    index = json.loads((REFERENCE / "model.safetensors.index.json").read_text())
    k = extended_tokens
    out_cfg = json.loads(json.dumps(cfg))
    if k:
        out_cfg["text_config"]["vocab_size"] = 262400 + k
        out_cfg["text_config"]["vocab_size_per_layer_input"] = 262400 + k
    (path / "config.json").write_text(json.dumps(out_cfg, indent=2))
    for name in COPIED:
        shutil.copyfile(REFERENCE / name, path / name)
    _write_tokenizer(path, k, merges)

    by_shard: dict[str, list[str]] = {}
    for name, shard in index["weight_map"].items():
        by_shard.setdefault(shard, []).append(name)
    total_size = total_params = 0
    for shard, names in sorted(by_shard.items()):
        tensors = []
        for name in sorted(names):
            shape = _shape(name, cfg, k)
            nbytes = prod(shape) * DTYPE_SIZES["BF16"]
            tensors.append((name, "BF16", shape, nbytes))
            total_size += nbytes
            total_params += prod(shape)
        header = encode_header(tensors, {"format": "pt"})
        with open(path / shard, "wb") as f:
            f.write(header)
        os.truncate(path / shard, len(header) + sum(t[3] for t in tensors))
    out_index = {"metadata": {"total_parameters": total_params, "total_size": total_size},
                 "weight_map": index["weight_map"]}
    (path / "model.safetensors.index.json").write_text(json.dumps(out_index, indent=2))
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--extended-tokens", type=int, default=0)
    parser.add_argument("--merges", type=int, default=MERGES)
    args = parser.parse_args()
    print(build_e4b_shaped(args.path, args.extended_tokens, args.merges))

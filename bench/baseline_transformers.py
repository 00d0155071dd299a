"""The transformers baseline of `make bench`: what users do today to add tokens to a Gemma 3n checkpoint.

    python bench/baseline_transformers.py build BASE      # a real, loadable Gemma 3n checkpoint with E4B-sized tables
    python bench/baseline_transformers.py extend BASE OUT [--mean-resizing]

`build` makes a real `Gemma3nForConditionalGeneration` with transformers itself, from the published E4B-it
config.json (tests/fixtures/reference/gemma3n/E4B-it) with the E4B vocabulary tables at their real sizes
(`embed_tokens` 262,400 x 2048, `embed_tokens_per_layer` 262,144 x 8,960 = 35 layers x 256) but smaller layers,
so the whole checkpoint is about 6.5 GB of bfloat16 (random weights):

- text: the real 35 layers, hidden size 2048, head_dim 256, per-layer width 256, layer types, KV sharing (15) and
  activation sparsity; 2 attention heads (real: 8) and an MLP of 512 (real: 16,384);
- audio: the real conformer (hidden 1536) with 1 block (real: 12);
- vision: timm's `test_efficientnet` (width 256) instead of `mobilenetv5_300m_enc`, as the project's tiny models;
- the tokenizer files of the real 262,400-id space (tests/fixtures/tiny.py: tokenizer.json with merges,
  tokenizer.model, tokenizer_config.json, special_tokens_map.json), generation and processor files.

`extend` is the user flow, timed by bench/run.py in a fresh process: `AutoTokenizer.from_pretrained(BASE)`,
`tokenizer.add_tokens(3 tokens)`, `Gemma3nForConditionalGeneration.from_pretrained(BASE)`,
`model.resize_token_embeddings(len(tokenizer), mean_resizing=...)`, `model.save_pretrained(OUT)`,
`tokenizer.save_pretrained(OUT)`. It prints one JSON line: the seconds of each step and the model's dtype. Its output
(plus the base's tokenizer.model and processor files, as tests/fixtures/tiny.py's `extend` copies them) is the
extended checkpoint `vocabfix rewrite` is then timed on: the same job, done the other way.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the checkpoint builders are test fixtures

from fixtures import REFERENCE  # noqa: E402

NEW_TOKENS = ["<tool_call>", "</tool_call>", "zqxj"]
#: Copied from BASE into an extended folder after the timed run (transformers 5 does not write them).
COPIED_AFTER = ("tokenizer.model", "processor_config.json", "preprocessor_config.json", "chat_template.jinja")

TEXT_OVERRIDES = {"num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 512}
AUDIO_OVERRIDES = {"conf_num_hidden_layers": 1}
VISION = {"architecture": "test_efficientnet", "hidden_size": 256}


def config():
    """The E4B-it config with the overrides above (a transformers Gemma3nConfig)."""
    from transformers import Gemma3nConfig

    cfg = json.loads((REFERENCE / "config.json").read_text())
    text = cfg["text_config"]
    text.update(TEXT_OVERRIDES)
    text["intermediate_size"] = [TEXT_OVERRIDES["intermediate_size"]] * text["num_hidden_layers"]
    cfg["audio_config"].update(AUDIO_OVERRIDES)
    cfg["vision_config"].update(VISION)
    cfg["vision_config"].pop("label_names", None)
    cfg["vision_config"].pop("num_classes", None)
    return Gemma3nConfig.from_dict(cfg)


def _fast_normal(original):
    """torch's normal_ for transformers' initialisation, but tensors of more than 16M values get a random block of
    16,384 rows repeated (a normal_ of 3 billion values takes minutes on 2 cores; the rows are still full rank)."""
    import torch

    def normal_(tensor, mean=0.0, std=1.0, generator=None):
        if tensor.numel() < 1 << 24 or tensor.dim() != 2:
            return original(tensor, mean=mean, std=std, generator=generator)
        with torch.no_grad():
            block = (torch.randn(min(16384, tensor.shape[0]), tensor.shape[1], generator=generator) * std + mean)
            block = block.to(tensor.dtype)
            for start in range(0, tensor.shape[0], block.shape[0]):
                part = tensor[start:start + block.shape[0]]
                part.copy_(block[: part.shape[0]])
        return tensor
    return normal_


def build(path: Path) -> Path:
    import torch
    from fixtures import tiny
    from transformers import Gemma3nForConditionalGeneration, initialization

    path.mkdir(parents=True)
    cfg = config()
    torch.manual_seed(0)
    initialization.TORCH_INIT_FUNCTIONS["normal_"] = _fast_normal(initialization.TORCH_INIT_FUNCTIONS["normal_"])
    # built in bfloat16 directly (a float32 model first would need twice the memory), without torch's default
    # initialisation (minutes of normal_ and uniform_ on 2 cores), then initialised once by transformers
    with initialization.no_init_weights():
        model = Gemma3nForConditionalGeneration._from_config(cfg, dtype=torch.bfloat16)
    model.init_weights()
    embed, per_layer = model.get_input_embeddings().weight, model.get_per_layer_input_embeddings().weight
    assert tuple(embed.shape) == (262400, 2048) and tuple(per_layer.shape) == (262144, 35 * 256), (
        embed.shape, per_layer.shape)
    model.save_pretrained(path)
    del model
    tiny.write_tokenizer_files(path, "real")
    tiny._write_processor_files(path)
    (path / "generation_config.json").write_text(json.dumps(tiny._generation_config(tiny.get_id_space("real")),
                                                            indent=2) + "\n")
    return path


def extend(base: Path, out: Path, mean_resizing: bool) -> dict:
    """The user flow; the seconds of each step."""
    t0 = time.perf_counter()
    import torch  # noqa: F401
    from transformers import AutoTokenizer, Gemma3nForConditionalGeneration

    t1 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(base)
    assert tokenizer.add_tokens(NEW_TOKENS) == len(NEW_TOKENS)
    model = Gemma3nForConditionalGeneration.from_pretrained(base)
    t2 = time.perf_counter()
    model.resize_token_embeddings(len(tokenizer), mean_resizing=mean_resizing)
    t3 = time.perf_counter()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    t4 = time.perf_counter()
    return {"dtype": str(model.dtype).removeprefix("torch."), "new_vocab_size": len(tokenizer),
            "import_s": t1 - t0, "load_s": t2 - t1, "resize_s": t3 - t2, "save_s": t4 - t3}


def complete(base: Path, out: Path) -> None:
    """Copy the files transformers 5 does not write (tokenizer.model, processor files) from BASE, as users do."""
    for name in COPIED_AFTER:
        if (base / name).exists() and not (out / name).exists():
            shutil.copyfile(base / name, out / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("path", type=Path)
    e = sub.add_parser("extend")
    e.add_argument("base", type=Path)
    e.add_argument("out", type=Path)
    e.add_argument("--mean-resizing", action="store_true", help="transformers' default (True); else False")
    args = parser.parse_args()
    if args.command == "build":
        print(build(args.path))
    else:
        print(json.dumps(extend(args.base, args.out, args.mean_resizing)))


if __name__ == "__main__":
    main()

"""`make demo`: the bug and the fix, end to end, on a tiny real Gemma 3n built on the spot.

1. build a tiny base checkpoint and extend it the way users do (add tokens, resize, save);
2. show stock transformers failing on a new token;
3. run `vocabfix rewrite`;
4. load the output with stock `from_pretrained`, run the new tokens, and compare logits with the base model;
5. the notebook way: load the base, add tokens the transformers way, `fix_model` in memory, train a step.

`python examples/demo.py [out-dir]` (default ./demo-out, as `make demo` runs it). The tiny Gemma 3n builder is a
test fixture (tests/fixtures/tiny.py), not part of the package.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # for fixtures.tiny

console = Console(highlight=False)
NEW_TOKENS = ["<tool_call>", "</tool_call>", "vocabfix"]


def main(root: str = "demo-out") -> int:
    import torch
    from transformers import AutoTokenizer, Gemma3nForConditionalGeneration
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    from fixtures.tiny import build_demo

    root_path = Path(root)
    shutil.rmtree(root_path, ignore_errors=True)
    console.rule("1. a tiny Gemma 3n, extended the way users extend it")
    base, extended = build_demo(root_path, NEW_TOKENS)
    tok = AutoTokenizer.from_pretrained(extended)
    new_ids = tok.convert_tokens_to_ids(NEW_TOKENS)
    console.print(f"base: {base}   extended: {extended}   new tokens {NEW_TOKENS} got ids {new_ids}")

    console.rule("2. stock transformers on the extended checkpoint")
    model = Gemma3nForConditionalGeneration.from_pretrained(extended).eval()
    text = "<bos>hello " + " ".join(NEW_TOKENS)
    try:
        with torch.no_grad():
            model(input_ids=tok(text, return_tensors="pt", add_special_tokens=False).input_ids)
        console.print("[red]unexpected: the forward pass ran[/]")
        return 1
    except IndexError as e:
        console.print(f"[red]IndexError:[/] {e}  (the new ids are routed to the 128-row audio table)")

    console.rule("3. vocabfix rewrite")
    fixed = root_path / "fixed"
    cmd = [sys.executable, "-m", "gemma3n_vocabfix.cli", "rewrite", str(extended), str(fixed)]
    console.print("$ vocabfix rewrite " + " ".join(cmd[4:]))
    if subprocess.call(cmd) != 0:
        return 1

    console.rule("4. stock transformers on the rewritten checkpoint")
    fixed_model, info = Gemma3nForConditionalGeneration.from_pretrained(fixed, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    console.print(f"loaded with no missing/unexpected/mismatched keys: {not problems}")
    fixed_tok = AutoTokenizer.from_pretrained(fixed)
    ids = fixed_tok(text, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        logits = fixed_model.eval()(input_ids=ids).logits
    console.print(f"forward pass over {ids.tolist()[0]} ran: logits {tuple(logits.shape)}")
    config = fixed_model.config
    console.print(f"new tokens now have ids {fixed_tok.convert_tokens_to_ids(NEW_TOKENS)}; "
                  f"image_token_id {config.image_token_id}, audio_token_id {config.audio_token_id}")

    base_model = Gemma3nForConditionalGeneration.from_pretrained(base).eval()
    base_tok = AutoTokenizer.from_pretrained(base)
    old_text = "<bos>hello world<start_of_image><end_of_image>"
    old_ids = base_tok(old_text, return_tensors="pt", add_special_tokens=False).input_ids
    new_ids = fixed_tok(old_text, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        want = base_model(input_ids=old_ids).logits[0, :, :]
        got = fixed_model(input_ids=new_ids).logits[0, :, :]
    record = json.loads((fixed / "vocabfix.json").read_text(encoding="utf-8"))
    cols = [_map(record["id_map"], i) for i in range(want.shape[-1])]
    diff = (got[:, cols] - want).abs().max().item()
    console.print(f"logits over tokens that existed before the extension, vs the base model: max |diff| = {diff:.2e}")
    ok = diff < 1e-4 and not problems
    return 0 if ok and in_memory(base) else 1


def in_memory(base: Path) -> bool:
    """Step 5: no checkpoint is written; the model is fixed where it is, then trains with the new tokens."""
    import torch
    from transformers import AutoProcessor, Gemma3nForConditionalGeneration

    from gemma3n_vocabfix import fix_model

    console.rule("5. in a notebook: fix_model on the loaded model")
    model = Gemma3nForConditionalGeneration.from_pretrained(base)
    processor = AutoProcessor.from_pretrained(base)
    processor.tokenizer.add_tokens(NEW_TOKENS)
    model.resize_token_embeddings(len(processor.tokenizer))
    console.print("$ result = fix_model(model, processor); processor = result.tokenizer")
    result = fix_model(model, processor)
    processor = result.tokenizer
    batch = processor.tokenizer(["<bos>hello " + " ".join(NEW_TOKENS)], return_tensors="pt").input_ids
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    console.print(f"new tokens now have ids {result.token_ids}; a training step on them ran: loss {loss.item():.3f}, "
                  f"gradient on their embedding rows "
                  f"{model.get_input_embeddings().weight.grad[result.token_ids].abs().sum().item():.3e}")
    return bool(torch.isfinite(loss))


def _map(id_map: list[dict], old: int) -> int:
    r = next(r for r in id_map if r["old_start"] <= old < r["old_stop"])
    return r["new_start"] + old - r["old_start"]


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

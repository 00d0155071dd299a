"""`verify --load`: load OUT with stock transformers and run it on the ids a rewrite is about.

The ids: every appended token's new id (the record's id map applied to `layout_before.appended`) and every
multimodal special id config.json names (boi/eoi/image/boa/eoa/audio_token_id). They go through
`Gemma3nForConditionalGeneration.forward` in batches; the pass proves the ids embed without the IndexError a stock
runtime raises for a broken layout, and the logits are checked finite. Needs the torch extra (imported here only).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UsageError

SPECIAL_ID_KEYS = ("boi_token_id", "eoi_token_id", "image_token_id", "boa_token_id", "eoa_token_id",
                   "audio_token_id")
BATCH = 256  # ids per forward pass: one sequence each, so memory stays that of a short prompt


def ids_to_run(config: dict, appended_new_ids: list[int]) -> list[int]:
    """The new ids of the appended tokens, then the multimodal special ids of `config` (each once, in order)."""
    special = [config.get(k) for k in SPECIAL_ID_KEYS]
    ids = [*appended_new_ids, *(i for i in special if isinstance(i, int) and not isinstance(i, bool))]
    return list(dict.fromkeys(ids))


def forward_check(out: Path, ids: list[int]) -> dict:
    """Load `out` with `Gemma3nForConditionalGeneration.from_pretrained` and run `ids` through it.

    Returns {"ok", "ids" (count), "first_ids", "seconds", "problem"}: ok is False, with the exception or the
    non-finite logits named in `problem`, when loading or the forward pass fails. Raises UsageError when torch or
    transformers is not installed.
    """
    try:
        import torch
        from transformers import Gemma3nForConditionalGeneration
    except ImportError as e:
        raise UsageError(f"--load needs torch and transformers ({e.name or e} is not installed)",
                         hint="pip install 'gemma3n-vocabfix[torch]'") from None
    started = time.monotonic()
    result = {"ok": False, "ids": len(ids), "first_ids": ids[:20], "seconds": 0.0, "problem": None}
    try:
        with _quiet_transformers():
            model, info = Gemma3nForConditionalGeneration.from_pretrained(out, dtype="auto", output_loading_info=True,
                                                                          ignore_mismatched_sizes=True)
        incomplete = [k for kind in ("missing_keys", "mismatched_keys") for k in info.get(kind) or ()]
        if incomplete:
            result["problem"] = (f"{len(incomplete)} weights missing from OUT or of the wrong shape, which "
                                 f"transformers initialises at random (e.g. {_key(incomplete[0])})")
            return result
        model.eval()
        with torch.no_grad():
            for first in range(0, len(ids), BATCH):
                batch = torch.tensor([ids[first:first + BATCH]], dtype=torch.long)
                logits = model(input_ids=batch).logits
                if not torch.isfinite(logits).all():
                    result["problem"] = f"non-finite logits for ids {ids[first:first + BATCH][:10]}..."
                    break
            else:
                result["ok"] = True
    except Exception as e:  # the point of --load: a load or forward failure is the finding, named in one line
        text = str(e).strip().splitlines()
        result["problem"] = f"{type(e).__name__}: {text[0] if text else ''}".strip()
    finally:
        result["seconds"] = round(time.monotonic() - started, 3)
    return result


def _key(entry: object) -> str:
    return str(entry[0] if isinstance(entry, tuple) else entry)


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No progress bar or load report on the terminal while loading; transformers' settings restored after."""
    from transformers.utils import logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()

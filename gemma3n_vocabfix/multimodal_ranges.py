"""Which ids are the vision tokens and which the audio tokens, by evidence that does not depend on the offsets.

A config whose `vision_config.vocab_offset` and `audio_config.vocab_offset` are swapped exists in the wild (a
published recipe for the Gemma 3n IndexError computes the audio offset before the vision one). Trusting such a
config would renumber `<end_of_image>` into the audio range. The evidence, in order of weight:
- the tokenizer's strings: `<end_of_image>`, `<image_soft_token>`, `<unused_imageN>` are vision tokens,
  `<end_of_audio>`, `<audio_soft_token>`, `<unused_audioN>` audio tokens (the released tokenizer,
  docs/gemma3n-vocab-layout.md);
- config.json's `image_token_id` and `audio_token_id`;
- the embedder tables' widths: `embed_vision` is `vision_config.hidden_size` wide, `embed_audio`
  `audio_config.hidden_size` (when the two sizes differ, as in the released E2B / E4B: 2048 and 1536).

Only the order of the two ranges is in question: they stay where the config puts them as a pair.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .tokenizer_files import TokenizerIds

VISION_TOKEN = re.compile(r"<end_of_image>|<image_soft_token>|<unused_image\d+>")
AUDIO_TOKEN = re.compile(r"<end_of_audio>|<audio_soft_token>|<unused_audio\d+>")


@dataclass(frozen=True)
class MultimodalIds:
    vision_start: int
    audio_start: int
    conflict: str | None = None  # the evidence disagrees with itself: nothing can be trusted


def _inside(ids: list[int], start: int, size: int) -> bool:
    return all(start <= i < start + size for i in ids)


def _named(tokenizer: TokenizerIds, lo: int, hi: int, pattern: re.Pattern) -> list[int]:
    """The ids in [lo, hi) whose token matches `pattern`: by id when the range is short (the usual 256 multimodal
    ids), else among the ids the tokenizer names (a bogus offset of 10**30 must not be walked)."""
    if hi - lo <= len(tokenizer.added) + len(tokenizer.vocab):
        candidates = range(lo, hi)
    else:
        candidates = sorted(i for i in {*tokenizer.added, *tokenizer.vocab} if lo <= i < hi)
    return [i for i in candidates if (t := tokenizer.token(i)) is not None and pattern.fullmatch(t)]


def _config_id(config: dict, key: str) -> int | None:
    value = config.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def locate_multimodal(config: dict, tokenizer: TokenizerIds, widths: dict[str, int], vision: tuple[int, int],
                      audio: tuple[int, int]) -> MultimodalIds:
    """Where the vision and audio ranges are: as configured, or in the other order when the evidence says so.

    `vision` and `audio` are the configured (offset, size); `widths` the row widths of the `embed_vision` and
    `embed_audio` tables ("vision", "audio"), when present. Returns the starts, and `conflict` when the evidence
    contradicts itself (then the starts are the configured ones).
    """
    (vo, vs), (ao, as_) = vision, audio
    lo = min(vo, ao)
    hi = max(vo + vs, ao + as_)
    vision_named = _named(tokenizer, lo, hi, VISION_TOKEN)
    audio_named = _named(tokenizer, lo, hi, AUDIO_TOKEN)
    ids = {"vision": _config_id(config, "image_token_id"), "audio": _config_id(config, "audio_token_id")}
    arrangements = {"vision first": (lo, lo + vs), "audio first": (lo + as_, lo)}

    def fits(starts: tuple[int, int], vis: list[int], aud: list[int]) -> bool:
        return _inside(vis, starts[0], vs) and _inside(aud, starts[1], as_)

    if not (vision_named or audio_named) or fits((vo, ao), vision_named, audio_named):
        return MultimodalIds(vo, ao)  # no string evidence against the config (a wrong single id is VF008's)
    candidates = [starts for starts in arrangements.values() if fits(starts, vision_named, audio_named)]
    if len(candidates) != 1:
        return MultimodalIds(vo, ao, f"the tokenizer's image tokens (ids {_few(vision_named)}) and audio tokens "
                             f"(ids {_few(audio_named)}) fit neither order of the vision and audio ranges "
                             f"[{lo:,}, {hi:,})")
    config_ids = ([ids["vision"]] if ids["vision"] is not None else [], [ids["audio"]] if ids["audio"] is not None
                  else [])
    if any(config_ids) and fits((vo, ao), *config_ids) and not fits(candidates[0], *config_ids):
        return MultimodalIds(vo, ao, f"the tokenizer puts the image tokens at ids {_few(vision_named)} and the audio "
                             f"tokens at {_few(audio_named)}, but config.json's image_token_id {ids['vision']} and "
                             f"audio_token_id {ids['audio']} agree with its offsets")
    swapped_tables = _tables_swapped(config, widths)
    if swapped_tables:
        return MultimodalIds(vo, ao, swapped_tables)
    return MultimodalIds(*candidates[0])


def _tables_swapped(config: dict, widths: dict[str, int]) -> str | None:
    hidden = {kind: (config.get(f"{kind}_config") or {}).get("hidden_size") for kind in ("vision", "audio")}
    if None in hidden.values() or hidden["vision"] == hidden["audio"] or set(widths) != {"vision", "audio"}:
        return None
    if widths["vision"] == hidden["audio"] and widths["audio"] == hidden["vision"]:
        return (f"embed_vision is {widths['vision']} wide, audio_config.hidden_size, and embed_audio "
                f"{widths['audio']}, vision_config.hidden_size: the embedder tables are swapped")
    return None


def _few(ids: list[int]) -> str:
    if not ids:
        return "none"
    return ", ".join(f"{i:,}" for i in ids[:3]) + (", ..." if len(ids) > 3 else "")

"""Which ids are the vision tokens and which the audio tokens, by evidence that does not depend on the offsets.

A config whose `vision_config.vocab_offset` and `audio_config.vocab_offset` are swapped exists in the wild (a
published recipe for the Gemma 3n IndexError computes the audio offset before the vision one), and so do offsets
edited by hand. Trusting such a config would renumber `<end_of_image>` into the audio range. The evidence:
- the tokenizer's strings (tokenizer.json, tokenizer_config.json, added_tokens.json, else tokenizer.model's pieces).
  A released range is `<end_of_image>`, `<image_soft_token>`, `<unused_image0>`... from its first id (audio alike,
  docs/gemma3n-vocab-layout.md), so each such token says where its range starts;
- config.json's `image_token_id` and `audio_token_id`: they decide when the tokenizer names no multimodal token, and
  they veto a correction when they agree with the config's offsets against the strings;
- the embedder tables' widths (`embed_vision` is `vision_config.hidden_size` wide, `embed_audio`
  `audio_config.hidden_size`, when the two differ): tables that are swapped themselves veto any correction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .tokenizer_files import TokenizerIds

# the position of each token inside its range, as released
VISION_TOKEN = re.compile(r"<end_of_image>|<image_soft_token>|<unused_image(\d+)>")
AUDIO_TOKEN = re.compile(r"<end_of_audio>|<audio_soft_token>|<unused_audio(\d+)>")
FIRST, SOFT = {"<end_of_image>", "<end_of_audio>"}, {"<image_soft_token>", "<audio_soft_token>"}


@dataclass(frozen=True)
class MultimodalIds:
    vision_start: int
    audio_start: int
    conflict: str | None = None  # the evidence disagrees with itself: the starts are the configured ones


def _named(tokenizer: TokenizerIds, lo: int, hi: int, pattern: re.Pattern) -> dict[int, str]:
    """The ids in [lo, hi) whose token matches `pattern`: by id when the range is no longer than the vocabulary,
    else among the ids the tokenizer names (a bogus offset of 10**30 must not be walked)."""
    if hi - lo <= max(tokenizer.size, 1 << 16):
        candidates = range(lo, hi)
    else:
        pieces = tokenizer.file_sizes.get("tokenizer.model", 0)
        named_ids = {*tokenizer.added, *tokenizer.vocab, *range(min(lo, pieces), min(hi, pieces))}
        candidates = sorted(i for i in named_ids if lo <= i < hi)
    return {i: t for i in candidates if (t := tokenizer.token(i)) is not None and pattern.fullmatch(t)}


def _implied_start(named: dict[int, str], pattern: re.Pattern) -> int | None | str:
    """Where the range starts according to each named token; a string when they disagree."""
    starts = set()
    for token_id, token in named.items():
        if token in FIRST:
            starts.add(token_id)
        elif token in SOFT:
            starts.add(token_id - 1)
        else:
            starts.add(token_id - 2 - int(pattern.fullmatch(token).group(1)))
    if len(starts) > 1:
        return "disagree"
    return starts.pop() if starts else None


def _config_id(config: dict, key: str) -> int | None:
    value = config.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def locate_multimodal(config: dict, tokenizer: TokenizerIds, widths: dict[str, int], vision: tuple[int, int],
                      audio: tuple[int, int]) -> MultimodalIds:
    """Where the vision and audio ranges start: as configured, or where the evidence puts them.

    `vision` and `audio` are the configured (offset, size); `widths` the row widths of the `embed_vision` and
    `embed_audio` tables ("vision", "audio"), when present. Returns the starts, and `conflict` (a sentence) when
    the evidence contradicts itself; the starts are then the configured ones.
    """
    (vo, vs), (ao, as_) = vision, audio
    lo, hi = min(vo, ao), max(vo + vs, ao + as_)
    image_id, audio_id = _config_id(config, "image_token_id"), _config_id(config, "audio_token_id")

    def holds(starts: tuple[int, int], vis, aud) -> bool:
        return all(starts[0] <= i < starts[0] + vs for i in vis) and all(starts[1] <= i < starts[1] + as_ for i in aud)

    config_ids = ([image_id] if image_id is not None else [], [audio_id] if audio_id is not None else [])
    vis, aud = _named(tokenizer, lo, hi, VISION_TOKEN), _named(tokenizer, lo, hi, AUDIO_TOKEN)
    if holds((vo, ao), vis, aud) and (vis or aud):
        return MultimodalIds(vo, ao)
    if not (vis or aud):
        # no multimodal strings where the config looks: the config's image / audio token ids decide
        swapped = (lo + as_, lo) if vo <= ao else (lo, lo + vs)
        if all(config_ids) and not holds((vo, ao), *config_ids) and holds(swapped, *config_ids):
            return MultimodalIds(*swapped)
    # the strings contradict the config, or are elsewhere: look for them in the whole vocabulary
    everywhere = max(tokenizer.size, hi)
    vis, aud = _named(tokenizer, 0, everywhere, VISION_TOKEN), _named(tokenizer, 0, everywhere, AUDIO_TOKEN)
    if not (vis or aud):
        return MultimodalIds(vo, ao)
    starts = _starts_from_names(vis, aud, (vo, vs), (ao, as_))
    if isinstance(starts, str):
        return MultimodalIds(vo, ao, starts)
    if any(config_ids) and holds((vo, ao), *config_ids) and not holds(starts, *config_ids):
        return MultimodalIds(vo, ao, f"the tokenizer puts the image tokens at ids {_few(vis)} and the audio tokens at "
                             f"{_few(aud)}, but config.json's image_token_id {image_id} and audio_token_id "
                             f"{audio_id} agree with its offsets")
    swapped_tables = _tables_swapped(config, widths)
    if swapped_tables and starts != (vo, ao):
        return MultimodalIds(vo, ao, swapped_tables)
    return MultimodalIds(*starts)


def _starts_from_names(vis: dict[int, str], aud: dict[int, str], vision: tuple[int, int],
                       audio: tuple[int, int]) -> tuple[int, int] | str:
    """The two starts the tokenizer's names imply, or why they cannot be told."""
    (vo, vs), (ao, as_) = vision, audio
    v, a = _implied_start(vis, VISION_TOKEN), _implied_start(aud, AUDIO_TOKEN)
    if "disagree" in (v, a):
        return (f"the tokenizer's image tokens (ids {_few(vis)}) and audio tokens (ids {_few(aud)}) are not laid out "
                "as in a released checkpoint")
    lo = min(vo, ao)
    if v is None:  # only audio is named: vision takes the other slot of the configured pair
        v = lo + as_ if a == lo else lo
    if a is None:
        a = lo + vs if v == lo else lo
    if v < 0 or a < 0 or not (v + vs <= a or a + as_ <= v):
        return f"the tokenizer's names put the vision ids at {v:,} and the audio ids at {a:,}, which overlap"
    if not (all(v <= i < v + vs for i in vis) and all(a <= i < a + as_ for i in aud)):
        return (f"the tokenizer's image tokens (ids {_few(vis)}) and audio tokens (ids {_few(aud)}) do not fit "
                f"ranges of {vs} and {as_} ids")
    return v, a


def _tables_swapped(config: dict, widths: dict[str, int]) -> str | None:
    hidden = {kind: (config.get(f"{kind}_config") or {}).get("hidden_size") for kind in ("vision", "audio")}
    if None in hidden.values() or hidden["vision"] == hidden["audio"] or set(widths) != {"vision", "audio"}:
        return None
    if widths["vision"] == hidden["audio"] and widths["audio"] == hidden["vision"]:
        return (f"embed_vision is {widths['vision']} wide, audio_config.hidden_size, and embed_audio "
                f"{widths['audio']}, vision_config.hidden_size: the embedder tables are swapped")
    return None


def _few(ids) -> str:
    ids = sorted(ids)
    if not ids:
        return "none"
    return ", ".join(f"{i:,}" for i in ids[:3]) + (", ..." if len(ids) > 3 else "")

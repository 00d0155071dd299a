"""The special ids of config.json and generation_config.json against the token strings the tokenizer files give.

The processor inserts image and audio soft tokens by the tokenizer's `image_token` / `audio_token` strings, while
`get_placeholder_mask` finds them by `config.image_token_id` / `config.audio_token_id` (transformers 5.24
modeling_gemma3n.py; docs/gemma3n-vocab-layout.md): the two must name the same token.
"""

from __future__ import annotations

from dataclasses import dataclass

from .checkpoint import Checkpoint
from .tokenizer_files import TokenizerIds

# (config key, tokenizer attribute naming the same token, default string of the released checkpoints)
SPECIAL_TOKENS = (
    ("image_token_id", "image_token", "<image_soft_token>"),
    ("audio_token_id", "audio_token", "<audio_soft_token>"),
    ("boi_token_id", "boi_token", "<start_of_image>"),
    ("eoi_token_id", "eoi_token", "<end_of_image>"),
    ("boa_token_id", "boa_token", "<start_of_audio>"),
    ("eoa_token_id", "eoa_token", "<end_of_audio>"),
    ("bos_token_id", "bos_token", "<bos>"),
    ("eos_token_id", "eos_token", "<eos>"),
    ("pad_token_id", "pad_token", "<pad>"),
)
GENERATION_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")


@dataclass(frozen=True)
class SpecialId:
    key: str
    config: object  # value in config.json (None when absent)
    generation: object  # value in generation_config.json
    tokenizer_key: str
    expected: str | None  # the string the tokenizer files give for it
    expected_id: int | None  # the tokenizer's id of that string
    tokens: tuple[str | None, ...]  # what the tokenizer names the config's id(s)
    agrees: bool


def special_strings(ckpt: Checkpoint) -> dict[str, str]:
    """The token strings the tokenizer files give for bos/eos/pad/image/audio/...: what the processor uses."""
    out: dict[str, str] = {}
    sources = [ckpt.tokenizer_config or {}]
    for container in ("extra_special_tokens", "model_specific_special_tokens"):
        value = (ckpt.tokenizer_config or {}).get(container)
        if isinstance(value, dict):
            sources.append(value)
    sources.append(ckpt.special_tokens_map or {})
    for _, attr, _ in SPECIAL_TOKENS:
        for src in sources:
            value = src.get(attr)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                out[attr] = value
                break
    return out


def config_value(ckpt: Checkpoint, key: str) -> object:
    return ckpt.config.get(key, ckpt.text_config.get(key))


def special_ids(ckpt: Checkpoint, tokenizer: TokenizerIds) -> list[SpecialId]:
    """Each special id the configs set, with what the tokenizer names it and whether the two agree."""
    strings = special_strings(ckpt)
    gen = ckpt.generation_config or {}
    out = []
    for key, attr, default in SPECIAL_TOKENS:
        value, gen_value = config_value(ckpt, key), gen.get(key)
        if value is None and gen_value is None:
            continue
        expected = strings.get(attr, default if key not in GENERATION_KEYS else None)
        expected_id = tokenizer.id_of(expected) if expected is not None else None
        ids = token_ids(value) + token_ids(gen_value)
        tokens = tuple(tokenizer.token(i) for i in dict.fromkeys(ids))
        if not all(is_token_ids(v) for v in (value, gen_value) if v is not None):
            agrees = False  # "301", 3.0, true: no id equals it, whatever the tokenizer says
        elif key == "eos_token_id":
            agrees = expected_id is None or all(expected_id in token_ids(v) for v in (value, gen_value)
                                                if v is not None)
        else:
            agrees = expected is None or all(_names(tokenizer, i, expected) for i in ids)
        out.append(SpecialId(key, value, gen_value, attr, expected, expected_id, tokens, agrees))
    return out


def _names(tokenizer: TokenizerIds, token_id: int, expected: str) -> bool:
    """Whether the tokenizer names `token_id` `expected` (an id only tokenizer.model knows counts as agreeing)."""
    token = tokenizer.token(token_id)
    if token is None:
        return 0 <= token_id < tokenizer.size and not tokenizer.vocab
    return token == expected


def is_token_ids(value: object) -> bool:
    """An int, or a non-empty list of ints: what transformers can compare input ids with (no bool, str, float)."""
    ids = token_ids(value)
    return bool(ids) and (not isinstance(value, list) or len(ids) == len(value))


def token_ids(value: object) -> list[int]:
    """The ids in a config value: an int, or a list of ints (eos_token_id may be either)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
    return []

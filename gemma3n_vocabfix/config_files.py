"""Rewrite config.json and generation_config.json in place: only the layout fields and token ids change.

Loading and re-saving through transformers' config classes would drop and add keys that older
transformers, vLLM and llama.cpp still read, so the JSON is edited as plain data, key order kept.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import LayoutError
from .layout import IdRanges, Layout

IdFn = Callable[[int], int]
ID_LIST_KEYS = ("suppress_tokens", "begin_suppress_tokens", "bad_words_ids", "force_words_ids")


@dataclass(frozen=True)
class FieldChange:
    file: str
    key: str  # dotted path, e.g. "text_config.vocab_size"
    old: Any
    new: Any


def holds_token_ids(key: str) -> bool:
    return key.endswith("_token_id") or key.endswith("_token_ids") or key in ID_LIST_KEYS


def _map_ids(value: Any, new_id: IdFn) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value < 0:
            return value
        mapped = new_id(value)
        if mapped is None:
            raise LayoutError(f"token id {value} is named in the config but has no id after the rewrite")
        return mapped
    if isinstance(value, list):
        return [_map_ids(v, new_id) for v in value]
    return value


def _map_forced_decoder_ids(value: Any, new_id: IdFn) -> Any:
    """[[position, id], ...]: only the ids move."""
    if not isinstance(value, list):
        return value
    return [[pair[0], _map_ids(pair[1], new_id)] if isinstance(pair, list) and len(pair) == 2 else pair
            for pair in value]


def _map_sequence_bias(value: Any, new_id: IdFn) -> Any:
    """{"(640, 641)": -2.0, ...} as GenerationConfig saves it, or [[[640, 641], -2.0], ...]: the biases stay."""
    if isinstance(value, dict):
        def key_ids(m: re.Match) -> str:
            return str(_map_ids(int(m.group()), new_id))
        return {re.sub(r"-?\d+", key_ids, key): bias for key, bias in value.items()}
    if isinstance(value, list):
        return [[_map_ids(entry[0], new_id), *entry[1:]] if isinstance(entry, list) and entry else entry
                for entry in value]
    return value


ID_MAPPERS = {"forced_decoder_ids": _map_forced_decoder_ids, "sequence_bias": _map_sequence_bias}


def _remap_token_ids(node: dict, new_id: IdFn, file: str, prefix: str, changes: list[FieldChange]) -> None:
    for key, value in node.items():
        path = f"{prefix}{key}"
        mapper = ID_MAPPERS.get(key) or (_map_ids if holds_token_ids(key) else None)
        if mapper is None and isinstance(value, dict):
            _remap_token_ids(value, new_id, file, path + ".", changes)
        elif mapper is not None:
            mapped = mapper(value, new_id)
            if mapped != value:
                node[key] = mapped
                changes.append(FieldChange(file, path, value, mapped))


def _set(node: dict, path: str, value: int, file: str, changes: list[FieldChange]) -> None:
    *parents, key = path.split(".")
    for p in parents:
        node = node[p]
    if node.get(key) != value:
        changes.append(FieldChange(file, path, node.get(key), value))
        node[key] = value


def layout_fields(after: IdRanges) -> dict[str, int]:
    """The config.json fields that declare a layout (dotted key -> value), for the id ranges `after`."""
    return {"text_config.vocab_size": after.vocab_size,
            "text_config.vocab_size_per_layer_input": after.vocab_size_per_layer_input,
            "vision_config.vocab_offset": after.vision[0],
            "audio_config.vocab_offset": after.audio[0]}


def rewrite_config(config: dict, layout: Layout) -> tuple[dict, list[FieldChange]]:
    """config.json for the consistent layout (see `relayout_config`)."""
    return relayout_config(config, layout.id_map, layout.after)


def relayout_config(config: dict, new_id: IdFn, after: IdRanges) -> tuple[dict, list[FieldChange]]:
    """config.json with every token id mapped through `new_id` and the layout fields (`layout_fields`) set to the
    ranges `after` (also a top-level vocab_size, which a few re-serialised configs repeat); every other key and
    value kept, in order. Returns the new config and each field changed. `verify` calls it with the id map and
    ranges a rewrite recorded."""
    out, changes = copy.deepcopy(config), []
    _remap_token_ids(out, new_id, "config.json", "", changes)
    for key, value in layout_fields(after).items():
        _set(out, key, value, "config.json", changes)
    if isinstance(out.get("vocab_size"), int):
        _set(out, "vocab_size", after.vocab_size, "config.json", changes)
    return out, changes


def rewrite_generation_config(config: dict, new_id: IdFn) -> tuple[dict, list[FieldChange]]:
    """generation_config.json with every token id (bos/eos/pad, suppress lists, sequence_bias...) mapped."""
    out, changes = copy.deepcopy(config), []
    _remap_token_ids(out, new_id, "generation_config.json", "", changes)
    return out, changes


def token_ids_named(config: dict) -> set[int]:
    """Every token id the config names, in the keys the rewrite maps."""
    seen: set[int] = set()

    def record(token_id: int) -> int:
        seen.add(token_id)
        return token_id
    _remap_token_ids(copy.deepcopy(config), record, "", "", [])
    return seen


def dump_json(data: dict) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")

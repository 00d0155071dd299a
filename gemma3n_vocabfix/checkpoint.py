"""Read a checkpoint folder: configs, tokenizer files and safetensors headers. No tensor bytes are read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CheckpointError, NotGemma3nError
from .safetensors_header import ShardHeader, TensorInfo, read_header

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
JSON_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "added_tokens.json", "special_tokens_map.json")
SENTENCEPIECE_FILE = "tokenizer.model"
RECORD_NAME = "vocabfix.json"


@dataclass
class Weights:
    """The safetensors files of a checkpoint and the tensors they hold."""

    shards: list[ShardHeader]
    index: dict | None  # parsed model.safetensors.index.json, when the checkpoint is sharded
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)  # names found in more than one shard
    missing_shards: list[str] = field(default_factory=list)  # named by the index, absent from the folder
    listed_not_found: list[str] = field(default_factory=list)  # in the index's weight_map, in no shard header
    found_not_listed: list[str] = field(default_factory=list)  # in a shard header, not in the weight_map
    misplaced: list[str] = field(default_factory=list)  # listed under another shard than the one holding it

    def problems(self) -> list[str]:
        """One sentence per disagreement between the index and the shard headers."""
        out = []
        for label, names in (("shard named by the index is missing", self.missing_shards),
                             ("tensor listed in the index but in no shard", self.listed_not_found),
                             ("tensor in a shard but not listed in the index", self.found_not_listed),
                             ("tensor listed under the wrong shard", self.misplaced),
                             ("tensor stored in more than one shard", self.duplicates)):
            if names:
                more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
                out.append(f"{label}: {names[0]}{more}")
        return out

    def find(self, suffix: str) -> TensorInfo | None:
        matches = [t for name, t in self.tensors.items() if name == suffix or name.endswith("." + suffix)]
        return matches[0] if len(matches) == 1 else None


@dataclass
class Checkpoint:
    root: Path
    config: dict
    generation_config: dict | None
    tokenizer_json: dict | None
    tokenizer_config: dict | None
    added_tokens: dict | None  # added_tokens.json
    special_tokens_map: dict | None
    sentencepiece_path: Path | None
    weights: Weights
    files: list[str]  # every regular file, relative to root, '/'-separated

    @property
    def text_config(self) -> dict:
        return self.config.get("text_config") or {}


def read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _optional_json(root: Path, name: str) -> dict | None:
    path = root / name
    return read_json(path) if path.is_file() else None


def list_files(root: Path) -> list[str]:
    """Every file below root (following HF cache symlinks), skipping VCS and cache folders."""
    skip = {".git", ".cache", "__pycache__"}
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if skip.intersection(rel.parts) or not path.is_file():
            continue
        out.append(rel.as_posix())
    return out


def read_checkpoint(root: str | Path) -> Checkpoint:
    root = Path(root)
    if not root.is_dir():
        raise CheckpointError(f"{root}: not a folder", hint="pass a checkpoint folder as saved by save_pretrained")
    if not (root / "config.json").is_file():
        raise CheckpointError(f"{root}: no config.json", hint="pass a checkpoint folder as saved by save_pretrained")
    config = read_json(root / "config.json")
    check_gemma3n(config, root / "config.json")
    sp = root / SENTENCEPIECE_FILE
    tokenizer = {name: _optional_json(root, name) for name in JSON_TOKENIZER_FILES}
    if tokenizer["tokenizer.json"] is None and tokenizer["tokenizer_config.json"] is None and not sp.is_file():
        raise CheckpointError(f"{root}: no tokenizer files (tokenizer.json, tokenizer_config.json, tokenizer.model)",
                              hint="save the tokenizer next to the model: tokenizer.save_pretrained(folder)")
    return Checkpoint(
        root=root,
        config=config,
        generation_config=_optional_json(root, "generation_config.json"),
        tokenizer_json=tokenizer["tokenizer.json"],
        tokenizer_config=tokenizer["tokenizer_config.json"],
        added_tokens=tokenizer["added_tokens.json"],
        special_tokens_map=tokenizer["special_tokens_map.json"],
        sentencepiece_path=sp if sp.is_file() else None,
        weights=read_weights(root),
        files=list_files(root),
    )


def check_gemma3n(config: dict, path: Path) -> None:
    model_type = config.get("model_type")
    if model_type != "gemma3n":
        what = f"model_type {model_type!r}" if model_type else "no model_type"
        raise NotGemma3nError(f"{path}: {what}; vocabfix handles multimodal Gemma 3n checkpoints (model_type 'gemma3n')")
    for key in ("text_config", "vision_config", "audio_config"):
        if not isinstance(config.get(key), dict):
            raise NotGemma3nError(f"{path}: Gemma 3n config without {key}")


def read_weights(root: Path) -> Weights:
    index_path = root / INDEX_NAME
    if index_path.is_file():
        index = read_json(index_path)
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index_path}: no weight_map")
        names = sorted(set(weight_map.values()))
        shard_paths = [root / n for n in names if (root / n).is_file()]
    elif (root / SINGLE_NAME).is_file():
        index = None
        shard_paths = [root / SINGLE_NAME]
    else:
        shard_paths = sorted(root.glob("*.safetensors"))
        if not shard_paths:
            raise CheckpointError(f"{root}: no safetensors weights (model.safetensors or {INDEX_NAME})",
                                  hint="save with model.save_pretrained(folder) (safe_serialization is the default)")
        raise CheckpointError(f"{root}: {len(shard_paths)} safetensors files but no {INDEX_NAME}")
    shards = [read_header(p) for p in shard_paths]
    weights = Weights(shards=shards, index=index)
    for shard in shards:
        for t in shard.tensors:
            if t.name in weights.tensors:
                weights.duplicates.append(t.name)
            else:
                weights.tensors[t.name] = t
    if index is not None:
        _cross_check_index(root, index["weight_map"], weights)
    return weights


def _cross_check_index(root: Path, weight_map: dict, weights: Weights) -> None:
    weights.missing_shards = sorted({n for n in weight_map.values() if not (root / n).is_file()})
    for name, shard in weight_map.items():
        held = weights.tensors.get(name)
        if held is None:
            weights.listed_not_found.append(name)
        elif held.path != root / shard:
            weights.misplaced.append(name)
    weights.found_not_listed = [name for name in weights.tensors if name not in weight_map]

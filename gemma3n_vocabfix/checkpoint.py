"""Read a checkpoint folder: configs, tokenizer files and safetensors headers. No tensor bytes are read."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
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
    single_beside_index: bool = False  # a model.safetensors too, which from_pretrained loads instead of the shards


@dataclass
class RemoteFiles:
    """The files of a checkpoint that are not on disk (a Hub repo read without its weights).

    `root` then holds the small files only; a shard that is not under `root` is described by
    `read_header(name)`, which must return its header without the tensor bytes.
    """

    sizes: dict[str, int | None]  # every file of the repo (relative, '/'-separated) -> bytes, when known
    read_header: Callable[[str], ShardHeader]
    label: str  # how to name the checkpoint to a person, e.g. "org/name@0123abcd"
    read_range: Callable[[str, int, int], bytes] | None = None  # (name, start, stop): bytes of a file not under root


@dataclass
class Checkpoint:
    """Everything later steps need from a checkpoint, read once: parsed configs and tokenizer files, tokenizer.model
    bytes, a previous vocabfix.json, and each shard's header (tensor names, dtypes, shapes, byte offsets; no tensor
    bytes). Paths are kept only for the writer, which copies bytes from them."""

    root: Path
    config: dict
    generation_config: dict | None
    tokenizer_json: dict | None
    tokenizer_config: dict | None
    added_tokens: dict | None  # added_tokens.json
    special_tokens_map: dict | None
    sentencepiece: bytes | None  # tokenizer.model, whole (a few MB; renumbered block by block)
    weights: Weights
    files: list[str]  # every regular file, relative to root, '/'-separated
    remote: RemoteFiles | None = None  # set when the weights were described without downloading them
    tokenizer_json_merges: tuple[int, int] | None = None  # byte range of the BPE merges the reader left out
    previous_record: dict | None = None  # vocabfix.json of an earlier rewrite, carried into the new one
    previous_record_problem: str | None = None  # why an existing vocabfix.json could not be read as a record

    def __repr__(self) -> str:  # the parsed tokenizer files run to megabytes: name the checkpoint, not its contents
        return f"Checkpoint({self.label!r}, {len(self.files)} files, {len(self.weights.tensors)} tensors)"

    @property
    def label(self) -> str:
        return self.remote.label if self.remote is not None else str(self.root)

    def file_size(self, name: str) -> int | None:
        path = self.root / name
        if path.is_file():
            return path.stat().st_size
        return self.remote.sizes.get(name) if self.remote is not None else None

    @property
    def text_config(self) -> dict:
        return self.config.get("text_config") or {}


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None


def parse_json_object(raw: bytes, path: Path) -> dict:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: JSON nested too deeply to read") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    check_unicode(data, raw, path)
    return data


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def check_unicode(data: object, raw: bytes, path: Path) -> None:
    """Every string is Unicode text: an unpaired surrogate escape ("\\ud800") parses in Python but cannot be
    written back as UTF-8 (nor read by the tokenizers library). Checked only when the raw bytes hold such an escape
    (a surrogate pair, as ensure_ascii writes an emoji, passes)."""
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise CheckpointError(f"{path}: not valid JSON text (a string holds an unpaired UTF-16 surrogate "
                                  "escape such as \\ud800)") from None


def read_json(path: Path) -> dict:
    return parse_json_object(read_bytes(path), path)


MAX_JSON_DEPTH = 100  # configs nest 3 levels; the rewrite walks and copies them recursively


def read_nested_json(path: Path) -> dict:
    """read_json for the small files the rewrite walks and copies recursively (config.json, generation_config.json,
    the index): refused when nested deeper than MAX_JSON_DEPTH, before a walk could exceed Python's recursion limit."""
    data = read_json(path)
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise CheckpointError(f"{path}: JSON nested more than {MAX_JSON_DEPTH} levels deep")
        stack += [(c, depth + 1) for c in (node.values() if isinstance(node, dict) else node)
                  if isinstance(c, (dict, list))]
    return data


def is_present(path: Path) -> bool:
    """Whether a checkpoint file is there; a folder (or a pipe, ...) under a file's name is an error."""
    if path.exists() and not path.is_file():
        raise CheckpointError(f"{path}: not a regular file")
    return path.is_file()


def _optional_json(root: Path, name: str, read: Callable[[Path], dict] = read_json) -> dict | None:
    path = root / name
    return read(path) if is_present(path) else None


_MERGES_KEY = re.compile(rb'"merges"\s*:\s*\[')
_FILE_TAIL = re.compile(rb'\]\s*\}\s*\}\s*\Z')


def merges_span(raw: bytes) -> tuple[int, int] | None:
    """Byte range of tokenizer.json's `model.merges` array (from `[` to `]`), when it can be cut out safely.

    The BPE merges are three quarters of Gemma's 33 MB tokenizer.json and most of its parse time, and they hold
    no ids. The cut applies only when the merges array is provably the last member of `model` and `model` the
    last member of the file (as the tokenizers library writes it): the array runs from `"merges": [` to the `]`
    before the final `}}`, and no object key (a `"` then `:` that does not open an array element) occurs in
    between. Anything else returns None and the caller parses the whole file.
    """
    key, at = None, len(raw)
    while key is None and at > 0:  # the last match: tried at each "merges" from the end (rfind is C speed)
        at = raw.rfind(b'"merges"', 0, at)
        key = _MERGES_KEY.match(raw, at) if at >= 0 else None
    tail = _FILE_TAIL.search(raw, max(0, len(raw) - 64))
    if key is None or tail is None or key.end() > tail.start() or not _no_key_between(raw, key.end(), tail.start()):
        return None
    return key.end() - 1, tail.start() + 1


def read_tokenizer_json_without_merges(path: Path) -> tuple[dict, tuple[int, int] | None]:
    """tokenizer.json with `model.merges` left empty, and the byte range the merges had (None: not cut)."""
    raw = read_bytes(path)
    span = merges_span(raw)
    if span is None:
        return parse_json_object(raw, path), None
    cut = raw[:span[0]] + b"[]" + raw[span[1]:]
    del raw  # 34 MB for Gemma's file: not held while the rest is parsed (verify reads two of them)
    try:
        data = json.loads(cut)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("model"), dict) and data["model"].get("merges") == []:
        check_unicode(data, cut, path)  # the merges are not parsed: an escape in them is copied as it is
        return data, span
    return parse_json_object(read_bytes(path), path), None


_MERGES_KEY_END = re.compile(rb'"merges"\s*:\s*\Z')


def tokenizer_json_as_read(path: Path, merges: tuple[int, int] | None) -> bytes | None:
    """The bytes read_tokenizer_json_without_merges parsed, read again for a rewrite that splices them: with the
    merges at `merges` (the range it returned) replaced by `[]`, or the whole file when they were not cut out.
    Reads only the 8 MB around Gemma's 26 MB of merges. None when the file cannot be read or no longer has the
    merges array where the first read found it."""
    try:
        with open(path, "rb") as f:
            if merges is None:
                return f.read()
            head = f.read(merges[0])
            opening = f.read(1)
            f.seek(merges[1] - 1)
            tail = f.read()
    except OSError:
        return None
    if (len(head) != merges[0] or opening != b"[" or not _FILE_TAIL.match(tail)
            or not _MERGES_KEY_END.search(head, max(0, len(head) - 256))):
        return None
    return head + b"[]" + tail[1:]


def _no_key_between(raw: bytes, start: int, stop: int) -> bool:
    """No object key (`"...":`, any whitespace before the colon) in raw[start:stop].

    Colons are rare in BPE merges, so this looks at each one: a colon whose previous non-blank byte is a quote
    ends a key, unless that quote opens an array element (it follows `[` or `,`: a string such as ":").
    Anything doubtful counts as a key, and the caller then parses the whole file.
    """
    ws = b" \t\r\n"
    pos = raw.find(b":", start, stop)
    while pos != -1:
        quote = pos - 1
        while quote > start and raw[quote] in ws:
            quote -= 1
        if raw[quote] == 0x22:  # '"'
            before = quote - 1
            while before > start and raw[before] in ws:
                before -= 1
            if raw[before] not in b"[,":
                return False
        pos = raw.find(b":", pos + 1, stop)
    return True


def list_files(root: Path) -> list[str]:
    """Every file below root, skipping VCS and cache folders.

    Symlinks are followed, to files (HF cache snapshots) and to folders, but a folder already seen is not
    entered again (a link back up would recurse forever).
    """
    skip = {".git", ".cache", "__pycache__"}
    seen, out = set(), []
    for folder, dirs, names in os.walk(root, followlinks=True):
        if os.path.realpath(folder) in seen:
            dirs.clear()
            continue
        seen.add(os.path.realpath(folder))
        dirs[:] = sorted(d for d in dirs if d not in skip)
        rel = Path(folder).relative_to(root)
        out += [(rel / name).as_posix() for name in names if (Path(folder) / name).is_file()]
    return sorted(out)


def read_checkpoint(root: str | Path, *, remote: RemoteFiles | None = None, merges: bool = True) -> Checkpoint:
    """Read a checkpoint folder: the only step of a command that opens input files before the writer copies them.

    Reads config.json, generation_config.json, every tokenizer file, a previous vocabfix.json and each safetensors
    header (never tensor bytes). With `remote`, shards missing from `root` are described by `remote.read_header`.
    `merges=False` leaves tokenizer.json's BPE merges out and records their byte range instead (the merges hold no
    ids; the writer copies them as bytes).

    Raises CheckpointError (missing, unreadable or malformed file) or NotGemma3nError (not a Gemma 3n config).
    """
    root = Path(root)
    if not root.is_dir():
        raise CheckpointError(f"{root}: not a folder", hint="pass a checkpoint folder as saved by save_pretrained")
    if not is_present(root / "config.json"):
        raise CheckpointError(f"{root}: no config.json", hint="pass a checkpoint folder as saved by save_pretrained")
    config = read_nested_json(root / "config.json")
    check_gemma3n(config, root / "config.json")
    sp = root / SENTENCEPIECE_FILE
    tokenizer = {name: _optional_json(root, name) for name in JSON_TOKENIZER_FILES
                 if merges or name != "tokenizer.json"}
    merges_left_out = None
    if not merges:
        path = root / "tokenizer.json"
        tokenizer["tokenizer.json"], merges_left_out = (read_tokenizer_json_without_merges(path) if is_present(path)
                                                        else (None, None))
    if tokenizer["tokenizer.json"] is None and tokenizer["tokenizer_config.json"] is None and not is_present(sp):
        raise CheckpointError(f"{root}: no tokenizer files (tokenizer.json, tokenizer_config.json, tokenizer.model)",
                              hint="save the tokenizer next to the model: tokenizer.save_pretrained(folder)")
    return Checkpoint(
        root=root,
        config=config,
        generation_config=_optional_json(root, "generation_config.json", read_nested_json),
        tokenizer_json=tokenizer["tokenizer.json"],
        tokenizer_config=tokenizer["tokenizer_config.json"],
        added_tokens=tokenizer["added_tokens.json"],
        special_tokens_map=tokenizer["special_tokens_map.json"],
        sentencepiece=read_bytes(sp) if is_present(sp) else None,
        weights=read_weights(root, remote),
        files=sorted(set(list_files(root)) | set(remote.sizes if remote is not None else ())),
        remote=remote,
        tokenizer_json_merges=merges_left_out,
        **_previous_record(root),
    )


def _previous_record(root: Path) -> dict:
    """An earlier rewrite's vocabfix.json. It is replaced in OUT either way, so a malformed one is not an error:
    the new record says why it could not be carried over."""
    try:
        return {"previous_record": _optional_json(root, RECORD_NAME)}
    except CheckpointError as e:
        return {"previous_record_problem": e.message}


def check_gemma3n(config: dict, path: Path) -> None:
    """Raise NotGemma3nError unless `config` is a multimodal Gemma 3n config (model_type "gemma3n" with text, vision
    and audio sub-configs)."""
    model_type = config.get("model_type")
    if model_type != "gemma3n":
        what = f"model_type {model_type!r}" if model_type else "no model_type"
        raise NotGemma3nError(f"{path}: {what}; vocabfix handles multimodal Gemma 3n checkpoints "
                              "(model_type 'gemma3n')")
    for key in ("text_config", "vision_config", "audio_config"):
        if not isinstance(config.get(key), dict):
            raise NotGemma3nError(f"{path}: Gemma 3n config without {key}")


def read_weights(root: Path, remote: RemoteFiles | None = None) -> Weights:
    """The shard headers (through the index when there is one, else model.safetensors) and how the index and the
    headers disagree. Raises CheckpointError when there are no safetensors weights or a header is malformed."""
    def exists(name: str) -> bool:
        return (root / name).is_file() or (remote is not None and name in remote.sizes)

    def header(name: str) -> ShardHeader:
        if (root / name).is_file() or remote is None:
            return read_header(root / name)
        return remote.read_header(name)

    where = remote.label if remote is not None else root
    index_path = root / INDEX_NAME
    if is_present(index_path):
        index = read_nested_json(index_path)
        check_index(index, index_path)
        names = [n for n in sorted(set(index["weight_map"].values())) if exists(n)]
    elif exists(SINGLE_NAME):
        index = None
        names = [SINGLE_NAME]
    else:
        others = [p.name for p in root.glob("*.safetensors")]
        if remote is not None:
            others += [n for n in remote.sizes if n.endswith(".safetensors") and "/" not in n]
        if not others:
            raise CheckpointError(f"{where}: no safetensors weights (model.safetensors or {INDEX_NAME})",
                                  hint="save with model.save_pretrained(folder) (safe_serialization is the default)")
        raise CheckpointError(f"{where}: {len(set(others))} safetensors files but no {INDEX_NAME}")
    shards = [header(n) for n in names]
    weights = Weights(shards=shards, index=index, single_beside_index=index is not None and exists(SINGLE_NAME))
    for shard in shards:
        for t in shard.tensors:
            if t.name in weights.tensors:
                weights.duplicates.append(t.name)
            else:
                weights.tensors[t.name] = t
    if index is not None:
        _cross_check_index(root, index["weight_map"], weights, exists)
    return weights


def check_index(index: dict, path: Path) -> None:
    """weight_map maps tensor names to shard files inside the checkpoint folder; metadata is an object."""
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"{path}: no weight_map")
    for name, shard in weight_map.items():
        if not isinstance(shard, str) or Path(shard).is_absolute() or ".." in Path(shard).parts:
            raise CheckpointError(f"{path}: weight_map gives {name!r} the shard {shard!r}, not a file name inside "
                                  "the checkpoint folder")
    if not isinstance(index.get("metadata", {}), dict):
        raise CheckpointError(f"{path}: metadata is not a JSON object")


def _cross_check_index(root: Path, weight_map: dict, weights: Weights, exists: Callable[[str], bool]) -> None:
    weights.missing_shards = sorted(n for n in set(weight_map.values()) if not exists(n))
    for name, shard in weight_map.items():
        held = weights.tensors.get(name)
        if held is None:
            weights.listed_not_found.append(name)
        elif held.path != root / shard:
            weights.misplaced.append(name)
    weights.found_not_listed = [name for name in weights.tensors if name not in weight_map]

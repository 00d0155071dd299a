"""Broken inputs: every command answers a corrupt checkpoint with one clear line and exit code 2 (or, for
inspect, 0/1 when the checkpoint is still readable); never a traceback, never the 'unexpected ...' catch-all;
the input is never modified; a failed rewrite leaves neither OUT nor a hidden staging folder beside it.

The CLI runs in one long-lived subprocess (`_Worker`) that executes `vocabfix ...` command lines one after
another, each with its own stdout / stderr, so a hundred command lines cost one interpreter start.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import (
    COLUMNS,
    EMBED,
    INDEX,
    PER_LAYER,
    SHARD1,
    SHARD2,
    A,
    T,
    V,
    check_machine_error,
    edit_json,
    run_cli,
    snapshot,
)
from fixtures.synthetic import build
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

NEW = ["<a>", "<b>"]

# Runs `vocabfix` command lines read from stdin (one JSON list per line) in this one process and answers each
# with one JSON line: exit code, stdout, stderr. Anything escaping main() is printed as a traceback on stderr.
_WORKER = r"""
import contextlib, io, json, sys, traceback
from gemma3n_vocabfix.cli import main
answer = sys.stdout
for line in sys.stdin:
    out, err, code = io.StringIO(), io.StringIO(), 0
    sys.argv = ["vocabfix", *json.loads(line)]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = -1
    answer.write(json.dumps({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}) + "\n")
    answer.flush()
"""


class _Worker:
    def __init__(self) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": str(COLUMNS), "VOCABFIX_DEBUG": ""}
        env.pop("VOCABFIX_DEBUG")
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def run(self, *args: str, timeout: float = 30) -> dict:
        self.proc.stdin.write(json.dumps(list(args)) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.proc.kill()
            pytest.fail(f"vocabfix {' '.join(args)} did not answer within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            pytest.fail(f"vocabfix {' '.join(args)} killed the worker process (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def cli():
    worker = _Worker()
    yield worker
    worker.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("template") / "x", text=T, vision=V, audio=A, new_tokens=NEW)


# --- helpers that corrupt a checkpoint ---------------------------------------------------------------------------

def edit_header(path: Path, fn: Callable[[dict], object] | None, *, raw: bytes | None = None) -> None:
    """Edit a safetensors file's header in place with fn (or replace it by `raw`), keeping the tensor bytes."""
    buf = path.read_bytes()
    (n,) = struct.unpack("<Q", buf[:8])
    if raw is None:
        header = json.loads(buf[8:8 + n])
        fn(header)
        raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + buf[8 + n:])


def setter(*keys_and_value):
    """A json editor setting data[k1][k2]... = value."""
    *keys, value = keys_and_value

    def fn(data):
        for k in keys[:-1]:
            data = data[k]
        data[keys[-1]] = value
    return fn


def deleter(*keys):
    def fn(data):
        for k in keys[:-1]:
            data = data[k]
        del data[keys[-1]]
    return fn


def on(name: str, fn) -> Callable[[Path], None]:
    """A corruption that edits one JSON file of the checkpoint."""
    return lambda root: edit_json(root / name, fn)


def on_header(name: str, fn=None, raw: bytes | None = None) -> Callable[[Path], None]:
    return lambda root: edit_header(root / name, fn, raw=raw)


def write(name: str, content: bytes) -> Callable[[Path], None]:
    return lambda root: (root / name).write_bytes(content)


def make_dir(name: str) -> Callable[[Path], None]:
    def fn(root: Path) -> None:
        (root / name).unlink()
        (root / name).mkdir()
        (root / name / "inside.txt").write_text("x")
    return fn


def tensor(name: str, key: str, value) -> Callable[[dict], None]:
    return lambda header: header[name].__setitem__(key, value)


def unigram_vocab(vocab_fn) -> Callable[[dict], None]:
    """tokenizer.json with a Unigram model whose vocabulary vocab_fn builds from the BPE pieces."""
    def fn(data):
        pieces = sorted(data["model"]["vocab"].items(), key=lambda kv: kv[1])
        data["model"] = {"type": "Unigram", "unk_id": 3, "vocab": vocab_fn([p for p, _ in pieces])}
    return fn


def vision(key, value):
    return on("config.json", setter("vision_config", key, value))


def text(key, value):
    return on("config.json", setter("text_config", key, value))


def decoder_entry(key: str, value):
    return on("tokenizer_config.json", lambda d: d["added_tokens_decoder"].__setitem__(key, value))


def added_tokens_entry(key, value):
    return on("tokenizer.json", lambda d: d["added_tokens"][-1].__setitem__(key, value))


CASES: dict[str, Callable[[Path], None]] = {
    # config.json
    "config is a list": write("config.json", b"[1, 2]"),
    "config is not JSON": write("config.json", b"{not json"),
    "config is not UTF-8": write("config.json", b'{"model_type": "gemma3n\xff\xfe"}'),
    "config is empty": write("config.json", b""),
    "config model_type is a list": on("config.json", setter("model_type", ["gemma3n"])),
    "text_config is a string": on("config.json", setter("text_config", "big")),
    "vision_config is null": on("config.json", setter("vision_config", None)),
    "vocab_offset negative": vision("vocab_offset", -4),
    "vocab_offset a float": vision("vocab_offset", 40.5),
    "vocab_offset a whole float": vision("vocab_offset", 40.0),
    "vocab_offset a bool": vision("vocab_offset", True),
    "vocab_offset a string": vision("vocab_offset", "40"),
    "vocab_offset huge": vision("vocab_offset", 10 ** 30),
    "vocab_offset large": vision("vocab_offset", 10 ** 12),
    "vision vocab_size huge": vision("vocab_size", 10 ** 12),
    "vision and audio overlap": vision("vocab_offset", T + 2),
    "vision and audio identical": vision("vocab_offset", T + V),
    "vision vocab_size zero": vision("vocab_size", 0),
    "audio before vision": lambda root: edit_json(root / "config.json", lambda c: (
        c["vision_config"].__setitem__("vocab_offset", T + A), c["audio_config"].__setitem__("vocab_offset", T))),
    "no vocab_size_per_layer_input": on("config.json", deleter("text_config", "vocab_size_per_layer_input")),
    "text vocab_size huge": text("vocab_size", 10 ** 12),
    "text vocab_size a list": text("vocab_size", [50]),
    "image_token_id a string": on("config.json", setter("image_token_id", "41")),
    "image_token_id huge": on("config.json", setter("image_token_id", 10 ** 30)),
    "image_token_id negative": on("config.json", setter("image_token_id", -1)),
    "eos_token_id a dict": on("config.json", setter("eos_token_id", {"a": 1})),
    "config holds NaN": lambda root: (root / "config.json").write_text(
        (root / "config.json").read_text().replace('"model_type"', '"x": NaN, "model_type"', 1)),
    # generation_config.json
    "generation config is a list": write("generation_config.json", b"[1]"),
    "generation config is a string": write("generation_config.json", b'"x"'),
    "generation eos a string": on("generation_config.json", setter("eos_token_id", "1")),
    "generation sequence_bias bad key": on("generation_config.json", setter("sequence_bias", {"(1, x)": 1.0})),
    "generation forced_decoder_ids odd": on("generation_config.json", setter("forced_decoder_ids", [[1], "x", 3])),
    # tokenizer.json
    "tokenizer.json is a list": write("tokenizer.json", b"[]"),
    "tokenizer.json not UTF-8": write("tokenizer.json", b'{"added_tokens": [], "model": {"vocab": {"\xff": 1}}}'),
    "added_tokens not a list": on("tokenizer.json", setter("added_tokens", {"id": 1})),
    "added_tokens a string": on("tokenizer.json", setter("added_tokens", "abc")),
    "added_tokens entry a string": on("tokenizer.json", lambda d: d["added_tokens"].append("<c>")),
    "added token without id": on("tokenizer.json", lambda d: d["added_tokens"][-1].pop("id")),
    "added token id a string": added_tokens_entry("id", "49"),
    "added token id a word": added_tokens_entry("id", "forty"),
    "added token id a float": added_tokens_entry("id", 49.5),
    "added token id a bool": added_tokens_entry("id", True),
    "added token id null": added_tokens_entry("id", None),
    "added token id negative": added_tokens_entry("id", -3),
    "added token id huge": added_tokens_entry("id", 10 ** 12),
    "added token id far": added_tokens_entry("id", 5000),
    "added token content a list": added_tokens_entry("content", ["<b>"]),
    "added token content null": added_tokens_entry("content", None),
    "added tokens duplicate ids": on("tokenizer.json", lambda d: d["added_tokens"].append(
        {**d["added_tokens"][-1], "content": "<c>"})),
    "model is a list": on("tokenizer.json", setter("model", [1, 2])),
    "model vocab a string": on("tokenizer.json", setter("model", "vocab", "abc")),
    "model vocab value a string": on("tokenizer.json", lambda d: d["model"]["vocab"].__setitem__("tok7", "seven")),
    "model vocab value a digit string": on("tokenizer.json", lambda d: d["model"]["vocab"].__setitem__("tok7", "7")),
    "model vocab value a float": on("tokenizer.json", lambda d: d["model"]["vocab"].__setitem__("tok7", 7.5)),
    "model vocab value null": on("tokenizer.json", lambda d: d["model"]["vocab"].__setitem__("tok7", None)),
    "model vocab value negative": on("tokenizer.json", lambda d: d["model"]["vocab"].__setitem__("tok7", -7)),
    "model vocab value huge": on("tokenizer.json", lambda d: d["model"]["vocab"].__setitem__("tok7", 10 ** 12)),
    "model vocab duplicate ids": on("tokenizer.json", lambda d: d["model"]["vocab"].__setitem__("tok7", 8)),
    "unigram vocab ok": on("tokenizer.json", unigram_vocab(lambda ps: [[p, -1.0] for p in ps])),
    "unigram entry a string": on("tokenizer.json", unigram_vocab(lambda ps: [[p, -1.0] for p in ps[:-1]] + ["x"])),
    "unigram entry empty": on("tokenizer.json", unigram_vocab(lambda ps: [[p, -1.0] for p in ps[:-1]] + [[]])),
    "unigram entry a number": on("tokenizer.json", unigram_vocab(lambda ps: [[p, -1.0] for p in ps[:-1]] + [5])),
    "unigram entry piece null": on("tokenizer.json", unigram_vocab(lambda ps: [[None, -1.0] for p in ps])),
    "unigram entry null": on("tokenizer.json", unigram_vocab(lambda ps: [[p, -1.0] for p in ps[:-1]] + [None])),
    "unigram unk_id a string": on("tokenizer.json", lambda d: (
        unigram_vocab(lambda ps: [[p, -1.0] for p in ps])(d), d["model"].__setitem__("unk_id", "3"))),
    "post_processor special ids strings": on("tokenizer.json", setter("post_processor", {
        "type": "TemplateProcessing", "special_tokens": {"<bos>": {"id": "<bos>", "ids": ["x"], "tokens": []}}})),
    "post_processor special_tokens entry a list": on("tokenizer.json", setter("post_processor", {
        "type": "TemplateProcessing", "special_tokens": {"<bos>": [2]}})),
    "post_processor cls id a word": on("tokenizer.json", setter("post_processor", {
        "type": "BertProcessing", "cls": ["<bos>", "two"], "sep": ["<eos>", 1]})),
    "post_processor processors not dicts": on("tokenizer.json", setter("post_processor", {
        "type": "Sequence", "processors": [1, "x"]})),
    # tokenizer_config.json
    "tokenizer_config is a list": write("tokenizer_config.json", b"[]"),
    "added_tokens_decoder a list": on("tokenizer_config.json", setter("added_tokens_decoder", [1, 2])),
    "added_tokens_decoder key not a number": decoder_entry("forty", {"content": "<c>"}),
    "added_tokens_decoder key negative": decoder_entry("-2", {"content": "<c>"}),
    "added_tokens_decoder key a float": decoder_entry("3.5", {"content": "<c>"}),
    "added_tokens_decoder key not ASCII": decoder_entry("\u0663", {"content": "<c>"}),
    "added_tokens_decoder key huge": decoder_entry(str(10 ** 12), {"content": "<c>"}),
    "added_tokens_decoder entry without content": decoder_entry("49", {"special": False}),
    "added_tokens_decoder content a number": decoder_entry("49", {"content": 5}),
    "extra_special_tokens a list": on("tokenizer_config.json", setter("extra_special_tokens", ["<a>"])),
    "image_token a number": on("tokenizer_config.json", setter("image_token", 5)),
    # added_tokens.json
    "added_tokens.json is a list": write("added_tokens.json", b"[]"),
    "added_tokens.json value a word": on("added_tokens.json", setter("<b>", "forty-nine")),
    "added_tokens.json value a float": on("added_tokens.json", setter("<b>", 49.5)),
    "added_tokens.json value a digit string": on("added_tokens.json", setter("<b>", "49")),
    "added_tokens.json value null": on("added_tokens.json", setter("<b>", None)),
    "added_tokens.json value negative": on("added_tokens.json", setter("<b>", -1)),
    "added_tokens.json value huge": on("added_tokens.json", setter("<b>", 10 ** 12)),
    "added_tokens.json duplicate ids": on("added_tokens.json", setter("<c>", 49)),
    # special_tokens_map.json
    "special_tokens_map is a list": write("special_tokens_map.json", b"[]"),
    "special_tokens_map value a list": on("special_tokens_map.json", setter("bos_token", ["<bos>"])),
    # tokenizer.model
    "tokenizer.model random bytes": write("tokenizer.model", bytes(range(256)) * 3),
    "tokenizer.model empty": write("tokenizer.model", b""),
    "tokenizer.model truncated varint": write("tokenizer.model", b"\x0a\x85"),
    "tokenizer.model endless varint": write("tokenizer.model", b"\x0a" + b"\xff" * 20),
    "tokenizer.model truncated record": lambda root: (root / "tokenizer.model").write_bytes(
        (root / "tokenizer.model").read_bytes()[:-3]),
    "tokenizer.model group wire type": write("tokenizer.model", b"\x0b\x0c"),
    "tokenizer.model huge length": write("tokenizer.model", b"\x0a\xff\xff\xff\xff\x0f"),
    "tokenizer.model no pieces": write("tokenizer.model", b"\x10\x01"),
    "tokenizer.model more pieces": lambda root: (root / "tokenizer.model").write_bytes(
        (root / "tokenizer.model").read_bytes() + b"\x0a\x03\x0a\x01z" * 30),
    # safetensors shards
    "shard empty": write(SHARD1, b""),
    "shard header length 0": on_header(SHARD1, raw=b""),
    "shard header length huge": lambda root: (root / SHARD1).write_bytes(b"\xff" * 8 + b"{}"),
    "shard header not JSON": on_header(SHARD1, raw=b"{abc"),
    "shard header not UTF-8": on_header(SHARD1, raw=b'{"\xff": 1}'),
    "shard header a list": on_header(SHARD1, raw=b"[]"),
    "shard header a string": on_header(SHARD1, raw=b'"abc"'),
    "shard metadata a list": on_header(SHARD1, setter("__metadata__", [1, 2])),
    "shard metadata a string": on_header(SHARD1, setter("__metadata__", "abc")),
    "shard metadata values not strings": on_header(SHARD1, setter("__metadata__", {"format": 5})),
    "tensor entry a list": on_header(SHARD1, setter(EMBED, [1, 2])),
    "tensor without dtype": on_header(SHARD1, deleter(EMBED, "dtype")),
    "tensor without shape": on_header(SHARD1, deleter(EMBED, "shape")),
    "tensor without data_offsets": on_header(SHARD1, deleter(EMBED, "data_offsets")),
    "tensor dtype unknown": on_header(SHARD1, tensor(EMBED, "dtype", "F128")),
    "tensor dtype a list": on_header(SHARD1, tensor(EMBED, "dtype", ["F32"])),
    "tensor dtype int8": on_header(SHARD1, tensor(EMBED, "dtype", "I8")),
    "tensor shape negative dims": on_header(SHARD1, tensor(EMBED, "shape", [-50, -4])),
    "tensor shape negative rows": on_header(SHARD1, tensor(EMBED, "shape", [-50, 4])),
    "tensor shape floats": on_header(SHARD1, tensor(EMBED, "shape", [50.0, 4.0])),
    "tensor shape strings": on_header(SHARD1, tensor(EMBED, "shape", ["50", "4"])),
    "tensor shape bools": on_header(SHARD1, tensor(EMBED, "shape", [True, 4])),
    "tensor shape a number": on_header(SHARD1, tensor(EMBED, "shape", 50)),
    "tensor shape a string": on_header(SHARD1, tensor(EMBED, "shape", "50")),
    "tensor offsets one number": on_header(SHARD1, tensor(EMBED, "data_offsets", [0])),
    "tensor offsets three numbers": on_header(SHARD1, tensor(EMBED, "data_offsets", [0, 800, 900])),
    "tensor offsets floats": on_header(SHARD1, tensor(EMBED, "data_offsets", [0.5, 800.5])),
    "tensor offsets strings": on_header(SHARD1, tensor(EMBED, "data_offsets", ["0", "800"])),
    "tensor offsets negative": on_header(SHARD1, tensor(EMBED, "data_offsets", [-8, 792])),
    "tensor offsets reversed": on_header(SHARD1, tensor(EMBED, "data_offsets", [800, 0])),
    "tensor offsets huge": on_header(SHARD1, tensor(EMBED, "data_offsets", [10 ** 30, 10 ** 30 + 800])),
    "tensors overlap": on_header(SHARD1, lambda h: _overlap(h, EMBED, "model.embed_vision.embedding.weight")),
    "tensors stored in reverse order": on_header(SHARD1, lambda h: _reverse_order(h)),
    "hole before the first tensor": lambda root: (on_header(SHARD1, lambda h: _shift_all(h, 8))(root),
                                                  _append(root / SHARD1, bytes(8))),
    "bytes after the last tensor": lambda root: _append(root / SHARD1, bytes(8)),
    "embed_tokens 1-D": on_header(SHARD1, tensor(EMBED, "shape", [200])),
    "embed_tokens 0-D": lambda root: replace_tensor(root / SHARD1, EMBED, np.array(1.0, np.float32)),
    "embed_tokens zero rows": lambda root: replace_tensor(root / SHARD1, EMBED, np.zeros((0, 4), np.float32)),
    "embed_tokens zero columns": lambda root: replace_tensor(root / SHARD1, EMBED, np.zeros((50, 0), np.float32)),
    "embed_tokens huge rows zero columns": lambda root: replace_tensor(root / SHARD1, EMBED,
                                                                       np.zeros((10 ** 12, 0), np.float32)),
    "embed_tokens short and int": lambda root: replace_tensor(root / SHARD1, EMBED, np.ones((40, 4), np.int32)),
    "embed_tokens int": lambda root: replace_tensor(root / SHARD1, EMBED, np.ones((50, 4), np.int32)),
    "per-layer 1-D": on_header(SHARD2, tensor(PER_LAYER, "shape", [400])),
    "per-layer zero rows": lambda root: replace_tensor(root / SHARD2, PER_LAYER, np.zeros((0, 8), np.float32)),
    "per-layer bool": lambda root: replace_tensor(root / SHARD2, PER_LAYER, np.ones((40, 8), np.bool_)),
    "no embed_tokens": on_header(SHARD1, lambda h: h.__setitem__("x.weight", h.pop(EMBED))),
    # the index
    "index is a list": write(INDEX, b"[]"),
    "index weight_map a list": on(INDEX, setter("weight_map", [SHARD1])),
    "index weight_map value a number": on(INDEX, setter("weight_map", EMBED, 5)),
    "index weight_map value a list": on(INDEX, setter("weight_map", EMBED, [SHARD1])),
    "index weight_map value null": on(INDEX, setter("weight_map", EMBED, None)),
    "index points outside": on(INDEX, setter("weight_map", EMBED, "../x.safetensors")),
    "index points outside to a real file": lambda root: (
        shutil.copyfile(root / SHARD1, root.parent / f"{root.name}-outside.safetensors"),
        edit_json(root / INDEX, setter("weight_map", EMBED, f"../{root.name}-outside.safetensors"))),
    "index absolute path": on(INDEX, setter("weight_map", EMBED, "/etc/passwd")),
    "index points to a folder": lambda root: ((root / "sub").mkdir(),
                                              edit_json(root / INDEX, setter("weight_map", EMBED, "sub"))),
    "index points to the index": on(INDEX, setter("weight_map", EMBED, INDEX)),
    "index points to config.json": on(INDEX, setter("weight_map", EMBED, "config.json")),
    "index empty name": on(INDEX, setter("weight_map", EMBED, "")),
    "index points to .": on(INDEX, setter("weight_map", EMBED, ".")),
    "index metadata a list": on(INDEX, setter("metadata", [1])),
    "index total_size a string": on(INDEX, setter("metadata", "total_size", "12")),
    "index misses a shard": on(INDEX, setter("weight_map", EMBED, "model-00003-of-00002.safetensors")),
    # files that are folders, odd files
    "config.json a folder": make_dir("config.json"),
    "tokenizer.json a folder": make_dir("tokenizer.json"),
    "tokenizer.model a folder": make_dir("tokenizer.model"),
    "generation_config.json a folder": make_dir("generation_config.json"),
    "added_tokens.json a folder": make_dir("added_tokens.json"),
    "shard a folder": make_dir(SHARD1),
    "index a folder": make_dir(INDEX),
    "vocabfix.json garbage": write("vocabfix.json", b"\xff\xfe[["),
    "vocabfix.json a list": write("vocabfix.json", b"[1]"),
    "only tokenizer.model": lambda root: [(root / n).unlink() for n in ("tokenizer.json", "tokenizer_config.json",
                                                                         "added_tokens.json")],
    "no tokenizer at all": lambda root: [(root / n).unlink() for n in ("tokenizer.json", "tokenizer_config.json",
                                                                        "added_tokens.json", "tokenizer.model")],
    "dangling symlink": lambda root: os.symlink(root / "nowhere", root / "dangling.txt"),
    "dangling config symlink": lambda root: ((root / "config.json").unlink(),
                                             os.symlink(root / "nowhere", root / "config.json")),
    "fifo beside the files": lambda root: os.mkfifo(root / "pipe"),
    "fifo as tokenizer.json": lambda root: ((root / "tokenizer.json").unlink(), os.mkfifo(root / "tokenizer.json")),
    "no shards, no index": lambda root: [(root / n).unlink() for n in (SHARD1, SHARD2, INDEX)],
    "no index, two shards": lambda root: (root / INDEX).unlink(),
}
# Inputs inspect still reads (exit 0/1, the problems as findings) but rewrite refuses (exit 2) ...
REWRITE_REFUSES = {
    "vocab_offset huge", "vocab_offset large", "added token id huge", "added token id far",
    "added tokens duplicate ids",
    "model vocab value huge", "model vocab duplicate ids", "post_processor special ids strings",
    "post_processor special_tokens entry a list", "post_processor cls id a word", "post_processor processors not dicts",
    "added_tokens_decoder key huge", "added_tokens.json value huge", "added_tokens.json duplicate ids",
    "tokenizer.model empty", "tokenizer.model no pieces", "tokenizer.model more pieces", "embed_tokens 1-D",
    "embed_tokens 0-D", "embed_tokens zero rows", "embed_tokens zero columns", "embed_tokens huge rows zero columns",
    "embed_tokens short and int", "vision vocab_size zero", "per-layer 1-D", "per-layer zero rows", "no embed_tokens",
    "index points to a folder", "index empty name", "index points to .", "index misses a shard", "shard a folder",
}
# ... and inputs both commands handle (odd, but nothing the rewrite needs is wrong). Every other case is unreadable:
# both commands exit 2.
BOTH_HANDLE = {
    "audio before vision", "text vocab_size huge", "image_token_id a string",
    "image_token_id huge", "image_token_id negative", "eos_token_id a dict", "config holds NaN",
    "generation eos a string", "generation sequence_bias bad key", "generation forced_decoder_ids odd",
    "unigram vocab ok", "unigram unk_id a string", "extra_special_tokens a list", "image_token a number",
    "special_tokens_map value a list", "tensors stored in reverse order", "embed_tokens int",
    "index total_size a string", "vocabfix.json garbage", "vocabfix.json a list", "only tokenizer.model",
    "dangling symlink", "fifo beside the files",
    "per-layer bool",  # new rows copy per-layer row 0: nothing to initialise, so the dtype does not matter
}
# An unreadable file (chmod 000) is only unreadable for a user without CAP_DAC_OVERRIDE: as root the read
# succeeds and the case would test nothing, so it is only listed when the tests do not run as root.
if os.geteuid() != 0:
    CASES["config.json unreadable"] = lambda root: (root / "config.json").chmod(0)
    CASES["shard unreadable"] = lambda root: (root / SHARD1).chmod(0)
    CASES["tokenizer.model unreadable"] = lambda root: (root / "tokenizer.model").chmod(0)


def _reverse_order(header: dict) -> None:
    """Offsets for the tensors in reverse name order (valid: offsets, not names, give the byte order).
    The tensor bytes are not moved, so the values are scrambled; only the layout is read."""
    offset = 0
    for name in sorted((n for n in header if n != "__metadata__"), reverse=True):
        size = header[name]["data_offsets"][1] - header[name]["data_offsets"][0]
        header[name]["data_offsets"] = [offset, offset + size]
        offset += size


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def replace_tensor(path: Path, name: str, value: np.ndarray) -> None:
    """Rewrite a shard with one tensor replaced (a valid file, as save_pretrained would write it)."""
    tensors = load_file(str(path))
    tensors[name] = value
    save_file(tensors, str(path), metadata={"format": "pt"})


def _overlap(header: dict, a: str, b: str) -> None:
    """Move a's bytes to start where b's do: the two byte ranges overlap."""
    start, stop = header[a]["data_offsets"]
    at = header[b]["data_offsets"][0]
    header[a]["data_offsets"] = [at, at + stop - start]


def _shift_all(header: dict, by: int) -> None:
    for name, entry in header.items():
        if name != "__metadata__":
            entry["data_offsets"] = [x + by for x in entry["data_offsets"]]


# --- the contract ---------------------------------------------------------------------------------------------

def check_failure_line(result: dict, what: str) -> None:
    err = result["stderr"]
    assert "Traceback" not in err + result["stdout"], f"{what}: traceback\n{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"{what}: expected one line on stderr, got\n{err}"
    assert lines[0].startswith("Error: "), f"{what}: {err}"
    assert not lines[0][len("Error: "):].lower().startswith("unexpected"), f"{what}: the catch-all answered: {err}"


def check_inspect(result: dict, what: str, fmt: str) -> None:
    assert result["code"] in (0, 1, 2), f"{what}: exit {result['code']}\n{result['stderr']}"
    if result["code"] == 2:
        check_failure_line(result, what)
        check_machine_error(result["stdout"], 2)
        expected = {"text": "", "json": "{", "github": "::error title="}[fmt]  # every format reports the failure
        assert result["stdout"].startswith(expected) and (fmt != "text" or result["stdout"] == ""), \
            f"{what}: stdout beside the error:\n{result['stdout']}"
        return
    assert "Traceback" not in result["stderr"] + result["stdout"], what
    if fmt == "json":
        assert json.loads(result["stdout"])["exit_code"] == result["code"], what


def check_rewrite(result: dict, what: str, out: Path, dry_run: bool) -> None:
    assert result["code"] in (0, 2), f"{what}: exit {result['code']}\n{result['stderr']}"
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert not leftovers, f"{what}: left {leftovers} beside OUT"
    if result["code"] == 2:
        check_failure_line(result, what)
        assert not out.exists(), f"{what}: a failed rewrite left {out}"
    else:
        assert (out / "config.json").is_file() != dry_run, what


def run_contract(cli: _Worker, root: Path, what: str) -> dict[str, int]:
    """Both commands (inspect in its formats, with --token; rewrite and its dry run) on root; the exit codes."""
    before = snapshot(root)
    codes = {}
    for fmt, extra in (("text", ["--lookup", "<a>", "--lookup", "45"]), ("json", []), ("github", ["--strict"])):
        result = cli.run("inspect", str(root), "--format", fmt, *extra)
        check_inspect(result, f"{what} (inspect --format {fmt})", fmt)
        codes[f"inspect {fmt}"] = result["code"]
    out = root.parent / f"{root.name}-out"
    for extra in (["--dry-run"], ["--json"]):
        result = cli.run("rewrite", str(root), str(out), *extra)
        check_rewrite(result, f"{what} (rewrite {' '.join(extra)})", out, extra == ["--dry-run"])
        codes[f"rewrite {extra[0]}"] = result["code"]
        if out.exists():
            shutil.rmtree(out)
    assert snapshot(root) == before, f"{what}: the input folder was modified"
    return codes


def fresh(template: Path, tmp_path: Path, name: str = "x") -> Path:
    root = tmp_path / name
    shutil.copytree(template, root, symlinks=True)
    return root


def test_the_valid_checkpoint_passes_the_contract(cli: _Worker, template: Path, tmp_path: Path) -> None:
    codes = run_contract(cli, fresh(template, tmp_path), "valid")
    assert codes == {"inspect text": 1, "inspect json": 1, "inspect github": 1, "rewrite --dry-run": 0,
                     "rewrite --json": 0}


@pytest.mark.parametrize("case", list(CASES))
def test_broken_input(cli: _Worker, template: Path, tmp_path: Path, case: str) -> None:
    root = fresh(template, tmp_path)
    CASES[case](root)
    codes = run_contract(cli, root, case)
    readable = case in REWRITE_REFUSES or case in BOTH_HANDLE
    assert all((code in (0, 1)) == readable for name, code in codes.items() if name.startswith("inspect")), codes
    assert all((code == 0) == (case in BOTH_HANDLE) for name, code in codes.items() if name.startswith("rewrite")), \
        codes


def _header_span(path: Path) -> int:
    return 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]


FLIP_TARGETS = ("config.json", "tokenizer.json", "tokenizer.model", SHARD1)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(FLIP_TARGETS),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=4))
def test_flipped_bytes_keep_the_contract(cli: _Worker, template: Path, tmp_path: Path, target: str,
                                         flips: list[tuple[float, int]]) -> None:
    """Random bytes of config.json, tokenizer.json or a shard header replaced: a finding or one clean line."""
    root = tmp_path / f"x{len(list(tmp_path.iterdir()))}"
    shutil.copytree(template, root)
    path = root / target
    buf = bytearray(path.read_bytes())
    span = _header_span(path) if target == SHARD1 else len(buf)
    for where, value in flips:
        buf[int(where * span)] = value
    path.write_bytes(bytes(buf))
    what = f"{target} with bytes {[(int(w * span), v) for w, v in flips]}"
    before = snapshot(root)
    check_inspect(cli.run("inspect", str(root), "--json"), f"{what} (inspect --json)", "json")
    out = root.parent / f"{root.name}-out"
    check_rewrite(cli.run("rewrite", str(root), str(out), "--json"), f"{what} (rewrite)", out, dry_run=False)
    assert snapshot(root) == before, f"{what}: the input folder was modified"


@pytest.mark.parametrize("command", ["inspect", "rewrite"])
def test_the_installed_command_prints_one_line(template: Path, tmp_path: Path, command: str) -> None:
    """The real entry point in its own process: exit 2, one line on stderr, nothing on stdout."""
    root = fresh(template, tmp_path)
    CASES["tensors overlap"](root)
    args = [str(root)] + ([str(tmp_path / "out")] if command == "rewrite" else [])
    proc = run_cli(command, *args, timeout=60)
    assert proc.returncode == 2, proc.stderr
    check_failure_line({"stdout": proc.stdout, "stderr": proc.stderr}, command)
    assert "overlaps" in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "out").exists()

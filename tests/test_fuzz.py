"""Fuzz the readers (issue 9): corrupt one file of a small valid extended checkpoint at a time, run `vocabfix
inspect` and `vocabfix rewrite IN OUT` in process, and hold both to the command line contract.

Targets: a shard's safetensors header (its 8-byte length and JSON), model.safetensors.index.json, config.json,
generation_config.json, tokenizer.json, tokenizer_config.json, added_tokens.json, special_tokens_map.json,
tokenizer.model (protobuf wire level) and a previous vocabfix.json. JSON files get structure-aware mutations
(values at random JSON paths replaced by other JSON values, by values of other paths or by the same value in another
type; keys and elements deleted, inserted, duplicated; deep nesting) and raw byte mutations (flip, insert, delete,
truncate); the header also gets its length, offsets, dtypes and shapes changed; tokenizer.model gets varints
inserted, record lengths changed, records inserted, dropped and duplicated, and pieces rewritten.

The contract, for every input: no traceback and never the CLI's "unexpected ..." catch-all (the commands run with
VOCABFIX_DEBUG=1, so an exception the readers do not turn into a VocabfixError escapes the CliRunner); inspect
exits 0, 1 or 2 and rewrite 0 or 2; exit 2 is exactly one line on stderr ("Error: ...") and nothing on stdout (with
--format json / github at most the same failure as one JSON document / ::error annotation); a rewrite leaves OUT
absent or complete (every input file there, every shard readable by the safetensors library) and no stage folder
beside it; the input folder is never modified; no command takes longer than HANG_SECONDS. Inputs that once broke
the contract are regular tests at the end (FOUND).

Each example copies the template's small files and hard-links its shards (a corrupted shard is written anew), and
the writer's fsyncs are no-ops here, so an example costs a few tens of milliseconds.

How much: hypothesis settings profiles registered below. `make test` runs the "vocabfix-fuzz-default" profile
(derandomized, so CI sees the same examples each run: MAX_EXAMPLES per target); `make fuzz` (VOCABFIX_FUZZ=1)
runs "vocabfix-fuzz" with FUZZ_FACTOR times as many, randomised. The examples run per target and the exit codes
seen are printed at the end of the session (tests/conftest.py: pytest_terminal_summary).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import struct
import traceback
from collections import Counter
from collections.abc import Callable
from itertools import count
from pathlib import Path

import pytest
from fixtures.helpers import COLUMNS, EMBED, INDEX, LM_HEAD, PER_LAYER, SHARD1, SHARD2, A, T, V, pinned_width, snapshot
from fixtures.synthetic import build
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# --- how much ---------------------------------------------------------------------------------------------------

MAX_EXAMPLES = 20  # per target, in `make test`
FUZZ_FACTOR = 20  # `make fuzz`: this many times as many, randomised
HANG_SECONDS = 20  # one command on a 4 KB checkpoint taking longer than this is a hang

_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                      HealthCheck.data_too_large, HealthCheck.filter_too_much])
settings.register_profile("vocabfix-fuzz-default", max_examples=MAX_EXAMPLES, derandomize=True, **_COMMON)
settings.register_profile("vocabfix-fuzz", max_examples=MAX_EXAMPLES * FUZZ_FACTOR, derandomize=False, **_COMMON)
PROFILE = "vocabfix-fuzz" if os.environ.get("VOCABFIX_FUZZ", "") not in ("", "0") else "vocabfix-fuzz-default"

NEW = ["<a>", "<b>"]
UNUSED = {10: 0, 11: 1, 12: 2}  # text ids named <unusedN>, so that --strategy unused has slots
RECORD = "vocabfix.json"

# --- the checkpoint every example starts from --------------------------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A valid extended synthetic checkpoint, with a previous rewrite's vocabfix.json in it (a re-extended
    checkpoint): built once per module."""
    base = tmp_path_factory.mktemp("fuzz-template")
    root = build(base / "ckpt", text=T, vision=V, audio=A, new_tokens=NEW, unused=UNUSED)
    result = _run("rewrite", root, base / "once")
    assert result.exit_code == 0, result.stdout + result.stderr
    shutil.copyfile(base / "once" / RECORD, root / RECORD)
    shutil.rmtree(base / "once")
    return root


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module", autouse=True)
def _no_fsync():
    """The writer's fsyncs (durability, tested in test_writer.py) made no-ops: on a busy disk they are most of an
    example's time, and the contract checked here does not depend on them."""
    from gemma3n_vocabfix import writer

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(writer.os, "fsync", lambda fd: None)
        yield


# --- running the commands ---------------------------------------------------------------------------------------


class Hang(BaseException):
    """A command ran longer than HANG_SECONDS (a BaseException: neither the CLI nor CliRunner swallows it)."""


def _alarm(signum, frame):
    raise Hang(f"a command ran longer than {HANG_SECONDS} s")


def _run(*args: object):
    """`vocabfix ARGS` in process through typer's CliRunner, with VOCABFIX_DEBUG=1 so that an exception no reader
    turned into a VocabfixError escapes (as result.exception) instead of becoming the one-line catch-all."""
    from typer.testing import CliRunner

    from gemma3n_vocabfix import cli

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        with pinned_width():
            return CliRunner().invoke(cli.app, [str(a) for a in args],
                                      env={"COLUMNS": str(COLUMNS), "VOCABFIX_DEBUG": "1"})
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _describe(result, what: str) -> str:
    tb = ""
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        tb = "".join(traceback.format_exception(*result.exc_info))
    return f"{what}: exit {result.exit_code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}\n{tb}"


def _check_common(result, what: str, allowed: tuple[int, ...], fmt: str) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), _describe(result, what)
    assert result.exit_code in allowed, _describe(result, what)
    assert "Traceback" not in result.stdout + result.stderr, _describe(result, what)
    if result.exit_code == 2:
        err = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(err) == 1, _describe(result, f"{what}: not one line")
        assert err[0].startswith("Error: "), _describe(result, what)
        assert not err[0].startswith("Error: unexpected"), _describe(result, f"{what}: the catch-all answered")
        # stdout: nothing, or for machines (--format json / github) the same failure as a JSON document / annotation
        if fmt == "json" and result.stdout:
            doc = json.loads(result.stdout)
            assert doc["exit_code"] == 2 and doc["ok"] is False, _describe(result, what)
        elif fmt == "github" and result.stdout:
            assert all(ln.startswith("::error") for ln in result.stdout.splitlines()), _describe(result, what)
        else:
            assert result.stdout == "", _describe(result, f"{what}: output beside the error")
    elif fmt == "json":  # one JSON document (inspect's says its exit code)
        assert json.loads(result.stdout).get("exit_code", result.exit_code) == result.exit_code, \
            _describe(result, what)


def check_inspect(root: Path, fmt: str, tokens: list[str]) -> int:
    args = ["inspect", root, "--format", fmt] + [a for t in tokens for a in ("--lookup", t)]
    result = _run(*args)
    what = "vocabfix " + " ".join(map(str, args))
    _check_common(result, what, (0, 1, 2), fmt)
    return result.exit_code


def check_rewrite(root: Path, out: Path, extra: list[str]) -> int:
    args = ["rewrite", root, out, *extra]
    result = _run(*args)
    what = "vocabfix " + " ".join(map(str, args))
    _check_common(result, what, (0, 2), "json" if "json" in extra else "text")
    stages = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert not stages, _describe(result, f"{what}: left {stages} beside OUT")
    if result.exit_code == 2:
        assert not out.exists(), _describe(result, f"{what}: a failed rewrite left OUT")
    else:
        missing = sorted({p.name for p in root.iterdir()} - {p.name for p in out.iterdir()})
        assert not missing, _describe(result, f"{what}: OUT lacks {missing}")
        from safetensors import safe_open

        for shard in out.glob("*.safetensors"):
            with safe_open(str(shard), "np") as f:
                list(f.keys())
        json.loads((out / "config.json").read_bytes())
    return result.exit_code


# --- the harness ------------------------------------------------------------------------------------------------

COUNTS: dict[str, Counter] = {}
_names = count()
SHARDS = (SHARD1, SHARD2)
REWRITE_VARIANTS = ([], ["--format", "json"], ["--init", "subtoken", "--format", "json"],
                    ["--strategy", "unused", "--format", "json"])


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    """The examples each target ran and the exit codes they saw, for conftest's pytest_terminal_summary."""
    yield
    lines = [f"hypothesis profile {PROFILE}: {sum(c['examples'] for c in COUNTS.values())} examples"]
    for target, c in COUNTS.items():
        inspect = "/".join(str(c[f"inspect {k}"]) for k in (0, 1, 2))
        rewrite = "/".join(str(c[f"rewrite {k}"]) for k in (0, 2))
        lines.append(f"  {target}: {c['examples']} examples (inspect exit 0/1/2: {inspect}; rewrite exit 0/2: "
                     f"{rewrite})")
    request.config.vocabfix_fuzz_summary = lines


def run_example(template: Path, workdir: Path, target: str, name: str, content: bytes | None,
                inspect_fmt: str, tokens: list[str], rewrite_extra: list[str]) -> tuple[int, int]:
    """A copy of the template with `name` replaced by `content` (None: removed), then both commands on it. Small
    files are copied; the shards not corrupted are hard links."""
    root = workdir / f"e{next(_names)}"
    root.mkdir()
    out = root.parent / f"{root.name}-out"
    try:
        for f in template.iterdir():
            if f.name == name:
                continue
            if f.name in SHARDS:
                os.link(f, root / f.name)
            else:
                shutil.copyfile(f, root / f.name)
        if content is not None:
            (root / name).write_bytes(content)
        before = snapshot(root)
        counter = COUNTS.setdefault(target, Counter())
        counter["examples"] += 1
        codes = check_inspect(root, inspect_fmt, tokens), check_rewrite(root, out, rewrite_extra)
        counter[f"inspect {codes[0]}"] += 1
        counter[f"rewrite {codes[1]}"] += 1
        assert snapshot(root) == before, f"{target}: the input folder was modified"
        return codes
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


# --- strategies: JSON values and edits -----------------------------------------------------------------------------

TOTAL = T + V + A + len(NEW)
INTERESTING_INTS = [0, 1, 2, 3, -1, -2, T - 2, T - 1, T, T + 1, T + V, T + V + A - 1, T + V + A, TOTAL - 1, TOTAL,
                    TOTAL + 1, 64, 255, 256, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 53 + 1, 2 ** 63 - 1, 2 ** 63,
                    2 ** 64, 10 ** 12, 10 ** 30, -(2 ** 63), -(10 ** 30)]
INTERESTING_STRINGS = ["", "0", "49", "-1", "1e999", "NaN", "<a>", "<b>", "<pad>", "<eos>", "<bos>", "<unk>",
                       "<image_soft_token>", "<audio_soft_token>", "<end_of_image>", "<unused0>", "<unused_image0>",
                       "tok7", "gemma3n", "gemma3", "F32", "BF16", "I8", "F128", "pt", SHARD1, SHARD2, INDEX,
                       "config.json", ".", "..", "../x.safetensors", "/etc/passwd", "\x00", "\ud800", "é",
                       "[multimodal]", EMBED, PER_LAYER, LM_HEAD, "Unigram", "BPE", "TemplateProcessing",
                       "Sequence", "BertProcessing", "[/]", "[bold]x[/bold]", "[link=x]", "\n", "a\r\nb", "\x1b[2J",
                       "%s", "{}", "\t"]
DEEP = "\x00vocabfix-fuzz-deep\x00"  # a placeholder for a deeply nested value, spliced in as bytes


def scalars():
    return st.one_of(st.none(), st.booleans(), st.sampled_from(INTERESTING_INTS), st.integers(-300, 300),
                     st.integers(), st.floats(), st.sampled_from(INTERESTING_STRINGS), st.text(max_size=8))


def json_values():
    keys = st.one_of(st.sampled_from(["id", "content", "vocab", "model", "dtype", "shape", "data_offsets",
                                      "special", "ids", "type", "vocab_offset", "vocab_size", "__metadata__"]),
                     st.text(max_size=6))
    return st.recursive(scalars(), lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                          st.dictionaries(keys, kids, max_size=3)),
                        max_leaves=6)


def _paths(node, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _get(node, path: tuple):
    for k in path:
        node = node[k]
    return node


def _set(root, path: tuple, value):
    if not path:
        return value
    _get(root, path[:-1])[path[-1]] = value
    return root


def _retyped(draw, value):
    """The same value in another JSON type, or a neighbour of it: what a careless editor or converter writes."""
    options: list = [None, [value], {"value": value}, str(value)]
    if isinstance(value, bool):
        options += [int(value), not value]
    elif isinstance(value, int):
        options += [value + 1, value - 1, -value, float(value), value + 0.5, value * 1000, value + 2 ** 63]
    elif isinstance(value, float):
        options += [int(value) if math.isfinite(value) else 0, math.nan, math.inf]
    elif isinstance(value, str):
        options += [value + "x", value[:-1], value * 2,
                    int(value) if value.isascii() and value.isdigit() else len(value)]
    elif isinstance(value, list):
        options += [{str(i): v for i, v in enumerate(value)}, value[:-1], value + value[-1:], value[::-1],
                    value[0] if value else 0]
    elif isinstance(value, dict):
        options += [list(value.values()), list(value.keys()), dict(list(value.items())[:-1])]
    return draw(st.sampled_from(options))


@st.composite
def json_edits(draw, doc, extra: list[Callable] = ()):
    """1-3 structure-aware edits of a parsed JSON document (a copy), serialised: bytes."""
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)[1:] or [()]  # the root only by the "root" edit
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "retype", "retype", "transplant", "delete", "delete", "insert",
                                   "duplicate", "deep", "root", *[f"extra{i}" for i in range(len(extra))] * 3]))
        if op == "root":
            doc = draw(st.one_of(json_values(), st.just(DEEP)))
        elif op.startswith("extra"):
            doc = extra[int(op[5:])](draw, doc) if isinstance(doc, dict) else doc  # each edits an object
        elif op == "replace":
            doc = _set(doc, path, draw(json_values()))
        elif op == "retype":
            doc = _set(doc, path, _retyped(draw, _get(doc, path)))
        elif op == "transplant":
            doc = _set(doc, path, json.loads(json.dumps(_get(doc, draw(st.sampled_from(paths))))))
        elif op == "deep":
            doc = _set(doc, path, DEEP)
        elif op == "delete" and path:
            parent = _get(doc, path[:-1])
            del parent[path[-1]]
        elif op == "insert":
            node = _get(doc, path)
            if isinstance(node, dict):
                node[draw(st.one_of(st.sampled_from(list(node) or ["x"]), st.text(max_size=6)))] = draw(json_values())
            elif isinstance(node, list):
                node.insert(draw(st.integers(0, len(node))), draw(json_values()))
        elif op == "duplicate" and path and isinstance(_get(doc, path[:-1]), list):
            parent = _get(doc, path[:-1])
            parent.insert(path[-1], json.loads(json.dumps(parent[path[-1]])))
    indent = draw(st.sampled_from([None, 2]))
    raw = json.dumps(doc, indent=indent, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    depth = draw(st.sampled_from([50, 150, 400, 600, 990, 100_000]))
    return raw.replace(json.dumps(DEEP).encode(), b"[" * depth + b"]" * depth)


INSERTS = [b'"', b"{", b"}", b"[", b"]", b",", b":", b"\\", b"\xff", b"\x00", b"\xc3", b"-", b"9" * 25, b"null",
           b"1e999", b"NaN", b"-Infinity", b" ", b"\n", b"\\u", b"\\ud800", b'"x":', b"0x10"]


@st.composite
def byte_edits(draw, buf: bytes, lo: int = 0, hi: int | None = None):
    """1-4 raw edits of buf inside [lo, hi) (default: all of it): flip, set, insert, delete, truncate."""
    buf = bytearray(buf)
    hi = len(buf) if hi is None else hi
    for _ in range(draw(st.integers(1, 4))):
        hi = min(hi, len(buf))
        if hi <= lo:
            break
        pos = draw(st.integers(lo, hi - 1))
        op = draw(st.sampled_from(["flip", "set", "insert", "insert", "delete", "truncate"]))
        if op == "flip":
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            buf[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            piece = draw(st.one_of(st.sampled_from(INSERTS), st.binary(min_size=1, max_size=8)))
            buf[pos:pos] = piece
            hi += len(piece)
        elif op == "delete":
            n = draw(st.integers(1, 16))
            del buf[pos:pos + n]
        else:
            del buf[pos:]
    return bytes(buf)


@st.composite
def json_file(draw, raw: bytes, extra: list[Callable] = ()):
    """Corruptions of a JSON file: structure-aware edits (3 in 5), raw byte edits, or both."""
    mode = draw(st.sampled_from(["json", "json", "json", "raw", "json+raw"]))
    if mode == "raw":
        return draw(byte_edits(raw))
    edited = draw(json_edits(json.loads(raw), extra))
    return draw(byte_edits(edited)) if mode == "json+raw" else edited


# --- strategies: safetensors headers ----------------------------------------------------------------------------

DTYPES = ["F32", "F16", "BF16", "F64", "I8", "U8", "I32", "I64", "BOOL", "F8_E4M3", "F128", "f32", "", "Q4_0", "F4"]


def _split_shard(buf: bytes) -> tuple[int, dict, bytes]:
    (n,) = struct.unpack("<Q", buf[:8])
    return n, json.loads(buf[8:8 + n]), buf[8 + n:]


def _tensor_names(header: dict) -> list[str]:
    return [k for k in header if k != "__metadata__"] or ["x"]


def _offsets_edit(draw, header):
    names = _tensor_names(header)
    name, other = draw(st.sampled_from(names)), draw(st.sampled_from(names))
    entry = header[name] if isinstance(header.get(name), dict) else {}
    theirs = header.get(other, {}).get("data_offsets", [0, 0]) if isinstance(header.get(other), dict) else [0, 0]
    ints = st.one_of(st.sampled_from(INTERESTING_INTS), st.integers(-64, 4096))
    a = draw(st.one_of(ints, st.sampled_from(theirs if isinstance(theirs, list) and theirs else [0])))
    entry["data_offsets"] = draw(st.sampled_from([[a, draw(ints)], [a, a], [a, a + 16], [draw(ints), a],
                                                  theirs, [a], [a, a, a], [a + 0.5, a + 16.0]]))
    header[name] = entry
    return header


def _dtype_edit(draw, header):
    name = draw(st.sampled_from(_tensor_names(header)))
    if isinstance(header.get(name), dict):
        header[name]["dtype"] = draw(st.one_of(st.sampled_from(DTYPES), scalars()))
    return header


def _shape_edit(draw, header):
    name = draw(st.sampled_from(_tensor_names(header)))
    if isinstance(header.get(name), dict):
        dims = st.one_of(st.integers(0, 400), st.sampled_from(INTERESTING_INTS))
        header[name]["shape"] = draw(st.one_of(st.lists(dims, max_size=4), scalars()))
    return header


def _rename_edit(draw, header):
    name = draw(st.sampled_from(_tensor_names(header)))
    if name in header:
        header[draw(st.sampled_from([EMBED, PER_LAYER, LM_HEAD, "__metadata__", "", "x.weight"]))] = header.pop(name)
    return header


SAME_SIZE = {"F32": ["I32", "U32"], "I32": ["F32"], "U32": ["F32"], "F16": ["BF16", "I16"], "BF16": ["F16"]}


def _plausible_edit(draw, header):
    """An edit that keeps the header valid: a dtype of the same width, the same elements in another shape, a
    tensor renamed, metadata added."""
    name = draw(st.sampled_from(_tensor_names(header)))
    entry = header.get(name)
    if not (isinstance(entry, dict) and isinstance(entry.get("shape"), list)):
        return header
    shape, dtype = entry["shape"], entry.get("dtype")
    op = draw(st.sampled_from(["dtype", "reshape", "reshape", "rename", "metadata"]))
    if op == "dtype" and dtype in SAME_SIZE:
        entry["dtype"] = draw(st.sampled_from(SAME_SIZE[dtype]))
    elif op == "reshape" and all(isinstance(d, int) for d in shape):
        n = math.prod(shape)
        entry["shape"] = draw(st.sampled_from([shape[::-1], [n], [1, n], [n, 1], shape + [1], [1] + shape,
                                               [n // 2, 2] if n % 2 == 0 else [n]]))
    elif op == "rename":
        header[draw(st.sampled_from([EMBED, PER_LAYER, LM_HEAD, "model.embed_vision.embedding.weight",
                                     "model.embed_audio.embedding.weight", "x.weight"]))] = header.pop(name)
    elif op == "metadata":
        meta = header.setdefault("__metadata__", {})
        if isinstance(meta, dict):
            meta[draw(st.sampled_from(["format", "total_size", "x"]))] = draw(st.sampled_from(["pt", "np", "", "1"]))
    return header


HEADER_EDITS = [_offsets_edit, _dtype_edit, _shape_edit, _rename_edit, _plausible_edit, _plausible_edit,
                _plausible_edit]


@st.composite
def shard_files(draw, buf: bytes):
    """A shard with its header corrupted: re-encoded JSON edits (length right, or not), raw bytes of the length
    and header, a changed length, a truncated or extended file."""
    n, header, data = _split_shard(buf)
    mode = draw(st.sampled_from(["json", "json", "json", "raw", "length", "truncate", "append"]))
    if mode == "json":
        raw = draw(json_edits(header, HEADER_EDITS))
        raw += b" " * draw(st.sampled_from([0, 0, -len(raw) % 8]))
        length = draw(st.sampled_from([len(raw)] * 6 + [len(raw) + 1, len(raw) - 1, 0, 2 ** 63, 2 ** 64 - 1]))
        return struct.pack("<Q", length) + raw + data
    if mode == "raw":
        return draw(byte_edits(buf, 0, 8 + n))
    if mode == "length":
        length = draw(st.one_of(st.sampled_from([0, 1, 2, n - 1, n + 1, n + 8, n - 8, len(buf) - 8, len(buf),
                                                 2 ** 31, 2 ** 63, 2 ** 64 - 1, 100 * 1024 * 1024]),
                                st.integers(0, 2 ** 64 - 1)))
        return struct.pack("<Q", max(0, length)) + buf[8:]
    if mode == "truncate":
        return buf[:draw(st.integers(0, len(buf) - 1))]
    return buf + draw(st.binary(min_size=1, max_size=24))


# --- strategies: tokenizer.model (protobuf wire level) ------------------------------------------------------------


def _varint(value: int) -> bytes:
    value &= 2 ** 64 - 1
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _pb_records(buf: bytes) -> list[tuple[int, int, int, int]]:
    """(start, key, payload start, end) of each top-level record of a valid protobuf message."""
    out, pos = [], 0
    while pos < len(buf):
        start = pos
        key, pos = _read_varint(buf, pos)
        wire = key & 7
        if wire == 0:
            _, pos = _read_varint(buf, pos)
            out.append((start, key, pos, pos))
            continue
        if wire == 2:
            length, payload = _read_varint(buf, pos)
            pos = payload + length
        else:
            payload, pos = pos, pos + (8 if wire == 1 else 4)
        out.append((start, key, payload, pos))
    return out


VARINTS = [0, 1, 2, 4, 5, 7, 127, 128, 255, 300, 2 ** 31, 2 ** 32, 2 ** 63, 2 ** 64 - 1]


@st.composite
def sentencepiece_files(draw, buf: bytes):
    """tokenizer.model with its protobuf corrupted: varints inserted, a record's length changed, records inserted,
    dropped or duplicated, a piece's string or type rewritten, raw bytes flipped, the file truncated."""
    records = _pb_records(buf)
    boundaries = [r[0] for r in records] + [len(buf)]
    mode = draw(st.sampled_from(["varint", "length", "record", "drop", "dup", "piece", "piece", "raw", "truncate"]))
    if mode == "varint":
        at = draw(st.one_of(st.sampled_from(boundaries), st.integers(0, len(buf))))
        value = draw(st.one_of(st.sampled_from([_varint(v) for v in VARINTS] + [b"\xff" * 11, b"\x80"]),
                               st.integers(0, 2 ** 64 - 1).map(_varint)))
        return buf[:at] + value + buf[at:]
    if mode == "length":
        start, key, payload, end = draw(st.sampled_from([r for r in records if r[1] & 7 == 2]))
        length = draw(st.one_of(st.sampled_from(VARINTS), st.integers(0, 2 * (end - payload) + 4)))
        return buf[:start] + _varint(key) + _varint(length) + buf[payload:]
    if mode == "record":
        at = draw(st.sampled_from(boundaries))
        field, wire = draw(st.integers(0, 40)), draw(st.integers(0, 7))
        body = draw(st.binary(max_size=12))
        if wire == 2:
            body = _varint(len(body)) + body
        return buf[:at] + _varint(field << 3 | wire) + body + buf[at:]
    if mode in ("drop", "dup"):
        start, _, _, end = draw(st.sampled_from(records))
        return buf[:start] + (buf[start:end] * 2 if mode == "dup" else b"") + buf[end:]
    if mode == "piece":
        pieces = [r for r in records if r[1] == 0x0A]
        start, _, payload, end = draw(st.sampled_from(pieces))
        text = draw(st.one_of(st.sampled_from([s.encode("utf-8", "surrogatepass") for s in INTERESTING_STRINGS]),
                              st.binary(max_size=8)))
        body = b"\x0a" + _varint(len(text)) + text + b"\x15" + struct.pack("<f", draw(st.floats(width=32)))
        body += b"\x18" + _varint(draw(st.one_of(st.integers(0, 7), st.sampled_from(VARINTS))))
        if draw(st.booleans()):
            body = buf[payload:end]
            body = draw(byte_edits(body)) if body else body
        return buf[:start] + b"\x0a" + _varint(len(body)) + body + buf[end:]
    if mode == "raw":
        return draw(byte_edits(buf))
    return buf[:draw(st.integers(0, len(buf) - 1))]


# --- the targets ------------------------------------------------------------------------------------------------


def _config_edits(draw, doc):
    """The layout fields, where they live: offsets, sizes and token ids set to interesting values."""
    path = draw(st.sampled_from([("text_config", "vocab_size"), ("text_config", "vocab_size_per_layer_input"),
                                 ("vision_config", "vocab_offset"), ("vision_config", "vocab_size"),
                                 ("audio_config", "vocab_offset"), ("audio_config", "vocab_size"),
                                 ("image_token_id",), ("audio_token_id",), ("eoi_token_id",), ("boi_token_id",),
                                 ("eos_token_id",), ("pad_token_id",), ("text_config", "tie_word_embeddings"),
                                 ("model_type",), ("text_config", "pad_token_id"), ("vocab_size",)]))
    try:
        return _set(doc, path, draw(st.one_of(st.sampled_from(INTERESTING_INTS), scalars(), json_values())))
    except (KeyError, TypeError, IndexError):
        return doc


def _token_id_edits(draw, doc):
    """Any integer in the document set to an id near a range boundary."""
    ints = [p for p in _paths(doc) if isinstance(_get(doc, p), int) and not isinstance(_get(doc, p), bool)]
    if ints:
        doc = _set(doc, draw(st.sampled_from(ints)), draw(st.sampled_from(INTERESTING_INTS)))
    return doc


def _key_edits(draw, doc):
    """A dict key renamed (ids as keys: added_tokens_decoder, token strings: added_tokens.json, vocab)."""
    dicts = [p for p in _paths(doc) if isinstance(_get(doc, p), dict) and _get(doc, p)]
    if dicts:
        node = _get(doc, draw(st.sampled_from(dicts)))
        old = draw(st.sampled_from(list(node)))
        new = draw(st.one_of(st.sampled_from([str(i) for i in INTERESTING_INTS] + INTERESTING_STRINGS),
                             st.text(max_size=6)))
        node[new] = node.pop(old)
    return doc


JSON_TARGETS = {
    "config.json": [_config_edits, _token_id_edits],
    "generation_config.json": [_token_id_edits],
    INDEX: [_key_edits],
    "tokenizer.json": [_token_id_edits, _key_edits],
    "tokenizer_config.json": [_token_id_edits, _key_edits],
    "added_tokens.json": [_token_id_edits, _key_edits],
    "special_tokens_map.json": [_key_edits],
    RECORD: [_token_id_edits, _key_edits],
}


def strategy_for(target: str, template: Path):
    """(file name, strategy of its corrupted bytes) for a target."""
    if target == "safetensors header":
        return st.sampled_from(SHARDS).flatmap(lambda name: st.tuples(st.just(name),
                                                                      shard_files((template / name).read_bytes())))
    if target == "tokenizer.model":
        return st.tuples(st.just(target), sentencepiece_files((template / target).read_bytes()))
    return st.tuples(st.just(target), json_file((template / target).read_bytes(), JSON_TARGETS[target]))


TARGETS = ["safetensors header", *JSON_TARGETS, "tokenizer.model"]


@pytest.mark.parametrize("target", TARGETS)
@settings(settings.get_profile(PROFILE))
@given(data=st.data())
def test_fuzzed_file_keeps_the_contract(template: Path, workdir: Path, target: str, data) -> None:
    name, content = data.draw(strategy_for(target, template), label="file")
    inspect_fmt = data.draw(st.sampled_from(["json", "json", "github", "text"]), label="inspect --format")
    tokens = data.draw(st.lists(st.one_of(st.sampled_from([NEW[0], str(T + V + A), str(T)]),
                                          st.sampled_from(INTERESTING_STRINGS + list(map(str, INTERESTING_INTS)))),
                                max_size=2), label="inspect --lookup")
    rewrite_extra = data.draw(st.sampled_from(REWRITE_VARIANTS), label="rewrite options")
    run_example(template, workdir, target, name, content, inspect_fmt, tokens, list(rewrite_extra))


# --- what the fuzzer found: each input as a regular test ---------------------------------------------------------

DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000


def _json_edit(name: str, fn: Callable[[dict], object]) -> Callable[[Path], bytes]:
    def make(template: Path) -> bytes:
        data = json.loads((template / name).read_bytes())
        fn(data)
        return json.dumps(data).encode()  # ensure_ascii: a lone surrogate is written as the escape \\ud800
    return make


def _deep_header(template: Path) -> bytes:
    n, _, data = _split_shard((template / SHARD1).read_bytes())
    return struct.pack("<Q", len(DEEP_ARRAY)) + DEEP_ARRAY + data


# (file, its content from the template, rewrite options, expected (inspect, rewrite) exit codes)
FOUND = {
    # json.loads raised RecursionError (not a JSONDecodeError): "unexpected RecursionError"
    "config.json nested 100000 deep": ("config.json", lambda t: b'{"a": ' + DEEP_ARRAY + b"}", [], (2, 2)),
    "shard header nested 100000 deep": (SHARD1, _deep_header, [], (2, 2)),
    "tokenizer.json nested 100000 deep": ("tokenizer.json", lambda t: DEEP_ARRAY, [], (2, 2)),
    # json.loads managed, then the rewrite's copy.deepcopy and id walk of the config raised RecursionError
    "config.json nested 600 deep": ("config.json", _json_edit("config.json", lambda d: d.__setitem__(
        "x_token_id", json.loads(b"[" * 600 + b"]" * 600))), [], (2, 2)),
    "generation_config.json nested 600 deep": ("generation_config.json", _json_edit(
        "generation_config.json", lambda d: d.__setitem__("suppress_tokens", json.loads(b"[" * 600 + b"]" * 600))),
        [], (2, 2)),
    # the tokenizers library raised a bare Exception on a tokenizer.json the reader accepts
    "tokenizer.json the tokenizers library refuses, init subtoken": (
        "tokenizer.json", _json_edit("tokenizer.json", lambda d: d.__setitem__("truncation", "x")),
        ["--init", "subtoken"], (1, 2)),
    # a key with an unpaired surrogate escape parsed, then writing the index back as UTF-8 raised
    "index key with an unpaired surrogate": (
        INDEX, _json_edit(INDEX, lambda d: d.__setitem__("\ud800metadata", None)), [], (2, 2)),
    "config value with an unpaired surrogate": (
        "config.json", _json_edit("config.json", lambda d: d.__setitem__("name", "x\udfff")), [], (2, 2)),
}


@pytest.mark.parametrize("case", list(FOUND))
def test_found_by_fuzzing(template: Path, workdir: Path, case: str) -> None:
    name, content, rewrite_extra, expected = FOUND[case]
    codes = run_example(template, workdir, "found by fuzzing", name, content(template), "text", [NEW[0], str(T)],
                        rewrite_extra)
    assert codes == expected


@pytest.mark.parametrize("fmt", ["json", "github", "text"])
def test_lookup_that_is_not_utf8(template: Path, fmt: str) -> None:
    """Invalid UTF-8 in argv reaches Python as a lone surrogate (surrogateescape): `inspect --format json --lookup
    $'\\xff'` raised UnicodeEncodeError writing the report. Now a usage error, one line."""
    assert check_inspect(template, fmt, ["\udcff"]) == 2

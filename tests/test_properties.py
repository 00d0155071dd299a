"""Property tests (issue 9), end to end over random extended Gemma 3n checkpoint layouts: `vocabfix rewrite IN OUT`
then `vocabfix verify IN OUT` exits 0 (IN unchanged, OUT's layout the layout doc's), and `verify` exits 1, naming
the shard and the tensor, after any single byte of any tensor in OUT is flipped.

A layout is drawn by `layouts()`: T text ids, V vision and A audio ids, k appended tokens; resized the transformers 5
way (embed_tokens and the per-layer table grown to every id), the transformers 4.5x way (embed_tokens only) or not
at all (the appended ids have no rows, the rewrite initialises them); embed_tokens padded to a multiple of 8, 16 or
64 beyond the vocabulary or not; tied, or untied with an lm_head as long as embed_tokens; the tensors in one
model.safetensors without an index, in the two shards synthetic.build writes, with every vocabulary table in one
shard of two, or with each vocabulary table in a shard of its own; F32, F16 or BF16. synthetic.build writes the
folder (float32, row i of each table holds the value of id i, so no two rows are alike); `repack` re-writes its
tensors in the drawn arrangement and dtype with the minimal safetensors writer below, and the index to match.

Expected values come from tests/fixtures/oracle.py (the layout doc's π), never from the package: OUT's config
fields and special ids, the shape of each table, each row OUT must hold as IN's bytes, and (approximately) the
mean rows. Only the default init (mean) is used: it is exact, so every byte of OUT is determined by IN and the
record, and a flipped byte anywhere must be found.

How much: MAX_EXAMPLES layouts for property 1, FLIP_CHECKPOINTS layouts with FLIPS_PER_CHECKPOINT flips each for
property 2 in `make test` (derandomized: the same examples each run); VOCABFIX_FUZZ=1 runs FUZZ_FACTOR times as
many, randomised. The counts run are printed at the end of the session (tests/conftest.py: pytest_terminal_summary).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fixtures.helpers import EMBED, INDEX, LM_HEAD, PER_LAYER, SPECIAL_TOKENS, hash_tree, invoke, read_json
from fixtures.oracle import DocLayout
from fixtures.synthetic import build, clone_config
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file

from gemma3n_vocabfix import rewrite_checkpoint

# --- how much ---------------------------------------------------------------------------------------------------

FUZZ = os.environ.get("VOCABFIX_FUZZ", "") not in ("", "0")
FUZZ_FACTOR = 20
MAX_EXAMPLES = 40 * (FUZZ_FACTOR if FUZZ else 1)  # property 1: layouts rewritten and verified
FLIP_CHECKPOINTS = 6 * (FUZZ_FACTOR if FUZZ else 1)  # property 2: layouts rewritten, then flipped ...
FLIPS_PER_CHECKPOINT = 10  # ... this many times each, one byte at a time
SETTINGS = dict(deadline=None, derandomize=not FUZZ, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
COUNTS: Counter = Counter()

RECORD = "vocabfix.json"
SINGLE = "model.safetensors"
DTYPES = ("F32", "F16", "BF16")
ARRANGEMENTS = ("single", "synthetic", "together", "apart")


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    """The examples run, for conftest's pytest_terminal_summary (added to what other modules report there)."""
    yield
    mode = "VOCABFIX_FUZZ=1, randomised" if FUZZ else "derandomized"
    lines = [f"test_properties ({mode}): rewrite + verify on {COUNTS['layouts']} layouts (exit 0: "
             f"{COUNTS['verified']}); {COUNTS['flips']} single-byte flips on {COUNTS['flip layouts']} layouts "
             f"(exit 1 naming shard and tensor: {COUNTS['flips found']})"]
    config = request.config
    config.vocabfix_fuzz_summary = list(getattr(config, "vocabfix_fuzz_summary", None) or []) + lines


# --- a random layout ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    T: int
    V: int
    A: int
    new_tokens: tuple[str, ...]
    resize: str  # "all": transformers 5 (embed_tokens and per-layer to every id); "embed": 4.5x; "none"
    pad: int | None  # embed_tokens (and a resized per-layer table) rounded up past the vocabulary to a multiple
    tied: bool
    arrangement: str  # ARRANGEMENTS
    vocab_shard_first: bool  # "together" / "apart": the vocabulary tables' shards before the other tensors' one
    dtype: str  # DTYPES

    @property
    def k(self) -> int:
        return len(self.new_tokens)

    @property
    def ids(self) -> DocLayout:
        return DocLayout(self.T, self.V, self.A, self.k)

    def _padded(self, rows: int) -> int:
        return rows if self.pad is None else (rows // self.pad + 1) * self.pad  # strictly past the vocabulary

    @property
    def embed_rows(self) -> int:
        total = self.ids.total if self.resize != "none" else self.T + self.V + self.A
        return self._padded(total)

    @property
    def per_layer_rows(self) -> int:
        return self.embed_rows if self.resize == "all" else self.T

    @property
    def unchanged(self) -> bool:
        """Already the consistent layout: the rewrite has nothing to change (OUT is a copy, no vocabfix.json)."""
        return self.k == 0 and self.embed_rows == self.T + self.V + self.A and self.per_layer_rows == self.T


@st.composite
def layouts(draw) -> Layout:
    k = draw(st.integers(0, 6))
    new_tokens = tuple(f"<added{i}>" if draw(st.booleans()) else f"addedword{i}" for i in range(k))
    return Layout(T=draw(st.integers(8, 64)), V=draw(st.integers(2, 6)), A=draw(st.integers(2, 6)),
                  new_tokens=new_tokens, resize=draw(st.sampled_from(["all", "embed", "none"])),
                  pad=draw(st.sampled_from([None, 8, 16, 64])), tied=draw(st.booleans()),
                  arrangement=draw(st.sampled_from(ARRANGEMENTS)), vocab_shard_first=draw(st.booleans()),
                  dtype=draw(st.sampled_from(DTYPES)))


# --- the checkpoint: synthetic.build, then the tensors repacked ----------------------------------------------------


def make_checkpoint(path: Path, layout: Layout) -> Path:
    lay = layout
    build(path, text=lay.T, vision=lay.V, audio=lay.A, new_tokens=list(lay.new_tokens), embed_rows=lay.embed_rows,
          per_layer_rows=lay.per_layer_rows, lm_head_rows=None if lay.tied else lay.embed_rows)
    if not lay.tied:
        clone_config(path, tie_word_embeddings=False)
    repack(path, lay)
    return path


def repack(path: Path, layout: Layout) -> None:
    """Re-write the folder's tensors in `layout`'s shard arrangement and dtype, and its index to match (none for a
    single model.safetensors)."""
    index = read_json(path / INDEX)
    tensors: dict[str, np.ndarray] = {}
    shard_of: dict[str, str] = {}
    for shard in sorted(set(index["weight_map"].values())):
        for name, array in load_file(str(path / shard)).items():
            tensors[name], shard_of[name] = array.astype(np.float32), shard
        (path / shard).unlink()
    (path / INDEX).unlink()
    vocab = [n for n in (EMBED, PER_LAYER, LM_HEAD) if n in tensors]
    others = sorted(set(tensors) - set(vocab))
    if layout.arrangement == "single":
        groups = [sorted(tensors)]
    elif layout.arrangement == "synthetic":
        groups = [sorted(n for n in tensors if shard_of[n] == s) for s in sorted(set(shard_of.values()))]
    else:
        vocab_groups = [vocab] if layout.arrangement == "together" else [[n] for n in vocab]
        groups = vocab_groups + [others] if layout.vocab_shard_first else [others] + vocab_groups
    encoded = {name: encode(array, layout.dtype) for name, array in tensors.items()}
    if len(groups) == 1:
        write_safetensors(path / SINGLE, {n: encoded[n] for n in groups[0]})
        return
    weight_map = {}
    for i, group in enumerate(groups):
        name = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        write_safetensors(path / name, {n: encoded[n] for n in group})
        weight_map.update(dict.fromkeys(group, name))
    total = sum(len(data) for _, _, data in encoded.values())
    (path / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": dict(sorted(
        weight_map.items()))}, indent=2))


def encode(array: np.ndarray, dtype: str) -> tuple[str, list[int], bytes]:
    """(safetensors dtype, shape, little-endian bytes) of a float32 array in `dtype`. BF16: the upper 16 bits of the
    float32 bit pattern, rounded to nearest even."""
    a = np.ascontiguousarray(array, dtype=np.float32)
    if dtype == "F32":
        data = a.astype("<f4").tobytes()
    elif dtype == "F16":
        data = a.astype("<f2").tobytes()
    else:
        bits = a.view(np.uint32).astype(np.uint64)
        data = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2").tobytes()
    return dtype, list(a.shape), data


def decode(data: bytes, dtype: str, shape: list[int]) -> np.ndarray:
    if dtype == "F32":
        a = np.frombuffer(data, "<f4")
    elif dtype == "F16":
        a = np.frombuffer(data, "<f2").astype(np.float32)
    else:
        a = (np.frombuffer(data, "<u2").astype(np.uint32) << 16).view(np.float32)
    return a.reshape(shape).astype(np.float64)


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    """A minimal safetensors writer: 8-byte little-endian header length, the JSON header (padded with spaces to a
    multiple of 8), then the tensors' bytes in the header's order."""
    header: dict = {"__metadata__": {"format": "pt"}}
    at = 0
    for name in sorted(tensors):
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + len(data)]}
        at += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for name in sorted(tensors):
            f.write(tensors[name][2])


def read_tensors(folder: Path) -> dict[str, tuple[str, str, list[int], int, int]]:
    """tensor name -> (shard file, dtype, shape, absolute start, stop) from every shard's header, read with json."""
    out = {}
    for shard in sorted(folder.glob("*.safetensors")):
        with open(shard, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        for name, entry in header.items():
            if name != "__metadata__":
                lo, hi = entry["data_offsets"]
                out[name] = (shard.name, entry["dtype"], entry["shape"], 8 + n + lo, 8 + n + hi)
    return out


def rows_of(folder: Path, info: tuple) -> tuple[bytes, int]:
    """A table's bytes and its row size."""
    shard, _, shape, start, stop = info
    with open(folder / shard, "rb") as f:
        f.seek(start)
        data = f.read(stop - start)
    return data, (stop - start) // shape[0]


# --- running the commands -----------------------------------------------------------------------------------------


def verify(src: Path, out: Path) -> tuple[int, dict]:
    result = invoke("verify", src, out, "--json")
    assert result.exit_code in (0, 1), result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is (result.exit_code == 0), result.stdout
    return result.exit_code, data


def rewritten(root: Path, layout: Layout) -> tuple[Path, Path]:
    src = make_checkpoint(root / "in", layout)
    before = hash_tree(src)
    out = root / "out"
    rewrite_checkpoint(src, out)
    assert hash_tree(src) == before, "the rewrite modified IN"
    assert (out / RECORD).exists() is not layout.unchanged, sorted(p.name for p in out.iterdir())
    return src, out


# --- property 1: rewrite, then verify exits 0 --------------------------------------------------------------------


#: Corner cases run on top of the drawn layouts (Layout's fields in order: T, V, A, new tokens, resize, pad, tied,
#: arrangement, vocab_shard_first, dtype).
CORNERS = [
    Layout(8, 2, 2, (), "none", None, True, "single", False, "F32"),  # consistent already: a copy, no record
    Layout(8, 2, 2, (), "none", 64, False, "apart", True, "BF16"),  # only padding to drop
    Layout(9, 3, 2, (), "all", None, True, "together", False, "F16"),  # k=0, per-layer rows for multimodal ids
    Layout(12, 4, 3, ("<added0>", "addedword1"), "none", None, False, "together", True, "BF16"),  # mean rows
    Layout(10, 2, 5, ("<a0>", "<a1>", "<a2>"), "embed", 8, True, "apart", False, "F16"),  # per-layer row 0 copies
    # padding rows for the first 4 appended ids, no rows for the last 2
    Layout(8, 2, 2, tuple(f"<added{i}>" for i in range(6)), "none", 8, False, "synthetic", True, "F32"),
]


@settings(max_examples=MAX_EXAMPLES, **SETTINGS)
@given(layout=layouts())
@example(layout=CORNERS[0])
@example(layout=CORNERS[1])
@example(layout=CORNERS[2])
@example(layout=CORNERS[3])
@example(layout=CORNERS[4])
@example(layout=CORNERS[5])
def test_rewrite_then_verify_exits_0(layout: Layout) -> None:
    COUNTS["layouts"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        src, out = rewritten(Path(tmp), layout)
        before = hash_tree(src)
        code, data = verify(src, out)
        assert code == 0 and data["ok"], data["differences"]
        assert data["recorded"] is not layout.unchanged
        assert hash_tree(src) == before, "verify modified IN"
        COUNTS["verified"] += 1
        check_against_oracle(src, out, layout)


def check_against_oracle(src: Path, out: Path, layout: Layout) -> None:
    """What OUT must be by the layout doc, independent of verify: config layout fields and special ids, each
    table's shape, the rows that are IN's rows (bytes) and the mean rows (values)."""
    ids = layout.ids
    config_in, config = read_json(src / "config.json"), read_json(out / "config.json")
    for dotted, value in ids.config_after().items():
        section, key = dotted.split(".")
        assert config[section][key] == value, (dotted, config[section][key], value)
    for key in SPECIAL_TOKENS:
        assert config[key] == ids.pi(config_in[key]), key
    assert config.get("tie_word_embeddings", True) is layout.tied
    tin, tout = read_tensors(src), read_tensors(out)
    assert set(tin) == set(tout)
    assert {t[0] for t in tin.values()} == {t[0] for t in tout.values()}, "the shard files differ"
    rows_in = {EMBED: layout.embed_rows, PER_LAYER: layout.per_layer_rows, LM_HEAD: layout.embed_rows}
    rows_out = {EMBED: ids.total, PER_LAYER: ids.T + ids.k, LM_HEAD: ids.total}
    for name, (shard, dtype, shape, _, _) in tout.items():
        assert tin[name][0] == shard and dtype == layout.dtype, name
        if name in rows_in:
            assert tin[name][2][0] == rows_in[name] and shape == [rows_out[name], *tin[name][2][1:]], name
            check_rows(layout, name, *rows_of(src, tin[name]), *rows_of(out, tout[name]), shape)
        else:
            assert shape == tin[name][2] and rows_of(out, tout[name]) == rows_of(src, tin[name]), name


def check_rows(layout: Layout, name: str, raw_in: bytes, rb: int, raw_out: bytes, rb_out: int, shape: list) -> None:
    """Row r of OUT holds old id π⁻¹(r): IN's own row when IN has one; in the per-layer table IN's row 0 when only
    embed_tokens has a row for it; else the mean of IN's text rows."""
    assert rb == rb_out
    ids, n_in = layout.ids, len(raw_in) // rb
    mean = decode(raw_in[:layout.T * rb], layout.dtype, [layout.T, *shape[1:]]).mean(axis=0)
    for r in range(shape[0]):
        old = ids.inverse(r)
        got = raw_out[r * rb:(r + 1) * rb]
        if old < n_in:
            assert got == raw_in[old * rb:(old + 1) * rb], f"{name} row {r}: not IN's row {old}"
        elif name == PER_LAYER and old < layout.embed_rows:
            assert got == raw_in[:rb], f"{name} row {r}: not IN's row 0"
        else:
            value = decode(got, layout.dtype, shape[1:])
            tol = 1e-5 if layout.dtype == "F32" else 1e-2
            assert np.allclose(value, mean, rtol=tol, atol=tol), f"{name} row {r}: {value}, mean {mean}"


# --- property 2: one flipped byte, verify exits 1 naming it -------------------------------------------------------


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0xFF]))


def new_row_spans(out: Path, tensors: dict) -> list[tuple[str, int, int]]:
    """(tensor, first byte, stop) of each run of rows the record lists as new (row 0 copies, mean rows)."""
    if not (out / RECORD).exists():
        return []
    spans = []
    for t in read_json(out / RECORD).get("tensors") or []:
        if t["name"] in tensors:
            _, _, shape, start, stop = tensors[t["name"]]
            rb = (stop - start) // shape[0]
            spans += [(t["name"], start + e["new_ids"][0] * rb, start + e["new_ids"][1] * rb)
                      for e in t.get("new_rows") or [] if e["new_ids"][1] > e["new_ids"][0]]
    return spans


#: One flip, drawn before OUT exists and placed on it by `place`: where (anywhere in a tensor, its first or last
#: byte, or anywhere in a run of rows the record lists as new), which tensor or run (index modulo their number),
#: which byte (modulo the size).
FLIP = st.tuples(st.sampled_from(["anywhere", "first", "last", "new row"]), st.integers(0, 2 ** 16),
                 st.integers(0, 2 ** 32))
FLIPS = st.lists(FLIP, min_size=FLIPS_PER_CHECKPOINT, max_size=FLIPS_PER_CHECKPOINT)


def place(flip_spec: tuple[str, int, int], tensors: dict, spans: list) -> tuple[str, str, int, int]:
    """(shard, tensor, absolute offset, offset within the tensor) of a drawn flip on OUT."""
    where, pick, at = flip_spec
    if where == "new row" and spans:
        name, lo, hi = spans[pick % len(spans)]
    else:
        name = sorted(tensors)[pick % len(tensors)]
        lo, hi = tensors[name][3], tensors[name][4]
    offset = {"first": lo, "last": hi - 1}.get(where, lo + at % (hi - lo))
    return tensors[name][0], name, offset, offset - tensors[name][3]


@settings(max_examples=FLIP_CHECKPOINTS, **SETTINGS)
@given(layout=layouts(), flips=FLIPS)
@example(layout=CORNERS[0], flips=[("anywhere", i, 7919 * i) for i in range(FLIPS_PER_CHECKPOINT)])
@example(layout=CORNERS[5], flips=[("new row", i, 104729 * i) for i in range(FLIPS_PER_CHECKPOINT)])
def test_a_flipped_byte_fails_verify_naming_shard_and_tensor(layout: Layout, flips: list) -> None:
    COUNTS["flip layouts"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        src, out = rewritten(Path(tmp), layout)
        tensors = read_tensors(out)
        spans = new_row_spans(out, tensors)
        for spec in flips:
            shard, name, offset, byte = place(spec, tensors, spans)
            COUNTS["flips"] += 1
            flip(out / shard, offset)
            try:
                code, report = verify(src, out)
            finally:
                flip(out / shard, offset)
            first = report["differences"][0] if report["differences"] else None
            assert code == 1 and first is not None, f"byte {byte} of {name} in {shard} flipped: not found"
            assert first["file"] == shard and (first["where"] == name or first["where"].startswith(name + " ")), \
                f"byte {byte} of {name} in {shard} flipped; first difference: {first}"
            COUNTS["flips found"] += 1
        assert verify(src, out)[0] == 0, "OUT restored, verify still fails"


def test_the_fixture_keeps_rows_distinct() -> None:
    """The repacked tables (every dtype) have no two equal rows, so a row in the wrong place cannot pass."""
    for dtype in DTYPES:
        layout = Layout(64, 6, 6, tuple(f"<added{i}>" for i in range(6)), "all", 64, False, "apart", True, dtype)
        with tempfile.TemporaryDirectory() as tmp:
            src = make_checkpoint(Path(tmp) / "in", layout)
            assert not (src / INDEX).exists() or read_json(src / INDEX)["metadata"]["total_size"] == sum(
                t[4] - t[3] for t in read_tensors(src).values())
            for name, info in read_tensors(src).items():
                if name in (EMBED, PER_LAYER, LM_HEAD):
                    raw, rb = rows_of(src, info)
                    rows = [raw[i:i + rb] for i in range(0, len(raw), rb)]
                    assert len(set(rows)) == len(rows) == info[2][0], (dtype, name)
            assert math.prod(read_tensors(src)[EMBED][2]) * {"F32": 4, "F16": 2, "BF16": 2}[dtype] == len(
                rows_of(src, read_tensors(src)[EMBED])[0])

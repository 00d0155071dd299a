"""Shared fixtures for the end-to-end compatibility tests (tests/test_compat.py).

Tiny real Gemma 3n checkpoints are built once per test session in a pytest tmp dir (nothing is cached on disk
across runs): a few bases, and one extended checkpoint per variant, made the way users make them
(tests/fixtures/tiny.py: extend).  The rewrite itself runs in the `case` fixture, lazily importing the core so that
the fixture-only tests still run when the core is broken.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from fixtures import tiny  # noqa: E402  (imports torch/transformers only when building)

NEW_TOKENS = list(tiny.NEW_TOKENS)


@dataclass(frozen=True)
class Variant:
    name: str
    id_space: str = "small"
    dtype: str = "float32"
    tie: bool = True
    resize: bool = True
    pad_to_multiple_of: int | None = None
    untie: bool = False
    tokenizer_files: str = "v5"
    processor_files: str = "copy"
    config_style: str = "launch"

    @property
    def base_key(self) -> tuple:
        return (self.id_space, self.dtype, self.tie, self.config_style)

    @property
    def untied(self) -> bool:
        return self.untie or not self.tie


VARIANTS = [
    Variant("small-resized"),
    Variant("small-not-resized", resize=False),
    Variant("small-pad64-processor-save", pad_to_multiple_of=64, processor_files="save", config_style="v5"),
    Variant("small-untied-base", tie=False, tokenizer_files="v4"),
    Variant("small-untie-on-extend", untie=True),
    Variant("real-bf16-resized-v4tok", id_space="real", dtype="bfloat16", tokenizer_files="v4"),
    Variant("real-f32-untie-pad128", id_space="real", untie=True, pad_to_multiple_of=128, config_style="v5"),
]
VARIANTS_BY_NAME = {v.name: v for v in VARIANTS}


def hash_tree(path: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under `path` (also catches added / removed files)."""
    out = {}
    for p in sorted(path.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(path))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def base_factory(tiny_root):
    cache: dict[tuple, Path] = {}

    def get(id_space="small", dtype="float32", tie=True, config_style="launch") -> Path:
        key = (id_space, dtype, tie, config_style)
        if key not in cache:
            name = f"base-{id_space}-{dtype}-{'tied' if tie else 'untied'}-{config_style}"
            cache[key] = tiny.build_base(
                tiny_root / name, id_space=id_space, dtype=dtype, tie=tie, config_style=config_style
            )
        return cache[key]

    return get


@dataclass
class Case:
    """One extended checkpoint, its base, and (once rewritten) the output."""

    variant: Variant
    base: Path
    extended: Path
    root: Path
    T: int
    V: int
    A: int
    k: int
    extended_hash: dict[str, str]
    _out: Path | None = None
    _report: object = None
    _error: BaseException | None = None
    extra: dict = field(default_factory=dict)

    @property
    def new_ids_old(self) -> list[int]:
        return [self.T + self.V + self.A + i for i in range(self.k)]

    @property
    def new_ids_new(self) -> list[int]:
        return [self.T + i for i in range(self.k)]

    def pi(self, i: int) -> int:
        """The doc's id map, computed here independently of the core."""
        T, V, A, k = self.T, self.V, self.A, self.k
        if 0 <= i < T:
            return i
        if T <= i < T + V + A:
            return i + k
        if T + V + A <= i < T + V + A + k:
            return i - V - A
        raise ValueError(i)

    @property
    def out(self) -> Path:
        """The rewritten checkpoint (rewrite runs once, on first use)."""
        if self._error is not None:
            raise self._error
        if self._out is None:
            try:
                from gemma3n_vocabfix import rewrite_checkpoint

                dst = self.root / "out"
                self._report = rewrite_checkpoint(self.extended, dst)
                self._out = dst
            except BaseException as e:  # remember, so every dependent test reports the same failure quickly
                self._error = e
                raise
        return self._out

    @property
    def report(self):
        _ = self.out
        return self._report


@pytest.fixture(scope="session", params=[v.name for v in VARIANTS])
def case(request, base_factory, tiny_root) -> Case:
    v = VARIANTS_BY_NAME[request.param]
    base = base_factory(v.id_space, v.dtype, v.tie, v.config_style)
    root = tiny_root / v.name
    root.mkdir()
    extended = tiny.extend(
        base,
        root / "extended",
        NEW_TOKENS,
        resize=v.resize,
        pad_to_multiple_of=v.pad_to_multiple_of,
        untie=v.untie,
        tokenizer_files=v.tokenizer_files,
        processor_files=v.processor_files,
    )
    sp = tiny.get_id_space(v.id_space)
    return Case(v, base, extended, root, sp.T, sp.V, sp.A, len(NEW_TOKENS), hash_tree(extended))


_MODEL_CACHE: dict[tuple, object] = {}


def load_model(path: Path, dtype=None):
    """Stock `Gemma3nForConditionalGeneration.from_pretrained`, cached per (path, dtype) for the session."""
    from transformers import Gemma3nForConditionalGeneration

    key = (str(path), str(dtype))
    if key not in _MODEL_CACHE:
        kwargs = {} if dtype is None else {"dtype": dtype}
        _MODEL_CACHE[key] = Gemma3nForConditionalGeneration.from_pretrained(path, **kwargs).eval()
    return _MODEL_CACHE[key]


@pytest.fixture(scope="session")
def model_loader():
    yield load_model
    _MODEL_CACHE.clear()

"""Shared fixtures for the tests on tiny real Gemma 3n checkpoints (tests/test_compat.py, tests/test_fixtures.py).

Tiny real Gemma 3n checkpoints are built once per test session in a pytest tmp dir (nothing is cached on disk
across runs): a few bases, and one extended checkpoint per variant, made the way users make them
(tests/fixtures/tiny.py: extend). Each is built the first time a test asks for it and kept for the session
(`case_factory`), so a test can run on every variant (the `case` fixture) or on a few (`on_variants`). The rewrite
itself runs lazily in `Case.out`, importing the core only then, so that the fixture-only tests still run when the
core is broken. Expected ids come from tests/fixtures/oracle.py (the layout doc's π), never from the core.
"""

from __future__ import annotations

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
from fixtures.helpers import hash_tree  # noqa: E402
from fixtures.oracle import DocLayout  # noqa: E402

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


def on_variants(*names: str):
    """Run a test that takes `case` on these variants only (the default is every variant)."""
    unknown = set(names) - set(VARIANTS_BY_NAME)
    assert not unknown, f"no such variant: {sorted(unknown)}"
    return pytest.mark.parametrize("case", names, indirect=True)


@pytest.fixture
def extended(tmp_path: Path) -> Path:
    """A synthetic checkpoint (tests/fixtures/synthetic.py) with fixtures.helpers.NEW appended, resized the
    transformers 5 way."""
    from fixtures.helpers import NEW, A, T, V
    from fixtures.synthetic import build
    return build(tmp_path / "ext", text=T, vision=V, audio=A, new_tokens=NEW)


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
    ids: DocLayout  # T, V, A and k of this case, and the doc's id map over them
    extended_hash: dict[str, str]
    _out: Path | None = None
    _report: object = None
    _error: BaseException | None = None
    extra: dict = field(default_factory=dict)

    @property
    def T(self) -> int:
        return self.ids.T

    @property
    def V(self) -> int:
        return self.ids.V

    @property
    def A(self) -> int:
        return self.ids.A

    @property
    def k(self) -> int:
        return self.ids.k

    @property
    def new_ids_old(self) -> list[int]:
        return self.ids.new_ids_old

    @property
    def new_ids_new(self) -> list[int]:
        return self.ids.new_ids_new

    def pi(self, i: int) -> int:
        """The doc's id map (tests/fixtures/oracle.py), independent of the core."""
        return self.ids.pi(i)

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


@pytest.fixture(scope="session")
def case_factory(base_factory, tiny_root):
    """variant name -> its Case, built on first use and kept for the session."""
    cases: dict[str, Case] = {}

    def get(name: str) -> Case:
        if name not in cases:
            v = VARIANTS_BY_NAME[name]
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
            ids = DocLayout(sp.T, sp.V, sp.A, len(NEW_TOKENS))
            cases[name] = Case(v, base, extended, root, ids, hash_tree(extended))
        return cases[name]

    return get


@pytest.fixture(params=[v.name for v in VARIANTS])
def case(request, case_factory) -> Case:
    return case_factory(request.param)


# --- stock transformers objects, loaded once per session ------------------------------------------------------------

_MODEL_CACHE: dict[tuple, tuple] = {}
_PROCESSOR_CACHE: dict[str, object] = {}


def _load(path: Path, dtype) -> tuple:
    """(model, loading info) of stock `Gemma3nForConditionalGeneration.from_pretrained`, cached per (path, dtype).

    dtype None is from_pretrained's default ("auto": the checkpoint's own dtype). A request for an explicit dtype
    that the path's default load already has is answered with that model: it is the same computation."""
    from transformers import Gemma3nForConditionalGeneration

    key = (str(path), None if dtype is None else str(dtype))
    if key not in _MODEL_CACHE:
        native = _MODEL_CACHE.get((str(path), None))
        if dtype is not None and native is not None and native[0].dtype == dtype:
            return native
        kwargs = {} if dtype is None else {"dtype": dtype}
        model, info = Gemma3nForConditionalGeneration.from_pretrained(path, output_loading_info=True, **kwargs)
        _MODEL_CACHE[key] = (model.eval(), info)
    return _MODEL_CACHE[key]


def load_model(path: Path, dtype=None):
    """Stock `Gemma3nForConditionalGeneration.from_pretrained(path[, dtype=dtype])`, cached for the session."""
    return _load(path, dtype)[0]


def loading_info(path: Path) -> dict:
    """What `from_pretrained(path, output_loading_info=True)` reported for the default-dtype load."""
    return _load(path, None)[1]


def load_processor(path: Path):
    """Stock `AutoProcessor.from_pretrained(path)`, cached for the session (it only reads its files)."""
    from transformers import AutoProcessor

    if str(path) not in _PROCESSOR_CACHE:
        _PROCESSOR_CACHE[str(path)] = AutoProcessor.from_pretrained(path)
    return _PROCESSOR_CACHE[str(path)]


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """tests/test_fuzz.py's count of examples run per target (set by its module fixture), whatever -s says."""
    lines = getattr(config, "vocabfix_fuzz_summary", None)
    if lines:
        terminalreporter.write_sep("-", "fuzz")
        for line in lines:
            terminalreporter.write_line(line)

"""`vocabfix inspect`: a checkpoint's vocabulary layout, what stock transformers does with each id, and findings.

Reads what `read_checkpoint` reads (config.json, generation_config.json, the tokenizer files and the safetensors
headers): no tensor bytes, and neither torch nor transformers is imported. The facts come from `analyse`
(layout.py), the routing from routing.py, the findings from findings.py; this module assembles them into an
`InspectReport`, which render.py prints.
"""

from __future__ import annotations

import os
import re
import shlex
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from . import __version__
from .checkpoint import INDEX_NAME, JSON_TOKENIZER_FILES, SENTENCEPIECE_FILE, Checkpoint
from .findings import REWRITE, Finding, Severity, find_problems, gate, show
from .layout import IdKind, Layout, TableRole, analyse
from .routing import IdRangeRoute, Route, range_name, route, routed_ranges
from .special_ids import SpecialId, special_ids


@dataclass(frozen=True)
class FileView:
    name: str
    bytes: int | None
    role: str  # config, tokenizer, weights index, weights, other
    tensors: int | None = None  # shards only
    tensor_bytes: int | None = None
    dtypes: dict[str, int] | None = None  # dtype -> tensor count
    remote: bool = False  # described from the Hub without downloading


@dataclass(frozen=True)
class TableView:
    name: str
    role: TableRole
    holds: IdKind
    shape: tuple[int, ...]
    dtype: str
    rows: int
    first_id: int  # the id its row 0 stands for
    config_rows: int  # what the config makes transformers build
    config_key: str
    shard: str


@dataclass(frozen=True)
class TokenView:
    query: str
    id: int | None
    token: str | None
    range: str | None
    route: Route | None
    note: str | None = None


@dataclass
class InspectReport:
    """Everything `vocabfix inspect` shows; `exit_code` gates on the findings."""

    source: str
    revision: str | None
    layout: Layout
    files: list[FileView]
    tables: list[TableView]
    ranges: list[IdRangeRoute]
    special: list[SpecialId]
    tokens: list[TokenView]
    findings: list[Finding]
    fix_command: str

    def __repr__(self) -> str:
        return (f"InspectReport(source={self.source!r}, findings={[f.code for f in self.findings]}, "
                f"exit_code={self.exit_code()})")

    def exit_code(self, strict: bool = False) -> int:
        return gate(self.findings, strict)

    def only(self, select: list[str] = (), ignore: list[str] = ()) -> InspectReport:
        """The report with only the findings whose codes are in `select` (all when empty) and not in `ignore`:
        what `--select` / `--ignore` gate on."""
        kept = [f for f in self.findings if (not select or f.code in select) and f.code not in ignore]
        return replace(self, findings=kept)

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity is severity)

    def layout_dict(self) -> dict:
        lay = self.layout
        return {
            **lay.before.to_dict(),
            "appended_tokens": lay.appended,
            "tokenizer_file_sizes": dict(lay.tokenizer.file_sizes),
            "tied_lm_head": lay.tied,
            "consistent": lay.is_consistent,
            "ranges": [{"name": r.name, "start": r.start, "stop": r.stop, "declared_by": r.declared_by,
                        "segments": [asdict(s) for s in r.segments]} for r in self.ranges],
            "special_ids": [{**asdict(s), "tokens": list(s.tokens)} for s in self.special],
        }

    def to_dict(self, strict: bool = False) -> dict:
        return {
            "vocabfix_version": __version__,
            "source": self.source,
            "revision": self.revision,
            "exit_code": self.exit_code(strict),
            "strict": strict,
            "counts": {s.value: self.count(s) for s in Severity},
            "layout": self.layout_dict(),
            "files": [asdict(f) for f in self.files],
            "tensors": [{**asdict(t), "shape": list(t.shape)} for t in self.tables],
            "tokens": [{**asdict(t), "route": asdict(t.route) if t.route else None} for t in self.tokens],
            "findings": [f.to_dict() for f in self.findings],
            "fix_command": self.fix_command,
        }


def _table_views(ckpt: Checkpoint, layout: Layout) -> list[TableView]:
    out = []
    for t in layout.tables:
        rows, key = layout.config_rows(t)
        out.append(TableView(t.tensor.name, t.role, t.holds, t.tensor.shape, t.tensor.dtype, t.rows,
                             layout.first_id(t), rows, key, _relative(ckpt, t.tensor.path)))
    return out


def _relative(ckpt: Checkpoint, path: Path) -> str:
    try:
        return path.relative_to(ckpt.root).as_posix()
    except ValueError:
        return path.name


def _file_views(ckpt: Checkpoint) -> list[FileView]:
    shards = {_relative(ckpt, s.path): s for s in ckpt.weights.shards}
    out = []
    for name in ckpt.files:
        remote = ckpt.remote is not None and not (ckpt.root / name).is_file()
        if name in shards:
            s = shards[name]
            dtypes = dict(sorted(Counter(t.dtype for t in s.tensors).items()))
            out.append(FileView(name, s.file_size, "weights", len(s.tensors), s.data_bytes, dtypes, remote))
            continue
        if name.endswith(".safetensors"):
            role = "weights (not in the index)"
        elif name == INDEX_NAME:
            role = "weights index"
        elif name in JSON_TOKENIZER_FILES or name == SENTENCEPIECE_FILE:
            role = "tokenizer"
        elif name in ("config.json", "generation_config.json"):
            role = "config"
        else:
            role = "other"
        out.append(FileView(name, ckpt.file_size(name), role, remote=remote))
    return out


def _token_views(queries: list[str], layout: Layout) -> list[TokenView]:
    out = []
    for q in queries:
        note = None
        if re.fullmatch(r"\s*-?[0-9]+\s*", q):
            token_id = int(q)
            also = layout.tokenizer.id_of(q)
            if also is not None and also != token_id:
                note = f"read as an id; the token string {show(q)} is id {also}"
        else:
            token_id = layout.tokenizer.id_of(q)
            if token_id is None:
                out.append(TokenView(q, None, None, None, None, "not a token of this tokenizer"))
                continue
        if token_id < 0:
            out.append(TokenView(q, token_id, None, None, None, "negative ids are not token ids"))
            continue
        out.append(TokenView(q, token_id, layout.tokenizer.token(token_id), range_name(token_id, layout),
                             route(token_id, layout), note))
    return out


def checkpoint_roots(paths: list[str]) -> list[str]:
    """The checkpoints named by `paths`, each once and in order: a folder as given, a file inside a checkpoint (what
    a pre-commit hook passes: config.json, a shard...) as the nearest folder above it holding config.json, and
    anything else (a Hub repo id, a path that does not exist) as given, for the reader to accept or refuse."""
    roots: list[str] = []
    for text in paths:
        path = Path(text).expanduser()
        if path.is_file():
            found = next((p for p in path.resolve().parents if (p / "config.json").is_file()), None)
            text = os.path.relpath(found) if found is not None and not path.is_absolute() else str(found or path)
        if text not in roots:
            roots.append(text)
    return roots


def fix_command(source: str, revision: str | None = None, hub: bool = False) -> str:
    """The rewrite command for this checkpoint, ready to paste: OUT is `<name>-vocabfix` beside the folder (for a
    Hub repo, in the working folder), named relative to the working folder when the source was."""
    if hub:
        out = "./" + source.rstrip("/").split("/")[-1] + "-vocabfix"
    else:
        folder = Path(source).expanduser().resolve()
        target = folder.with_name(folder.name + "-vocabfix")
        out = str(target) if Path(source).expanduser().is_absolute() else os.path.relpath(target)
    rev = f" --revision {shlex.quote(revision)}" if revision else ""
    return f"vocabfix rewrite {shlex.quote(source)} {shlex.quote(out)}{rev}"


def inspect_checkpoint(ckpt: Checkpoint | str | os.PathLike, *, tokens: list[str] = (), source: str | None = None,
                       revision: str | None = None) -> InspectReport:
    """Describe a checkpoint and list what stock transformers will do wrong with it, reading no tensor bytes.

    `ckpt`: a checkpoint folder, a Hub repo id (`org/name`, at `revision`: the small files through the Hub cache,
    shard headers by range requests), or a Checkpoint already read. `tokens` are ids or token strings to classify;
    `source` is how the user named the checkpoint, used in the fix commands. Raises CheckpointError /
    NotGemma3nError / HubError when it cannot be read and LayoutError when the config's layout fields are unusable.
    """
    if not isinstance(ckpt, Checkpoint):
        from .hub import read_source, resolve_source
        source = source or str(ckpt)
        ckpt = read_source(resolve_source(str(ckpt), revision))
    layout = analyse(ckpt)
    source = source or str(ckpt.root)
    fix = fix_command(source, revision, hub=ckpt.remote is not None)
    findings = [replace(f, fix=fix) if f.fix == REWRITE else f for f in find_problems(ckpt, layout)]
    return InspectReport(
        source=ckpt.label if ckpt.remote is not None else source,
        revision=revision,
        layout=layout,
        files=_file_views(ckpt),
        tables=_table_views(ckpt, layout),
        ranges=routed_ranges(layout),
        special=special_ids(ckpt, layout.tokenizer),
        tokens=_token_views(list(tokens), layout),
        findings=findings,
        fix_command=fix,
    )

"""`rewrite_checkpoint`: read, analyse, plan and write, with the output-path rules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .checkpoint import read_checkpoint
from .errors import OutputError
from .plan import Plan, make_plan
from .writer import ProgressFn, write_plan


@dataclass
class RewriteReport:
    source: Path
    destination: Path
    plan: Plan
    dry_run: bool

    @property
    def changed(self) -> bool:
        return self.plan.changed

    @property
    def layout(self):
        return self.plan.layout

    @property
    def id_map(self):
        return self.plan.layout.id_map

    def to_dict(self) -> dict:
        return {"source": str(self.source), "destination": str(self.destination), "dry_run": self.dry_run,
                "changed": self.changed, **self.plan.summary(), "files_rewritten": self.plan.rewritten_files}


def check_output_path(src: Path, dst: Path, force: bool) -> None:
    src_r, dst_r = src.resolve(), dst.resolve()
    if dst_r == src_r:
        raise OutputError(f"{dst}: the output must differ from the input", hint="name a new folder for OUT")
    if src_r in dst_r.parents:
        raise OutputError(f"{dst}: the output cannot be inside the input folder", hint="name a folder outside IN")
    if dst_r in src_r.parents:
        raise OutputError(f"{dst}: the output cannot contain the input folder", hint="name a folder outside IN")
    if dst.exists() and not force:
        raise OutputError(f"{dst} already exists", hint="pass --force to replace it")
    if dst.exists() and not dst.is_dir():
        raise OutputError(f"{dst} exists and is not a folder")


def rewrite_checkpoint(src: str | Path, dst: str | Path, *, dry_run: bool = False, force: bool = False,
                       progress: ProgressFn | None = None) -> RewriteReport:
    """Write a copy of the checkpoint at `src` to `dst` in the layout stock transformers accepts.

    The input is never modified. With `dry_run` nothing is written and the report carries the plan.
    """
    src, dst = Path(src), Path(dst)
    plan = make_plan(read_checkpoint(src, merges=False))
    check_output_path(src, dst, force)
    if not dry_run:
        write_plan(plan, dst, force=force, progress=progress)
    return RewriteReport(src, dst, plan, dry_run)

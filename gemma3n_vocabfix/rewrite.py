"""`rewrite_checkpoint`: check the output path, read, analyse, refuse what the rewrite cannot fix, plan, write."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .checkpoint import Checkpoint, list_files, read_checkpoint
from .errors import OutputError, RewriteRefused, VerificationFailed
from .findings import BLOCKS_REWRITE, Finding, find_problems
from .id_map import IdMap
from .layout import Layout, analyse
from .placement import check_strategy, place_on_unused
from .plan import Plan, make_plan, parse_init, resolve_init
from .verify import VerifyReport, verify_checkpoint
from .writer import ProgressFn, check_replaceable, write_plan


@dataclass
class RewriteReport:
    """What a rewrite did (or, with `dry_run`, would do): the plan it executed and where."""

    source: Path
    destination: Path
    plan: Plan
    dry_run: bool
    stale_removed: list[Path] = field(default_factory=list)  # partial outputs of killed runs, cleaned up
    verified: VerifyReport | None = None  # with verify: the proof, run on the stage before it became OUT

    def __repr__(self) -> str:
        verb = "would write" if self.dry_run else "wrote"
        return (f"RewriteReport({str(self.source)!r} -> {str(self.destination)!r}, {verb}, changed={self.changed}, "
                f"appended={self.layout.appended}, tables={[t.name for t in self.plan.changed_tables]})")

    @property
    def changed(self) -> bool:
        return self.plan.changed

    @property
    def layout(self) -> Layout:
        return self.plan.layout

    @property
    def id_map(self) -> IdMap:
        return self.plan.layout.id_map

    def to_dict(self) -> dict:
        return {"source": str(self.source), "destination": str(self.destination), "dry_run": self.dry_run,
                "changed": self.changed, **self.plan.summary(), "files_rewritten": self.plan.rewritten_files,
                "stale_partials_removed": [str(p) for p in self.stale_removed],
                **({"verify": self.verified.to_dict()} if self.verified is not None else {})}


def check_output_path(dst: Path, *, force: bool, src: Path | None = None) -> None:
    """Refuse an OUT that exists (unless `force`, and then only a folder vocabfix wrote or a folder of checkpoint
    files: writer.check_replaceable), or is, holds or sits inside the input folder.

    `src` is None for a Hub repo, checked before anything is downloaded. Raises OutputError.
    """
    if src is not None:
        src_r, dst_r = src.resolve(), dst.resolve()
        if dst_r == src_r:
            raise OutputError(f"{dst}: the output must differ from the input", hint="name a new folder for OUT")
        if src_r in dst_r.parents:
            raise OutputError(f"{dst}: the output cannot be inside the input folder", hint="name a folder outside IN")
        if dst_r in src_r.parents:
            raise OutputError(f"{dst}: the output cannot contain the input folder", hint="name a folder outside IN")
    if dst.exists() and not force:
        raise OutputError(f"{dst} already exists", hint="pass --force to replace it")
    if dst.exists() or dst.is_symlink():
        if src is not None:
            _check_no_link_into(src, dst)
        check_replaceable(dst)


def _check_no_link_into(src: Path, dst: Path) -> None:
    """Replacing OUT must not delete IN's data: refuse when a file of IN is a link to a file inside OUT."""
    dst_r = dst.resolve()
    for name in list_files(src):
        target = (src / name).resolve()
        if dst_r == target or dst_r in target.parents:
            raise OutputError(f"{dst}: IN's {name} links to {target}, inside OUT, so replacing OUT would delete IN's "
                              "data", hint="name a new folder for OUT")


def check_same_file_system(src: Path, dst: Path) -> None:
    """`--link`: OUT (its nearest existing parent) must be on the file system of IN's files. Raises OutputError."""
    parent = dst.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    shards = sorted(src.glob("*.safetensors"))
    here = (shards[0].resolve() if shards else src).stat().st_dev
    if parent.stat().st_dev != here:
        raise OutputError(f"{dst}: --link needs OUT on the same file system as IN (hard links cannot cross file "
                          "systems)", hint="drop --link, or put OUT beside IN")


def refuse_blocking(ckpt: Checkpoint, findings: list[Finding]) -> None:
    """Raise RewriteRefused for the first finding the rewrite cannot fix, worded as `vocabfix inspect` words it."""
    for f in findings:
        if f.code in BLOCKS_REWRITE:
            raise RewriteRefused(f.code, f"{ckpt.label}: {f.code} {f.title}: {f.message}",
                                 hint=f"{f.fix}; 'vocabfix inspect' lists every problem")


def checked_layout(ckpt: Checkpoint, *, strategy: str = "shift", slots: list[int] | None = None,
                   tied: bool | None = None) -> Layout:
    """The layout a rewrite (on disk or in memory) works from: `analyse`, refuse a checkpoint with a finding the
    rewrite cannot fix (by its code), then place the appended tokens by `strategy` (placement.py for "unused").
    `tied` overrides the config's tie_word_embeddings (a loaded model knows whether its lm_head is shared).

    Raises LayoutError, RewriteRefused, and UsageError for an impossible "unused" placement."""
    layout = analyse(ckpt)
    if tied is not None:
        layout.tied = tied
    refuse_blocking(ckpt, find_problems(ckpt, layout))
    return place_on_unused(layout, ckpt, slots) if strategy != "shift" else layout


def rewrite_checkpoint(src: str | Path, dst: str | Path, *, dry_run: bool = False, force: bool = False,
                       progress: ProgressFn | None = None, init: str = "mean", reinit: bool = False,
                       strategy: str = "shift", slots: list[int] | None = None,
                       verify: bool = False, link: bool = False, revision: str | None = None) -> RewriteReport:
    """Write a copy of the checkpoint `src` (a folder, or a Hub repo id at `revision`, downloaded through the Hub
    cache) to `dst` in the layout stock transformers accepts.

    The input is never modified; `dst` appears only once complete (staged beside it, then renamed). With `dry_run`
    nothing is written and the report carries the plan. `progress` is called with the number of bytes written.
    `init` makes the rows the input does not have: "mean" (of the text rows), "zeros", "normal", "subtoken" or
    "copy:TOKEN" (README, "Initialising new rows"); `reinit` also replaces the rows the input has for the appended
    tokens. `strategy`: "shift" (appended tokens at the end of the text range, image and audio ids moved up) or
    "unused" (each appended token on an `<unusedN>` slot, `slots` or the free ones lowest first; the released sizes,
    offsets and image/audio ids kept). `verify`: before the stage becomes OUT, prove it is `src` re-laid-out by its
    vocabfix.json (verify.py); the report's `verified` holds the proof. `link`: shards whose bytes do not change
    are hard links to `src`'s (they share storage: editing one edits the other); OUT must be on `src`'s file system.

    Raises UsageError (an unknown strategy, too few free slots or a slot that is not a free `<unusedN>` token,
    strategy unused on ranges that are not [text | vision | audio] at the config's offsets, an unknown init, copy
    of a token the input lacks, subtoken without tokenizer.json),
    OutputError (bad or existing `dst`, write failure), CheckpointError / NotGemma3nError (unreadable
    input), LayoutError (unusable layout fields), RewriteRefused (a problem listed in findings.BLOCKS_REWRITE) and
    VerificationFailed (with `verify`: the stage differs from what the record says; it was removed).
    """
    from .hub import download_snapshot, resolve_source
    dst = Path(dst)
    parsed = parse_init(init, reinit)
    check_strategy(strategy, slots)
    source = resolve_source(str(src), revision)
    check_output_path(dst, force=force, src=source.path)  # before a Hub download, and before IN is read
    src = source.path if not source.is_hub else download_snapshot(source.repo_id, source.revision, progress=False)
    if link:
        check_same_file_system(src, dst)
    ckpt = read_checkpoint(src, merges=False)
    layout = checked_layout(ckpt, strategy=strategy, slots=slots)
    resolved = parsed if layout.is_consistent else resolve_init(parsed, layout, src / "tokenizer.json")
    plan = make_plan(ckpt, layout, resolved, background=not dry_run)
    if dry_run:
        plan.settle()
    proof: list[VerifyReport] = []

    def check(stage: Path) -> None:
        proof.append(verify_checkpoint(src, stage, in_checkpoint=ckpt))
        if not proof[0].ok:
            first = proof[0].differences[0]
            raise VerificationFailed(proof[0], f"{dst}: the written output is not {src} re-laid-out by its "
                                     f"vocabfix.json ({len(proof[0].differences)} difference(s); first: {first}); "
                                     "it was removed, nothing was written",
                                     hint="please report this with 'vocabfix inspect' of IN")
    stale = [] if dry_run else write_plan(plan, dst, force=force, progress=progress, check=check if verify else None,
                                          link=link)
    return RewriteReport(src, dst, plan, dry_run, stale, proof[0] if proof else None)

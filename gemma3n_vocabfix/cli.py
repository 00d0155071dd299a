"""The `vocabfix` command line: parse options, call one core function, render what comes back."""

from __future__ import annotations

import functools
import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console

from . import __version__
from .errors import (
    EXIT_BROKEN_PIPE,
    EXIT_CANNOT_RUN,
    EXIT_FINDINGS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    Terminated,
    UsageError,
    VocabfixError,
)

app = typer.Typer(
    name="vocabfix",
    help="Make extended-vocabulary Gemma 3n checkpoints load and run in stock transformers.\n\n"
         "Tokens added to a Gemma 3n tokenizer get ids past the audio range, which stock transformers "
         "routes to the 128-row audio table (IndexError). 'vocabfix inspect' shows a checkpoint's layout and what "
         "goes wrong; 'vocabfix rewrite' moves the appended tokens into the text range; 'vocabfix verify' proves "
         "a rewrite's output against its input.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # click's plain help, as huggingface_hub's `hf` has: typer's rich panels import rich.markdown and pygments,
    # which doubled the time of `vocabfix --help`
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@functools.cache
def out() -> Console:
    """The rich console on stdout, made on first use: `vocabfix --help` never imports rich."""
    from rich.console import Console
    return Console(highlight=False)


@functools.cache
def err() -> Console:
    """The rich console on stderr, made on first use."""
    from rich.console import Console
    return Console(stderr=True, highlight=False)


def _version(value: bool) -> None:
    if value:
        print(f"vocabfix {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


class OutputFormat(str, Enum):
    text = "text"
    json = "json"
    github = "github"


INSPECT_HELP = (
    "Show whether stock transformers can run CKPT, what goes wrong if not, and the command that fixes it.\n\n"
    "Reads config.json, the tokenizer files and the safetensors headers only (from the Hub: the small files, and "
    "each shard header by HTTP range requests; no weights are downloaded). Each finding has a stable code "
    "(VF001...), a severity, what goes wrong at run time and the fix. --verbose adds the files, the vocabulary "
    "tables, how stock transformers routes every id range and the special ids. Several CKPTs (or files inside "
    "checkpoints, as a pre-commit hook passes them) are each checked once.\n\n"
    "Exit code: 0 no error-level finding (with --strict: no warning either; --select / --ignore choose the codes "
    "that count), 1 findings at that level, 2 a CKPT cannot be read.\n\n"
    "\b\nExamples:\n  vocabfix inspect ./gemma3n-extended --lookup \"<new_tok>\" --lookup 262400\n"
    "  vocabfix inspect google/gemma-3n-E4B-it --format github --strict\n"
    "  vocabfix inspect ./ckpt --select VF001,VF004 --json"
)


@app.command(help=INSPECT_HELP, short_help="Check whether stock transformers can run a checkpoint.")
def inspect(
    ckpts: list[str] = typer.Argument(..., metavar="CKPT...", help="Checkpoint folders, Hub repo ids (org/name), or "
                                                                  "files inside checkpoints."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", case_sensitive=False,
                                     help="text: the verdict and findings (tables with --verbose); json: one JSON "
                                          "document on stdout; github: GitHub Actions ::error/::warning "
                                          "annotations."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings too, not only on errors."),
    select: list[str] = typer.Option(None, "--select", metavar="CODES",
                                     help="Only these finding codes count and are shown (e.g. VF001,VF004)."),
    ignore: list[str] = typer.Option(None, "--ignore", metavar="CODES", help="These finding codes are not shown and "
                                                                             "do not count."),
    lookups: list[str] = typer.Option(None, "--lookup", "-l", metavar="ID_OR_STRING",
                                      help="Classify an id or a token string: its range, and the table and row stock "
                                           "transformers reads for it. Repeatable; a number is read as an id."),
    old_lookups: list[str] = typer.Option(None, "--token", hidden=True),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also show the files, tables, routed id ranges "
                                                                "and special ids."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing; only the exit code tells."),
    revision: str = typer.Option(None, "--revision", help="Branch, tag or commit, for a Hub repo id."),
) -> None:
    """Show each CKPT's verdict and findings (help text: INSPECT_HELP)."""
    with handled_errors(command="inspect", as_json=as_json, fmt=fmt):
        fmt = _output_format(as_json, fmt)
        queries = _lookups(lookups, old_lookups)
        chosen, skipped = _finding_codes(select, "--select"), _finding_codes(ignore, "--ignore")
        from .inspect import checkpoint_roots
        reports = [_inspect(c, queries, revision).only(chosen, skipped) for c in checkpoint_roots(ckpts)]
        code = max(r.exit_code(strict) for r in reports)
        if not quiet:
            _print_inspect(reports, fmt, strict, verbose)
        if old_lookups:  # after the report, so that a failure above stays one line
            err().print("[yellow]Note:[/] --token is now --lookup (--token is the Hub's name for an auth token).",
                         soft_wrap=True)
    raise typer.Exit(code)


def _print_inspect(reports: list, fmt: OutputFormat, strict: bool, verbose: bool) -> None:
    from .render import render_inspect_github, render_inspect_text, write_json
    if fmt is OutputFormat.json:
        docs = [r.to_dict(strict) for r in reports]
        write_json(docs[0] if len(docs) == 1 else {"checkpoints": docs, "exit_code": max(d["exit_code"] for d in docs)},
                   sys.stdout)
    for n, report in enumerate(reports if fmt is not OutputFormat.json else ()):
        if fmt is OutputFormat.github:
            render_inspect_github(report, sys.stdout, strict)
        else:
            if n:
                out().print()
            render_inspect_text(report, out(), strict, verbose)
    sys.stdout.flush()


def _lookups(lookups: list[str] | None, old: list[str] | None) -> list[str]:
    queries = [*(lookups or []), *(old or [])]
    for q in queries:
        try:  # invalid UTF-8 in argv arrives as lone surrogates (surrogateescape): no token, nor a JSON report, has it
            q.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"--lookup {q!r} is not UTF-8 text", hint="pass a token id or a token string") from None
        if q.startswith("hf_") and len(q) > 20:
            raise UsageError("--lookup takes a token id or string, and this looks like a Hugging Face auth token",
                             hint="vocabfix reads HF_TOKEN or the token 'hf auth login' saved; never pass it here")
    return queries


def _finding_codes(values: list[str] | None, option: str) -> list[str]:
    from .findings import CODES
    codes = [c.strip().upper() for v in values or [] for c in v.split(",") if c.strip()]
    unknown = [c for c in codes if c not in CODES]
    if unknown:
        raise UsageError(f"{option}: no finding code {unknown[0]}", hint=f"codes are {min(CODES)}..{max(CODES)}; "
                         "'vocabfix inspect --help' and the README list them")
    return codes


def _inspect(ckpt: str, tokens: list[str], revision: str | None):
    import gc

    from .hub import read_source, resolve_source
    from .inspect import inspect_checkpoint

    source = resolve_source(ckpt, revision)
    gc.disable()  # parsing a 33 MB tokenizer.json makes millions of objects and no garbage: skip the collector
    try:
        return inspect_checkpoint(read_source(source), tokens=tokens, source=ckpt, revision=revision)
    finally:
        gc.enable()


def _output_format(as_json: bool, fmt: OutputFormat) -> OutputFormat:
    if as_json and fmt not in (OutputFormat.text, OutputFormat.json):
        raise UsageError(f"--json and --format {fmt.value} contradict each other", hint="pass one of them")
    return OutputFormat.json if as_json else fmt


REWRITE_HELP = (
    "Rewrite IN into OUT with the vocabulary layout stock transformers accepts.\n\n"
    "Appended tokens move to the end of the text range; the vision and audio ranges shift behind them. "
    "config.json, generation_config.json, every tokenizer file and the vocabulary tensors are rewritten (streamed "
    "shard by shard); every other file is copied. The rewrite only renumbers: each new row is the row a stock "
    "runtime read for that id before (per-layer row 0 for ids past the per-layer table); only rows no runtime could "
    "read are initialised (--init: mean of the text rows by default; --reinit also replaces the appended tokens' "
    "rows). OUT/vocabfix.json records the id map and where each new row came from. A checkpoint with a problem "
    "the rewrite cannot fix is refused, naming the inspect finding. A Hub repo IN is downloaded through the Hub "
    "cache first.\n\n"
    "\b\nExamples:\n  vocabfix rewrite ./gemma3n-extended ./gemma3n-fixed\n"
    "  vocabfix rewrite ./gemma3n-extended ./gemma3n-fixed --init subtoken\n"
    "  vocabfix rewrite me/gemma3n-extended ./fixed --push-to-hub me/gemma3n-fixed --private"
)


@app.command(help=REWRITE_HELP, short_help="Write a copy of a checkpoint that stock transformers can run.")
def rewrite(
    src: str = typer.Argument(..., metavar="IN",
                              help="Checkpoint folder, or Hub repo id (org/name), to read (never modified)."),
    dst: Path = typer.Argument(..., metavar="OUT", help="Folder to write; must not exist (see --force)."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Show the plan; write nothing."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace OUT if vocabfix wrote it (its vocabfix.json "
                                                            "lists every file) or it holds only checkpoint files."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", case_sensitive=False,
                                     help="text: rich tables; json: one JSON document on stdout; github: a GitHub "
                                          "Actions ::notice annotation."),
    revision: str = typer.Option(None, "--revision", help="Branch, tag or commit, when IN is a Hub repo id."),
    push_to_hub: str = typer.Option(None, "--push-to-hub", metavar="REPO",
                                    help="Upload OUT to this Hub repo (created if needed) in one commit whose "
                                         "message summarises the change."),
    private: bool = typer.Option(False, "--private", help="Create the --push-to-hub repo as private."),
    init: str = typer.Option("mean", "--init", metavar="MODE",
                             help="How rows the input does not have are made: mean (of the text rows), zeros, "
                                  "normal (transformers' mean_resizing), subtoken (mean of the rows of the pieces "
                                  "the original tokenizer splits the token into), copy:TOKEN (a token's rows)."),
    reinit: bool = typer.Option(False, "--reinit", help="Also replace the rows the input has for the appended tokens "
                                                         "(their trained rows, per-layer row-0 copies) with --init."),
    strategy: str = typer.Option("shift", "--strategy", metavar="shift|unused",
                                 help="shift: appended tokens go to the end of the text range, image and audio ids "
                                      "move up; unused: each takes an <unusedN> slot of the text range, and the "
                                      "config, sizes and image/audio ids stay as released."),
    link: bool = typer.Option(False, "--link", help="Make shards whose bytes do not change hard links to IN's "
                                                    "instead of copies (fast, no extra space; they share storage "
                                                    "with IN, so editing one edits the other). OUT must be on IN's "
                                                    "file system."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors (no report, no progress)."),
    verify: bool = typer.Option(False, "--verify", help="Before OUT appears, prove the written folder is IN "
                                                        "re-laid-out (as 'vocabfix verify' does); on a difference "
                                                        "it is removed and the exit code is 1."),
    slots: str = typer.Option(None, "--slots", metavar="IDS",
                              help="With --strategy unused: the <unusedN> ids to use, e.g. 6,7,9 or 6-9 "
                                   "(default: the free ones, lowest first)."),
) -> None:
    """Rewrite IN into OUT (help text: REWRITE_HELP)."""
    written: list[Path] = []  # set once OUT is complete: an interrupt after that must not say "nothing written"

    def interrupted() -> str:
        if written:
            return f"Interrupted after {written[0]} was written (it is complete); the push to the Hub did not finish."
        return "Interrupted; nothing was written (the staged output was removed)."

    with handled_errors(interrupted, command="rewrite", as_json=as_json, fmt=fmt):
        fmt = _output_format(as_json, fmt)
        _rewrite(src, dst, dry_run=dry_run, force=force, fmt=fmt, revision=revision, push_to_hub=push_to_hub,
                 private=private, written=written, init=init, reinit=reinit, strategy=strategy, slots=slots,
                 verify=verify, link=link, quiet=quiet)


def _rewrite(src: str, dst: Path, *, dry_run: bool, force: bool, fmt: OutputFormat, revision: str | None,
             push_to_hub: str | None, private: bool, written: list[Path], init: str = "mean",
             reinit: bool = False, strategy: str = "shift", slots: str | None = None, verify: bool = False,
             link: bool = False, quiet: bool = False) -> None:
    from .hub import download_snapshot, is_repo_id, plan_push, resolve_source
    from .placement import check_strategy, parse_slots
    from .plan import parse_init
    from .rewrite import check_output_path, rewrite_checkpoint

    parse_init(init, reinit)  # a bad --init before anything is read or downloaded
    slot_ids = parse_slots(slots)
    check_strategy(strategy, slot_ids)
    if private and not push_to_hub:
        raise UsageError("--private only applies with --push-to-hub REPO")
    if push_to_hub is not None and not is_repo_id(push_to_hub):
        raise UsageError(f"--push-to-hub {push_to_hub!r} is not a Hub repo id", hint="use org/name")
    source = resolve_source(src, revision)
    check_output_path(dst, force=force, src=source.path)  # before a download, and before reading IN
    people = fmt is OutputFormat.text and not quiet
    label = src
    if source.is_hub:
        folder = download_snapshot(source.repo_id, source.revision, progress=people and err().is_terminal)
        label = f"{source.repo_id}@{folder.name[:12]}"
    else:
        folder = source.path
    with _progress(enabled=people and not dry_run) as progress:
        report = rewrite_checkpoint(folder, dst, dry_run=dry_run, force=force, progress=progress, init=init,
                                    reinit=reinit, strategy=strategy, slots=slot_ids, verify=verify, link=link)
    if not dry_run:
        written.append(dst)
    push = plan_push(report, dst, push_to_hub, private=private, source=label) if push_to_hub else None
    pushed_url = None
    if push is not None and not dry_run:
        from .errors import HubError
        from .hub import push as push_folder
        try:
            pushed_url = push_folder(push)
        except HubError as e:  # OUT is complete: say so, or the rerun meets "already exists" without knowing why
            upload = f"hf upload {push.repo_id} {shlex.quote(str(dst))}" + (" --private" if push.private else "")
            raise HubError(f"{e.message}; {dst} was written, only the upload failed",
                           hint=f"{e.hint + '; then ' if e.hint else ''}upload it with '{upload}'") from None
    from .render import render_rewrite_github, render_rewrite_text, safe, write_json
    if quiet:
        return
    if fmt is OutputFormat.json:
        data = report.to_dict()
        if source.is_hub:
            data["source_repo"] = {"repo_id": source.repo_id, "revision": source.revision, "resolved": label}
        if push is not None:
            data["push"] = {"repo_id": push.repo_id, "private": push.private, "commit_message": push.commit_message,
                            "commit_description": push.commit_description, "pushed": pushed_url is not None,
                            "commit_url": pushed_url}
        write_json(data, sys.stdout)
        return
    if fmt is OutputFormat.github:
        render_rewrite_github(report, sys.stdout)
        return
    _tell_stale(report.stale_removed)
    render_rewrite_text(report, out())
    if report.verified is not None:
        from .render import verify_summary
        out().print(f"[green]Verified[/] before it became OUT: {safe(verify_summary(report.verified))}.",
                     soft_wrap=True)
    if push is not None and pushed_url is None:
        out().print(f"[yellow]Dry run:[/] would push OUT to {safe(push.repo_id)}"
                     f"{' (private)' if push.private else ''} with the commit message: {safe(push.commit_message)}")
    elif push is not None:
        out().print(f"[green]Pushed[/] to {safe(push.repo_id)}: {safe(pushed_url)}")


REMAP_IDS_HELP = (
    "Write DATA, a dataset tokenised with the extended checkpoint's ids, into OUT with the rewrite's ids.\n\n"
    "DATA is a Parquet file or folder, a datasets save_to_disk folder (Dataset or DatasetDict), a datasets cache "
    "folder or .arrow file, or a JSON lines file; OUT has the same form (load_from_disk loads a save_to_disk OUT). "
    "Every id in the --columns goes through the id map of --map (the rewrite's vocabfix.json), one record batch at a "
    "time; ids below 0 (the -100 of ignored labels) and ids past the map stay as they are; the schema and every "
    "other column are kept. An id the map drops (an <unusedN> slot of --strategy unused) stops the run, naming its "
    "row and column. OUT is staged, flushed and renamed into place; DATA is never modified. Parquet and Arrow need "
    "pyarrow (pip install 'gemma3n-vocabfix[data]').\n\n"
    "Exit code: 0 written, 2 DATA, the map or OUT cannot be used (one line).\n\n"
    "\b\nExamples:\n  vocabfix remap-ids ./tokenised ./tokenised-fixed --map ./gemma3n-fixed/vocabfix.json\n"
    "  vocabfix remap-ids train.parquet train-fixed.parquet --map ./gemma3n-fixed --columns input_ids\n"
    "  vocabfix remap-ids train.jsonl train-fixed.jsonl --map ./gemma3n-fixed --json"
)


@app.command("remap-ids", help=REMAP_IDS_HELP, short_help="Renumber a tokenised dataset by a rewrite's id map.")
def remap_ids(
    data: Path = typer.Argument(..., metavar="DATA", help="Parquet, Arrow (datasets) or JSON lines data; never "
                                                          "modified."),
    dst: Path = typer.Argument(..., metavar="OUT", help="Where to write, in DATA's form; must not exist (see "
                                                        "--force)."),
    id_map: Path = typer.Option(..., "--map", metavar="CKPT/vocabfix.json",
                                help="The record 'vocabfix rewrite' wrote into the rewritten checkpoint (or that "
                                     "folder)."),
    columns: str = typer.Option(None, "--columns", metavar="NAMES",
                                help="Comma-separated id columns (default: input_ids,labels, whichever DATA has; "
                                     "columns named here must all be there)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace OUT if it holds only dataset files."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", case_sensitive=False,
                                     help="text; json: one JSON document on stdout; github: a ::notice annotation."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Remap a tokenised dataset's ids (help text: REMAP_IDS_HELP)."""
    with handled_errors(lambda: "Interrupted; nothing was written (the staged output was removed).",
                        command="remap-ids", as_json=as_json, fmt=fmt):
        fmt = _output_format(as_json, fmt)
        from .remap_ids import DEFAULT_COLUMNS
        from .remap_ids import remap_ids as run
        report = run(data, dst, id_map, columns.split(",") if columns else DEFAULT_COLUMNS, force=force)
        from .render import github_notice, safe, write_json
        if quiet:
            return
        if fmt is OutputFormat.json:
            write_json(report.to_dict(), sys.stdout)
            return
        if fmt is OutputFormat.github:
            sys.stdout.write(github_notice("vocabfix remap-ids", report.summary()))
            return
        _tell_stale(report.stale_removed)
        out().print(f"[green]{safe(report.summary())}[/]", soft_wrap=True)
        if report.copied:
            out().print(f"  copied unchanged: {safe(', '.join(report.copied))}", soft_wrap=True)


VERIFY_HELP = (
    "Prove that OUT is IN re-laid-out by the id map OUT/vocabfix.json records.\n\n"
    "Every tensor outside the vocabulary tables must be byte-identical; every row of each vocabulary table must be "
    "IN's row for the id the map sends there, or the new row the record describes (row 0, or its init recomputed "
    "from IN); config.json, generation_config.json and every tokenizer file must be IN's with the ids mapped and the "
    "layout fields set, nothing else changed; the index must match the shards; files the rewrite copies must be "
    "byte-identical. Bytes are streamed (flat memory). An OUT without vocabfix.json must equal IN byte for byte. "
    "IN may be a Hub repo id (rows read by HTTP range requests).\n\n"
    "Exit code: 0 proven, 1 a difference (each named: file, tensor and row, or field), 2 IN, OUT or the record "
    "cannot be read.\n\n"
    "\b\nExamples:\n  vocabfix verify ./gemma3n-extended ./gemma3n-fixed\n"
    "  vocabfix verify me/gemma3n-extended ./gemma3n-fixed --load --json"
)


@app.command(help=VERIFY_HELP, short_help="Prove a rewrite's output is its input re-laid-out.")
def verify(
    src: str = typer.Argument(..., metavar="IN", help="The checkpoint folder, or Hub repo id, that was rewritten."),
    dst: Path = typer.Argument(..., metavar="OUT", help="The folder 'vocabfix rewrite' wrote."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", case_sensitive=False,
                                     help="text: one line, or one per difference; json: one JSON document on "
                                          "stdout; github: GitHub Actions ::error annotations per difference."),
    load: bool = typer.Option(False, "--load", help="Also load OUT with stock transformers and run a forward pass "
                                                    "over every appended token's new id and every multimodal "
                                                    "special id (needs the torch extra)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors; only the exit code tells."),
    revision: str = typer.Option(None, "--revision", help="Branch, tag or commit, when IN is a Hub repo id."),
) -> None:
    """Prove OUT is IN re-laid-out (help text: VERIFY_HELP)."""
    with handled_errors(command="verify", as_json=as_json, fmt=fmt):
        fmt = _output_format(as_json, fmt)
        from .verify import verify_checkpoint
        report = verify_checkpoint(src, dst, revision=revision, load=load)
        from .render import render_verify_github, render_verify_text, write_json
        if quiet:
            pass
        elif fmt is OutputFormat.json:
            write_json(report.to_dict(), sys.stdout)
        elif fmt is OutputFormat.github:
            render_verify_github(report, sys.stdout)
        else:
            render_verify_text(report, out())
        sys.stdout.flush()
    raise typer.Exit(EXIT_OK if report.ok else EXIT_FINDINGS)


REMAP_ADAPTER_HELP = (
    "Rewrite the PEFT adapter ADAPTER, trained on an extended checkpoint, into OUT for its rewrite.\n\n"
    "Every saved tensor indexed by token id follows the id map of --map (the rewrite's vocabfix.json): rows of "
    "modules_to_save copies of embed_tokens, embed_tokens_per_layer and lm_head (and of base tables saved beside a "
    "LoRA), columns of lora_embedding_A, rows of an lm_head LoRA's lora_B; the config's trainable_token_indices "
    "(their delta rows keep their order). Tables get the rewritten base's row counts; new rows follow the rewrite's "
    "rule (per-layer row 0, else the mean of the text rows; zeros for LoRA deltas); rows of dropped ids are dropped. "
    "Every other tensor and config key is kept. Tokenizer files beside the adapter are replaced by the rewritten "
    "checkpoint's. Reads adapter_model.safetensors only (a pickled adapter_model.bin is refused). OUT is staged, "
    "flushed and renamed into place; ADAPTER is never modified; OUT/vocabfix-adapter.json records what changed.\n\n"
    "\b\nExamples:\n  vocabfix remap-adapter ./lora-extended ./lora-fixed --map ./gemma3n-fixed/vocabfix.json\n"
    "  vocabfix remap-adapter ./lora-extended ./lora-fixed --map ./gemma3n-fixed --json"
)


@app.command("remap-adapter", help=REMAP_ADAPTER_HELP,
             short_help="Renumber a PEFT adapter by a rewrite's id map.")
def remap_adapter(
    adapter: Path = typer.Argument(..., metavar="ADAPTER", help="The adapter folder (adapter_config.json, "
                                                                "adapter_model.safetensors); never modified."),
    dst: Path = typer.Argument(..., metavar="OUT", help="Folder to write; must not exist (see --force)."),
    id_map: Path = typer.Option(..., "--map", metavar="CKPT/vocabfix.json",
                                help="The record 'vocabfix rewrite' wrote into the rewritten checkpoint (or that "
                                     "folder)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace OUT if remap-adapter wrote it or it holds only "
                                                            "adapter and checkpoint files."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", case_sensitive=False,
                                     help="text; json: one JSON document on stdout; github: a ::notice annotation."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Remap a PEFT adapter's token ids (help text: REMAP_ADAPTER_HELP)."""
    with handled_errors(lambda: "Interrupted; nothing was written (the staged output was removed).",
                        command="remap-adapter", as_json=as_json, fmt=fmt):
        fmt = _output_format(as_json, fmt)
        from .adapter import remap_adapter as run
        with _progress(enabled=fmt is OutputFormat.text and not quiet) as progress:
            report = run(adapter, dst, id_map, force=force, progress=progress)
        from .render import github_notice, safe, write_json
        if quiet:
            return
        if fmt is OutputFormat.json:
            write_json(report.to_dict(), sys.stdout)
            return
        if fmt is OutputFormat.github:
            sys.stdout.write(github_notice("vocabfix remap-adapter", f"remapped {adapter} -> {dst}"))
            return
        _tell_stale(report.stale_removed)
        out().print(f"[green]Remapped[/] {safe(adapter)} -> {safe(dst)} with the id map of {safe(report.map_path)}"
                     f"{'' if report.changed else ' (no tensor or config entry holds a moved id: same content)'}.",
                     soft_wrap=True)
        for t in report.tensors:
            axis = "columns" if t.kind == "columns" else "rows"
            counts = [(t.plan.rows_copied, "copied"), (t.plan.rows_from_row_0, "row 0"),
                      (t.plan.rows_initialised, "new"), (t.plan.rows_dropped, "dropped")]
            out().print(f"  {safe(t.info.name)}: {axis} {t.plan.source.rows:,} -> {t.plan.rows_out:,} (moved with "
                         f"the map: {', '.join(f'{n:,} {what}' for n, what in counts if n)})", soft_wrap=True)
        for c in report.config_changes:
            out().print(f"  adapter_config.json {c['key']}: {safe(c['old'])} -> {safe(c['new'])}", soft_wrap=True)
        out().print(f"  {report.tensors_unchanged} other tensors: same bytes", soft_wrap=True)
        if report.files_from_checkpoint:
            out().print(f"  from the rewritten checkpoint: {safe(', '.join(report.files_from_checkpoint))}",
                         soft_wrap=True)
        for f in report.files_not_copied:
            out().print(f"  [yellow]not copied[/]: {safe(f['file'])} ({safe(f['why'])})", soft_wrap=True)
        for note in report.notes:
            out().print(f"  [dim]{safe(note)}[/]", soft_wrap=True)


def _tell_stale(paths: list[Path]) -> None:
    """On stderr, each partial output of a killed run that a writing command removed before it wrote."""
    from .render import safe
    for stale in paths:
        err().print(f"Removed {safe(stale)}, the partial output of an earlier run that was killed.", soft_wrap=True)


class _progress:
    """Progress of a write on stderr, for a terminal: a bar with the total known before the first byte (the writer
    calls `start(total)`), percentage, bytes, rate and time left; then one summary line (bytes, time, rate)."""

    def __init__(self, enabled: bool, verb: str = "Wrote"):
        self.enabled = enabled and err().is_terminal
        self.verb, self.bar, self.task, self.done, self.started = verb, None, None, 0, 0.0

    def __enter__(self):
        if not self.enabled:
            return None
        import time

        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TaskProgressColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        self.bar = Progress(BarColumn(), TaskProgressColumn(), DownloadColumn(), TransferSpeedColumn(),
                            TimeRemainingColumn(), console=err(), transient=True)
        self.bar.start()
        self.task = self.bar.add_task("writing", total=None)
        self.started = time.monotonic()
        return self

    def start(self, total: int) -> None:
        self.bar.update(self.task, total=total)

    def __call__(self, n: int) -> None:
        self.done += n
        self.bar.advance(self.task, n)

    def __exit__(self, exc_type, *exc):
        if self.bar is None:
            return False
        import time
        self.bar.stop()
        if exc_type is None and self.done:
            from .render import human_bytes
            seconds = max(time.monotonic() - self.started, 1e-9)
            rate = self.done / seconds / 1e6
            err().print(f"{self.verb} {human_bytes(self.done)} in {seconds:.1f} s ({rate:,.0f} MB/s).")
        return False


@contextmanager
def handled_errors(interrupted: Callable[[], str] = lambda: "Interrupted.", *, command: str = "",
                   as_json: bool = False, fmt: OutputFormat = None) -> Iterator[None]:
    """Inside a command: our errors, Ctrl-C and anything unexpected become one line on stderr and the exit code of
    the error (2; 130 for Ctrl-C). Handled here rather than around `app()`, because click turns KeyboardInterrupt
    into 'Aborted!' and exit 1 (which would read as 'findings') before an outer handler could see it. A reader
    that closes the pipe early (`| head`) ends the command quietly, as for any Unix filter.

    With `--json` / `--format json` every failure also writes one JSON error document on stdout, and with `--format
    github` an ::error annotation, so a CI step that reads stdout never mistakes a failure for an empty report."""
    _machine.fmt = OutputFormat.json if as_json else (fmt or OutputFormat.text)
    _machine.command = command
    try:
        yield
    except VocabfixError as e:
        _fail(e.message, e.hint, e.exit_code, type(e).__name__)
    except KeyboardInterrupt:
        _tell_machines(interrupted(), None, EXIT_INTERRUPTED, "Interrupted")
        err().print(interrupted(), soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Terminated:
        text = interrupted().replace("Interrupted", "Terminated", 1)
        _tell_machines(text, None, EXIT_TERMINATED, "Terminated")
        err().print(text, soft_wrap=True)
        raise typer.Exit(EXIT_TERMINATED) from None
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        raise typer.Exit(EXIT_BROKEN_PIPE) from None
    except Exception as e:  # the contract is one line, never a traceback
        if isinstance(e, (typer.Exit, typer.Abort)) or os.environ.get("VOCABFIX_DEBUG"):
            raise
        _fail(f"unexpected {type(e).__name__}: {e}", "rerun with VOCABFIX_DEBUG=1 for a traceback and report it",
              kind=type(e).__name__)


class _Machine:
    """Where a failure is also reported for machines: the running command's --format (set by handled_errors)."""

    fmt = OutputFormat.text
    command = ""


_machine = _Machine()


def _tell_machines(message: str, hint: str | None, code: int, kind: str) -> None:
    """The JSON error document or the GitHub annotation of a failure, on stdout (the one line goes to stderr)."""
    one_line = " ".join(message.split())
    name = f"vocabfix {_machine.command}".strip()
    if _machine.fmt is OutputFormat.json:
        from .render import write_json
        write_json({"ok": False, "command": name, "exit_code": code,
                    "error": {"type": kind, "message": one_line, "hint": hint}}, sys.stdout)
    elif _machine.fmt is OutputFormat.github:
        from .render import github_error
        sys.stdout.write(github_error(name, one_line + (f" ({hint})" if hint else "")))
    sys.stdout.flush()


def _print_error(message: str, hint: str | None) -> None:
    from rich.markup import escape
    one_line = " ".join(message.split())
    err().print(f"[red]Error:[/] {escape(one_line)}" + (f" [dim]({escape(hint)})[/]" if hint else ""),
                 soft_wrap=True)


def _fail(message: str, hint: str | None, code: int = EXIT_CANNOT_RUN, kind: str = "VocabfixError") -> None:
    _tell_machines(message, hint, code, kind)
    _print_error(message, hint)
    raise typer.Exit(code)


def main() -> None:
    """Run the command line. Commands handle their own errors (handled_errors); this turns a usage error (unknown
    option, missing argument) into the same one line, and catches what happens outside a command. The console
    script enters through __main__.py, which also catches Ctrl-C while this module loads."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = app(standalone_mode=False)
    except Terminated:
        err().print("Terminated.")
        code = EXIT_TERMINATED
    except typer.Abort:
        err().print("Interrupted.")
        code = EXIT_INTERRUPTED
    except KeyboardInterrupt:
        err().print("Interrupted.")
        code = EXIT_INTERRUPTED
    except Exception as e:
        if not _is_usage_error(e):
            raise
        code = _usage_error(e)
    sys.exit(code if isinstance(code, int) else 0)


def _terminate(signum, frame) -> None:
    raise Terminated()


def _is_usage_error(e: Exception) -> bool:
    """click's UsageError (and typer's vendored copy of it, typer >= 0.22): told apart by what they carry, since
    typer exports no name for them."""
    return getattr(e, "exit_code", None) == 2 and hasattr(e, "format_message") and hasattr(e, "ctx")


def _usage_error(e: Exception) -> int:
    ctx = e.ctx
    if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:  # `vocabfix` alone: the help, as before
        print(ctx.get_help())
        return EXIT_CANNOT_RUN
    sub = ctx.command.name if ctx is not None and ctx.parent is not None else ""
    command = f"vocabfix {sub}".strip()  # not ctx.command_path: under `python -m` that names the module
    _machine.fmt, _machine.command = _format_in_argv(sys.argv[1:]), sub
    _tell_machines(e.format_message(), f"see '{command} --help'", EXIT_CANNOT_RUN, "UsageError")
    _print_error(e.format_message(), f"see '{command} --help'")
    return EXIT_CANNOT_RUN


def _format_in_argv(argv: list[str]) -> OutputFormat:
    """The report format a command line asks for, read before (or without) click parsing it: a usage error still
    answers in JSON to a CI step that passed --json."""
    for i, arg in enumerate(argv):
        value = arg.partition("=")[2] if arg.startswith("--format=") else (
            argv[i + 1] if arg == "--format" and i + 1 < len(argv) else None)
        if arg == "--json" or (value or "").lower() == "json":
            return OutputFormat.json
        if (value or "").lower() == "github":
            return OutputFormat.github
    return OutputFormat.text


if __name__ == "__main__":
    main()

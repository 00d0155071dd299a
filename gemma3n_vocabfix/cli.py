"""The `vocabfix` command line: parse options, call one core function, render what comes back."""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from . import __version__
from .errors import VocabfixError

app = typer.Typer(
    name="vocabfix",
    help="Make extended-vocabulary Gemma 3n checkpoints load and run in stock transformers.\n\n"
         "Tokens added to a Gemma 3n tokenizer get ids past the audio range, which stock transformers "
         "routes to the 128-row audio table (IndexError). 'vocabfix inspect' shows a checkpoint's layout and what "
         "goes wrong; 'vocabfix rewrite' moves the appended tokens into the text range.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


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
    "Show CKPT's vocabulary layout, how stock transformers routes each id, and what will go wrong.\n\n"
    "Reads config.json, the tokenizer files and the safetensors headers only (from the Hub: the small files, and "
    "each shard header by HTTP range requests; no weights are downloaded). Each finding has a stable code "
    "(VF001...), a severity, what goes wrong at run time and the command that fixes it.\n\n"
    "Exit code: 0 no error-level finding (with --strict: no warning either), 1 findings at that level, "
    "2 CKPT cannot be read.\n\n"
    "Examples:  vocabfix inspect ./gemma3n-extended --token \"<new_tok>\" --token 262400\n"
    "           vocabfix inspect google/gemma-3n-E4B-it --format github --strict"
)


@app.command(help=INSPECT_HELP)
def inspect(
    ckpt: str = typer.Argument(..., metavar="CKPT", help="Checkpoint folder, or Hub repo id (org/name)."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
    fmt: OutputFormat = typer.Option(OutputFormat.text, "--format", case_sensitive=False,
                                     help="text: rich tables; json: one JSON document on stdout; github: GitHub "
                                          "Actions ::error/::warning annotations."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings too, not only on errors."),
    tokens: list[str] = typer.Option(None, "--token", "-t", metavar="ID_OR_STRING",
                                     help="Classify an id or a token string: its range, and the table and row stock "
                                          "transformers reads for it. Repeatable; a number is read as an id."),
    revision: str = typer.Option(None, "--revision", help="Branch, tag or commit, for a Hub repo id."),
) -> None:
    """Show CKPT's vocabulary layout and findings (help text: INSPECT_HELP)."""
    import gc

    from .hub import read_source, resolve_source
    from .inspect import inspect_checkpoint

    if as_json and fmt not in (OutputFormat.text, OutputFormat.json):
        raise VocabfixError(f"--json and --format {fmt.value} contradict each other", hint="pass one of them")
    fmt = OutputFormat.json if as_json else fmt
    source = resolve_source(ckpt, revision)
    gc.disable()  # parsing a 33 MB tokenizer.json makes millions of objects and no garbage: skip the collector
    try:
        report = inspect_checkpoint(read_source(source), tokens=tokens or [], source=ckpt, revision=revision)
    finally:
        gc.enable()
    strict_code = report.exit_code(strict)
    if fmt is OutputFormat.json:
        from .render_inspect import render_json
        render_json(report, sys.stdout, strict)
    elif fmt is OutputFormat.github:
        from .render_inspect import render_github
        render_github(report, sys.stdout, strict)
    else:
        from .render_inspect import render_text
        render_text(report, stdout, strict)
    sys.stdout.flush()
    raise typer.Exit(strict_code)


REWRITE_HELP = (
    "Rewrite IN into OUT with the vocabulary layout stock transformers accepts.\n\n"
    "Appended tokens move to the end of the text range; the vision and audio ranges shift behind them. "
    "config.json, generation_config.json, every tokenizer file and the vocabulary tensors are rewritten (streamed "
    "shard by shard); every other file is copied. OUT/vocabfix.json records the id map. A Hub repo IN is "
    "downloaded through the Hub cache first.\n\n"
    "Examples:  vocabfix rewrite ./gemma3n-extended ./gemma3n-fixed\n"
    "           vocabfix rewrite me/gemma3n-extended ./fixed --push-to-hub me/gemma3n-fixed --private"
)


@app.command(help=REWRITE_HELP)
def rewrite(
    src: str = typer.Argument(..., metavar="IN",
                              help="Checkpoint folder, or Hub repo id (org/name), to read (never modified)."),
    dst: Path = typer.Argument(..., metavar="OUT", help="Folder to write; must not exist (see --force)."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Show the plan; write nothing."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace OUT if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON document on stdout."),
    revision: str = typer.Option(None, "--revision", help="Branch, tag or commit, when IN is a Hub repo id."),
    push_to_hub: str = typer.Option(None, "--push-to-hub", metavar="REPO",
                                    help="Upload OUT to this Hub repo (created if needed) in one commit whose "
                                         "message summarises the change."),
    private: bool = typer.Option(False, "--private", help="Create the --push-to-hub repo as private."),
) -> None:
    """Rewrite IN into OUT (help text: REWRITE_HELP)."""
    from .hub import download_snapshot, is_repo_id, resolve_source
    from .rewrite import rewrite_checkpoint

    if private and not push_to_hub:
        raise VocabfixError("--private only applies with --push-to-hub REPO")
    if push_to_hub is not None and not is_repo_id(push_to_hub):
        raise VocabfixError(f"--push-to-hub {push_to_hub!r} is not a Hub repo id", hint="use org/name")
    source = resolve_source(src, revision)
    label = src
    if source.is_hub:
        folder = download_snapshot(source.repo_id, source.revision, progress=not as_json and stderr.is_terminal)
        label = f"{source.repo_id}@{folder.name[:12]}"
    else:
        folder = source.path
    with _progress(enabled=not as_json and not dry_run) as progress:
        report = rewrite_checkpoint(folder, dst, dry_run=dry_run, force=force, progress=progress)
    push = None
    if push_to_hub is not None:
        from .hub import plan_push
        push = plan_push(report, dst, push_to_hub, private=private, source=label)
    pushed_url = None
    if push is not None and not dry_run:
        from .hub import push as push_folder
        pushed_url = push_folder(push)
    if as_json:
        data = report.to_dict()
        if source.is_hub:
            data["source_repo"] = {"repo_id": source.repo_id, "revision": source.revision, "resolved": label}
        if push is not None:
            data["push"] = {"repo_id": push.repo_id, "private": push.private, "commit_message": push.commit_message,
                            "commit_description": push.commit_description, "pushed": pushed_url is not None,
                            "commit_url": pushed_url}
        print(json.dumps(data, indent=2))
        return
    from .render import render_rewrite, safe
    render_rewrite(report, stdout)
    if push is not None and pushed_url is None:
        stdout.print(f"[yellow]Dry run:[/] would push OUT to {safe(push.repo_id)}"
                     f"{' (private)' if push.private else ''} with the commit message: {safe(push.commit_message)}")
    elif push is not None:
        stdout.print(f"[green]Pushed[/] to {safe(push.repo_id)}: {safe(pushed_url)}")


class _progress:
    """A bytes progress bar on stderr, only for a terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and stderr.is_terminal
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn
        self.bar = Progress(*Progress.get_default_columns()[:1], DownloadColumn(), TransferSpeedColumn(),
                            console=stderr, transient=True)
        self.bar.start()
        task = self.bar.add_task("writing", total=None)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def main() -> None:
    """Console entry point: usage errors are typer's (exit 2); ours become one line on stderr, exit 2."""
    try:
        app()
    except VocabfixError as e:
        _fail(e.message, e.hint)
    except KeyboardInterrupt:
        stderr.print("Interrupted; nothing was left behind.")
        sys.exit(130)
    except Exception as e:  # the contract is one line, never a traceback
        if os.environ.get("VOCABFIX_DEBUG"):
            raise
        _fail(f"unexpected {type(e).__name__}: {e}", "rerun with VOCABFIX_DEBUG=1 for a traceback and report it")


def _fail(message: str, hint: str | None) -> None:
    from rich.markup import escape
    stderr.print(f"[red]Error:[/] {escape(message)}" + (f" [dim]({escape(hint)})[/]" if hint else ""),
                 soft_wrap=True)
    sys.exit(2)


if __name__ == "__main__":
    main()

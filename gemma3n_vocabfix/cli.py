"""The `vocabfix` command line: parse options, call one core function, render what comes back."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console

from . import __version__
from .errors import VocabfixError

app = typer.Typer(
    name="vocabfix",
    help="Make extended-vocabulary Gemma 3n checkpoints load and run in stock transformers.\n\n"
         "Tokens added to a Gemma 3n tokenizer get ids past the audio range, which stock transformers "
         "routes to the 128-row audio table (IndexError). 'vocabfix rewrite' moves them into the text range.",
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


@app.command()
def rewrite(
    src: Path = typer.Argument(..., metavar="IN", help="Checkpoint folder to read (never modified)."),
    dst: Path = typer.Argument(..., metavar="OUT", help="Folder to write; must not exist (see --force)."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Show the plan; write nothing."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace OUT if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON document on stdout."),
) -> None:
    """Rewrite IN into OUT with the vocabulary layout stock transformers accepts.

    Appended tokens move to the end of the text range; the vision and audio ranges shift behind them. config.json, generation_config.json, every tokenizer file and the vocabulary tensors are rewritten (streamed shard by shard); every other file is copied. OUT/vocabfix.json records the id map.

    Example:  vocabfix rewrite ./gemma3n-extended ./gemma3n-fixed
    """
    from .rewrite import rewrite_checkpoint

    with _progress(enabled=not as_json and not dry_run) as progress:
        report = rewrite_checkpoint(src, dst, dry_run=dry_run, force=force, progress=progress)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        from .render import render_rewrite
        render_rewrite(report, stdout)


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

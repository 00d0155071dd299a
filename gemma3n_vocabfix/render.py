"""Render core results for people (rich) — the core never prints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:  # only for annotations: inspect's rendering uses safe() without importing the writer (numpy)
    from .rewrite import RewriteReport


def safe(text: object) -> str:
    """Escape a string that came from a file (token, tensor or path name) for rich output."""
    s = str(text)
    s = "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in s)
    return escape(s)


def _range(r: list[int]) -> str:
    return f"[{r[0]:,}, {r[1]:,})"


def render_rewrite(report: RewriteReport, console: Console) -> None:
    data = report.to_dict()
    if not report.changed:
        verb = "would copy" if report.dry_run else "copied"
        console.print(f"[green]Nothing to change:[/] {safe(report.source)} already has the layout stock "
                      f"transformers accepts; {verb} it unchanged to {safe(report.destination)}.")
        return
    before, after = data["layout_before"], data["layout_after"]
    table = Table(title="Id layout", title_justify="left")
    for col in ("", "before", "after"):
        table.add_column(col)
    for key in ("text", "vision", "audio"):
        table.add_row(key, _range(before[key]), _range(after[key]))
    table.add_row("vocab_size", f"{before['vocab_size']:,}", f"{after['vocab_size']:,}")
    table.add_row("vocab_size_per_layer_input", f"{before['vocab_size_per_layer_input']:,}",
                  f"{after['vocab_size_per_layer_input']:,}")
    table.add_row("tokenizer size", f"{before['tokenizer_size']:,}", f"{after['vocab_size']:,}")
    console.print(table)
    console.print(f"{data['appended_tokens']} token(s) appended after the audio range move to the end of "
                  "the text range.")

    moves = Table(title="Id map (old -> new)", title_justify="left")
    for col in ("old ids", "new ids"):
        moves.add_column(col)
    for r in data["id_map"]:
        length = r["old_stop"] - r["old_start"]
        moves.add_row(_range([r["old_start"], r["old_stop"]]), _range([r["new_start"], r["new_start"] + length]))
    console.print(moves)

    tensors = Table(title="Vocabulary tensors", title_justify="left")
    for col in ("tensor", "rows before", "rows after", "copied", "new (mean)", "dropped"):
        tensors.add_column(col, justify="left" if col == "tensor" else "right", overflow="fold")
    for t in data["tensors"]:
        tensors.add_row(safe(t["name"]), f"{t['rows_before']:,}", f"{t['rows_after']:,}", f"{t['rows_copied']:,}",
                        f"{t['rows_initialised_to_mean']:,}", f"{t['rows_dropped']:,}")
    console.print(tensors)

    changes = Table(title="Config fields", title_justify="left")
    for col in ("file", "key", "old", "new"):
        changes.add_column(col)
    for c in data["config_changes"]:
        changes.add_row(safe(c["file"]), safe(c["key"]), safe(c["old"]), safe(c["new"]))
    console.print(changes)
    files = ", ".join(safe(f) for f in data["files_rewritten"])
    if report.dry_run:
        console.print(f"[yellow]Dry run:[/] would write {safe(report.destination)} (rewriting {files}); "
                      "nothing written.")
    else:
        console.print(f"[green]Wrote[/] {safe(report.destination)} (rewrote {files}; every other file copied). "
                      "The id map is in vocabfix.json.")

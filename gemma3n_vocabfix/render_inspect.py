"""Render an InspectReport: rich tables for people, one JSON document, or GitHub Actions annotations.

Every string that came from a file (token strings, tensor and file names) goes through `safe()` before rich sees
it, and through `_gh_data()` / `_gh_property()` before it becomes part of a workflow command.
"""

from __future__ import annotations

import json
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .findings import Severity
from .inspect import InspectReport, Route, show
from .render import safe

STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
GITHUB_COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def _bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _ids(start: int, stop: int) -> str:
    return f"{start:,}" if stop - start == 1 else f"{start:,}..{stop - 1:,}"


def render_text(report: InspectReport, console: Console, strict: bool = False) -> None:
    lay = report.layout
    rev = f" @ {safe(report.revision)}" if report.revision else ""
    console.print(f"[bold]{safe(report.source)}[/]{rev}")

    files = Table(title="Files", title_justify="left")
    for col, justify in (("file", "left"), ("role", "left"), ("bytes", "right"), ("tensors", "right"),
                         ("dtypes", "left")):
        files.add_column(col, justify=justify, overflow="fold")
    for f in report.files:
        dtypes = ", ".join(f"{d} x{n}" for d, n in f.dtypes.items()) if f.dtypes else ""
        where = " (header read remotely)" if f.remote and f.role == "weights" else (" (remote)" if f.remote else "")
        files.add_row(safe(f.name), safe(f.role) + where, _bytes(f.bytes),
                      f"{f.tensors:,}" if f.tensors is not None else "", safe(dtypes))
    console.print(files)

    tables = Table(title="Tensors with a vocabulary dimension", title_justify="left")
    for col, justify in (("tensor", "left"), ("shard", "left"), ("shape", "left"), ("dtype", "left"),
                         ("rows", "right"), ("ids of its rows", "left"), ("rows the config builds", "left")):
        tables.add_column(col, justify=justify, overflow="fold")
    for t in report.tables:
        config = ("[green]same[/]" if t.rows == t.config_rows else
                  f"[red]{t.config_rows:,} ({t.config_key})[/]")
        tables.add_row(safe(t.name), safe(t.shard), escape("[" + ", ".join(f"{d:,}" for d in t.shape) + "]"),
                       safe(t.dtype), f"{t.rows:,}", _ids(t.first_id, t.first_id + t.rows) if t.rows else "none",
                       config)
    console.print(tables)

    ranges = Table(title="Id ranges and how stock transformers routes them", title_justify="left")
    for col, justify in (("range", "left"), ("ids", "left"), ("count", "right"), ("embedding read from", "left"),
                         ("per-layer input", "left"), ("", "left")):
        ranges.add_column(col, justify=justify)
    for r in report.ranges:
        for i, s in enumerate(r.segments):
            rows = "?" if s.table_rows is None else f"{s.table_rows:,}"
            last = s.first_row + (s.stop - s.start) - 1
            read = f"{s.table} rows {_ids(s.first_row, last + 1)} (of {rows})"
            status = f"[red]{escape(s.error)}[/]" if s.error else "[green]ok[/]"
            ranges.add_row(r.name if i == 0 else "", _ids(s.start, s.stop), f"{s.stop - s.start:,}", read,
                           s.per_layer, status)
    console.print(ranges)
    sizes = ", ".join(f"{safe(k)} {v:,}" for k, v in lay.tokenizer.file_sizes.items())
    console.print(f"text_config.vocab_size {lay.vocab_size:,} · vocab_size_per_layer_input {lay.per_layer_size:,} · "
                  f"tokenizer {lay.tokenizer.size:,} ids ({sizes or 'no ids found'})")

    if report.special:
        special = Table(title="Special ids: config, generation config and tokenizer", title_justify="left")
        for col in ("key", "config.json", "generation_config.json", "the tokenizer names it", ""):
            special.add_column(col, overflow="fold")
        for s in report.special:
            if s.agrees:
                status = "[green]agree[/]"
            else:
                where = f"id {s.expected_id}" if s.expected_id is not None else "not in the tokenizer"
                status = f"[red]disagree:[/] its {safe(s.tokenizer_key)} {safe(show(s.expected))} is {where}"
            special.add_row(s.key, _value(s.config), _value(s.generation), safe(", ".join(show(t) for t in s.tokens)),
                            status)
        console.print(special)

    if report.tokens:
        tokens = Table(title="Tokens", title_justify="left")
        for col in ("query", "id", "token", "range", "stock transformers reads", "per-layer row", ""):
            tokens.add_column(col)
        for t in report.tokens:
            r: Route | None = t.route
            note = f" [dim]({safe(t.note)})[/]" if t.note else ""
            if r is None:
                tokens.add_row(safe(show(t.query)), "" if t.id is None else f"{t.id:,}", "", "", "", "", note)
                continue
            of = "?" if r.table_rows is None else f"{r.table_rows:,}"
            status = f"[red]{escape(r.error)}[/]" if r.error else "[green]ok[/]"
            tokens.add_row(safe(show(t.query)), f"{t.id:,}", safe(show(t.token)), t.range or "",
                           f"{r.table} row {r.row:,} (of {of})", f"{r.per_layer_row:,}", status + note)
        console.print(tokens)

    if report.findings:
        findings = Table(title="Findings", title_justify="left", show_lines=True)
        for col in ("code", "severity", "what goes wrong", "fix"):
            findings.add_column(col)
        for f in report.findings:
            findings.add_row(f.code, f"[{STYLE[f.severity]}]{f.severity.value}[/]",
                             f"[bold]{safe(f.title)}[/]: {safe(f.message)}", safe(f.fix))
        console.print(findings)
    counts = ", ".join(f"{report.count(s)} {s.value}{'s' if report.count(s) != 1 and s is not Severity.INFO else ''}"
                       for s in Severity)
    code = report.exit_code(strict)
    if code == 0 and not report.findings:
        console.print("[green]OK:[/] " + escape("the layout stock transformers accepts ([text | vision | audio], "
                                               "audio ending at vocab_size, tables matching config and tokenizer)."))
    elif code == 0:
        console.print(f"[green]OK[/] ({counts}); nothing at the {'warning' if strict else 'error'} level.")
    else:
        gated = [f for f in report.findings if f.severity.rank >= (Severity.WARNING.rank if strict else
                                                                    Severity.ERROR.rank)]
        if any(f.fix == report.fix_command for f in gated):
            console.print(f"[red]Problems:[/] {counts}. The rewrite fixes the layout findings:")
            console.print(f"  [bold]{safe(report.fix_command)}[/]", soft_wrap=True)
        else:
            console.print(f"[red]Problems:[/] {counts}. See the fix column above.")


def _value(value: object) -> str:
    return "" if value is None else safe(json.dumps(value))


def render_json(report: InspectReport, out: TextIO, strict: bool = False) -> None:
    out.write(json.dumps(report.to_dict(strict), indent=2, ensure_ascii=False) + "\n")


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(report: InspectReport, out: TextIO, strict: bool = False) -> None:
    """One workflow command per finding (::error / ::warning / ::notice), then a plain summary line."""
    for f in report.findings:
        title = _gh_property(f"{f.code} {f.title}")
        out.write(f"::{GITHUB_COMMAND[f.severity]} title={title}::{_gh_data(f'{f.message}. Fix: {f.fix}')}\n")
    counts = ", ".join(f"{report.count(s)} {s.value}" for s in Severity)
    out.write(_gh_data(f"vocabfix inspect {report.source}: {counts}; exit code {report.exit_code(strict)}") + "\n")

"""Every rendering of a core result, for both commands: rich text for people, one JSON writer, GitHub Actions
annotations, and the Hub commit message of a rewrite. The core never prints.

Every string that came from a file (token strings, tensor and file names) goes through `safe()` before rich sees it,
and through `_gh_data()` / `_gh_property()` before it becomes part of a workflow command.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table

from .checkpoint import RECORD_NAME
from .findings import BLOCKS_REWRITE, Severity, show
from .layout import IdKind

if TYPE_CHECKING:  # annotations only: rendering inspect must not import the writer (numpy)
    from .inspect import InspectReport
    from .rewrite import RewriteReport
    from .routing import Route
    from .verify import VerifyReport

STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
GITHUB_COMMAND = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def safe(text: object) -> str:
    """Escape a string that came from a file (token, tensor or path name) for rich output."""
    s = str(text)
    s = "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in s)
    return escape(s)


def write_json(data: dict, out: TextIO) -> None:
    """The one JSON writer: a document on `out`, indented, UTF-8 as is, newline-terminated."""
    out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def _range(r) -> str:
    return f"[{r[0]:,}, {r[1]:,})"


def rewrite_headline(report: RewriteReport) -> str:
    """One sentence of what the rewrite changes, built from the plan (used by the text view, GitHub and the Hub
    commit title)."""
    plan, lay = report.plan, report.layout
    if not report.changed:
        return "nothing to change: already in the layout stock transformers accepts"
    parts = []
    if lay.appended:
        where = "onto <unusedN> slots" if lay.strategy == "unused" else "into the text range"
        parts.append(f"move {lay.appended} appended token{'s' if lay.appended != 1 else ''} {where}")
    between = lay.moved_text_ids - lay.appended
    if between:
        parts.append(f"move {between} id{'s' if between != 1 else ''} between the vision and audio ranges into the "
                     "text range")
    if lay.vision_offset > lay.audio_offset:
        parts.append("put the vision range before the audio range")
    padding = max((t.rows_dropped for t in plan.changed_tables if t.holds is IdKind.EVERY), default=0)  # per table
    if padding:
        parts.append(f"drop {padding} padding row{'s' if padding != 1 else ''}")
    if any(t.rows_dropped for t in plan.changed_tables if t.holds is IdKind.TEXT):
        parts.append("image and audio ids read per-layer row 0 again")
    new_rows = sum(t.rows_initialised for t in plan.changed_tables)
    if new_rows:
        parts.append(f"initialise {new_rows} missing row{'s' if new_rows != 1 else ''}")
    if lay.vocab_size != lay.new_total:
        parts.append(f"vocab_size {lay.vocab_size} -> {lay.new_total}")
    return "; ".join(parts) or "correct the layout fields of config.json"


def _appended_after(lay) -> str:
    """Where the appended ids go: a range (shift) or the `<unusedN>` slots they take (unused)."""
    lo, hi = lay.appended_range
    if lay.strategy == "unused":
        return "slots " + ", ".join(str(s) for s in lay.slots)
    return _range((lay.id_map(lo), lay.id_map(lo) + hi - lo))


def _layout_table(report: RewriteReport) -> Table:
    before, after = report.layout.before, report.layout.after
    table = Table(title="Id layout", title_justify="left")
    for col in ("", "before", "after"):
        table.add_column(col)
    for key in ("text", "vision", "audio"):
        table.add_row(key, _range(getattr(before, key)), _range(getattr(after, key)))
    lay = report.layout
    if lay.appended:
        table.add_row("appended", _range(before.appended), _appended_after(lay) + " (text)")
    for key in ("vocab_size", "vocab_size_per_layer_input", "tokenizer_size"):
        table.add_row(key.replace("_", " ") if key == "tokenizer_size" else key, f"{getattr(before, key):,}",
                      f"{getattr(after, key):,}")
    return table


def render_rewrite_text(report: RewriteReport, console: Console) -> None:
    """The rewrite for people: layouts before and after, the id map, the tables, the config fields."""
    plan = report.plan
    if not report.changed:
        verb = "would copy" if report.dry_run else "copied"
        record = " (its vocabfix.json replaced by this rewrite's: every id kept)" if any(
            f.name == RECORD_NAME and f.parts is not None for f in plan.files) else ""
        console.print(f"[green]Nothing to change:[/] {safe(report.source)} already has the layout stock "
                      f"transformers accepts; {verb} it unchanged to {safe(report.destination)}{record}.")
        return
    console.print(_layout_table(report))
    headline = rewrite_headline(report)
    console.print(escape(headline[0].upper() + headline[1:]) + ".")
    moves = Table(title="Id map (old -> new)", title_justify="left")
    for col in ("old ids", "new ids"):
        moves.add_column(col)
    for r in report.id_map.ranges:
        moves.add_row(_range((r.old_start, r.old_stop)), _range((r.new_start, r.new_stop)))
    for lo, hi in report.id_map.dropped:
        moves.add_row(_range((lo, hi)), "dropped (slot given to an appended token)")
    console.print(moves)
    tensors = Table(title="Vocabulary tensors", title_justify="left")
    for col in ("tensor", "rows before", "rows after", "copied", "row 0 (as read before)", escape(f"new ({plan.init})"),
                "dropped"):
        tensors.add_column(col, justify="left" if col == "tensor" else "right", overflow="fold")
    for t in plan.changed_tables:
        tensors.add_row(safe(t.name), f"{t.source.rows:,}", f"{t.rows_out:,}", f"{t.rows_copied:,}",
                        f"{t.rows_from_row_0:,}", f"{t.rows_initialised:,}", f"{t.rows_dropped:,}")
    if plan.changed_tables:
        console.print(tensors)
    changes = Table(title="Config fields", title_justify="left")
    for col in ("file", "key", "old", "new"):
        changes.add_column(col)
    for c in plan.changes:
        changes.add_row(safe(c.file), safe(c.key), safe(c.old), safe(c.new))
    if plan.changes:
        console.print(changes)
    files = ", ".join(safe(f) for f in plan.rewritten_files)
    if report.dry_run:
        console.print(f"[yellow]Dry run:[/] would write {safe(report.destination)} (rewriting {files}); "
                      "nothing written.")
    else:
        console.print(f"[green]Wrote[/] {safe(report.destination)} (rewrote {files}; every other file copied). "
                      "The id map is in vocabfix.json.")


def render_rewrite_github(report: RewriteReport, out: TextIO) -> None:
    """One ::notice workflow command saying what the rewrite did."""
    verb = "would write" if report.dry_run else "wrote"
    out.write(github_notice("vocabfix rewrite", f"{report.source}: {rewrite_headline(report)}; {verb} "
                                                f"{report.destination}"))


def commit_message(report: RewriteReport, source: str) -> tuple[str, str]:
    """A Hub commit title and description that say what the rewrite changed, from the plan."""
    from . import __version__
    plan, lay = report.plan, report.layout
    if not report.changed:
        return (f"vocabfix: copy of {source} (vocabulary layout already consistent)",
                f"vocabfix {__version__} found {source} already in the layout stock transformers accepts "
                "([text | vision | audio], audio ending at vocab_size) and copied it unchanged.")
    before, after = lay.before, lay.after
    lines = [f"Rewritten by vocabfix {__version__} from {source} so that stock transformers loads and runs it: "
             "[text | vision | audio], audio ending at vocab_size.", "", "Id ranges:"]
    for key in ("text", "vision", "audio"):
        old, new = getattr(before, key), getattr(after, key)
        lines.append(f"- {key}: [{old[0]}, {old[1]}) -> [{new[0]}, {new[1]})")
    if lay.appended:
        lo, hi = before.appended
        lines.append(f"- appended: [{lo}, {hi}) -> {_appended_after(lay)}")
    if plan.changes:
        lines += ["", "Config fields:"] + [f"- {c.file} {c.key}: {c.old} -> {c.new}" for c in plan.changes]
    if plan.changed_tables:
        lines += ["", "Vocabulary tensors (rows):"]
        lines += [f"- {t.name}: {t.source.rows} -> {t.rows_out} ({t.rows_copied} copied, {t.rows_from_row_0} copies of "
                  f"row 0, {t.rows_initialised} new ({t.init}), {t.rows_dropped} dropped)" for t in plan.changed_tables]
    lines += ["", "Files rewritten: " + ", ".join(plan.rewritten_files) + "; every other file is unchanged.",
              "The old -> new id map is in vocabfix.json."]
    return f"vocabfix: {rewrite_headline(report)}", "\n".join(lines)


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _ids(start: int, stop: int) -> str:
    return f"{start:,}" if stop - start == 1 else f"{start:,}..{stop - 1:,}"


def render_inspect_text(report: InspectReport, console: Console, strict: bool = False, verbose: bool = False) -> None:
    """The inspect report for people: the verdict and each finding with its fix command first; the --lookup tokens;
    with `verbose` the files, tables, routed ranges and special ids after. Nothing is cut at any width: long cells
    fold, commands are printed whole (soft-wrapped, so a copy is one line)."""
    rev = f" @ {safe(report.revision)}" if report.revision else ""
    console.print(f"[bold]{safe(report.source)}[/]{rev}", soft_wrap=True)
    _inspect_verdict(report, console, strict)
    for f in report.findings:
        console.print(f"[{STYLE[f.severity]}]{f.code} {f.severity.value}[/]: [bold]{safe(f.title)}[/]", soft_wrap=True)
        console.print(Padding(f"{safe(f.message)}.", (0, 0, 0, 2)))
        console.print(f"  [dim]fix:[/] {safe(f.fix)}", soft_wrap=True)
    if report.tokens:
        console.print(_tokens_table(report))
    if verbose:
        for table in (_files_table(report), _tensors_table(report), _ranges_table(report)):
            console.print(table)
        lay = report.layout
        sizes = ", ".join(f"{safe(k)} {v:,}" for k, v in lay.tokenizer.file_sizes.items())
        console.print(f"text_config.vocab_size {lay.vocab_size:,} · vocab_size_per_layer_input "
                      f"{lay.per_layer_size:,} · tokenizer {lay.tokenizer.size:,} ids ({sizes or 'no ids found'})")
        if report.special:
            console.print(_special_table(report))
    else:
        console.print("[dim]--verbose shows the files, vocabulary tables, id routing and special ids.[/]")


def _inspect_verdict(report: InspectReport, console: Console, strict: bool) -> None:
    counts = ", ".join(f"{report.count(s)} {s.value}{'s' if report.count(s) != 1 and s is not Severity.INFO else ''}"
                       for s in Severity)
    code = report.exit_code(strict)
    if code == 0 and not report.findings:
        console.print("[green]OK:[/] " + escape("the layout stock transformers accepts ([text | vision | audio], "
                                               "audio ending at vocab_size, tables matching config and tokenizer)."))
        return
    if code == 0:
        console.print(f"[green]OK[/] ({counts}); nothing at the {'warning' if strict else 'error'} level.")
        return
    blocking = [f.code for f in report.findings if f.code in BLOCKS_REWRITE]
    if blocking:
        console.print(f"[red]Problems:[/] {counts}. Fix {', '.join(dict.fromkeys(blocking))} first (each fix below): "
                      "the rewrite refuses a checkpoint with them. Then:")
        console.print(f"  [bold]{safe(report.fix_command)}[/]", soft_wrap=True)
    elif any(f.fix == report.fix_command for f in report.findings):
        console.print(f"[red]Problems:[/] {counts}. The rewrite fixes the layout findings:")
        console.print(f"  [bold]{safe(report.fix_command)}[/]", soft_wrap=True)
    else:
        console.print(f"[red]Problems:[/] {counts}. Each fix is below.")


def _table(title: str, columns: tuple[tuple[str, str], ...], **kwargs) -> Table:
    table = Table(title=title, title_justify="left", **kwargs)
    for col, justify in columns:
        table.add_column(col, justify=justify, overflow="fold")
    return table


def _files_table(report: InspectReport) -> Table:
    files = _table("Files", (("file", "left"), ("role", "left"), ("bytes", "right"), ("tensors", "right"),
                             ("dtypes", "left")))
    for f in report.files:
        dtypes = ", ".join(f"{d} x{n}" for d, n in f.dtypes.items()) if f.dtypes else ""
        where = " (header read remotely)" if f.remote and f.role == "weights" else (" (remote)" if f.remote else "")
        files.add_row(safe(f.name), safe(f.role) + where, human_bytes(f.bytes),
                      f"{f.tensors:,}" if f.tensors is not None else "", safe(dtypes))
    return files


def _tensors_table(report: InspectReport) -> Table:
    tables = _table("Tensors with a vocabulary dimension",
                    (("tensor", "left"), ("shard", "left"), ("shape", "left"), ("dtype", "left"), ("rows", "right"),
                     ("ids of its rows", "left"), ("rows the config builds", "left")))
    for t in report.tables:
        config = ("[green]same[/]" if t.rows == t.config_rows else
                  f"[red]{t.config_rows:,} ({t.config_key})[/]")
        tables.add_row(safe(t.name), safe(t.shard), escape("[" + ", ".join(f"{d:,}" for d in t.shape) + "]"),
                       safe(t.dtype), f"{t.rows:,}", _ids(t.first_id, t.first_id + t.rows) if t.rows else "none",
                       config)
    return tables


def _ranges_table(report: InspectReport) -> Table:
    """Each id range, what stock transformers reads for it, and its status; per-layer rows of image and audio ids
    that VF004 reports (fresh rows where the released model reads row 0) are marked as that finding."""
    vf004 = any(f.code == "VF004" for f in report.findings)
    ranges = _table("Id ranges and how stock transformers routes them",
                    (("range", "left"), ("ids", "left"), ("count", "right"), ("embedding read from", "left"),
                     ("per-layer input", "left"), ("", "left")))
    for r in report.ranges:
        for i, seg in enumerate(r.segments):
            rows = "?" if seg.table_rows is None else f"{seg.table_rows:,}"
            last = seg.first_row + (seg.stop - seg.start) - 1
            read = f"{seg.table.value} rows {_ids(seg.first_row, last + 1)} (of {rows})"
            if seg.error:
                status = f"[red]{escape(seg.error)}[/]"
            elif vf004 and r.name in ("vision", "audio") and not seg.per_layer.startswith("row 0"):
                status = "[red]VF004: own per-layer rows, not row 0[/]"
            else:
                status = "[green]ok[/]"
            ranges.add_row(r.name if i == 0 else "", _ids(seg.start, seg.stop), f"{seg.stop - seg.start:,}", read,
                           seg.per_layer, status)
    return ranges


def _special_table(report: InspectReport) -> Table:
    special = _table("Special ids: config, generation config and tokenizer",
                     (("key", "left"), ("config.json", "left"), ("generation_config.json", "left"),
                      ("the tokenizer names it", "left"), ("", "left")))
    for sp in report.special:
        if sp.agrees:
            status = "[green]agree[/]"
        else:
            where = f"id {sp.expected_id}" if sp.expected_id is not None else "not in the tokenizer"
            status = f"[red]disagree:[/] its {safe(sp.tokenizer_key)} {safe(show(sp.expected))} is {where}"
        special.add_row(sp.key, _value(sp.config), _value(sp.generation), safe(", ".join(show(t) for t in sp.tokens)),
                        status)
    return special


def _tokens_table(report: InspectReport) -> Table:
    tokens = _table("Tokens", tuple((c, "left") for c in ("query", "id", "token", "range", "stock transformers reads",
                                                           "per-layer row", "")))
    for t in report.tokens:
        r: Route | None = t.route
        note = f" [dim]({safe(t.note)})[/]" if t.note else ""
        if r is None:
            tokens.add_row(safe(show(t.query)), "" if t.id is None else f"{t.id:,}", "", "", "", "", note)
            continue
        of = "?" if r.table_rows is None else f"{r.table_rows:,}"
        status = f"[red]{escape(r.error)}[/]" if r.error else "[green]ok[/]"
        tokens.add_row(safe(show(t.query)), f"{t.id:,}", safe(show(t.token)), t.range or "",
                       f"{r.table.value} row {r.row:,} (of {of})", f"{r.per_layer_row:,}", status + note)
    return tokens


def _value(value: object) -> str:
    return "" if value is None else safe(json.dumps(value))


def _gh_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def github_notice(command: str, message: str) -> str:
    """A finished command as one ::notice workflow command (--format github of the remap commands)."""
    return f"::notice title={_gh_property(command)}::{_gh_data(message)}\n"


def github_error(command: str, message: str) -> str:
    """A failed command as one ::error workflow command (exit 2, 130, 143 under --format github)."""
    return f"::error title={_gh_property(f'{command} failed')}::{_gh_data(message)}\n"


def render_inspect_github(report: InspectReport, out: TextIO, strict: bool = False) -> None:
    """One workflow command per finding (::error / ::warning / ::notice), then a plain summary line."""
    for f in report.findings:
        title = _gh_property(f"{f.code} {f.title}")
        out.write(f"::{GITHUB_COMMAND[f.severity]} title={title}::{_gh_data(f'{f.message}. Fix: {f.fix}')}\n")
    counts = ", ".join(f"{report.count(s)} {s.value}" for s in Severity)
    out.write(_gh_data(f"vocabfix inspect {report.source}: {counts}; exit code {report.exit_code(strict)}") + "\n")


# --- verify -------------------------------------------------------------------------------------------------------


def verify_summary(report: VerifyReport) -> str:
    """What verify compared, in one sentence (the text view, GitHub, and `rewrite --verify`)."""
    what = "its vocabfix.json" if report.recorded else "a byte-for-byte copy (OUT has no vocabfix.json)"
    rate = report.bytes_read / report.seconds / 1e6 if report.seconds > 0 else 0.0
    return (f"{report.files} files, {report.tensors_identical} tensors byte-identical, {report.tables} vocabulary "
            f"tables ({report.rows_copied:,} rows copied, {report.rows_new:,} new rows recomputed) against {what}; "
            f"read {human_bytes(report.bytes_read)} in {report.seconds:.1f} s ({rate:,.0f} MB/s)")


def _load_line(load: dict) -> str:
    if load.get("ok"):
        return (f"stock transformers loaded OUT and ran {load['ids']} ids (appended tokens and multimodal special ids) "
                f"with finite logits in {load['seconds']:.1f} s")
    return f"stock transformers could not run OUT on {load['ids']} ids: {load.get('problem')}"


def render_verify_text(report: VerifyReport, console: Console) -> None:
    """Proven, or each difference on its own line (file: where: what)."""
    if report.ok:
        console.print(f"[green]Verified:[/] {safe(report.output)} is {safe(report.source)} re-laid-out: "
                      f"{escape(verify_summary(report))}.", soft_wrap=True)
    else:
        n = len(report.differences) + report.differences_not_listed
        if n:
            console.print(f"[red]{n} difference{'s' if n != 1 else ''}[/] between {safe(report.output)} and "
                          f"{safe(report.source)} re-laid-out by the record:", soft_wrap=True)
        for d in report.differences:
            console.print(f"  {safe(d)}", soft_wrap=True)
        if report.differences_not_listed:
            console.print(f"  ... and {report.differences_not_listed} more", soft_wrap=True)
    if report.load is not None:
        style = "green" if report.load.get("ok") else "red"
        console.print(f"[{style}]Load:[/] {escape(_load_line(report.load))}.", soft_wrap=True)


def render_verify_github(report: VerifyReport, out: TextIO) -> None:
    """One ::error per difference (and a failed --load), or one ::notice when proven."""
    for d in report.differences:
        out.write(f"::error title={_gh_property(f'vocabfix verify: {d.file}')}::{_gh_data(str(d))}\n")
    if report.load is not None and not report.load.get("ok"):
        out.write(f"::error title=vocabfix verify --load::{_gh_data(_load_line(report.load))}\n")
    if report.ok:
        out.write(github_notice("vocabfix verify", f"{report.output}: {verify_summary(report)}"))

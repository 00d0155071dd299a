"""The "unused" placement: appended tokens take `<unusedN>` slots of the text range (issue 8).

`rewrite.checked_layout` calls `place_on_unused` for strategy "unused": it checks that the input already has the
released multimodal layout, chooses the slots and returns the Layout whose target (id map, sizes, offsets, rows:
layout.py) is the "unused" one. Everything downstream reads the target from that Layout.
"""

from __future__ import annotations

import dataclasses
import re

from .checkpoint import Checkpoint
from .errors import UsageError
from .layout import STRATEGIES, Layout

UNUSED_TOKEN = re.compile(r"<unused\d+>")
SHIFT_HINT = "use --strategy shift (strategy='shift'), which moves the image and audio ids instead"


def check_strategy(strategy: object, slots: object) -> None:
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}", hint="use shift or unused")
    if strategy == "shift" and slots is not None:
        raise UsageError("slots are only for strategy unused", hint="drop --slots, or add --strategy unused")


def parse_slots(text: str | None) -> list[int] | None:
    """`6,7,9` or ranges `6-9` (inclusive) as a list of ids; None for None. UsageError for anything else."""
    if text is None:
        return None
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise UsageError(f"--slots: {part!r} is not an id or a range of ids", hint="e.g. --slots 6,7,9 or 6-9")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise UsageError(f"--slots: the range {part!r} is empty", hint="write ranges low-high, e.g. 6-9")
        if len(out) + hi - lo + 1 > MAX_SLOTS:
            raise UsageError(f"--slots: {part!r} makes more than {MAX_SLOTS:,} ids, more than a Gemma 3n vocabulary "
                             "holds", hint="name the <unusedN> ids to use, e.g. --slots 6-9")
        out += range(lo, hi + 1)
    return out


MAX_SLOTS = 1 << 20  # 4x the 262,400 ids of the released vocabulary: a longer list is a typo, not a request


def named_ids(ckpt: Checkpoint) -> set[int]:
    """Every token id config.json and generation_config.json name (the ids the rewrite would map)."""
    from .config_files import token_ids_named

    found = token_ids_named(ckpt.config)
    if ckpt.generation_config is not None:
        found |= token_ids_named(ckpt.generation_config)
    return found


def free_slots(layout: Layout, ckpt: Checkpoint) -> list[int]:
    """The `<unusedN>` tokens of the text range (string exactly `<unusedN>`, id below the first multimodal id) that
    no config or generation-config id names, lowest ids first."""
    reserved = named_ids(ckpt)
    tok = layout.tokenizer
    return [i for i in range(layout.text_end) if i not in reserved
            and UNUSED_TOKEN.fullmatch(tok.token(i) or "") is not None]


def place_on_unused(layout: Layout, ckpt: Checkpoint, slots: list[int] | None) -> Layout:
    """`layout` with the "unused" target: each appended id, in order, on a free slot (`slots`, or the free ones
    lowest first). UsageError when the multimodal ranges are not [text | vision | audio] at the config's offsets,
    when there are too few free slots, or when a chosen slot is not a free `<unusedN>` token."""
    released = (layout.vision_start == layout.vision_offset and layout.audio_start == layout.audio_offset
                and layout.vision_offset + layout.vision_size == layout.audio_offset)
    if not released:
        raise UsageError(f"{ckpt.label}: strategy unused needs the image and audio ids as released, [text | vision | "
                         f"audio] at the config's offsets; here vision is [{layout.vision_ids[0]}, "
                         f"{layout.vision_ids[1]}) and audio [{layout.audio_ids[0]}, {layout.audio_ids[1]}) with "
                         f"offsets {layout.vision_offset} and {layout.audio_offset}", hint=SHIFT_HINT)
    free = free_slots(layout, ckpt)
    need = layout.appended
    if slots is None:
        if len(free) < need:
            raise UsageError(f"{ckpt.label}: {need} appended token{'s' if need != 1 else ''} but only {len(free)} "
                             "free <unusedN> slot" + ("s" if len(free) != 1 else "") + " in the text range",
                             hint=SHIFT_HINT)
        chosen = free[:need]
    else:
        free_set = set(free)
        for slot in slots:
            if not isinstance(slot, int) or isinstance(slot, bool) or slot not in free_set:
                raise UsageError(f"slot {slot!r} is not a free <unusedN> token of the text range (one below "
                                 f"{layout.text_end} whose string is <unusedN> and that no config id names)",
                                 hint=f"free slots start {', '.join(map(str, free[:5])) or '(none)'}")
        if len(set(slots)) != len(slots):
            raise UsageError("--slots names a slot twice", hint="name each slot once")
        if len(slots) != need:
            raise UsageError(f"--slots names {len(slots)} slot{'s' if len(slots) != 1 else ''} for {need} appended "
                             f"token{'s' if need != 1 else ''}", hint="name one slot per appended token")
        chosen = list(slots)
    return dataclasses.replace(layout, strategy="unused", slots=tuple(chosen))

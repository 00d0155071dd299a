"""A checkpoint's vocabulary layout: the one place where id ranges, table roles and target sizes are worked out.

Stock transformers needs `[ text | vision | audio ]` with audio ending at `text_config.vocab_size`
(docs/gemma3n-vocab-layout.md, read from transformers 5.24's modeling_gemma3n.py). Text ids found past the first
multimodal id (tokens appended after the audio range, or ids left between the vision and audio ranges) move to the
end of the text range, and the vision and audio ranges shift up behind them.

Everything else (findings, routing, the plan, rendering, the Hub commit message) reads these facts from `Layout`
and never recomputes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .checkpoint import Checkpoint
from .errors import LayoutError
from .id_map import IdMap, IdRange
from .multimodal_ranges import locate_multimodal
from .safetensors_header import TensorInfo
from .tokenizer_files import TokenizerIds, read_tokenizer_ids


class IdKind(str, Enum):
    """Which ids a vocabulary table has rows for."""

    EVERY = "every id"
    TEXT = "text ids"
    VISION = "vision ids"
    AUDIO = "audio ids"


class TableRole(str, Enum):
    """A tensor whose first dimension is indexed by token id; the value is its short name."""

    EMBED_TOKENS = "embed_tokens"
    LM_HEAD = "lm_head"
    PER_LAYER = "embed_tokens_per_layer"
    VISION = "embed_vision"
    AUDIO = "embed_audio"

    @property
    def suffix(self) -> str:
        return _SUFFIX[self]

    @property
    def holds(self) -> IdKind:
        return _HOLDS[self]


_SUFFIX = {TableRole.EMBED_TOKENS: "embed_tokens.weight", TableRole.LM_HEAD: "lm_head.weight",
           TableRole.PER_LAYER: "embed_tokens_per_layer.weight",
           TableRole.VISION: "embed_vision.embedding.weight", TableRole.AUDIO: "embed_audio.embedding.weight"}
_HOLDS = {TableRole.EMBED_TOKENS: IdKind.EVERY, TableRole.LM_HEAD: IdKind.EVERY, TableRole.PER_LAYER: IdKind.TEXT,
          TableRole.VISION: IdKind.VISION, TableRole.AUDIO: IdKind.AUDIO}
# the names transformers 5.24's Gemma3nForConditionalGeneration saves; preferred when a suffix matches twice
CANONICAL_NAMES = {TableRole.EMBED_TOKENS: "model.language_model.embed_tokens.weight",
                   TableRole.LM_HEAD: "lm_head.weight",
                   TableRole.PER_LAYER: "model.language_model.embed_tokens_per_layer.weight",
                   TableRole.VISION: "model.embed_vision.embedding.weight",
                   TableRole.AUDIO: "model.embed_audio.embedding.weight"}


def table_role(name: str) -> TableRole | None:
    """The role of a tensor by its name's suffix (`...embed_tokens_per_layer.weight` is not `embed_tokens`)."""
    for role in (TableRole.PER_LAYER, TableRole.EMBED_TOKENS, TableRole.LM_HEAD, TableRole.VISION, TableRole.AUDIO):
        if name == role.suffix or name.endswith("." + role.suffix):
            return role
    return None


@dataclass(frozen=True)
class VocabTable:
    """A tensor whose first dimension is indexed by token id (rows), and its role."""

    tensor: TensorInfo
    role: TableRole

    @property
    def holds(self) -> IdKind:
        return self.role.holds

    @property
    def rows(self) -> int:
        return self.tensor.rows


@dataclass(frozen=True)
class IdRanges:
    """A layout as half-open id ranges and the sizes the config declares."""

    text: tuple[int, int]
    vision: tuple[int, int]
    audio: tuple[int, int]
    appended: tuple[int, int]  # text ids past the multimodal ranges (added tokens)
    vocab_size: int
    vocab_size_per_layer_input: int
    tokenizer_size: int

    def to_dict(self) -> dict:
        return {"text": list(self.text), "vision": list(self.vision), "audio": list(self.audio),
                "appended": list(self.appended), "vocab_size": self.vocab_size,
                "vocab_size_per_layer_input": self.vocab_size_per_layer_input, "tokenizer_size": self.tokenizer_size}

    @classmethod
    def from_dict(cls, data: dict) -> IdRanges:
        """The inverse of `to_dict` (a vocabfix.json's layout_before / layout_after). Raises KeyError, TypeError or
        ValueError for a malformed entry."""
        def pair(key: str) -> tuple[int, int]:
            lo, hi = data[key]
            return _whole(lo), _whole(hi)
        return cls(pair("text"), pair("vision"), pair("audio"), pair("appended"), _whole(data["vocab_size"]),
                   _whole(data["vocab_size_per_layer_input"]), _whole(data["tokenizer_size"]))


def _whole(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{value!r} is not a non-negative integer")
    return value


@dataclass
class Layout:
    """The input's id ranges and tables, and where each id goes in the layout stock transformers accepts.

    `vision_offset` / `audio_offset` are the config's: what stock transformers routes by. `vision_start` /
    `audio_start` are where the vision and audio tokens are, by evidence that does not depend on the offsets
    (multimodal_ranges.py); they differ only when the config contradicts that evidence. The id map and every range
    below follow the tokens.
    """

    vision_offset: int
    vision_size: int
    audio_offset: int
    audio_size: int
    vocab_size: int  # text_config.vocab_size as configured
    per_layer_size: int  # text_config.vocab_size_per_layer_input as configured
    tokenizer: TokenizerIds
    tied: bool = True  # lm_head shares embed_tokens' weights (tie_word_embeddings)
    tables: list[VocabTable] = field(default_factory=list)
    malformed: list[TensorInfo] = field(default_factory=list)  # vocabulary tensors that are not 2-D tables
    vision_start: int = -1  # -1: where the config says
    audio_start: int = -1
    evidence_conflict: str | None = None  # the evidence of which ids are image and which audio disagrees
    # the placement of the moved text ids (placement.place_on_unused sets "unused"): "shift" moves them to the end
    # of the text range and the vision / audio ranges up; "unused" puts each appended token on an `<unusedN>` slot
    # of the text range (`slots`: the slot id of each appended id, in order) and keeps the released sizes and offsets
    strategy: str = "shift"
    slots: tuple[int, ...] = ()

    # --- the config's ranges (what stock transformers routes) ---------------------------------------------------

    @property
    def vision_end(self) -> int:
        return self.vision_offset + self.vision_size

    @property
    def audio_end(self) -> int:
        return self.audio_offset + self.audio_size

    @property
    def offsets_contradict_tokens(self) -> bool:
        return (self.vision_start, self.audio_start) != (self.vision_offset, self.audio_offset)

    # --- where the tokens are -----------------------------------------------------------------------------------

    @property
    def vision_ids(self) -> tuple[int, int]:
        return self.vision_start, self.vision_start + self.vision_size

    @property
    def audio_ids(self) -> tuple[int, int]:
        return self.audio_start, self.audio_start + self.audio_size

    @property
    def text_end(self) -> int:
        """The first multimodal id: every id below it is text."""
        return min(self.vision_start, self.audio_start)

    @property
    def multimodal_end(self) -> int:
        return max(self.vision_ids[1], self.audio_ids[1])

    @property
    def total(self) -> int:
        """Ids in use: the tokenizer's size, or the end of the multimodal ranges if that is larger."""
        return max(self.tokenizer.size, self.multimodal_end)

    @property
    def appended_range(self) -> tuple[int, int]:
        """Text ids past the multimodal ranges: tokens added after the audio (or vision) range."""
        return self.multimodal_end, self.total

    @property
    def appended(self) -> int:
        return self.total - self.multimodal_end

    @property
    def between_range(self) -> tuple[int, int]:
        """Ids between the two multimodal ranges (empty when they touch): text ids by elimination."""
        first, second = sorted([self.vision_ids, self.audio_ids])
        return first[1], second[0]

    @property
    def moved_text_ids(self) -> int:
        """Text ids at or past the first multimodal id: appended plus between; all move to the text range."""
        lo, hi = self.between_range
        return self.appended + hi - lo

    # --- the consistent layout ---------------------------------------------------------------------------------

    @property
    def new_text_size(self) -> int:
        if self.strategy == "unused":
            return self.text_end
        return self.total - self.vision_size - self.audio_size

    @property
    def new_total(self) -> int:
        """The output's vocab_size: every id of the consistent layout (the input's `total` for "shift", the
        released T + V + A for "unused")."""
        return self.new_text_size + self.vision_size + self.audio_size

    @property
    def moved_ids(self) -> list[int]:
        """The old ids of the text ids that move into the text range, in order of their new ids."""
        return [i for r in self.id_map.in_new_order() if r.old_start >= self.text_end
                and r.new_start < self.new_text_size for i in range(r.old_start, r.old_stop)]

    @property
    def slot_of(self) -> dict[int, int]:
        """"unused": appended old id -> the slot id it takes."""
        lo = self.multimodal_end
        return {lo + n: slot for n, slot in enumerate(self.slots)}

    @property
    def new_vision_offset(self) -> int:
        return self.new_text_size

    @property
    def new_audio_offset(self) -> int:
        return self.new_text_size + self.vision_size

    @property
    def id_map(self) -> IdMap:
        return self._id_map

    def __post_init__(self) -> None:
        if self.vision_start < 0:
            self.vision_start = self.vision_offset
        if self.audio_start < 0:
            self.audio_start = self.audio_offset
        if self.strategy == "unused":
            self._id_map = build_slot_map(self.total, self.text_end, self.multimodal_end, self.slots)
        else:
            self._id_map = build_id_map(self.total, (self.vision_start, self.vision_size),
                                        (self.audio_start, self.audio_size))

    @property
    def before(self) -> IdRanges:
        return IdRanges((0, self.text_end), self.vision_ids, self.audio_ids, self.appended_range, self.vocab_size,
                        self.per_layer_size, self.tokenizer.size)

    @property
    def after(self) -> IdRanges:
        t = self.new_text_size
        return IdRanges((0, t), (t, self.new_audio_offset), (self.new_audio_offset, self.new_total), (t, t),
                        self.new_total, t, self.new_total)

    # --- tables -----------------------------------------------------------------------------------------------

    def config_rows(self, table: VocabTable) -> tuple[int, str]:
        """The rows the config makes transformers build for this table, and the config key that says so."""
        return {IdKind.EVERY: (self.vocab_size, "text_config.vocab_size"),
                IdKind.TEXT: (self.per_layer_size, "text_config.vocab_size_per_layer_input"),
                IdKind.VISION: (self.vision_size, "vision_config.vocab_size"),
                IdKind.AUDIO: (self.audio_size, "audio_config.vocab_size")}[table.holds]

    def target_rows(self, table: VocabTable) -> int:
        """The rows the table has in the consistent layout."""
        return {IdKind.EVERY: self.new_total, IdKind.TEXT: self.new_text_size,
                IdKind.VISION: self.vision_size, IdKind.AUDIO: self.audio_size}[table.holds]

    def first_id(self, table: VocabTable) -> int:
        """The id that row 0 of the table stands for, by the config's offsets (what transformers routes)."""
        return {IdKind.VISION: self.vision_offset, IdKind.AUDIO: self.audio_offset}.get(table.holds, 0)

    def tables_of(self, role: TableRole) -> list[VocabTable]:
        return [t for t in self.tables if t.role is role]

    def table(self, role: TableRole) -> VocabTable | None:
        """The table the model loads for `role`: the canonical name if present, else the first match."""
        found = self.tables_of(role)
        return next((t for t in found if t.tensor.name == CANONICAL_NAMES[role]), found[0] if found else None)

    def rows(self, role: TableRole) -> int | None:
        t = self.table(role)
        return t.rows if t is not None else None

    @property
    def is_consistent(self) -> bool:
        """Already in the layout stock transformers accepts: a rewrite would change nothing."""
        return (self.id_map.is_identity
                and self.vocab_size == self.new_total
                and self.per_layer_size == self.new_text_size
                and self.vision_offset == self.new_vision_offset
                and self.audio_offset == self.new_audio_offset
                and all(t.rows == self.target_rows(t) for t in self.tables))


def build_id_map(total: int, vision: tuple[int, int], audio: tuple[int, int]) -> IdMap:
    """Text ids keep their order and come first, then the vision range, then the audio range.

    `vision` and `audio` are (offset, size); ids in [0, total) that are in neither are text.
    """
    text_blocks, cursor = [], 0
    for start, size in sorted([vision, audio]):
        text_blocks.append((cursor, start - cursor))
        cursor = start + size
    text_blocks.append((cursor, total - cursor))
    ranges, new = [], 0
    for start, size in (*text_blocks, vision, audio):
        ranges.append(IdRange(start, new, size))
        new += size
    return IdMap(ranges)


def build_slot_map(total: int, text_end: int, appended_start: int, slots: tuple[int, ...]) -> IdMap:
    """"unused": the appended ids [appended_start, total) take the slot ids `slots` (text ids) in order; every other
    id below `appended_start` keeps its id, and the slots' own old ids are dropped. The text ids and the multimodal
    ids [text_end, appended_start) are separate ranges (a table cut at the text range ends between two ranges)."""
    if len(slots) != total - appended_start:
        raise ValueError(f"{len(slots)} slots for {total - appended_start} appended ids")
    ranges, cursor = [], 0
    for slot in sorted(slots):
        ranges.append(IdRange(cursor, cursor, slot - cursor))
        cursor = slot + 1
    ranges += [IdRange(cursor, cursor, text_end - cursor), IdRange(text_end, text_end, appended_start - text_end)]
    ranges += [IdRange(appended_start + n, slot, 1) for n, slot in enumerate(slots)]
    return IdMap(ranges, [(slot, slot + 1) for slot in slots])


def find_vocab_tables(ckpt: Checkpoint) -> tuple[list[VocabTable], list[TensorInfo]]:
    """The vocabulary tables by name suffix, and the tensors with such a name that are not 2-D with non-empty
    rows (findings report those; they cannot be re-rowed)."""
    tables, malformed = [], []
    for name, tensor in ckpt.weights.tensors.items():
        role = table_role(name)
        if role is None:
            continue
        if len(tensor.shape) < 2 or tensor.row_bytes == 0:
            malformed.append(tensor)
        else:
            tables.append(VocabTable(tensor, role))
    return tables, malformed


def _int_field(section: dict, key: str, where: str) -> int:
    value = section.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise LayoutError(f"config.json: {where}.{key} is {value!r}, expected a non-negative integer")
    return value


def word_embeddings_tied(config: dict) -> bool:
    """`tie_word_embeddings` as Gemma3nForConditionalGeneration reads it: the top-level key of config.json, True
    when absent (transformers 5.24 `Gemma3nConfig.tie_word_embeddings` defaults to True; the released configs do not
    set it)."""
    value = config.get("tie_word_embeddings")
    return value if isinstance(value, bool) else True


STRATEGIES = ("shift", "unused")


def analyse(ckpt: Checkpoint) -> Layout:
    """The layout of a checkpoint already read (no file is opened), with the "shift" target; placement.py's
    `place_on_unused` gives the "unused" one.

    Raises LayoutError when the config's layout fields are not non-negative integers or when the vision and audio
    ranges overlap.
    """
    text, vision, audio = ckpt.text_config, ckpt.config["vision_config"], ckpt.config["audio_config"]
    vision_offset = _int_field(vision, "vocab_offset", "vision_config")
    vision_size = _int_field(vision, "vocab_size", "vision_config")
    audio_offset = _int_field(audio, "vocab_offset", "audio_config")
    audio_size = _int_field(audio, "vocab_size", "audio_config")
    (lo, lo_size), (hi, _) = sorted([(vision_offset, vision_size), (audio_offset, audio_size)])
    if lo + lo_size > hi:
        raise LayoutError(f"config.json: the vision ids [{vision_offset}, {vision_offset + vision_size}) and audio ids "
                          f"[{audio_offset}, {audio_offset + audio_size}) overlap")
    tables, malformed = find_vocab_tables(ckpt)
    tokenizer = read_tokenizer_ids(ckpt.tokenizer_json, ckpt.tokenizer_config, ckpt.added_tokens, ckpt.sentencepiece)
    widths = {kind: t.tensor.shape[1] for kind, role in (("vision", TableRole.VISION), ("audio", TableRole.AUDIO))
              for t in tables if t.tensor.name == CANONICAL_NAMES[role]}
    where = locate_multimodal(ckpt.config, tokenizer, widths, (vision_offset, vision_size), (audio_offset, audio_size))
    return Layout(
        vision_offset=vision_offset, vision_size=vision_size, audio_offset=audio_offset, audio_size=audio_size,
        vocab_size=_int_field(text, "vocab_size", "text_config"),
        per_layer_size=_int_field(text, "vocab_size_per_layer_input", "text_config"),
        tokenizer=tokenizer,
        tied=word_embeddings_tied(ckpt.config),
        tables=tables,
        malformed=malformed,
        vision_start=where.vision_start,
        audio_start=where.audio_start,
        evidence_conflict=where.conflict,
    )

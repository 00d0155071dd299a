"""Work out a checkpoint's id layout and the id map to the layout stock transformers accepts.

Stock transformers needs `[ text | vision | audio ]` with audio ending at `text_config.vocab_size`
(see docs/gemma3n-vocab-layout.md). Tokens appended after the audio range are text: they move to the
end of the text range, and the vision and audio ranges shift up behind them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .checkpoint import Checkpoint
from .errors import LayoutError
from .id_map import IdMap, IdRange
from .safetensors_header import TensorInfo
from .tokenizer_files import TokenizerIds, read_tokenizer_ids

# Tensors whose first dimension is indexed by token id, by name suffix, and which ids they hold rows for.
EVERY_ID, TEXT_IDS, VISION_IDS, AUDIO_IDS = "every id", "text ids", "vision ids", "audio ids"
VOCAB_TENSOR_SUFFIXES = (
    ("embed_tokens.weight", EVERY_ID),
    ("lm_head.weight", EVERY_ID),
    ("embed_tokens_per_layer.weight", TEXT_IDS),
    ("embed_vision.embedding.weight", VISION_IDS),
    ("embed_audio.embedding.weight", AUDIO_IDS),
)


@dataclass(frozen=True)
class VocabTable:
    tensor: TensorInfo
    holds: str  # EVERY_ID, TEXT_IDS, VISION_IDS or AUDIO_IDS


@dataclass
class Layout:
    """The input's id ranges, and where each id goes in the consistent layout."""

    vision_offset: int
    vision_size: int
    audio_offset: int
    audio_size: int
    vocab_size: int  # text_config.vocab_size as configured
    per_layer_size: int  # text_config.vocab_size_per_layer_input as configured
    tokenizer: TokenizerIds
    total: int  # ids in use: tokenizer size, or the end of the multimodal ranges if larger
    id_map: IdMap
    tables: list[VocabTable] = field(default_factory=list)

    @property
    def first_multimodal_id(self) -> int:
        return min(self.vision_offset, self.audio_offset)

    @property
    def appended(self) -> int:
        """k: text ids placed past the multimodal ranges (added tokens)."""
        return self.total - self.vision_size - self.audio_size - self.first_multimodal_id

    @property
    def new_text_size(self) -> int:
        return self.total - self.vision_size - self.audio_size

    @property
    def new_vision_offset(self) -> int:
        return self.new_text_size

    @property
    def new_audio_offset(self) -> int:
        return self.new_text_size + self.vision_size

    def before(self) -> dict:
        """The input's layout as ranges and sizes (text: the ids below the multimodal ranges)."""
        return {"text": [0, self.first_multimodal_id],
                "vision": [self.vision_offset, self.vision_offset + self.vision_size],
                "audio": [self.audio_offset, self.audio_offset + self.audio_size],
                "vocab_size": self.vocab_size, "vocab_size_per_layer_input": self.per_layer_size,
                "tokenizer_size": self.tokenizer.size}

    def after(self) -> dict:
        """The consistent layout, in the shape of before()."""
        return {"text": [0, self.new_text_size],
                "vision": [self.new_vision_offset, self.new_audio_offset],
                "audio": [self.new_audio_offset, self.total],
                "vocab_size": self.total, "vocab_size_per_layer_input": self.new_text_size,
                "tokenizer_size": self.total}

    def target_rows(self, table: VocabTable) -> int:
        return {EVERY_ID: self.total, TEXT_IDS: self.new_text_size,
                VISION_IDS: self.vision_size, AUDIO_IDS: self.audio_size}[table.holds]

    @property
    def is_consistent(self) -> bool:
        """Already in the layout stock transformers accepts: a rewrite would change nothing."""
        return (self.id_map.is_identity
                and self.vocab_size == self.total
                and self.per_layer_size == self.new_text_size
                and self.vision_offset == self.new_vision_offset
                and self.audio_offset == self.new_audio_offset
                and all(t.tensor.rows == self.target_rows(t) for t in self.tables))


def _int_field(section: dict, key: str, where: str) -> int:
    value = section.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise LayoutError(f"config.json: {where}.{key} is {value!r}, expected a non-negative integer")
    return value


def build_id_map(total: int, vision: tuple[int, int], audio: tuple[int, int]) -> IdMap:
    """Text ids keep their order and come first, then the vision range, then the audio range."""
    multimodal = sorted([vision, audio])
    text_blocks, cursor = [], 0
    for start, size in multimodal:
        text_blocks.append((cursor, start - cursor))
        cursor = start + size
    text_blocks.append((cursor, total - cursor))
    ranges, new = [], 0
    for start, size in text_blocks:
        ranges.append(IdRange(start, new, size))
        new += size
    for start, size in (vision, audio):
        ranges.append(IdRange(start, new, size))
        new += size
    return IdMap(ranges)


def find_vocab_tables(ckpt: Checkpoint) -> list[VocabTable]:
    tables = []
    for name, tensor in ckpt.weights.tensors.items():
        for suffix, holds in VOCAB_TENSOR_SUFFIXES:
            if (name == suffix or name.endswith("." + suffix)) and not (
                    suffix == "embed_tokens.weight" and name.endswith("embed_tokens_per_layer.weight")):
                tables.append(VocabTable(tensor, holds))
    return tables


def analyse(ckpt: Checkpoint) -> Layout:
    text, vision, audio = ckpt.text_config, ckpt.config["vision_config"], ckpt.config["audio_config"]
    vision_offset = _int_field(vision, "vocab_offset", "vision_config")
    vision_size = _int_field(vision, "vocab_size", "vision_config")
    audio_offset = _int_field(audio, "vocab_offset", "audio_config")
    audio_size = _int_field(audio, "vocab_size", "audio_config")
    vocab_size = _int_field(text, "vocab_size", "text_config")
    per_layer_size = _int_field(text, "vocab_size_per_layer_input", "text_config")
    (lo, lo_size), (hi, _) = sorted([(vision_offset, vision_size), (audio_offset, audio_size)])
    if lo + lo_size > hi:
        raise LayoutError(f"config.json: the vision ids [{vision_offset}, {vision_offset + vision_size}) and audio ids "
                          f"[{audio_offset}, {audio_offset + audio_size}) overlap")
    tokenizer = read_tokenizer_ids(ckpt.tokenizer_json, ckpt.tokenizer_config, ckpt.added_tokens,
                                   ckpt.sentencepiece_path)
    total = max(tokenizer.size, vision_offset + vision_size, audio_offset + audio_size)
    id_map = build_id_map(total, (vision_offset, vision_size), (audio_offset, audio_size))
    return Layout(vision_offset=vision_offset, vision_size=vision_size, audio_offset=audio_offset,
                  audio_size=audio_size, vocab_size=vocab_size, per_layer_size=per_layer_size,
                  tokenizer=tokenizer, total=total, id_map=id_map, tables=find_vocab_tables(ckpt))

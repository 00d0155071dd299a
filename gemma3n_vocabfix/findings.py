"""What `vocabfix inspect` can find wrong with a checkpoint: stable codes, severities, and the finding record.

A code never changes meaning once released (CI jobs filter on them); add new codes, do not reuse old ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"  # stock transformers crashes, refuses to load, or silently computes something else
    WARNING = "warning"  # suspicious, works today, fails `--strict`
    INFO = "info"  # worth knowing, never gates

    @property
    def rank(self) -> int:
        return {"error": 2, "warning": 1, "info": 0}[self.value]


@dataclass(frozen=True)
class Code:
    code: str
    severity: Severity
    title: str


def _codes(*rows: tuple[str, Severity, str]) -> dict[str, Code]:
    return {c: Code(c, s, t) for c, s, t in rows}


E, W, I = Severity.ERROR, Severity.WARNING, Severity.INFO  # noqa: E741
CODES = _codes(
    ("VF001", E, "ids routed to the audio table beyond its rows"),
    ("VF002", E, "audio range does not end at text_config.vocab_size"),
    ("VF003", E, "vision and audio ranges are not [text | vision | audio]"),
    ("VF004", E, "per-layer table covers multimodal ids (transformers 5 resize)"),
    ("VF005", E, "vocabulary table rows disagree with the config"),
    ("VF006", W, "vocabulary table has rows no token uses"),
    ("VF007", E, "tokenizer ids beyond every table"),
    ("VF008", E, "special id names a different token in the config and the tokenizer"),
    ("VF009", W, "config.json and generation_config.json disagree on a special id"),
    ("VF010", E, "tokenizer files disagree about an id"),
    ("VF011", E, "shard named by the index is missing"),
    ("VF012", E, "tensor listed in the index is in no shard"),
    ("VF013", W, "tensor in a shard is not listed in the index"),
    ("VF014", E, "tensor stored in more than one shard"),
    ("VF015", E, "tensor listed under the wrong shard"),
    ("VF016", I, "index total_size differs from the tensor bytes"),
    ("VF017", E, "no embed_tokens table in the weights"),
)


@dataclass
class Finding:
    code: str
    message: str  # one sentence: what goes wrong at run time (token strings already escaped with repr)
    fix: str  # the command (or the edit) that fixes it
    details: dict = field(default_factory=dict)  # machine-readable facts (ids, rows, tensor names)

    @property
    def severity(self) -> Severity:
        return CODES[self.code].severity

    @property
    def title(self) -> str:
        return CODES[self.code].title

    def to_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity.value, "title": self.title, "message": self.message,
                "fix": self.fix, "details": self.details}


def gate(findings: list[Finding], strict: bool = False) -> int:
    """The exit code: 1 if any finding is at the gated level (error; with `strict` also warning), else 0."""
    floor = Severity.WARNING.rank if strict else Severity.ERROR.rank
    return 1 if any(f.severity.rank >= floor for f in findings) else 0

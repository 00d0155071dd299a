"""vocabfix: make extended-vocabulary Gemma 3n checkpoints load and run in stock transformers.

The core never imports torch or transformers: a rewrite is JSON edits plus byte copies.
"""

__version__ = "0.1.0"

from .errors import VocabfixError  # noqa: E402
from .id_map import IdMap  # noqa: E402

__all__ = ["__version__", "VocabfixError", "IdMap", "InspectReport", "inspect_checkpoint", "RewriteReport",
           "rewrite_checkpoint", "VerifyReport", "verify_checkpoint", "remap_adapter", "remap_ids", "VocabResult",
           "add_tokens", "fix_model"]


def __getattr__(name: str):
    # Imported on first use, so `vocabfix --help` and `vocabfix inspect` do not pay for numpy (the writer's).
    if name in ("RewriteReport", "rewrite_checkpoint"):
        from . import rewrite
        return getattr(rewrite, name)
    if name in ("InspectReport", "inspect_checkpoint"):
        from . import inspect
        return getattr(inspect, name)
    if name in ("VerifyReport", "verify_checkpoint"):
        from . import verify
        return getattr(verify, name)
    if name == "remap_adapter":
        from .adapter import remap_adapter
        return remap_adapter
    if name == "remap_ids":  # pyarrow (the `data` extra) is imported when called
        from .remap_ids import remap_ids
        return remap_ids
    if name in ("VocabResult", "add_tokens", "fix_model"):  # torch/transformers are imported when called
        from . import in_memory
        return getattr(in_memory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

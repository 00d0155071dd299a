"""vocabfix: make extended-vocabulary Gemma 3n checkpoints load and run in stock transformers.

The core never imports torch or transformers: a rewrite is JSON edits plus byte copies.
"""

__version__ = "0.1.0"

from .errors import VocabfixError  # noqa: E402
from .rewrite import RewriteReport, rewrite_checkpoint  # noqa: E402

__all__ = ["__version__", "VocabfixError", "RewriteReport", "rewrite_checkpoint"]

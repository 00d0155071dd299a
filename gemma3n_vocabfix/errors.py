"""The project's one error hierarchy. The CLI turns each into one line on stderr and exit code 2."""


class VocabfixError(Exception):
    """A problem with the input or the request; `hint` says what the user can do about it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class CheckpointError(VocabfixError):
    """A checkpoint file is missing, unreadable or malformed."""


class NotGemma3nError(VocabfixError):
    """The config is not a multimodal Gemma 3n config."""


class LayoutError(VocabfixError):
    """The id ranges the config and tokenizer declare cannot be reconciled."""


class OutputError(VocabfixError):
    """The output path cannot be used (exists, inside the input, ...)."""

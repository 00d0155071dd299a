"""The project's one error hierarchy. The CLI prints each as one line on stderr and exits with its `exit_code`.

Exit codes are a contract (README "Exit codes"): 0 success, 1 the checkpoint has problems (inspect's findings),
2 the command could not run (every error here), 130 interrupted (Ctrl-C), 141 the reader closed stdout (SIGPIPE's
shell code), 143 terminated (SIGTERM).
"""

EXIT_OK, EXIT_FINDINGS, EXIT_CANNOT_RUN, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE, EXIT_TERMINATED = 0, 1, 2, 130, 141, 143


class Terminated(BaseException):
    """SIGTERM (a cancelled CI job, `kill`): raised where the process is, so a rewrite cleans up like on Ctrl-C.
    A BaseException, like KeyboardInterrupt, so that no `except Exception` swallows it."""


class VocabfixError(Exception):
    """A problem with the input or the request; `hint` says what the user can do about it."""

    exit_code = EXIT_CANNOT_RUN

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(VocabfixError):
    """Options that contradict each other or do not apply (e.g. --private without --push-to-hub)."""


class CheckpointError(VocabfixError):
    """A checkpoint file is missing, unreadable or malformed."""


class NotGemma3nError(VocabfixError):
    """The config is not a multimodal Gemma 3n config."""


class LayoutError(VocabfixError):
    """The id ranges the config and tokenizer declare cannot be reconciled."""


class RewriteRefused(LayoutError):
    """The checkpoint has a problem the rewrite cannot fix; `code` is the inspect finding that names it."""

    def __init__(self, code: str, message: str, hint: str | None = None):
        super().__init__(message, hint)
        self.code = code


class OutputError(VocabfixError):
    """The output path cannot be used (exists, inside the input, ...) or writing it failed."""


class VerificationFailed(VocabfixError):
    """`rewrite --verify`: the staged output is not IN re-laid-out (a vocabfix bug or a failing disk); it was
    removed, nothing was published. `report` is the verify.VerifyReport. Exits 1, as `verify` does."""

    exit_code = EXIT_FINDINGS

    def __init__(self, report, message: str, hint: str | None = None):
        super().__init__(message, hint)
        self.report = report


class HubError(VocabfixError):
    """The Hub (or the Hub cache) could not give what was asked."""

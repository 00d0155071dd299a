"""The `vocabfix` console script and `python -m gemma3n_vocabfix`.

The command line (typer, rich) is imported inside the Ctrl-C handler, so an interrupt while it loads is one line
and exit 130 like any other.
"""

import sys


def main() -> None:
    try:
        from .cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(130)
    run()


if __name__ == "__main__":
    main()

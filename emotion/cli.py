"""What every command does with an error the user can fix: one line on stderr, exit code 2.

A traceback is for a bug in Emotion Lens; a missing model, an unreadable image or a bad flag is
the user's to fix, and the message says how (see emotion.errors).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

from emotion.errors import EmotionLensError

Main = Callable[[list[str] | None], int]
USER_ERROR_EXIT = 2  # as argparse uses for a bad flag


def command(main: Main) -> Main:
    """Wrap a command's `main(argv) -> int`: project errors become `error: …` and exit 2."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except EmotionLensError as err:
            print(f"error: {err}", file=sys.stderr)
            return USER_ERROR_EXIT
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return run


def program_name(module: str) -> str:
    """What usage lines call a command: the console script's name when it was started as one
    (`emotion-lens`, `emotion-lens-train`, ...), else `python -m MODULE`."""
    script = Path(sys.argv[0]).name
    return script if script.startswith("emotion-lens") else f"python -m {module}"

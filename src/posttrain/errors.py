"""The one exception type posttrain raises for problems a user can fix.

The entrypoint turns it into a single line (problem, then fix) and a non-zero exit; a traceback is shown
only with HYDRA_FULL_ERROR=1.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn


class PosttrainError(Exception):
    """A problem the user can fix: what is wrong and what to do about it."""

    def __init__(self, problem: str, fix: str = ""):
        self.problem = problem.rstrip(". ")
        self.fix = fix.rstrip(". ")
        super().__init__(self.line())

    def line(self) -> str:
        text = f"{self.problem}."
        if self.fix:
            text += f" Fix: {self.fix}."
        return " ".join(text.split())


def fail(error: PosttrainError, code: int = 1) -> NoReturn:
    """End the command with the error's one line on stderr (the traceback instead with HYDRA_FULL_ERROR=1)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    print(f"posttrain: error: {error.line()}", file=sys.stderr)
    sys.exit(code)

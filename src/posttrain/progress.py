"""Progress on a terminal: a tqdm bar per training run or stage (steps, loss, tokens/s, time left) and per
evaluation (items done, time left). When standard output is not a terminal (Slurm, CI, a pipe) there are no
bars, only the log lines, which a terminal run keeps too (printed above the bar)."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

# POSTTRAIN_PROGRESS=off hides the bars on a terminal too
ENVIRONMENT = "POSTTRAIN_PROGRESS"


def interactive() -> bool:
    return sys.stdout.isatty() and os.environ.get(ENVIRONMENT, "auto") != "off"


class _NoBar:
    """What a bar's users call, doing nothing (not a terminal)."""

    n = 0

    def update(self, count: int = 1) -> None:
        self.n += count

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def bar(total: int, description: str, unit: str, initial: int = 0):
    """A tqdm bar on a terminal, else one that draws nothing."""
    if not interactive():
        return _NoBar()
    from tqdm.auto import tqdm

    try:
        sized = os.get_terminal_size(sys.stdout.fileno()).columns > 0
    except OSError:
        sized = False
    return tqdm(total=total, initial=initial, desc=description, unit=unit, leave=True, file=sys.stdout,
                dynamic_ncols=sized, ncols=None if sized else 100)  # a terminal of unknown width: 100 columns


@contextlib.contextmanager
def around_bars() -> Iterator[None]:
    """Log lines printed above the bars instead of through them, while a bar may be drawn."""
    if not interactive():
        yield
        return
    import logging

    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm(loggers=[logging.getLogger()]):  # the console handler is the root logger's
        yield

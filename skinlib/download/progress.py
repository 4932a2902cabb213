"""Progress and log output of the downloader: tqdm bars on a terminal, periodic log lines elsewhere.

On a terminal (or in a notebook) a download shows a tqdm bar. Written to a log file or a pipe (``make
run > log``), a bar would be one ever-growing line of carriage returns, so :class:`LogProgress` logs a
line every :data:`LOG_INTERVAL` seconds instead. :func:`configure_logging` makes the downloader's
messages ("MD5 verified", retries, warnings) visible from a command-line entry point.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Protocol

from tqdm.auto import tqdm

from skinlib.download.parts import format_bytes

LOGGER = "skinlib.download"
LOG_INTERVAL = 30.0
"""Seconds between two progress lines when the output is not a terminal."""

log = logging.getLogger(LOGGER)


class Progress(Protocol):
    """What the downloader needs of a progress display (a subset of tqdm's interface)."""

    total: float | None

    def update(self, n: float = 1) -> object: ...

    def reset(self, total: float | None = None) -> object: ...


class ConsoleHandler(logging.StreamHandler):
    """Writes plain lines to a fixed stream, or to whatever ``sys.stderr`` is at the time of each message
    (so a redirected or captured stderr is honoured)."""

    skinlib_console = True

    def __init__(self, stream: IO[str] | None = None):
        logging.Handler.__init__(self)
        self.fixed = stream
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self) -> IO[str]:
        return self.fixed if self.fixed is not None else sys.stderr

    @stream.setter
    def stream(self, value: IO[str] | None) -> None:
        self.fixed = value


def configure_logging(verbose: bool = False, quiet: bool = False, stream: IO[str] | None = None) -> logging.Logger:
    """Show the downloader's messages on ``stream`` (default: the current stderr), one plain line each.

    ``quiet``: warnings and errors only; ``verbose``: debug messages too; default: progress and
    "MD5 verified" lines. Calling it again only changes the level and stream (one handler, never two).
    Messages still propagate to the root logger, so an application's own logging configuration also
    sees them. Returns the ``skinlib.download`` logger.
    """
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    handler = next((h for h in logger.handlers if isinstance(h, ConsoleHandler)), None)
    if handler is None:
        logger.addHandler(ConsoleHandler(stream))
    else:
        handler.fixed = stream
    return logger


def in_notebook() -> bool:
    """Whether we run inside a Jupyter kernel (where tqdm.auto draws a widget)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def interactive() -> bool:
    """Whether progress bars can be drawn: stderr is a terminal, or we are in a notebook."""
    stderr = sys.stderr
    return bool(stderr is not None and hasattr(stderr, "isatty") and stderr.isatty()) or in_notebook()


class LogProgress:
    """A tqdm stand-in for non-terminals: one log line every ``interval`` seconds ("12.3 MB of 1.37 GB")."""

    def __init__(self, total: float | None, label: str, interval: float | None = None, clock=time.monotonic):
        self.total, self.label, self.clock = total, label, clock
        self.interval = LOG_INTERVAL if interval is None else interval
        self.n = 0.0
        self.last = clock()

    def update(self, n: float = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            log.info("%s", self.describe())

    def reset(self, total: float | None = None) -> None:
        self.total = total
        self.n = 0.0

    def describe(self) -> str:
        """'label: 12.30 MB of 1.37 GB (1%)'."""
        if self.total:
            return f"{self.label}: {format_bytes(self.n)} of {format_bytes(self.total)} ({self.n / self.total:.0%})"
        return f"{self.label}: {format_bytes(self.n)}"

    def close(self) -> None:
        pass

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(total: int | None, label: str, enabled: bool = True):
    """A tqdm bar on a terminal or in a notebook, :class:`LogProgress` elsewhere; a silent one when not
    ``enabled``."""
    if enabled and not interactive():
        return LogProgress(total, label)
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not enabled,
                leave=True, dynamic_ncols=True, mininterval=0.5)

"""What the command line shows on stderr while it works: lap and batch progress (rich), one-line
messages, and the artifacts the application layer publishes.

On a terminal, a rich live display: a bar of the laps and, below it, a bar of the batches of
the current pass over the data, with each finished lap's line printed above them. Elsewhere
(stderr sent to a file or a pipe): a line per lap, and with ``--progress`` a line at every
tenth of a pass's batches, so a log gets at most about ten lines a pass.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

#: Prefect settings these commands need on small machines without internet (kept if set)
PREFECT_ENV_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}

_console: Console | None = None


def console() -> Console:
    """The stderr console every line of the command goes through (so that lines printed
    while a live display runs appear above it, not through it)."""
    global _console
    if _console is None:
        _console = Console(stderr=True, highlight=False, soft_wrap=True)
    return _console


def say(*parts: Any) -> None:
    """One plain line on stderr."""
    console().print(*(str(p) for p in parts), markup=False, highlight=False, soft_wrap=True)


def setup_environment(verbose: bool) -> None:
    """Log levels and Prefect / Dask settings of a command line run (before they are imported).

    Quiet by default: the console stays for mixstream's own lines (logs still reach the Prefect
    API and UI). ``--verbose`` shows mixstream's, Prefect's and Dask's log lines at INFO.
    """
    for key, value in PREFECT_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if verbose:
        from rich.logging import RichHandler

        # through the console, so that log lines print above the live progress display
        handler = RichHandler(console=console(), show_time=False, show_path=False)
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", handlers=[handler])
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
        return
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    # nor do the workers of a LocalCluster started here (they inherit this environment) print
    # a traceback for a failing batch: its error ends the command as one line
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "critical")
    warnings.filterwarnings("ignore", message=r"Port \d+ is already in use")
    warnings.filterwarnings("ignore", module=r"distributed\..*")


def want_batch_progress(flag: bool) -> bool:
    """Per-batch progress: on a terminal, or when asked for with --progress."""
    return bool(flag) or console().is_terminal


class FitProgress:
    """Lap and batch progress of one fit (a lap listener and a batch listener).

    The batches counted are the distinct batches of the data visited since the pass began (a
    move that revisits a batch within a lap does not count twice). A pass begins when a lap
    ends, and when every batch has been visited and a call over the whole data starts again
    (K-means runs several such passes in its one lap).
    """

    def __init__(self, batches: bool, lap: int = 1, verbose: bool = False) -> None:
        self.batches = batches
        self.verbose = verbose
        self.label = f"lap {lap}"
        self.seen: set[int] = set()
        self.step = -1  # tenths of the pass already printed (lines mode)
        self.previous: dict | None = None  # the last lap's record (verbose detail)
        self.live: Progress | None = None
        self.lap_task: TaskID | None = None
        self.batch_task: TaskID | None = None
        if console().is_terminal:
            self.live = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                TimeElapsedColumn(),
                console=console(),
                transient=False,
            )

    def start(self, max_laps: int | None = None) -> None:
        if self.live is not None:
            self.live.start()

    def begin(self, label: str) -> None:
        """A new pass named ``label`` ("init", "lap 3") starts."""
        self.label = label
        self.seen.clear()
        self.step = -1
        if self.live is not None and self.batch_task is not None:
            self.live.reset(self.batch_task, description=f"{label}  batches")

    # ---------------------------------------------------------------- listeners
    def on_lap(self, record: dict, max_laps: int) -> None:
        from mixstream.app import lap_detail, lap_line

        say(lap_line(record, max_laps))
        if self.verbose:
            say(lap_detail(record, self.previous))
        self.previous = record
        if self.live is not None:
            text = f"laps {record['lap']}/{max_laps}  ELBO {record['elbo']:.6g}  K {record['K']}"
            if self.lap_task is None:
                self.lap_task = self.live.add_task(text, total=max_laps)
            self.live.update(self.lap_task, completed=record["lap"], description=text)
        self.begin(f"lap {int(record['lap']) + 1}")

    def on_batch(self, event: Any) -> None:
        n = int(event.n_batches)
        if len(self.seen) >= n and n > 1 and event.total == n:  # another pass over the data
            self.seen.clear()
            self.step = -1
        if event.batch in self.seen:
            return
        self.seen.add(event.batch)
        done = len(self.seen)
        text = f"{self.label}  batches {done}/{n} ({100 * done // n}%)"
        if self.live is not None:
            if self.batch_task is None:
                self.batch_task = self.live.add_task(text, total=n)
            # a pass's last batch is drawn at once: the next lap resets the bar
            self.live.update(
                self.batch_task, completed=done, total=n, description=text, refresh=done == n
            )
        else:
            step = done * 10 // n
            if step > self.step:
                self.step = step
                say(text)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


@contextlib.contextmanager
def fit_progress(
    batches: bool = False, lap: int = 1, verbose: bool = False
) -> Iterator[FitProgress]:
    """Lap progress on stderr while the block runs (and per-batch progress with ``batches``);
    the FitProgress is yielded, so the caller can name the passes it knows about."""
    from mixstream.engine.progress import batch_listener, lap_listener

    progress = FitProgress(batches, lap, verbose)
    progress.start()
    try:
        with lap_listener(progress.on_lap), contextlib.ExitStack() as stack:
            if batches:
                stack.enter_context(batch_listener(progress.on_batch))
            yield progress
    finally:
        progress.close()


class ConsolePublisher:
    """The application layer's Publisher for the command line: the dashboard's link as a line;
    with ``verbose``, tables (laps, clusters, rows per cluster) too. Markdown documents (the
    report with its plots) are left to report.html; progress to the bars."""

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose

    def link(self, key: str, url: str, text: str, description: str) -> None:
        say(f"{text}: {dashboard_note(url)}")

    def table(self, key: str, rows: list[dict[str, Any]], description: str) -> None:
        if not self.verbose or not rows:
            return
        from rich.table import Table

        table = Table(title=description, title_justify="left")
        for name in rows[0]:
            table.add_column(str(name))
        for row in rows[:20]:
            table.add_row(*(_cell(v) for v in row.values()))
        console().print(table)
        if len(rows) > 20:
            say(f"({len(rows) - 20} more rows)")

    def markdown(self, key: str, text: str, description: str) -> None:
        pass

    def progress(self, key: str, percent: float, description: str) -> None:
        pass


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def dashboard_note(link: str | None) -> str:
    """The Dask dashboard's link, with a hint when bokeh (which serves it) is missing."""
    if not link:
        return "none"
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return f"{link} (install bokeh to see it)"
    return link

"""One notebook through papermill, and a run's notebooks in order.

Each notebook runs in a fresh kernel with ``cwd`` set to the notebooks folder; the executed copy goes to
``<run>/notebooks/`` (kept, traceback included, when a cell fails). A failing cell is described from papermill's own
error fields (``cell_index``, ``exec_count``, ``source``, ``ename``, ``evalue``); Ctrl-C marks the partial copy,
and so does SIGTERM (what Slurm sends at the wall-time limit or on preemption) once :func:`stop_on_sigterm` is on.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from tqdm import tqdm

from runner.profiles import KERNEL, NOTEBOOKS_DIR, RunError
from skinlib import study

format_interval = tqdm.format_interval
"""``75.2`` -> ``'01:15'`` (tqdm's)."""

__all__ = ["EXIT_STATUS", "Outcome", "RunError", "Terminated", "execute", "format_interval", "mark_interrupted",
           "quiet_kernels", "run_notebooks", "signal_name", "stop_on_sigterm"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by :func:`stop_on_sigterm`'s handler: everything that handles Ctrl-C
    (a marked partial copy, the results so far, a clean exit) handles it too."""


def stop_on_sigterm() -> None:
    """From now on SIGTERM raises :class:`Terminated` in the main thread (the exit status is then 143)."""
    def terminated(signum, frame):
        raise Terminated(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, terminated)


def signal_name(error: BaseException | None) -> str:
    """``"SIGTERM"`` for :class:`Terminated`, else ``"Ctrl-C"``."""
    return "SIGTERM" if isinstance(error, Terminated) else "Ctrl-C"


EXIT_STATUS = {"Ctrl-C": 130, "SIGTERM": 143}
"""run_all.py's exit status after an interruption, by :func:`signal_name`: 128 + the signal's number, as a shell
reports it."""


@dataclass
class Outcome:
    """What happened to one notebook."""

    notebook: str
    status: str  # "ok", "failed", "interrupted" or "skipped"
    seconds: float = 0.0
    executed: Path | None = None
    cell: int | None = None  # 1-based position of the failing cell in the executed copy
    execution_count: int | None = None
    source: str | None = None  # first line of the failing cell
    error: str | None = None  # "ValueError: message"; for "interrupted": "Ctrl-C" or "SIGTERM"

    def describe(self) -> str:
        """One line for the console (and the results table)."""
        if self.status == "ok":
            return f"ok in {format_interval(self.seconds)}"
        if self.status == "interrupted":
            return f"INTERRUPTED ({self.error or 'Ctrl-C'}) at cell {self.cell}: partial copy {self.executed}"
        if self.status == "skipped":
            return f"skipped ({self.error})" if self.error else "skipped"
        where = f"cell {self.cell}" if self.cell else "a cell"
        if self.execution_count:
            where += f" (In [{self.execution_count}])"
        source = f" `{self.source}`" if self.source else ""
        return f"FAILED at {where}{source}: {self.error} — executed copy: {self.executed}"


def execute(notebook: Path, executed: Path, parameters: Mapping[str, Any], *, cwd: Path = NOTEBOOKS_DIR,
            kernel_name: str = KERNEL, progress: bool = True, log_output: bool = False,
            timeout: float | None = None) -> Outcome:
    """Execute one notebook with papermill; return its :class:`Outcome` (never raises for a failing cell)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    executed.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    name = notebook.stem
    try:
        papermill.execute_notebook(str(notebook), str(executed), parameters=dict(parameters), cwd=str(cwd),
                                   kernel_name=kernel_name, progress_bar=progress, log_output=log_output,
                                   execution_timeout=timeout)
    except PapermillExecutionError as error:  # cell_index counts the executed copy's cells before the banner
        cell = error.cell_index + 1 if isinstance(error.cell_index, int) else None
        return Outcome(name, "failed", time.perf_counter() - started, executed, cell, error.exec_count,
                       _first_line(error.source) or None, f"{error.ename}: {_first_line(error.evalue)}")
    except KeyboardInterrupt as error:
        cell = mark_interrupted(executed, signal_name(error))
        return Outcome(name, "interrupted", time.perf_counter() - started, executed, cell, error=signal_name(error))
    except Exception as error:  # kernel died, timeout, missing kernel: still a failed notebook, named
        return Outcome(name, "failed", time.perf_counter() - started, executed, None, None, None,
                       f"{type(error).__name__}: {_first_line(str(error))}")
    return Outcome(name, "ok", time.perf_counter() - started, executed)


def mark_interrupted(executed: Path, how: str = "Ctrl-C") -> int | None:
    """Marks a partial executed copy as interrupted: papermill's status "interrupted" on the notebook, the cell
    that was running and the cells that never ran no longer "completed", and a banner first. Returns the 1-based
    position of the interrupted cell (None if no copy was written)."""
    import nbformat

    if not executed.is_file():
        return None
    try:
        notebook = nbformat.read(executed, as_version=4)
    except Exception:  # cut short while papermill wrote it: left as it is (unfinished, so never taken as complete)
        return None
    running = None
    for position, cell in enumerate(notebook.cells, start=1):
        meta = cell.metadata.setdefault("papermill", {})
        if cell.cell_type != "code" or cell.get("execution_count") is not None:
            continue
        meta.update(status="interrupted" if running is None else "pending", exception=running is None)
        running = running or position
    notebook.metadata.setdefault("papermill", {}).update(status="interrupted", exception=True)
    banner = nbformat.v4.new_markdown_cell(
        f"**Interrupted** ({how}) at cell {running}: it and the cells after it did not finish. Run the notebook "
        "again (run_all.py into the same --out starts it cleanly, `-p resume=True` continues its training; a sweep "
        "rerun into the same --out resumes it).")
    banner.metadata["tags"] = ["skinlib-interrupted"]
    notebook.cells.insert(0, banner)
    nbformat.write(notebook, executed)
    return running


def quiet_kernels(log_path: Path):
    """Sends what the notebook kernels print on their own stderr (TensorFlow, absl and ipykernel warnings) to
    ``log_path`` instead of the console; run_all.py's own messages keep the console. Returns the console stream."""
    console = os.fdopen(os.dup(2), "w", buffering=1)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - kept open for the kernels' lifetime
    os.dup2(log.fileno(), 2)
    sys.stderr = console
    return console


def _first_line(text: str, limit: int = 300) -> str:
    line = next((line for line in str(text).splitlines() if line.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def run_notebooks(steps: Sequence[study.Step], parameters: Mapping[str, Mapping[str, Any]], out_dir: Path, *,
                  notebooks_dir: Path = NOTEBOOKS_DIR, keep_going: bool = False, progress: bool = True,
                  log_output: bool = False, timeout: float | None = None, stream=None) -> list[Outcome]:
    """Run ``steps`` in order; stop at the first failure unless ``keep_going``, and at an interruption (Ctrl-C or
    SIGTERM).
    Prints progress to ``stream`` (default: ``sys.stderr`` at call time)."""
    stream = stream or sys.stderr
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    failed = False
    for position, step in enumerate(steps, start=1):
        label = f"[{position}/{len(steps)}] {step.notebook}"
        if failed and not keep_going:
            outcomes.append(Outcome(step.notebook, "skipped", error="an earlier notebook failed"))
            print(f"{label}: skipped (an earlier notebook failed; --keep-going runs the rest)", file=stream)
            continue
        missing = [m for m in step.members if not any(o.notebook == study.get(m).notebook and o.status == "ok"
                                                        for o in outcomes)]
        if missing and any(study.get(m).notebook in {s.notebook for s in steps} for m in missing):
            note = f"needs the models of {', '.join(study.get(m).notebook for m in missing)}, which failed"
            outcomes.append(Outcome(step.notebook, "skipped", error=note))
            print(f"{label}: skipped ({note})", file=stream)
            continue
        print(f"{label}: running ...", file=stream, flush=True)
        outcome = execute(notebooks_dir / f"{step.notebook}.ipynb", out_dir / "notebooks" / f"{step.notebook}.ipynb",
                          parameters[step.notebook], cwd=notebooks_dir, progress=progress, log_output=log_output,
                          timeout=timeout)
        outcomes.append(outcome)
        if outcome.status == "interrupted":
            outcomes += [Outcome(s.notebook, "skipped", error="the run was interrupted") for s in steps[position:]]
            break
        failed = failed or outcome.status == "failed"
        print(f"{label}: {outcome.describe()}  (elapsed {format_interval(time.perf_counter() - started)})",
              file=stream, flush=True)
    return outcomes

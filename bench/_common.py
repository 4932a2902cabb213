"""Helpers shared by the benchmarks: the machine, timing, peak memory in a fresh process, ratio tables.

Every benchmark prints figures that are ratios of two things measured in the same run on the same
machine: shared CPUs and virtual machines make absolute seconds noisy, ratios much less so. Absolute
figures are printed once, below the table, for reference only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
RESULT_MARK = "BENCH-RESULT "  # prefix of the one JSON line a worker process prints
if str(PROJECT) not in sys.path:
    sys.path.insert(1, str(PROJECT))  # the benchmarks run from a checkout, skinlib installed or not


# ---------------------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------------------

def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo (or platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """One line naming the machine: cores, CPU model, memory, load average, Python."""
    cores = os.cpu_count()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        memory_text = f"{memory:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        memory_text = "? GiB"
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return (f"{cores} cores ({cpu_model()}), {memory_text} RAM, load average {load}, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def load_average() -> float:
    """The 1-minute load average (0.0 where unknown)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


# ---------------------------------------------------------------------------------------------------
# Timing and memory inside one process
# ---------------------------------------------------------------------------------------------------

def _status_kib(field: str) -> int | None:
    """A field of /proc/self/status in KiB (VmRSS, VmHWM), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0); False if impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class Measurement:
    """Wall time and peak memory of one block of code (see :func:`measure`)."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time of the whole process (all threads) during the block
    peak_bytes: int = 0  # peak resident memory above the resident memory just before the block
    memory_method: str = ""


@contextmanager
def measure():
    """Time a block (wall and CPU time) and measure the peak resident memory it added to this process.

    CPU time (``time.process_time``: all threads, user + system) is what the block costs the machine; on a
    loaded machine it is steadier than wall time, which also counts waiting for a core.

    Peak memory is the process's high-water resident set size (``VmHWM``, reset just before the block by
    writing 5 to ``/proc/self/clear_refs``) minus its resident set size just before the block. It counts
    everything the block made resident: NumPy arrays, decoder buffers, threads' stacks and the pages of a
    memory-mapped file it wrote or read. Where the reset is impossible it falls back to
    ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which is only right if nothing before the block peaked
    higher; hence each method runs in a fresh process (:func:`run_worker`).
    """
    result = Measurement()
    rss_before = _status_kib("VmRSS")
    reset = _reset_peak_rss()
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - start
        result.cpu_seconds = time.process_time() - cpu_start
        peak = _status_kib("VmHWM") if reset else None
        if peak is not None and rss_before is not None:
            result.peak_bytes = max(0, peak - rss_before) * 1024
            result.memory_method = "VmHWM after reset - VmRSS before"
        else:
            maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
            result.peak_bytes = max(0, maxrss_kib - (rss_before or 0)) * 1024
            result.memory_method = "ru_maxrss - VmRSS before"


# ---------------------------------------------------------------------------------------------------
# Workers: one method, one fresh process
# ---------------------------------------------------------------------------------------------------

def report_result(result: dict) -> None:
    """Print a worker's result as the one line its parent parses (see :func:`run_worker`)."""
    print(RESULT_MARK + json.dumps(result), flush=True)


def run_worker(args: list[str], env: dict | None = None, timeout: float | None = None) -> dict:
    """Run ``python ARGS`` in a fresh process and return the JSON it reported with :func:`report_result`."""
    process = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=PROJECT,
                             env={**os.environ, **(env or {})}, timeout=timeout)
    for line in reversed(process.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    raise RuntimeError(f"benchmark worker {' '.join(args)} failed (exit {process.returncode}):\n"
                       f"{process.stdout[-3000:]}\n{process.stderr[-3000:]}")


# ---------------------------------------------------------------------------------------------------
# Ratios, targets and tables
# ---------------------------------------------------------------------------------------------------

def median(values) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


@dataclass
class Target:
    """A target on a ratio: ``value >= bound`` (``at_least``) or ``value <= bound``."""

    name: str
    value: float
    bound: float
    at_least: bool = True

    @property
    def held(self) -> bool:
        return self.value >= self.bound if self.at_least else self.value <= self.bound

    def line(self) -> str:
        sign = ">=" if self.at_least else "<="
        return f"  [{'held' if self.held else 'FAILED'}] {self.name}: {self.value:.2f} (target {sign} {self.bound:g})"


def format_table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table (pastes into bench/README.md as it is)."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "n/a" if value != value else f"{value:.2f}"
        return str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(r, widths)) + " |" for r in text]
    return "\n".join(lines)


def print_targets(targets: list[Target], dry_run: bool = False) -> bool:
    """Print each target and whether it held; return True if all held (always True for a dry run)."""
    if dry_run:
        print("Targets (dry run: settings too small to judge, shown for the format only):")
    else:
        print("Targets:")
    for target in targets:
        print(target.line())
    return dry_run or all(t.held for t in targets)


def model_parser(doc: str) -> argparse.ArgumentParser:
    """The command line shared by the CPU throughput scripts: ``--models`` and ``--size`` (64x64 by default)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["baseline", "vgg16"])
    parser.add_argument("--size", type=int, nargs=2, default=(64, 64), metavar=("HEIGHT", "WIDTH"))
    return parser


def data_parser(doc: str) -> argparse.ArgumentParser:
    """The command line shared by the scripts that read HAM10000: ``--data``, ``--images`` and ``--seed``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="HAM10000 folder (default: $SKINLIB_DATA, else data/ham10000)")
    parser.add_argument("--images", default=None, help="image folder inside --data, e.g. images_200x150")
    parser.add_argument("--seed", type=int, default=0)
    return parser

"""The sweep engine's throughput and overhead: the same small smoke sweep (notebook 02, N seeds, synthetic data)
as bare papermill calls one after the other, through ``run_all.py --seeds ... --workers 1`` (the Dask engine, one
run at a time) and through ``--workers W`` on the same LocalCluster engine; every kernel pinned to one CPU thread.

    python bench/sweep.py                 # 8 seeds, 2 workers: ~10 min on 2 cores
    python bench/sweep.py --dry-run       # 2 seeds, to check the script

Reports the throughput ratio (one worker's wall / W workers' wall) and the engine's overhead per run: the seconds
that ``run_all.py`` on one worker adds to the bare papermill calls (its start, the dataset check, the cluster,
records and reports), per run. Targets: on W >= 2 cores, throughput >= 1.5x; overhead per run <= 1 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import PROJECT, Target, format_table, machine, print_targets

THREADS = {name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                  "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}


def bare(data: Path, out: Path, seeds: list[int]) -> float:
    """The runs as plain ``papermill.execute_notebook`` calls, one after the other; the wall seconds."""
    import papermill

    sys.path.insert(0, str(PROJECT))
    import runner

    steps = runner.select("02")
    started = time.perf_counter()
    for seed in seeds:
        folder = out / f"seed{seed}"
        folder.mkdir(parents=True)
        planned = runner.plan_parameters(steps, "smoke", {"data_dir": str(data), "out_dir": str(folder)},
                                         {None: {"seed": seed}})
        papermill.execute_notebook(str(runner.NOTEBOOKS_DIR / "02_baseline_cnn.ipynb"),
                                   str(folder / "02_baseline_cnn.ipynb"), parameters=planned["02_baseline_cnn"],
                                   cwd=str(runner.NOTEBOOKS_DIR), progress_bar=False)
    return time.perf_counter() - started


def run_all(data: Path, out: Path, seeds: list[int], *extra: str) -> float:
    """``run_all.py --only 02 --seeds ...`` in a child process; the wall seconds (an error if it failed)."""
    command = [sys.executable, str(PROJECT / "run_all.py"), "--profile", "smoke", "--data", str(data), "--only",
               "02", "--no-progress", "--seeds", ",".join(map(str, seeds)), "--out", str(out), *extra]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8, help="runs in the sweep (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster workers (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="2 seeds: check the script, judge nothing")
    args = parser.parse_args(argv)
    seeds = list(range(2 if args.dry_run else args.seeds))
    os.environ.update(THREADS)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, str(PROJECT))
    from skinlib.data import make_synthetic

    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as scratch:
        root = Path(scratch)
        data = make_synthetic(root / "ham10000", n_images=70, seed=0)
        one, many = "run_all.py --seeds --workers 1", f"run_all.py --seeds --workers {args.workers}"
        walls = {"bare papermill, sequential": bare(data, root / "bare", seeds),
                 one: run_all(data, root / "one", seeds, "--workers", "1", "--threads", "1"),
                 many: run_all(data, root / "many", seeds, "--workers", str(args.workers), "--threads", "1")}
    base, sequential = walls["bare papermill, sequential"], walls[one]
    rows = [[name, len(seeds), wall / len(seeds), sequential / wall, (wall - base) / len(seeds)]
            for name, wall in walls.items()]
    print(format_table(["engine", "runs", "wall s per run", "throughput vs one worker",
                        "wall s per run above bare"], rows))
    print(f"\nMachine: {machine()}; every kernel 1 CPU thread; smoke profile, notebook 02, 70 synthetic images.")
    targets = [Target(f"sweep throughput, {args.workers} workers vs 1", sequential / walls[many], 1.5),
               Target("engine overhead per run vs bare papermill (1 worker), s", (sequential - base) / len(seeds), 1,
                      at_least=False)]
    return 0 if print_targets(targets, dry_run=args.dry_run) else 1


if __name__ == "__main__":
    sys.exit(main())

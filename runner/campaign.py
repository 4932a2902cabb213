"""The sweep command of ``run_all.py``: plan the grid, check every task before any kernel starts, run the tasks on
Dask, then write each run folder's ``results.md`` and the sweep's own report (``sweep.md``, ``sweep.csv``, the leak
figure)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from runner import grid, sweep
from runner.execute import format_interval, signal_name
from runner.preflight import check_members, check_parameters
from runner.profiles import RunError
from runner.results import write_results
from skinlib import study


def wanted(args, protocols: Sequence[str], axes: Sequence) -> bool:
    """Whether the request is a sweep (run on Dask): a cluster or several workers named, or a grid beyond seeds
    (``--workers 1`` alone, or ``--seeds`` alone, is today's run in this process)."""
    return bool(args.workers not in (None, 1) or args.scheduler or args.cluster or args.folds or len(protocols) > 1 or axes)


def prepare(args, steps: Sequence[study.Step], out_dir: Path, run_values: Mapping[str, Any], overrides: Mapping,
            axes: Sequence, protocols: Sequence[str], seeds: Sequence[int | None]) -> list[grid.Task]:
    """The sweep's tasks, each one's parameters checked (and 09's members, where they do not run in the sweep)."""
    sweep.check_request(args.workers, args.scheduler, args.cluster)
    if args.folds is not None and args.folds < 2:
        raise RunError(f"--folds {args.folds}: give the number of folds, an int >= 2")
    for name, flag in (("folds", "--folds"), ("fold", "--folds"), ("seed", "--seeds"), ("protocol", "--protocol")):
        if any(name in values for values in overrides.values()) or any(axis[1] == name for axis in axes):
            raise RunError(f"-p {name}=...: a sweep sets {name} per run; give {flag} instead")
    tasks = grid.plan(steps, args.profile, out_dir, run_values, overrides,
                      grid.points(protocols, seeds, args.folds, axes))
    for folder, positions in sweep.folders_of(tasks).items():
        planned = {tasks[p].step.notebook: tasks[p].parameters for p in positions}
        here = [tasks[p].step for p in positions]
        check_parameters(here, planned)
        check_members(here, planned, folder)
    return tasks


def run(args, tasks: Sequence[grid.Task], out_dir: Path, stream) -> int:
    """Runs the tasks on the requested cluster and writes the results; the exit status (0 ok, 1 a run failed)."""
    workers = args.workers or (None if args.scheduler else max(1, sweep.gpu_count()))
    threads = args.threads or max(1, (os.cpu_count() or 1) // (workers or 1))
    started = time.perf_counter()
    try:
        with sweep.connect(workers, args.scheduler, args.cluster, threads) as client:
            outcomes = sweep.run_sweep(tasks, client, threads=threads, retries=args.retries, timeout=args.timeout,
                                       stream=stream)
    except KeyboardInterrupt as error:  # Ctrl-C or SIGTERM: the cluster is closed; mark what was cut short
        marked = sweep.mark_unfinished(tasks, signal_name(error))
        print(f"\nInterrupted ({signal_name(error)}): {len(marked)} run(s) cut short and marked"
              + "".join(f"\n  {task.key}: {task.executed}" for task in marked), file=stream, flush=True)
        raise
    wall = time.perf_counter() - started
    for folder, positions in sweep.folders_of(tasks).items():
        point = tasks[positions[0]].point
        settings = {"protocol": point["protocol"], "seed": point["seed"], "fold": point["fold"],
                    "notebooks": ", ".join(tasks[p].step.number for p in positions), "output": str(folder)}
        write_results(folder, [outcomes[p] for p in positions], profile_name=args.profile, settings=settings,
                      wall_seconds=sum(outcomes[p].seconds for p in positions),
                      steps=[tasks[p].step for p in positions])
    from runner import report

    md_path, csv_path, figures = report.write(out_dir, tasks, outcomes)
    failed = [(t, o) for t, o in zip(tasks, outcomes) if o.status not in ("ok",)]
    print(f"\nSweep done in {format_interval(wall)}: {sum(o.status == 'ok' for o in outcomes)} ok, "
          f"{sum(o.status == 'failed' for o in outcomes)} failed, {sum(o.status == 'skipped' for o in outcomes)} "
          f"skipped. Report: {md_path}, {csv_path.name}" + (f", {', '.join(p.name for p in figures)}" if figures
                                                            else ""), file=stream)
    for task, outcome in failed:
        print(f"{outcome.status.upper()} {task.key}: {outcome.describe()}", file=stream)
    return 1 if any(o.status == "failed" for o in outcomes) else 0

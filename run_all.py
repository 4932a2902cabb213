#!/usr/bin/env python
"""Run the study's nine notebooks headlessly, in order, and gather their results.

    python run_all.py --profile smoke --data ../shared/data/ham10000        # every notebook in minutes
    python run_all.py --profile full --data data/ham10000 --protocol grouped  # the study's recipe
    python run_all.py --only 03,04 -p epochs=2 -p 03:batch_size=16 --keep-going
    python run_all.py --protocol study,grouped --seeds 0-4 --folds 5 -p 'recipe=study|corrected' --workers 4  # a sweep

Executed notebooks, figures, models and results land under ``outputs/<run>/`` (``--out`` to choose):
``notebooks/`` (executed copies, kept with the traceback when a cell fails), ``figures/``, ``models/``,
``results/`` (one JSON per notebook), and ``results.md`` / ``results.csv``: the study's results table with
this run's numbers beside the study's. The exit status is 0 when every notebook ran, 1 when one failed,
2 for a bad request or a missing dataset, 130 after Ctrl-C and 143 after SIGTERM (Slurm's wall-time limit or
preemption), both of which mark the partial copy. The Keras backend is the environment's ``KERAS_BACKEND``.

A sweep (several protocols, ``--folds``, a ``-p`` list such as ``-p 'recipe=study|corrected'``, or ``--workers``,
``--scheduler``, ``--cluster``) runs the cross product on Dask distributed, one notebook run per task, each into
``<out>/<protocol>/<recipe>/seed<k>[/fold<j>]/``, and writes ``<out>/sweep.md``, ``sweep.csv`` and ``leak.png``
(``runner.grid``, ``runner.sweep``, ``runner.report``). Run again into the same ``--out``, it skips complete runs
and resumes interrupted ones.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent
sys.path.insert(0, str(PROJECT))

import runner  # noqa: E402  (beside this file)
from runner import campaign, grid  # noqa: E402
from skinlib import download, study  # noqa: E402
from skinlib.data.splits import PROTOCOLS  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run_all.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Notebooks: " + ", ".join(step.notebook for step in study.STEPS))
    parser.add_argument("--profile", choices=runner.PROFILES, default="full",
                        help="full: each notebook's defaults (the study's settings); smoke: every notebook end to end "
                             "on a small subset, small images, one epoch per stage, random weights, eager "
                             "(default: %(default)s)")
    parser.add_argument("--protocol", default=None, metavar="|".join(PROTOCOLS),
                        help="split: the study's image-level split ('study'), 'grouped' by lesion, or the study's "
                             "test set with its lesions removed from train and val ('study_deleaked': the same test "
                             "images without the leak) (default: the notebooks' own, 'study'); several, "
                             "comma-separated (study,grouped): a sweep")
    parser.add_argument("--data", type=Path, default=None,
                        help="HAM10000 folder (default: $SKINLIB_DATA, else data/ham10000)")
    parser.add_argument("--images", default=None,
                        help="image folder inside --data (e.g. images_200x150); default: the official "
                             "HAM10000_images_part_1/_2, else the first images* folder holding every image")
    parser.add_argument("--isic2018", type=Path, default=None,
                        help="ISIC 2018 Task 3 test folder: also evaluate every model on it (external test)")
    parser.add_argument("--only", default=None, help="run only these notebooks, e.g. 03,04 or 01_eda")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder of the run (default: outputs/<profile>-<protocol>-<date-time>)")
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                        help="set a notebook parameter (a Python literal or a string), for every notebook that "
                             "has it, or NN:NAME=VALUE for one notebook; repeatable. Values separated by '|' outside "
                             "brackets (quote them: -p 'recipe=study|corrected') are a sweep's list")
    parser.add_argument("--seeds", default=None, metavar="0-4",
                        help="repeat the run once per random seed (split, augmentation, training) into <out>/seed<k>/, "
                             "then write <out>/seeds.md and seeds.csv: mean and standard deviation per notebook; "
                             "0,1,2 or a range 0-4")
    sweep = parser.add_argument_group("sweeps on Dask distributed (runner.sweep)")
    sweep.add_argument("--folds", type=int, default=None, metavar="K",
                       help="lesion-grouped K-fold cross-validation of the grouped protocol: one run per fold")
    sweep.add_argument("--workers", type=int, default=None, metavar="N",
                       help="worker processes of a local Dask cluster, one notebook and one GPU each "
                            "(default for a sweep: the GPUs present, else 1)")
    sweep.add_argument("--scheduler", default=None, metavar="tcp://host:8786",
                       help="run the sweep on this running Dask scheduler's workers")
    sweep.add_argument("--cluster", default=None, metavar="slurm|pbs|sge|lsf",
                       help="run the sweep on batch jobs (dask_jobqueue, configured by your jobqueue.yaml; one "
                            "GPU per job), --workers jobs")
    sweep.add_argument("--threads", type=int, default=None,
                       help="CPU threads per notebook kernel (default: the CPUs / --workers)")
    sweep.add_argument("--retries", type=int, default=2,
                       help="times a run is tried again after its worker died (it resumes from its checkpoints)")
    parser.add_argument("--keep-going", action="store_true", help="after a failing notebook, run the rest")
    parser.add_argument("--timeout", type=float, default=None, help="seconds allowed per cell (default: none)")
    parser.add_argument("--log-output", action="store_true", help="stream the notebooks' output to the console")
    parser.add_argument("--verbose", action="store_true",
                        help="show the kernels' own warnings (TensorFlow, absl, ipykernel) on the console instead of "
                             "<out>/kernels.log")
    parser.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    parser.add_argument("--no-download", action="store_true",
                        help="when the dataset is missing, only say where to put it (do not offer to download)")
    parser.add_argument("--download-yes", action="store_true",
                        help="when the dataset is missing, download it without asking")
    parser.add_argument("--show-profiles", action="store_true",
                        help="print every notebook parameter: its default (full), smoke value and help; then exit")
    return parser.parse_args(argv)


def resolve_data(args: argparse.Namespace) -> tuple[Path, str | None] | None:
    """The dataset folder and image folder to use, or None (after saying what is wrong and how to fix it)."""
    from skinlib import config

    data_dir = (args.data or config.data_root()).expanduser().resolve()
    print(f"Checking the dataset in {data_dir} ...", file=sys.stderr, flush=True)
    status, message, images = download.check_dataset(data_dir, args.images)
    if status == "ok":
        print(message, file=sys.stderr)
        return data_dir, images
    text, parts = download.missing_data_message(data_dir, status, message)
    print(text, file=sys.stderr)
    if status != "absent" or not parts or args.no_download:
        return None
    if not download.offer_download(data_dir, parts, args.download_yes):
        return None
    status, message, images = download.check_dataset(data_dir, args.images)
    print(message, file=sys.stderr)
    return (data_dir, images) if status == "ok" else None


def main(argv=None) -> int:
    runner.stop_on_sigterm()  # SIGTERM (Slurm's wall-time limit, preemption, kill) is handled as Ctrl-C is
    args = parse_args(argv)
    download.configure_logging(verbose=args.verbose)
    if args.show_profiles:
        with __import__("pandas").option_context("display.max_colwidth", 70, "display.width", 200):
            print(runner.profile_frame().to_string(index=False))
        return 0
    try:
        steps = runner.select(args.only)
        overrides, axes = grid.parse_grid(args.parameter)
        seeds = grid.parse_seeds(args.seeds)
        protocols = parse_protocols(args.protocol)
    except runner.RunError as error:
        print(f"run_all.py: {error}", file=sys.stderr)
        return 2

    found = resolve_data(args)
    if found is None:
        return 2
    data_dir, images = found
    if campaign.wanted(args, protocols, axes):
        return run_sweep(args, steps, overrides, axes, protocols, seeds, data_dir, images)
    protocol = args.protocol or "study"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = (args.out or PROJECT / "outputs" / f"{args.profile}-{protocol}-{stamp}").expanduser().resolve()
    try:
        runner.check_out_dir(out_dir)
        runner.lock(out_dir)
        for seed in seeds:  # every planned value checked before any kernel starts
            folder = out_dir if seed is None else out_dir / f"seed{seed}"
            planned = runner.plan_parameters(steps, args.profile, run_values(args, data_dir, images, folder),
                                             with_seed(overrides, seed))
            runner.check_parameters(steps, planned)
            runner.check_members(steps, planned, folder)
    except runner.RunError as error:
        print(f"run_all.py: {error}", file=sys.stderr)
        return 2
    # The kernels inherit this environment: skinlib importable without installing it, and the Keras backend.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")]))
    if not args.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        runner.quiet_kernels(out_dir / "kernels.log")
    warning = runner.cpu_warning(steps, args.profile)
    if warning:
        print(warning, file=sys.stderr)
    folders, status = [], 0
    for seed in seeds:
        folder = out_dir if seed is None else out_dir / f"seed{seed}"
        status = run_once(args, steps, with_seed(overrides, seed), data_dir, images, protocol, folder)
        folders.append(folder)
        if status == 2 or status in runner.EXIT_STATUS.values():
            return status
    if args.seeds:
        try:
            md_path, _ = runner.write_seed_summary(out_dir, folders, seeds, steps)
        except runner.RunError as error:
            print(f"run_all.py: {error}", file=sys.stderr)
            return 2
        print(f"Mean and standard deviation over seeds {args.seeds}: {md_path}", file=sys.stderr)
    return status


def parse_protocols(text: str | None) -> list[str]:
    """``--protocol study,grouped`` -> ["study", "grouped"]; no --protocol -> ["study"] (the notebooks' own)."""
    protocols = (text or "study").split(",")
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or len(set(protocols)) != len(protocols):
        raise runner.RunError(f"--protocol {text!r}: give one or more of {', '.join(PROTOCOLS)}, comma-separated, "
                              f"each once")
    return protocols


def run_sweep(args, steps, overrides, axes, protocols, seeds, data_dir: Path, images) -> int:
    """The grid on Dask (``runner.campaign``): every task checked, then run; the exit status."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = (args.out or PROJECT / "outputs" / f"{args.profile}-sweep-{stamp}").expanduser().resolve()
    values = {k: v for k, v in run_values(args, data_dir, images, out_dir).items() if k != "protocol"}
    try:
        tasks = campaign.prepare(args, steps, out_dir, values, overrides, axes, protocols, seeds)
        runner.lock(runner.check_out_dir(out_dir))
    except runner.RunError as error:
        print(f"run_all.py: {error}", file=sys.stderr)
        return 2
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")]))
    console = sys.stderr
    if not args.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        console = runner.quiet_kernels(out_dir / "kernels.log")
    try:
        return campaign.run(args, tasks, out_dir, console)
    except KeyboardInterrupt as error:
        print(f"Interrupted: the same command into --out {out_dir} skips the complete runs and resumes the others.",
              file=console, flush=True)
        return runner.EXIT_STATUS[runner.signal_name(error)]


def with_seed(overrides, seed: int | None):
    """The ``-p`` overrides with ``seed`` for every notebook (None: unchanged)."""
    return overrides if seed is None else {**overrides, None: {**overrides.get(None, {}), "seed": seed}}


def run_values(args, data_dir: Path, images, out_dir: Path) -> dict:
    """What run_all.py itself gives every notebook: the data, the output folder, the protocol, the ISIC test."""
    values = {"data_dir": str(data_dir), "images": images, "out_dir": str(out_dir)}
    if args.protocol:
        values["protocol"] = args.protocol
    if args.isic2018:
        values["isic2018_dir"] = str(args.isic2018.expanduser().resolve())
    return values


def run_once(args, steps, overrides, data_dir: Path, images, protocol: str, out_dir: Path) -> int:
    """Runs the notebooks once into ``out_dir``; the exit status (0 ok, 1 a notebook failed, 2 bad request,
    130 interrupted by Ctrl-C, 143 by SIGTERM)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        parameters = runner.plan_parameters(steps, args.profile, run_values(args, data_dir, images, out_dir), overrides)
    except runner.RunError as error:
        print(f"run_all.py: {error}", file=sys.stderr)
        return 2
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    print(f"Running {len(steps)} notebook(s), profile {args.profile}, protocol {protocol}, Keras backend "
          f"{backend}, into {out_dir}", file=sys.stderr)
    started = time.perf_counter()
    outcomes = runner.run_notebooks(steps, parameters, out_dir, keep_going=args.keep_going,
                                    progress=not args.no_progress, log_output=args.log_output,
                                    timeout=args.timeout)
    wall = time.perf_counter() - started
    settings = {"protocol": protocol, "data": f"{data_dir}" + (f" (images: {images})" if images else ""),
                "notebooks": ", ".join(step.number for step in steps),
                "overrides": " ".join(args.parameter) or "none", "output": str(out_dir)}
    try:
        md_path, csv_path = runner.write_results(out_dir, outcomes, profile_name=args.profile, settings=settings,
                                                 wall_seconds=wall, steps=steps)
    except runner.RunError as error:
        print(f"run_all.py: {error}", file=sys.stderr)
        return 2
    interrupted = [o for o in outcomes if o.status == "interrupted"]
    if interrupted:
        print(f"\nInterrupted ({interrupted[0].error}): {interrupted[0].notebook} did not finish; its partial copy is "
              f"{interrupted[0].executed}. Results so far: {md_path}", file=sys.stderr, flush=True)
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the dying kernel's asyncio noise at exit is not news
        return runner.EXIT_STATUS[interrupted[0].error]
    failed = [o for o in outcomes if o.status == "failed"]
    print(f"\nDone in {runner.format_interval(wall)}: {sum(o.status == 'ok' for o in outcomes)} ok, "
          f"{len(failed)} failed, {sum(o.status == 'skipped' for o in outcomes)} skipped. "
          f"Results: {md_path} and {csv_path.name}", file=sys.stderr)
    for outcome in failed:
        print(f"FAILED {outcome.notebook}: {outcome.describe()}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as stop:  # between notebooks, or before the first one started
        print("\nInterrupted before a notebook started: nothing was left half-written.", file=sys.stderr)
        sys.exit(runner.EXIT_STATUS[runner.signal_name(stop)])

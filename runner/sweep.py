"""A sweep's tasks on Dask distributed: one notebook run per task, each pinned to one GPU with bounded CPU threads.

``--workers N`` starts a ``distributed.LocalCluster`` of N single-threaded worker processes (N defaults to the GPUs
present, else 1), ``--scheduler tcp://host:8786`` joins a running cluster, ``--cluster slurm`` (pbs, sge, lsf)
starts ``dask_jobqueue`` jobs configured by the user's Dask config (``~/.config/dask/jobqueue.yaml``: queue,
walltime, memory, and one GPU per job, e.g. ``job_extra_directives: ["--gres=gpu:1"]`` on Slurm; the other kinds in
:data:`GPU_DIRECTIVE`). A local worker has one thread; a batch job's or a running cluster's workers advertise the
resource ``GPU=1`` and every task then asks for it: either way a worker runs one notebook at a time. Tasks are
submitted as workers can take them (:func:`capacity`), in plan order, except that 09 waits for its members to end
before it is submitted (with their outcomes), so it never holds a worker idle. A failing notebook is an
:class:`~runner.Outcome`, not an exception: the others go on. A task whose worker died is run again by Dask
(``retries``); finding its executed copy unfinished, it passes ``resume=True``, so training continues from its
checkpoints.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from runner.execute import Outcome, execute, format_interval, mark_interrupted
from runner.grid import Task, executed_status, is_complete
from runner.profiles import NOTEBOOKS_DIR, PROJECT, RunError

CLUSTERS = ("slurm", "pbs", "sge", "lsf")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                    "TF_NUM_INTEROP_THREADS")
GPU_RESOURCE = {"GPU": 1}
"""What a task asks of a batch job's or a running cluster's worker, whose workers advertise it: one GPU."""
GPU_DIRECTIVE = {"slurm": "'--gres=gpu:1'", "pbs": "'-l ngpus=1'", "sge": "'-l gpu=1'", "lsf": "'-gpu num=1'"}
"""How a job of each ``--cluster`` kind asks its batch scheduler for one GPU, for the jobqueue.yaml example (sites
differ: PBS Pro takes ngpus, SGE a site-defined complex such as gpu, LSF 10.1+ ``-gpu``)."""


def gpu_count() -> int:
    """GPUs this machine offers: those of ``CUDA_VISIBLE_DEVICES`` if set, else ``nvidia-smi -L``'s, else 0."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in listed.splitlines())


def kernel_environment(index, threads: int, environ=os.environ) -> dict[str, str]:
    """The environment variables a kernel of worker ``index`` gets: one GPU (``CUDA_VISIBLE_DEVICES``) where the
    worker sees several, and ``threads`` CPU threads for OpenMP, BLAS and TensorFlow."""
    env = {name: str(threads) for name in THREAD_VARIABLES}
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    devices = ([d.strip() for d in visible.split(",") if d.strip()] if visible is not None
               else [str(i) for i in range(gpu_count())])
    if len(devices) > 1 and isinstance(index, int):
        env["CUDA_VISIBLE_DEVICES"] = devices[index % len(devices)]
    return env


def run_task(task: Task, *members: Outcome, threads: int = 1, timeout: float | None = None) -> Outcome:
    """Runs one task (on a worker): skipped when a member failed, resumed when an earlier attempt left it
    unfinished; the kernel pinned to the worker's GPU with ``threads`` CPU threads."""
    failed = [m.notebook for m in members if m.status != "ok"]
    if failed:
        return Outcome(task.step.notebook, "skipped", executed=task.executed,
                       error=f"needs the models of {', '.join(failed)}, which did not complete")
    try:
        from distributed import get_worker

        index = get_worker().name
    except (ImportError, ValueError):
        index = 0
    os.environ.update(kernel_environment(index, threads))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")]))
    parameters = dict(task.parameters)
    if "resume" in parameters and executed_status(task) == "failed":
        parameters["resume"] = True
    return execute(NOTEBOOKS_DIR / f"{task.step.notebook}.ipynb", task.executed, parameters, cwd=NOTEBOOKS_DIR,
                   progress=False, timeout=timeout)


@contextlib.contextmanager
def connect(workers: int | None, scheduler: str | None, cluster: str | None, threads: int):
    """A ``distributed.Client``, as a context: to ``scheduler``, to dask_jobqueue jobs of kind ``cluster``, or to a
    LocalCluster of ``workers`` single-threaded processes. A cluster started here is closed on leaving (its workers
    and their kernels stopped), also on Ctrl-C or SIGTERM."""
    from distributed import Client, LocalCluster

    started = None
    if scheduler:
        client = Client(scheduler, timeout="30s")
    elif cluster:
        import dask_jobqueue

        kind = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster", "lsf": "LSFCluster"}[cluster]
        started = getattr(dask_jobqueue, kind)(processes=1, worker_extra_args=["--resources", "GPU=1"])
        started.scale(jobs=workers or 1)
        client = Client(started)
    else:
        started = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address="127.0.0.1:0", env={name: str(threads) for name in THREAD_VARIABLES})
        client = Client(started)
    try:
        yield client
    finally:
        client.close()
        if started is not None:
            started.close()


def _asks_for_gpu(client) -> dict | None:
    workers = client.scheduler_info().get("workers", {}).values()
    return GPU_RESOURCE if workers and all("GPU" in (w.get("resources") or {}) for w in workers) else None


def run_sweep(tasks: Sequence[Task], client, *, threads: int = 1, retries: int = 2, timeout: float | None = None,
              stream=None) -> list[Outcome]:
    """Submits the tasks not yet complete (09 once its members ended), prints progress, and returns one outcome
    per task in order (complete ones as "ok" without running).

    No more tasks are submitted than the cluster can run at once (:func:`capacity`), the next as one ends: Dask
    assigns a submitted task to a worker at once, and with every run its own task group it cannot tell that they
    last minutes, so one worker could be handed a queue while another idles."""
    from distributed import as_completed

    stream = stream or sys.stderr
    resources = _asks_for_gpu(client)
    futures, done = {}, {}
    pending, planned = [], set()
    for task in tasks:
        if is_complete(task):
            done[task.key] = Outcome(task.step.notebook, "ok", executed=task.executed, error="complete before")
        elif any(key not in done and key not in planned for key in task.after):
            raise RunError(f"{task.key}: plan its members {task.after} before it")
        else:
            pending.append(task)
            planned.add(task.key)
    total = len(pending)
    print(f"Sweep: {len(tasks)} run(s), {len(done)} complete already, {total} to run on "
          f"{len(client.scheduler_info().get('workers', {}))} worker(s). Dashboard: {client.dashboard_link}",
          file=stream, flush=True)
    running = as_completed()

    def submit_more() -> None:
        while running.count() < capacity(client, resources):
            # in plan order, skipping an ensemble whose members still run: it would hold a worker while it waits
            task = next((t for t in pending if all(key in done for key in t.after)), None)
            if task is None:
                return
            pending.remove(task)
            futures[task.key] = client.submit(run_task, task, *(done[key] for key in task.after), threads=threads,
                                              timeout=timeout, key=task.key, retries=retries, resources=resources,
                                              pure=False)
            running.add(futures[task.key])

    submit_more()
    started, failed, position = time.perf_counter(), 0, 0
    for future in running:
        position += 1
        try:
            outcome = future.result()
        except Exception as error:  # the task itself broke (e.g. retries spent on dead workers)
            task = next(t for t in tasks if t.key == future.key)
            outcome = Outcome(task.step.notebook, "failed", executed=task.executed,
                              error=f"{type(error).__name__}: {error}")
        done[future.key] = outcome
        failed += outcome.status != "ok"
        submit_more()
        elapsed = time.perf_counter() - started
        eta = elapsed / position * (total - position)
        print(f"[{position}/{total}] {future.key}: {outcome.describe()} | running {running.count()}, "
              f"failed {failed}, elapsed {format_interval(elapsed)}, ETA {format_interval(eta)}", file=stream,
              flush=True)
    return [done[task.key] for task in tasks]


def capacity(client, resources: dict | None) -> int:
    """How many runs the cluster's workers take at once: one per GPU where tasks ask for one, else one per worker
    thread; at least 1 (batch jobs still queued: the next is submitted as one ends)."""
    workers = client.scheduler_info().get("workers", {}).values()
    if resources:
        return max(1, sum(int((w.get("resources") or {}).get("GPU", 0)) for w in workers))
    return max(1, sum(int(w.get("nthreads", 1)) for w in workers))


def check_request(workers: int | None, scheduler: str | None, cluster: str | None) -> None:
    """Clear errors for sweep options that cannot be used, before any work."""
    if workers is not None and workers < 1:
        raise RunError(f"--workers {workers}: give the number of worker processes, an int >= 1")
    if scheduler and cluster:
        raise RunError("--scheduler and --cluster both name a cluster; give one")
    if scheduler and not scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        raise RunError(f"--scheduler {scheduler!r}: give the scheduler's address, e.g. tcp://host:8786")
    if cluster and cluster not in CLUSTERS:
        raise RunError(f"--cluster {cluster!r}: accepted values: {', '.join(CLUSTERS)}")
    if cluster and importlib.util.find_spec("dask_jobqueue") is None:
        raise RunError("--cluster needs dask-jobqueue: pip install dask-jobqueue")
    if cluster:
        import dask

        unset = [key for key in ("cores", "memory") if dask.config.get(f"jobqueue.{cluster}.{key}", None) is None]
        if unset:
            raise RunError(f"--cluster {cluster}: jobqueue.{cluster}.{' and '.join(unset)} not set in the dask "
                           f"configuration; write them to ~/.config/dask/jobqueue.yaml (or a file named by "
                           f"DASK_CONFIG), e.g. jobqueue: {{{cluster}: {{cores: 8, memory: 64GB, "
                           f"walltime: '24:00:00', job_extra_directives: [{GPU_DIRECTIVE[cluster]}]}}}} "
                           "(one GPU per job; your site's documentation gives its exact directive)")


def mark_unfinished(tasks: Sequence[Task], how: str) -> list[Task]:
    """After an interrupted sweep (its cluster closed): marks the executed copy of each run that had started and not
    finished as interrupted (``how``: "Ctrl-C" or "SIGTERM"); the rerun resumes those. Returns the tasks marked."""
    marked = []
    for task in tasks:
        if executed_status(task) == "failed" and mark_interrupted(task.executed, how) is not None:
            marked.append(task)
    return marked


def folders_of(tasks: Sequence[Task]) -> dict[Path, list[int]]:
    """``{folder: [task positions]}`` in order."""
    found: dict[Path, list[int]] = {}
    for position, task in enumerate(tasks):
        found.setdefault(task.folder, []).append(position)
    return found

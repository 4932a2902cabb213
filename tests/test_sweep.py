"""Sweeps: the grid (axes, folders, what is complete), 09 after its members on Dask, and a real two-worker sweep."""

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

import runner
from runner import grid, sweep
from skinlib import study

PROJECT = Path(__file__).resolve().parents[1]
RUN_ALL = PROJECT / "run_all.py"


def run_all(*args: str, timeout: float = 900, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUN_ALL), "--no-progress", *args], cwd=PROJECT, text=True,
                          capture_output=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_list_values_are_separated_by_a_bar_outside_brackets():
    assert grid.split_list("study|corrected") == ["study", "corrected"]
    assert grid.split_list("[75, 75]") == ["[75, 75]"]
    assert grid.split_list("[64, 64]|[75, 100]") == ["[64, 64]", "[75, 100]"]
    assert grid.split_list("'a|b'") == ["'a|b'"]
    fixed, axes = grid.parse_grid(["epochs=2", "image_size=[75, 75]", "recipe=study|corrected", "03:tta=None|flips"])
    assert fixed == {None: {"epochs": 2, "image_size": [75, 75]}}
    assert axes == [(None, "recipe", ["study", "corrected"]), ("03_finetune_vgg16", "tta", [None, "flips"])]
    with pytest.raises(runner.RunError, match="empty value"):
        grid.split_list("study||corrected")


def test_seeds_take_lists_and_ranges():
    assert grid.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert grid.parse_seeds("0,3") == [0, 3] and grid.parse_seeds("0-1,7") == [0, 1, 7]
    assert grid.parse_seeds(None) == [None]
    for bad in ("a", "3-1", "1,1", "0-"):
        with pytest.raises(runner.RunError, match="--seeds"):
            grid.parse_seeds(bad)


def test_the_grid_is_the_cross_product_with_a_folder_per_point(tmp_path):
    points = grid.points(["study", "grouped"], [0, 1], 3, [(None, "recipe", ["study", "corrected"])])
    assert len(points) == 2 * 2 * (1 + 3)  # the study's protocol is one split; grouped has three folds
    folders = {grid.folder_of(tmp_path, p).relative_to(tmp_path).as_posix() for p in points}
    assert len(folders) == len(points)
    assert {"study/corrected/seed1", "grouped/study/seed0/fold2"} <= folders
    with pytest.raises(runner.RunError, match="--folds 3.*grouped"):
        grid.points(["study"], [0], 3, [])


def test_the_ensemble_waits_for_its_own_members(tmp_path):
    steps = runner.select("02,07,08,09")
    tasks = grid.plan(steps, "smoke", tmp_path, {"data_dir": "/d"}, {}, grid.points(["grouped"], [0, 1], 2, []))
    ensembles = [t for t in tasks if t.step.number == "09"]
    assert len(ensembles) == 4 and len(tasks) == 16
    for task in ensembles:
        folder = task.folder.relative_to(tmp_path).as_posix()
        assert task.after == (f"{folder}/07_retrain_inception_v3", f"{folder}/08_retrain_densenet201")
        assert task.parameters["out_dir"] == str(task.folder)
    trained = next(t for t in tasks if t.key == "grouped/default/seed1/fold1/07_retrain_inception_v3")
    assert (trained.parameters["seed"], trained.parameters["folds"], trained.parameters["fold"]) == (1, 2, 1)
    assert trained.parameters["protocol"] == "grouped" and trained.parameters["resume"] is False
    fixed = grid.plan(steps, "smoke", tmp_path, {"data_dir": "/d"}, {None: {"recipe": "corrected"}},
                      grid.points(["grouped"], [0], None, []))
    assert {t.key.rsplit("/", 1)[0] for t in fixed} == {"grouped/corrected/seed0"}  # a fixed recipe names its folder


def _fake_execute(log, fail=()):
    def execute(notebook, executed, parameters, **_):
        log.append(("start", notebook.stem, time.perf_counter()))
        time.sleep(0.3)
        log.append(("end", notebook.stem, time.perf_counter()))
        status = "failed" if notebook.stem in fail else "ok"
        return runner.Outcome(notebook.stem, status, 0.3, executed, error="boom" if status == "failed" else None)
    return execute


@pytest.fixture()
def threads_client():
    from distributed import Client

    with Client(processes=False, n_workers=3, threads_per_worker=1, dashboard_address=None) as client:
        yield client


def test_on_dask_the_ensemble_starts_after_its_members_and_a_failure_stops_only_its_dependants(
        tmp_path, monkeypatch, threads_client):
    log = []
    monkeypatch.setattr(os, "environ", dict(os.environ))  # run_task sets the kernels' variables in its process
    monkeypatch.setattr(sweep, "execute", _fake_execute(log, fail={"08_retrain_densenet201"}))
    tasks = grid.plan(runner.select("07,08,09"), "smoke", tmp_path, {"data_dir": "/d"}, {},
                      grid.points(["study"], [0, 1], None, []))
    outcomes = sweep.run_sweep(tasks, threads_client, stream=open(os.devnull, "w"))
    by_key = {t.key: o.status for t, o in zip(tasks, outcomes)}
    assert by_key == {f"study/default/seed{s}/{n}": status for s in (0, 1) for n, status in
                      (("07_retrain_inception_v3", "ok"), ("08_retrain_densenet201", "failed"),
                       ("09_ensemble", "skipped"))}
    monkeypatch.setattr(sweep, "execute", _fake_execute(log := []))
    outcomes = sweep.run_sweep(tasks, threads_client, stream=open(os.devnull, "w"))
    assert [o.status for o in outcomes] == ["ok"] * 6
    times = {(event, name): when for event, name, when in log}
    assert times[("start", "09_ensemble")] >= max(times[("end", "07_retrain_inception_v3")],
                                                   times[("end", "08_retrain_densenet201")])


def test_runs_are_submitted_as_workers_free_up_so_no_worker_idles_behind_another_s_queue(
        tmp_path, monkeypatch, threads_client):
    """Eight runs on three one-thread workers: never more than three in flight, and the runs overlap three at a time
    (Dask would otherwise hand every submitted run to a worker at once, some to a worker that is busy)."""
    log, seen = [], []
    monkeypatch.setattr(os, "environ", dict(os.environ))
    monkeypatch.setattr(sweep, "execute", _fake_execute(log))
    submit = threads_client.submit

    def counted(*args, **kwargs):
        seen.append(len([f for f in threads_client.futures.values() if f.status == "pending"]))
        return submit(*args, **kwargs)

    monkeypatch.setattr(threads_client, "submit", counted)
    tasks = grid.plan(runner.select("02"), "smoke", tmp_path, {"data_dir": "/d"}, {},
                      grid.points(["study"], list(range(8)), None, []))
    outcomes = sweep.run_sweep(tasks, threads_client, stream=open(os.devnull, "w"))
    assert [o.status for o in outcomes] == ["ok"] * 8 and len(seen) == 8
    assert max(seen) < 3  # at most two others in flight when one more is submitted
    events = sorted((when, +1 if event == "start" else -1) for event, _, when in log)
    overlap = max(np.cumsum([step for _, step in events]))
    assert overlap == 3


def test_an_ensemble_waiting_for_its_members_leaves_its_worker_to_the_next_run(tmp_path, monkeypatch, threads_client):
    """07, 08 and 09 for two seeds on three workers: while seed 0's 09 waits, the third worker takes seed 1's 07."""
    log = []
    monkeypatch.setattr(os, "environ", dict(os.environ))
    fake = _fake_execute([])
    monkeypatch.setattr(sweep, "execute", lambda notebook, executed, parameters, **kw: (
        log.append(("start", executed, time.perf_counter())), fake(notebook, executed, parameters, **kw),
        log.append(("end", executed, time.perf_counter())))[1])
    tasks = grid.plan(runner.select("07,08,09"), "smoke", tmp_path, {"data_dir": "/d"}, {},
                      grid.points(["study"], [0, 1], None, []))
    outcomes = sweep.run_sweep(tasks, threads_client, stream=open(os.devnull, "w"))
    assert [o.status for o in outcomes] == ["ok"] * 6
    times = {(event, executed.relative_to(tmp_path).as_posix()): when for event, executed, when in log}
    first = "study/default/seed0/notebooks/07_retrain_inception_v3.ipynb"
    assert times[("start", first.replace("seed0", "seed1"))] < times[("end", first)]
    for seed in (0, 1):
        folder = f"study/default/seed{seed}/notebooks"
        ensemble, member = f"{folder}/09_ensemble.ipynb", f"{folder}/08_retrain_densenet201.ipynb"
        assert times[("start", ensemble)] >= times[("end", member)]


def _executed(path: Path, exception=None, end="2026-01-01T00:00:00"):
    path.parent.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["papermill"] = {"exception": exception, "end_time": end}
    nbformat.write(notebook, path)


def test_complete_runs_are_skipped_and_unfinished_ones_resumed(tmp_path, monkeypatch):
    task = grid.plan(runner.select("02"), "smoke", tmp_path, {"data_dir": "/d"}, {},
                     grid.points(["study"], [0], None, []))[0]
    assert not grid.is_complete(task) and grid.executed_status(task) is None
    _executed(task.executed, exception=True)
    assert grid.executed_status(task) == "failed"
    seen = {}
    monkeypatch.setattr(os, "environ", dict(os.environ))
    monkeypatch.setattr(sweep, "execute", lambda nb, ex, parameters, **_: seen.update(parameters) or
                        runner.Outcome(nb.stem, "ok"))
    sweep.run_task(task)
    assert seen["resume"] is True  # an earlier attempt left it unfinished: training continues from checkpoints
    _executed(task.executed)
    assert not grid.is_complete(task)  # the notebook finished but wrote no record
    record = task.folder / "results" / "02_baseline_cnn.json"
    record.parent.mkdir(parents=True)
    record.write_text("{}")
    assert grid.is_complete(task)


def test_kernels_get_one_gpu_and_bounded_threads():
    env = sweep.kernel_environment(3, 2, {"CUDA_VISIBLE_DEVICES": "0,1,2"})
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and env["OMP_NUM_THREADS"] == env["TF_NUM_INTRAOP_THREADS"] == "2"
    assert "CUDA_VISIBLE_DEVICES" not in sweep.kernel_environment(0, 1, {"CUDA_VISIBLE_DEVICES": "5"})  # one: kept


@pytest.mark.parametrize("args, words", [
    (["--workers", "0"], "--workers 0"), (["--scheduler", "localhost:1"], "--scheduler 'localhost:1'"),
    (["--cluster", "condor"], "--cluster 'condor'"), (["--folds", "1", "--protocol", "grouped"], "--folds 1"),
    (["--protocol", "study,leaky"], "--protocol 'study,leaky'"), (["--folds", "3"], "--folds 3.*grouped"),
    (["--seeds", "2-1"], "--seeds"), (["--workers", "2", "-p", "fold=1"], "-p fold=.*--folds"), (["-p", "recipe=study|nope", "--workers", "2"], "recipe='nope'"),
])
def test_a_bad_sweep_request_is_refused_before_any_work(synthetic_data, tmp_path, capsys, args, words):
    import run_all as command  # in this process: each case is refused before a cluster or a kernel starts

    status = command.main(["--profile", "smoke", "--data", str(synthetic_data), "--only", "02", "--out",
                           str(tmp_path / "out"), "--no-progress", *args])
    error = capsys.readouterr().err
    assert status == 2 and re.search(words, error), error[-2000:]
    assert not (tmp_path / "out").exists()


def idle_slurm_node() -> str | None:
    """Why a Slurm sweep cannot run here (None when sinfo answers and reports an idle node)."""
    if shutil.which("sinfo") is None:
        return "no Slurm here (sinfo not found)"
    try:
        answer = subprocess.run(["sinfo", "--noheader", "--states=idle", "--format=%n"], capture_output=True,
                                text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "sinfo does not answer (no slurmctld running)"
    if answer.returncode != 0 or not answer.stdout.strip():
        return f"no idle Slurm node (sinfo: {(answer.stderr or answer.stdout).strip()[:200] or 'none idle'})"
    return None


def test_a_slurm_request_without_cores_and_memory_is_refused_before_any_work(synthetic_data, tmp_path, capsys):
    import dask

    import run_all as command

    pytest.importorskip("dask_jobqueue")
    with dask.config.set({"jobqueue.slurm.cores": None, "jobqueue.slurm.memory": None}):
        status = command.main(["--profile", "smoke", "--data", str(synthetic_data), "--only", "02", "--out",
                               str(tmp_path / "out"), "--no-progress", "--cluster", "slurm"])
    error = capsys.readouterr().err
    assert status == 2 and "jobqueue.slurm.cores and memory not set" in error and "jobqueue.yaml" in error, error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind, directive", [("slurm", "--gres=gpu:1"), ("pbs", "-l ngpus=1"), ("sge", "-l gpu=1"),
                                             ("lsf", "-gpu num=1")])
def test_the_jobqueue_example_asks_for_a_gpu_in_the_kind_s_own_words(kind, directive):
    import dask

    pytest.importorskip("dask_jobqueue")
    with dask.config.set({f"jobqueue.{kind}.cores": None, f"jobqueue.{kind}.memory": None}):
        with pytest.raises(runner.RunError) as refused:
            sweep.check_request(None, None, kind)
    others = {d for k, d in sweep.GPU_DIRECTIVE.items() if k != kind}
    assert f"jobqueue: {{{kind}: {{cores: 8" in str(refused.value) and directive in str(refused.value)
    assert not any(other in str(refused.value) for other in others), str(refused.value)


@pytest.mark.slow
def test_a_slurm_sweep_is_submitted(synthetic_data, tmp_path):
    """Two seeds as two Slurm jobs through dask_jobqueue, configured from a jobqueue.yaml as a user writes it."""
    reason = idle_slurm_node()
    if reason:
        pytest.skip(reason)
    config = tmp_path / "dask"
    config.mkdir()
    (config / "jobqueue.yaml").write_text(
        "jobqueue:\n  slurm:\n    cores: 1\n    memory: 2GB\n    walltime: '00:15:00'\n"
        f"    python: {sys.executable}\n    log-directory: {tmp_path / 'logs'}\n")
    out = tmp_path / "out"
    result = run_all("--profile", "smoke", "--data", str(synthetic_data), "--only", "02", "--cluster", "slurm",
                     "--workers", "2", "--threads", "1", "--seeds", "0,1", "--out", str(out),
                     env={"DASK_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr[-3000:]
    for seed in (0, 1):
        record = json.loads(next(out.glob(f"**/seed{seed}/results/02_baseline_cnn.json")).read_text())
        assert record["parameters"]["seed"] == seed
    logs = list((tmp_path / "logs").glob("*.err"))
    assert logs and any("Registered to" in log.read_text() for log in logs), logs  # the workers ran as Slurm jobs


def _record(folder: Path) -> dict:
    record = json.loads((folder / "results" / "02_baseline_cnn.json").read_text())
    return {k: v for k, v in record.items() if k not in ("started", "finished")}


@pytest.mark.slow
def test_two_workers_run_the_seeds_as_each_alone_and_a_rerun_skips_them(synthetic_data, tmp_path):
    out = tmp_path / "sweep"
    common = ("--profile", "smoke", "--data", str(synthetic_data), "--only", "02")
    result = run_all(*common, "--seeds", "0,1", "--workers", "2", "--threads", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Dashboard: http://" in result.stderr and "[2/2]" in result.stderr
    folders = [out / "study" / "default" / f"seed{s}" for s in (0, 1)]
    assert all((f / "results.md").is_file() for f in folders)
    assert (out / "sweep.md").is_file() and (out / "leak.png").is_file() and (out / "sweep.csv").is_file()
    one_thread = {name: "1" for name in sweep.THREAD_VARIABLES}  # as the sweep's kernels: the same float sums
    alone = run_all(*common, "-p", "seed=1", "--out", str(tmp_path / "alone"), env=one_thread)
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert _record(folders[1]) == _record(tmp_path / "alone")  # deterministic: two processes, one seed, one record
    assert _record(folders[0])["metrics"] != _record(folders[1])["metrics"]
    again = run_all(*common, "--seeds", "0,1", "--workers", "2", "--out", str(out))
    assert again.returncode == 0 and "2 complete already, 0 to run" in again.stderr, again.stderr[-3000:]


def _running(client, key: str) -> str | None:
    """The address of the worker running task ``key`` (None while no worker runs it)."""
    return next((address for address, keys in client.processing().items() if key in keys), None)


@pytest.mark.slow
def test_a_running_scheduler_and_two_workers_take_the_sweep_and_a_killed_worker_s_run_is_retried(
        synthetic_data, tmp_path):
    """``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, then ``run_all.py --scheduler``: two folds.
    The worker running fold 0 is killed (SIGKILL, with its nanny) once that notebook runs cells: the sweep still
    ends well, fold 0 runs again on the other worker and resumes (``resume=True``), and both records are whole.
    Both folds are also tested on an ISIC 2018-shaped folder (``--isic2018``): cv.csv has the folds' ensemble."""
    import signal

    import pandas as pd
    from distributed import Client

    from test_run_all import wait_until_cells_run
    from test_synthetic import make_isic_folder

    make_isic_folder(tmp_path / "isic2018", synthetic_data, "one-hot")

    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT), os.environ.get("PYTHONPATH")]))}
    address_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
                                  "--scheduler-file", str(address_file)], env=env, stderr=subprocess.DEVNULL)
    workers, sweep_run, client = {}, None, None
    out = tmp_path / "out"
    try:
        for _ in range(120):
            if address_file.is_file() and address_file.stat().st_size:
                break
            time.sleep(0.5)
        address = json.loads(address_file.read_text())["address"]
        for name in ("w0", "w1"):  # each with its nanny in a process group of its own, as on two machines
            workers[name] = subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--name", name,
                 "--resources", "GPU=1"], env=env, stderr=subprocess.DEVNULL, start_new_session=True)
        client = Client(address, timeout="60s")
        client.wait_for_workers(2, timeout=120)
        sweep_run = subprocess.Popen([sys.executable, str(RUN_ALL), "--no-progress", "--profile", "smoke", "--data",
                                      str(synthetic_data), "--only", "02", "--protocol", "grouped", "--folds", "2",
                                      "--seeds", "0", "--scheduler", address, "--out", str(out),
                                      "--isic2018", str(tmp_path / "isic2018")],
                                     cwd=PROJECT, env=env, stderr=subprocess.PIPE, text=True)
        fold0 = out / "grouped" / "default" / "seed0" / "fold0"
        wait_until_cells_run(fold0 / "notebooks" / "02_baseline_cnn.ipynb", timeout=300)
        runner_of = _running(client, "grouped/default/seed0/fold0/02_baseline_cnn")
        assert runner_of, "fold 0 runs on no worker"
        killed = client.scheduler_info()["workers"][runner_of]["name"]
        os.killpg(workers[killed].pid, signal.SIGKILL)
        stderr = sweep_run.communicate(timeout=900)[1]
    finally:
        if client is not None:
            client.close()
        for process in (sweep_run, *workers.values(), scheduler):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
    assert sweep_run.returncode == 0, stderr[-3000:]
    records = {fold: json.loads((out / "grouped" / "default" / "seed0" / f"fold{fold}" / "results" /
                                 "02_baseline_cnn.json").read_text()) for fold in (0, 1)}
    for fold, record in records.items():
        assert (record["parameters"]["folds"], record["parameters"]["fold"]) == (2, fold)
        assert len(record["history"]) == 1 and record["metrics"]["test"]["n"] > 0
    assert records[0]["parameters"]["resume"] is True  # the retry found fold 0 unfinished and resumed it
    assert records[1]["parameters"]["resume"] is False
    assert "2 ok, 0 failed" in stderr
    cv = pd.read_csv(out / "cv.csv").iloc[0]
    assert cv["images"] == sum(r["metrics"]["test"]["n"] for r in records.values())
    assert 0 <= cv["isic2018_ensemble_balanced_accuracy"] <= 100 and cv["isic2018_fold_accuracy_mean"] >= 0
    assert all(len(pd.read_csv(out / "grouped" / "default" / "seed0" / f"fold{fold}" / "predictions" /
                               "02_baseline_cnn.isic2018.csv")) == 11 for fold in (0, 1))


def test_the_report_gives_mean_and_sd_over_the_runs_and_the_leak_figure(tmp_path):
    from runner import report

    tasks = grid.plan(runner.select("02"), "smoke", tmp_path, {"data_dir": "/d"}, {},
                      grid.points(["study", "grouped"], [0, 1], None, []))
    for task, accuracy in zip(tasks, (0.80, 0.84, 0.70, 0.74)):
        metrics = {"accuracy": accuracy, "balanced_accuracy": accuracy - 0.2, "macro_f1": 0.5, "roc_auc_macro": 0.9,
                   "melanoma_sensitivity": 0.4}
        record = {"parameters": {"protocol": task.point["protocol"], "recipe": "study"},
                  "metrics": {"test": {"metrics": metrics}}}
        (task.folder / "results").mkdir(parents=True)
        (task.folder / "results" / "02_baseline_cnn.json").write_text(json.dumps(record))
    outcomes = [runner.Outcome(t.step.notebook, "ok", 1.0) for t in tasks]
    md_path, csv_path, figures = report.write(tmp_path, tasks, outcomes)
    table = __import__("pandas").read_csv(csv_path).set_index("protocol")
    assert table.loc["study", "test_accuracy_mean"] == pytest.approx(82.0)
    assert table.loc["grouped", "test_accuracy_sd"] == pytest.approx(2.828, abs=1e-3)
    assert table.loc["grouped", "runs"] == 2 and "| 02_baseline_cnn | grouped" in md_path.read_text()
    assert [p.name for p in figures] == ["leak.png", "leak.svg"] and all(p.stat().st_size for p in figures)


def test_the_leak_figure_keeps_a_notebook_run_under_another_recipe_and_the_ensemble():
    """The smoke profile trains 05-08 under 'corrected' and the rest under 'study': the figure shows the first
    recipe's rows where a notebook has them, else the notebook's own, and the ensemble (no recipe) too."""
    import pandas as pd

    from runner import report

    result = pd.DataFrame({"notebook": ["02_baseline_cnn", "02_baseline_cnn", "07_retrain_inception_v3", "09_ensemble"],
                           "protocol": "study", "recipe": ["study", "corrected", "corrected", None]})
    recipe, rows = report.figure_rows(result)
    assert recipe == "study"
    assert list(zip(rows["notebook"], rows["recipe"].fillna("-"))) == [
        ("02_baseline_cnn", "study"), ("07_retrain_inception_v3", "corrected"), ("09_ensemble", "-")]


def _fold_run(task, frame, proba, accuracy, external=None, external_scores=None):
    from skinlib import outputs

    record = {"parameters": {"protocol": "grouped", "recipe": "corrected"},
              "metrics": {"test": {"metrics": {"accuracy": accuracy, "balanced_accuracy": accuracy}}}}
    if external_scores is not None:
        record["metrics"]["isic2018"] = {"metrics": external_scores}
    (task.folder / "results").mkdir(parents=True, exist_ok=True)
    (task.folder / "results" / f"{task.step.notebook}.json").write_text(json.dumps(record))
    outputs.write_predictions(outputs.RunFolder(task.folder, task.step.number), frame, proba, external=external)


def test_the_folds_ensemble_on_isic2018_is_their_mean_probability_beside_each_fold_model(tmp_path):
    """Three folds, each also predicting the same 50 external images: the ensemble row scores the folds' mean
    probability (evaluate.report on it), beside the mean and sd of the fold models' own ISIC 2018 scores."""
    import numpy as np
    import pandas as pd

    from runner import report
    from skinlib import evaluate

    tasks = grid.plan(runner.select("02"), "smoke", tmp_path, {"data_dir": "/d"}, {},
                      grid.points(["grouped"], [0], 3, []))
    rng = np.random.default_rng(1)
    external = pd.DataFrame({"image_id": [f"ISIC_99{i:03d}" for i in range(50)],
                             "lesion_id": [f"ISIC_99{i:03d}" for i in range(50)], "label": rng.integers(0, 7, 50)})
    probabilities = []
    for fold, task in enumerate(tasks):
        frame = pd.DataFrame({"image_id": [f"ISIC_{fold}{i:03d}" for i in range(30)],
                              "lesion_id": [f"HAM_{fold}{i:03d}" for i in range(30)], "label": rng.integers(0, 7, 30)})
        proba = rng.dirichlet(np.ones(7), 50)
        proba[np.arange(50)[fold::3], external["label"][fold::3]] += 2  # each fold right on its own third
        proba /= proba.sum(axis=1, keepdims=True)
        probabilities.append(proba)
        _fold_run(task, frame, rng.dirichlet(np.ones(7), 30), 0.5, external=(external, proba),
                  external_scores={"accuracy": 0.3 + fold / 10, "balanced_accuracy": 0.2 + fold / 10})
    outcomes = [runner.Outcome(t.step.notebook, "ok", 1.0) for t in tasks]
    md_path, _, _ = report.write(tmp_path, tasks, outcomes)
    row = pd.read_csv(tmp_path / "cv.csv").iloc[0]
    expected = evaluate.report(external["label"].to_numpy(), np.mean(probabilities, axis=0),
                               groups=external["lesion_id"].to_numpy(), seed=0)
    assert row["isic2018_ensemble_balanced_accuracy"] == pytest.approx(100 * expected.balanced_accuracy)
    assert [row["isic2018_ensemble_accuracy_low"], row["isic2018_ensemble_accuracy_high"]] == pytest.approx(
        [100 * v for v in expected.intervals["accuracy"]])
    assert (row["isic2018_fold_balanced_accuracy_mean"], row["isic2018_fold_balanced_accuracy_sd"]) == \
        pytest.approx((30.0, 10.0))
    assert row["isic2018_ensemble_accuracy"] > 60  # the three thirds together: the ensemble beats each fold
    shown = md_path.read_text()
    assert "ISIC 2018: folds' ensemble balanced accuracy" in shown and "30.0 ± 10.0" in shown

    _fold_run(tasks[2], frame, rng.dirichlet(np.ones(7), 30), 0.5, external=(external.iloc[:40], proba[:40]))
    with pytest.raises(ValueError, match="ISIC 2018 predictions are of different images"):
        report.write(tmp_path, tasks, outcomes)


def test_cross_validation_pools_the_folds_predictions_with_lesion_intervals(tmp_path):
    """Two folds' test predictions pooled: every image once, scored as one set (evaluate.report, lesion groups),
    beside the folds' own mean; an image in two folds' tests is refused."""
    import numpy as np
    import pandas as pd

    from runner import report
    from skinlib import evaluate

    tasks = grid.plan(runner.select("02"), "smoke", tmp_path, {"data_dir": "/d"}, {},
                      grid.points(["grouped"], [0], 2, []))
    rng = np.random.default_rng(0)
    frames = []
    for fold, task in enumerate(tasks):
        frame = pd.DataFrame({"image_id": [f"ISIC_{fold}{i:03d}" for i in range(60)],
                              "lesion_id": [f"HAM_{fold}{i // 3:03d}" for i in range(60)],
                              "label": rng.integers(0, 7, 60)})
        proba = rng.dirichlet(np.ones(7), 60)
        proba[np.arange(60)[::2], frame["label"][::2]] += 1  # right on half the images
        proba /= proba.sum(axis=1, keepdims=True)
        _fold_run(task, frame, proba, 0.5 + fold / 10)
        frames.append(frame.assign(**{c: proba[:, k] for k, c in enumerate(evaluate.CLASSES)}))
    outcomes = [runner.Outcome(t.step.notebook, "ok", 1.0) for t in tasks]
    md_path, csv_path, _ = report.write(tmp_path, tasks, outcomes)
    cv = pd.read_csv(tmp_path / "cv.csv")
    both = pd.concat(frames, ignore_index=True)
    expected = evaluate.report(both["label"].to_numpy(), both[list(evaluate.CLASSES)].to_numpy(),
                               groups=both["lesion_id"].to_numpy(), seed=0)
    row = cv.iloc[0]
    assert (row["images"], row["lesions"], row["folds"], row["recipe"]) == (120, 40, 2, "corrected")
    assert row["oof_balanced_accuracy"] == pytest.approx(100 * expected.balanced_accuracy)
    assert [row["oof_accuracy_low"], row["oof_accuracy_high"]] == pytest.approx(
        [100 * v for v in expected.intervals["accuracy"]])
    assert row["oof_accuracy_low"] < row["oof_accuracy"] < row["oof_accuracy_high"]
    summary = pd.read_csv(csv_path).iloc[0]
    assert summary["test_accuracy_mean"] == pytest.approx(55.0)  # the folds' own figures, beside
    assert summary["oof_accuracy"] == pytest.approx(row["oof_accuracy"])
    assert "## Cross-validation: the folds pooled" in md_path.read_text() and "55.0 ± 7.1" in md_path.read_text()

    _fold_run(tasks[1], frames[0][["image_id", "lesion_id", "label"]], np.full((60, 7), 1 / 7), 0.6)
    with pytest.raises(ValueError, match="in the test part of two folds"):
        report.write(tmp_path, tasks, outcomes)


def test_the_report_keeps_a_listed_parameter_apart_and_summarises_subgroups_over_the_runs(tmp_path):
    """Two values of -p metadata over two seeds: one report row per value (never pooled), and each value's
    subgroup metrics over its runs: mean and sd of the records' figures, the gap's runs that exclude 0, the group
    worst most often."""
    import numpy as np
    import pandas as pd

    from runner import report
    from skinlib import evaluate

    _, axes = grid.parse_grid(['metadata=None|["age","sex"]'])
    tasks = grid.plan(runner.select("02"), "smoke", tmp_path, {"data_dir": "/d"}, {},
                      grid.points(["grouped"], [0, 1], None, axes))
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"lesion_id": [f"HAM_{i // 2:04d}" for i in range(400)],
                          "sex": np.repeat(["female", "male"], 200), "age": 50.0, "localization": "back"})
    labels = rng.integers(0, 7, 400)
    expected = {}
    for position, task in enumerate(tasks):
        proba = rng.dirichlet(np.ones(7), 400)
        right = rng.random(400) < np.where(frame["sex"] == "female", 0.9, 0.3 + 0.1 * position)
        proba[right, labels[right]] += 5  # women's images mostly right
        proba /= proba.sum(axis=1, keepdims=True)
        found = evaluate.subgroups(labels, proba, frame, by=("sex",), groups=frame["lesion_id"], n_bootstrap=200)
        accuracy = 0.5 + position / 100
        record = {"parameters": {"protocol": "grouped", "recipe": "corrected"}, "subgroups": found.to_dict(),
                  "metrics": {"test": {"metrics": {"accuracy": accuracy, "balanced_accuracy": accuracy}}}}
        (task.folder / "results").mkdir(parents=True)
        (task.folder / "results" / "02_baseline_cnn.json").write_text(json.dumps(record))
        value = repr(dict((name, v) for _, name, v in task.point["listed"])["metadata"])
        expected.setdefault(value, []).append((found, accuracy))
    outcomes = [runner.Outcome(t.step.notebook, "ok", 1.0) for t in tasks]
    md_path, csv_path, _ = report.write(tmp_path, tasks, outcomes)
    rows = pd.read_csv(csv_path, keep_default_na=False).set_index("metadata")
    assert sorted(rows.index) == sorted(expected) == ["None", "['age', 'sex']"] and set(rows["runs"]) == {2}
    groups = pd.read_csv(tmp_path / "subgroups.csv", keep_default_na=False)
    gaps = pd.read_csv(tmp_path / "subgroup_gaps.csv", keep_default_na=False).set_index("metadata")
    for value, runs in expected.items():
        assert rows.loc[value, "test_accuracy_mean"] == pytest.approx(100 * np.mean([a for _, a in runs]))
        female = [f.table.set_index("group").loc["female", "balanced_accuracy"] for f, _ in runs]
        row = groups[(groups["metadata"] == value) & (groups["group"] == "female")].iloc[0]
        assert (row["runs"], row["images"]) == (2, 200)
        assert row["balanced_accuracy_mean"] == pytest.approx(100 * np.mean(female))
        assert row["balanced_accuracy_sd"] == pytest.approx(100 * np.std(female, ddof=1))
        gap = gaps.loc[value]
        assert gap["worst_most_often"] == "male" and gap["worst_times"] == 2
        assert gap["excludes_zero"] == sum(f.gaps.iloc[0]["gap_low"] > 0 for f, _ in runs) == 2
        assert gap["gap_mean"] == pytest.approx(100 * np.mean([f.gaps.iloc[0]["gap"] for f, _ in runs]))
    assert "## Subgroups across runs" in md_path.read_text() and "male (2 of 2)" in md_path.read_text()

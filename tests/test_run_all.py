"""run_all.py: profiles, parameters, failure reporting, the results table, and the smoke run of all nine."""

import json
import math
import re
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

import runner
from skinlib import study

PROJECT = Path(__file__).resolve().parents[1]
RUN_ALL = PROJECT / "run_all.py"
TRAINED = [step.notebook for step in study.STEPS if step.model]  # 02-08


def run_all(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python run_all.py ARGS`` in a child process (kernels inherit this environment)."""
    return subprocess.run([sys.executable, str(RUN_ALL), "--no-progress", *args], cwd=PROJECT, text=True,
                          capture_output=True, timeout=timeout, env=dict(os.environ))


# ------------------------------------------------------------------------------------------ unit tests

def test_full_profile_is_the_notebooks_defaults_and_smoke_is_data():
    full, smoke = runner.profile("full"), runner.profile("smoke")
    assert list(full) == [step.notebook for step in study.STEPS]
    assert all(values == {} for values in full.values())  # nothing copied: the parameters cells decide
    assert smoke["03_finetune_vgg16"]["weights"] is None
    assert min(smoke["05_finetune_inception_resnet_v2"]["image_size"]) >= 75  # keras.applications' minimum
    assert all(smoke[n]["epochs"] == 1 and smoke[n]["eager"] is True for n in TRAINED)
    for notebook, values in smoke.items():  # every smoke override names a parameter the notebook declares
        assert set(values) <= set(runner.notebook_parameters(runner.NOTEBOOKS_DIR / f"{notebook}.ipynb")), notebook
    with pytest.raises(runner.RunError, match="accepted: smoke, full"):
        runner.profile("quick")
    frame = runner.profile_frame()
    assert {"parameter", "notebook", "full (default)", "smoke", "help"} <= set(frame.columns)
    assert (frame["help"].str.len() > 0).all()


def test_parse_values_and_overrides():
    assert runner.parse_value("None") is None
    assert runner.parse_value("true") is True
    assert runner.parse_value("[75, 75]") == [75, 75]
    assert runner.parse_value("grouped") == "grouped"
    assert runner.parse_value("0.2") == 0.2
    overrides = runner.parse_overrides(["epochs=2", "3:batch_size=16"])
    assert overrides == {None: {"epochs": 2}, "03_finetune_vgg16": {"batch_size": 16}}
    with pytest.raises(runner.RunError, match="name=value"):
        runner.parse_overrides(["epochs"])
    with pytest.raises(runner.RunError, match="unknown study step"):
        runner.parse_overrides(["12:epochs=1"])


def test_select_notebooks():
    assert [s.number for s in runner.select("03,4")] == ["03", "04"]
    assert [s.number for s in runner.select("09_ensemble,01")] == ["01", "09"]
    assert len(runner.select(None)) == 9
    with pytest.raises(runner.RunError, match="--only"):
        runner.select("10")


def test_plan_parameters_merges_profile_run_and_overrides():
    steps = runner.select("01,03")
    planned = runner.plan_parameters(steps, "smoke", {"data_dir": "/d", "out_dir": "/o", "protocol": "grouped"},
                                     {None: {"seed": 3}, "03_finetune_vgg16": {"epochs": 2}})
    assert planned["03_finetune_vgg16"]["epochs"] == 2 and planned["03_finetune_vgg16"]["seed"] == 3
    assert planned["01_eda"]["protocol"] == "grouped" and "epochs" not in planned["01_eda"]
    assert planned["01_eda"]["data_dir"] == "/d"
    with pytest.raises(runner.RunError, match="no parameter 'epoch'"):
        runner.plan_parameters(steps, "smoke", {}, {None: {"epoch": 2}})


def fake_result(step: study.Step, accuracy: float) -> dict:
    metrics = {"accuracy": accuracy, "balanced_accuracy": 0.5, "macro_f1": 0.4, "roc_auc_macro": 0.8,
               "melanoma_sensitivity": 0.3}
    report = {"metrics": metrics, "intervals": {"accuracy": [accuracy - 0.02, accuracy + 0.02],
                                                "balanced_accuracy": [0.45, 0.55]}}
    return {"notebook": step.notebook, "model": step.model, "parameters": {"protocol": "study", "recipe": "study"},
            "depth": step.depth, "parameter_counts": {"total": step.params}, "metrics": {"val": report, "test": report},
            "data": {"train": {"total": 8012}, "test": {"total": 1002, "shares lesion with train": 397}},
            "leak": {"leak-free part": {"accuracy": accuracy - 0.1}},
            "environment": {"device": "cpu", "backend": "tensorflow"}}


def test_results_table_puts_the_study_beside_the_run(tmp_path):
    for step in study.STEPS[1:]:
        path = tmp_path / "results" / f"{step.notebook}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(fake_result(step, 0.8)))
    outcomes = [runner.Outcome(step.notebook, "ok", 1.0) for step in study.STEPS]
    outcomes[3] = runner.Outcome("04_finetune_inception_v3", "failed", 2.0, tmp_path / "x.ipynb", 5, 3,
                                 "history = train.fit(model, ...)", "ValueError: boom")
    md_path, csv_path = runner.write_results(tmp_path, outcomes, profile_name="full", settings={"protocol": "study"},
                                             wall_seconds=75)
    table = pd.read_csv(csv_path)
    assert list(table["notebook"]) == [step.notebook for step in study.STEPS[1:]]
    vgg = table.set_index("notebook").loc["03_finetune_vgg16"]
    assert vgg["study_test_accuracy"] == 79.64 and vgg["test_accuracy"] == pytest.approx(80.0)
    assert vgg["study_params"] == vgg["params"] == 14_980_935
    assert vgg["test_accuracy_leak_free"] == pytest.approx(70.0) and vgg["test_sharing_lesion_with_train"] == 397
    failed = table.set_index("notebook").loc["04_finetune_inception_v3"]
    assert failed["status"] == "failed" and math.isnan(failed["test_accuracy"])  # no stale numbers
    text = md_path.read_text()
    assert re.search(r"\| 09_ensemble +\| ensemble +\| 88.80 +\|", text)
    assert "80.0 [78.0, 82.0]" in text and "FAILED at cell 5 (In [3])" in text and "01:15" in text


def test_missing_dataset_says_what_to_do(tmp_path):
    empty = tmp_path / "nothing"
    result = run_all("--data", str(empty), "--no-download", "--only", "01")
    assert result.returncode == 2
    assert str(empty) in result.stderr and "python -m skinlib download" in result.stderr
    assert "Will download" not in result.stderr  # nothing will be: no claim that it will
    assert not empty.exists()


def test_a_malformed_dataset_is_never_downloaded_over(synthetic_data, tmp_path):
    import shutil

    broken = tmp_path / "ham10000"
    shutil.copytree(synthetic_data, broken)
    csv = broken / "HAM10000_metadata.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([*lines, lines[1]]) + "\n")  # a duplicated image_id
    result = run_all("--data", str(broken), "--download-yes", "--only", "01")
    assert result.returncode == 2
    assert "cannot be used" in result.stderr and "HAM10000_metadata.csv" in result.stderr
    assert "Nothing was downloaded" in result.stderr
    assert not (broken / ".downloads").exists()


def test_unknown_parameter_is_refused_before_running(synthetic_data, tmp_path):
    result = run_all("--data", str(synthetic_data), "--only", "02", "-p", "epoch=1", "--out", str(tmp_path))
    assert result.returncode == 2 and "no parameter 'epoch'" in result.stderr


@pytest.mark.parametrize("value, words", [
    ("image_size=abc", r"image_size='abc' of 02_baseline_cnn.*\[height, width\]"),
    ("image_size=64", r"image_size=64 of 02_baseline_cnn.*\[height, width\]"),
    ("seed=1.5", r"seed=1.5 of 02_baseline_cnn.*whole number"),
    ("batch_size=0", r"batch_size=0 of 02_baseline_cnn.*int >= 1"),
    ("subset=10", r"subset=10 of 02_baseline_cnn.*>= 100"),
    ("02:recipe=bogus", r"recipe='bogus' of 02_baseline_cnn.*study, corrected"),
])
def test_a_bad_value_is_refused_before_any_kernel_starts(synthetic_data, tmp_path, value, words):
    out = tmp_path / "out"
    result = run_all("--profile", "smoke", "--data", str(synthetic_data), "--only", "02", "-p", value, "--out", str(out))
    assert result.returncode == 2 and re.search(words, result.stderr), result.stderr[-2000:]
    assert not (out / "notebooks").exists()  # no kernel started


def test_an_unusable_out_folder_is_refused_before_any_work(synthetic_data, tmp_path):
    (tmp_path / "a-file").write_text("")
    result = run_all("--profile", "smoke", "--data", str(synthetic_data), "--only", "02", "--out",
                     str(tmp_path / "a-file" / "run"))
    assert result.returncode == 2 and "is a file, not a folder" in result.stderr and "Traceback" not in result.stderr


def test_a_second_run_on_the_same_out_folder_is_refused(synthetic_data, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".run_all.lock").write_text(f"{os.getpid()}\n")  # a live process holds it
    result = run_all("--profile", "smoke", "--data", str(synthetic_data), "--only", "02", "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and f"in use by another run_all.py (PID {os.getpid()})" in result.stderr
    (tmp_path / "out" / ".run_all.lock").write_text("999999999\n")  # left by a process that is gone: taken over
    taken = run_all("--profile", "smoke", "--data", str(synthetic_data), "--only", "02", "-p", "seed=1.5", "--out",
                    str(tmp_path / "out"))
    assert "in use" not in taken.stderr and "seed=1.5" in taken.stderr
    assert not (tmp_path / "out" / ".run_all.lock").exists()  # released at exit


def test_the_ensemble_alone_into_a_fresh_folder_names_both_members(synthetic_data, tmp_path):
    out = tmp_path / "fresh"
    result = run_all("--profile", "smoke", "--data", str(synthetic_data), "--only", "09", "--out", str(out))
    assert result.returncode == 2
    assert "07_retrain_inception_v3 and 08_retrain_densenet201" in result.stderr
    assert f"python run_all.py --only 07,08,09 --out {out}" in result.stderr and not (out / "notebooks").exists()


def test_a_full_disk_leaves_the_previous_results_whole(tmp_path, monkeypatch):
    import errno

    from runner import results

    (tmp_path / "results.csv").write_text("before\n")
    real = Path.write_text

    def full(self, *args, **kwargs):
        if self.name.endswith(".partial"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(runner.RunError, match="could not write .*results.csv: No space left on device"):
        runner.write_results(tmp_path, [], profile_name="full", settings={}, wall_seconds=1)
    assert (tmp_path / "results.csv").read_text() == "before\n" and not list(tmp_path.glob("*.partial"))
    assert results.write_text  # the one atomic writer


# ------------------------------------------------------------------------------------------ notebook runs

@pytest.mark.slow
def test_failing_notebook_is_named_with_its_cell_and_kept(synthetic_data, tmp_path):
    """A cell that fails: non-zero exit naming notebook, cell and its first line, the executed copy keeps the
    traceback, the rest is skipped, or run with --keep-going (on synthetic data in the official layout)."""
    out = tmp_path / "stop"
    missing = str(tmp_path / "no-such.weights.h5")  # a well-formed value, so only the kernel finds it missing
    result = run_all("--profile", "smoke", "--data", str(synthetic_data), "--only", "02,03",
                     "-p", f"02:weights={missing}", "--out", str(out))
    assert result.returncode == 1
    assert "FAILED 02_baseline_cnn" in result.stderr and re.search(r"cell \d+ \(In \[\d+\]\)", result.stderr)
    assert "`model = models.build(" in result.stderr  # the failing cell's first line, from papermill's error
    assert "WeightsError" in result.stderr and "no-such.weights.h5" in result.stderr
    assert "03_finetune_vgg16: skipped" in result.stderr
    executed = nbformat.read(out / "notebooks" / "02_baseline_cnn.ipynb", as_version=4)
    errors = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.outputs
              if o.output_type == "error"]
    assert errors and errors[0]["ename"] == "WeightsError"
    cell = int(re.search(r"FAILED at cell (\d+)", (out / "results.md").read_text()).group(1))
    cells = [c for c in executed.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    assert cells[cell - 1].source.startswith("model = models.build(")  # 1-based, papermill's error cells aside

    out = tmp_path / "keep-going"
    result = run_all("--profile", "smoke", "--data", str(synthetic_data), "--only", "02,03",
                     "-p", f"02:weights={missing}", "--keep-going", "--out", str(out))
    assert result.returncode == 1
    check_smoke_outputs(out, result, runner.select("03"), expect_failure=True)
    table = pd.read_csv(out / "results.csv").set_index("notebook")
    assert table.loc["02_baseline_cnn", "status"] == "failed" and math.isnan(table.loc["02_baseline_cnn", "test_accuracy"])
    assert table.loc["03_finetune_vgg16", "n_test"] == 7  # 10 % of the 70 synthetic images


def check_smoke_outputs(out: Path, result: subprocess.CompletedProcess, steps, expect_failure=False) -> pd.DataFrame:
    """Every executed notebook, model, figure and results JSON of ``steps`` is there, and the tables say the
    right things."""
    assert result.returncode == (1 if expect_failure else 0), result.stderr[-4000:]
    for step in steps:
        executed = nbformat.read(out / "notebooks" / f"{step.notebook}.ipynb", as_version=4)
        outputs = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.outputs]
        assert not [o for o in outputs if o.output_type == "error"]
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{step.notebook} shows no figure"
        assert list((out / "figures" / step.notebook).glob("*.png"))
    table = pd.read_csv(out / "results.csv").set_index("notebook")
    for step in steps:
        if step.model is None and not step.members:
            continue
        row = table.loc[step.notebook]
        assert row["status"] == "ok"
        assert row["study_test_accuracy"] == step.test_accuracy
        for column in ("val_accuracy", "test_accuracy", "test_balanced_accuracy"):
            assert 0 <= row[column] <= 100
        assert row["test_accuracy_low"] <= row["test_accuracy"] <= row["test_accuracy_high"]
        record = json.loads((out / "results" / f"{step.notebook}.json").read_text())
        for key in ("notebook", "model", "parameters", "metrics", "study", "environment", "started", "finished",
                    "data"):
            assert key in record, f"{step.notebook} record lacks {key}"
        assert record["metrics"]["test"]["interval_unit"] == "lesion"
        if step.model:
            assert (out / "models" / f"{step.notebook}.keras").is_file()
            assert record["depth"] == step.depth or step.depth is None
            assert record["parameter_counts"]["total"] > 0 and record["parameters"]["epochs"] == 1
            assert len(record["history"]) == len(step.stages)  # one epoch per stage
            assert set(record["leak"]) == {"whole test set", "leak-free part", "leaked part", "leaked - leak-free",
                                           "context: whole - leak-free"}
    text = (out / "results.md").read_text()
    assert re.search(r"\| Notebook +\| Model +\| Val acc. study +\|", text) and "profile: **smoke**" in text
    return table


@pytest.mark.slow
def test_smoke_run_of_all_nine_notebooks(request, tmp_path):
    """The smoke profile end to end: all nine notebooks on the real data (synthetic where it is absent), as a sweep
    of two single-threaded workers (CI's two cores): 09 waits on Dask for its own 07 and 08."""
    from conftest import REAL_DATA

    if (REAL_DATA / "HAM10000_metadata.csv").is_file():
        data = REAL_DATA
    else:
        data = request.getfixturevalue("synthetic_data")
    common = ("--profile", "smoke", "--data", str(data), "--workers", "2", "--threads", "1", "--out", str(tmp_path))
    result = run_all(*common, timeout=1500)
    folder = tmp_path / "study" / "default" / "seed-default"
    table = check_smoke_outputs(folder, result, study.STEPS)
    assert list(table.index) == [step.notebook for step in study.STEPS[1:]]
    ensemble = json.loads((folder / "results" / "09_ensemble.json").read_text())
    members = [json.loads((folder / "results" / f"{n}.json").read_text()) for n in ("07_retrain_inception_v3",
                                                                                  "08_retrain_densenet201")]
    assert ensemble["started"] >= max(m["finished"] for m in members)  # 09 started after its members ended
    assert ensemble["parameters"]["members"] == ["07", "08"]
    assert set(ensemble["member_metrics"]) == {"07_retrain_inception_v3", "08_retrain_densenet201"}
    assert sum(ensemble["weights"].values()) == pytest.approx(1.0)
    assert {row["model"] for row in ensemble["comparison"]} >= {"07_retrain_inception_v3", "ensemble"}
    predictions = pd.read_csv(folder / "predictions" / "09_ensemble.csv")
    assert len(predictions) == ensemble["metrics"]["test"]["n"] and predictions["image_id"].is_unique
    assert list((folder / "tensorboard" / "08_retrain_densenet201").glob("stage2_all/train/events.out.tfevents.*"))
    summary = pd.read_csv(tmp_path / "sweep.csv").set_index("notebook")
    assert summary.loc["09_ensemble", "runs"] == 1 and (tmp_path / "leak.png").is_file()
    # a rerun skipping complete runs: test_sweep.py's two-seed sweep


def wait_until_cells_run(executed: Path, timeout: float = 120) -> None:
    """Returns once the kernel runs cells (papermill writes the copy as cells run), plus a second; a signal sent
    during kernel start-up can be lost."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(c.get("execution_count") for c in nbformat.read(executed, as_version=4).cells):
                break
        except Exception:  # not written yet, or half written
            pass
        time.sleep(0.2)
    time.sleep(1)


@pytest.mark.slow
def test_ctrl_c_names_the_notebook_marks_its_copy_and_a_rerun_starts_clean(synthetic_data, tmp_path):
    """A real SIGINT during notebook 02: one line on the console, the partial copy marked interrupted (cells that
    never ran are not 'completed'), results.md says what did not finish; the same command then runs it cleanly."""
    import signal

    command = [sys.executable, str(RUN_ALL), "--no-progress", "--profile", "smoke", "--data", str(synthetic_data),
               "--only", "02,03", "--out", str(tmp_path)]
    # A job started in the background by a non-interactive shell (`.ci/run &`) inherits SIGINT ignored; a terminal's
    # Ctrl-C is what this test stands for, so the child gets the default disposition back.
    process = subprocess.Popen(command, cwd=PROJECT, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    executed = tmp_path / "notebooks" / "02_baseline_cnn.ipynb"
    wait_until_cells_run(executed)
    process.send_signal(signal.SIGINT)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 130, stderr[-3000:]
    assert "Interrupted (Ctrl-C): 02_baseline_cnn did not finish; its partial copy is" in stderr
    assert "Traceback" not in stderr
    notebook = nbformat.read(executed, as_version=4)
    assert notebook.metadata["papermill"]["status"] == "interrupted"
    assert notebook.cells[0].source.startswith("**Interrupted**")
    unrun = [c for c in notebook.cells if c.cell_type == "code" and c.get("execution_count") is None]
    assert unrun and not any(c.metadata["papermill"]["status"] == "completed" for c in unrun)
    text = (tmp_path / "results.md").read_text()
    assert "`02_baseline_cnn`: INTERRUPTED" in text and "`03_finetune_vgg16`: skipped" in text

    again = run_all("--profile", "smoke", "--data", str(synthetic_data), "--only", "02", "--out", str(tmp_path))
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = nbformat.read(executed, as_version=4)
    assert not rerun.metadata["papermill"]["exception"] and "status" not in rerun.metadata["papermill"]
    assert not rerun.cells[0].source.startswith("**Interrupted**")


def test_sigterm_marks_the_copy_exits_143_and_resume_completes_the_record(synthetic_data, tmp_path):
    """SIGTERM (Slurm's wall-time limit or preemption) during notebook 02 is handled as Ctrl-C: the partial copy is
    marked, the exit status is 143; the same command with resume=True then completes the record."""
    import signal

    command = [sys.executable, str(RUN_ALL), "--no-progress", "--profile", "smoke", "--data", str(synthetic_data),
               "--only", "02", "--out", str(tmp_path)]
    process = subprocess.Popen(command, cwd=PROJECT, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    executed = tmp_path / "notebooks" / "02_baseline_cnn.ipynb"
    wait_until_cells_run(executed)
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 143, stderr[-3000:]
    assert "Interrupted (SIGTERM): 02_baseline_cnn did not finish" in stderr and "Traceback" not in stderr
    notebook = nbformat.read(executed, as_version=4)
    assert notebook.metadata["papermill"]["status"] == "interrupted"
    assert notebook.cells[0].source.startswith("**Interrupted** (SIGTERM)")

    again = run_all("--profile", "smoke", "--data", str(synthetic_data), "--only", "02", "-p", "resume=True",
                    "--out", str(tmp_path))
    assert again.returncode == 0, again.stderr[-3000:]
    record = json.loads((tmp_path / "results" / "02_baseline_cnn.json").read_text())
    assert record["parameters"]["resume"] is True and record["metrics"]


def test_seed_summary_gives_mean_and_sd(tmp_path):
    folders = []
    for seed, accuracy in ((0, 0.70), (1, 0.80)):
        folder = tmp_path / f"seed{seed}"
        for step in study.STEPS[1:3]:
            path = folder / "results" / f"{step.notebook}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(fake_result(step, accuracy)))
        runner.write_results(folder, [runner.Outcome(s.notebook, "ok", 1.0) for s in study.STEPS[1:3]],
                             profile_name="full", settings={}, wall_seconds=1, steps=study.STEPS[1:3])
        folders.append(folder)
    md_path, csv_path = runner.write_seed_summary(tmp_path, folders, [0, 1], study.STEPS[1:3])
    table = pd.read_csv(csv_path).set_index("notebook")
    assert table.loc["02_baseline_cnn", "test_accuracy_mean"] == pytest.approx(75.0)
    assert table.loc["02_baseline_cnn", "test_accuracy_sd"] == pytest.approx(7.0711, abs=1e-3)
    assert table.loc["02_baseline_cnn", "seeds"] == 2
    assert re.search(r"\| 02_baseline_cnn +\| 2 +\| 75.0 ± 7.1 +\|", md_path.read_text())


def test_a_full_run_without_a_gpu_says_what_it_asks_for(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(Path, "exists", lambda self: False)
    text = runner.cpu_warning(runner.select("02,08"), "full")
    assert "No NVIDIA GPU found" in text and "08 (23 epochs at 192x256)" in text and "PROFILE=smoke" in text
    assert runner.cpu_warning(runner.select("02"), "smoke") is None
    assert runner.cpu_warning(runner.select("01,09"), "full") is None  # nothing trains
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    assert runner.cpu_warning(runner.select("02"), "full") is None

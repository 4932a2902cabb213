"""run_all.py: profiles, parameters, failure reporting, the results table, and the smoke run of all nine."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from skinlib import runner, study

PROJECT = Path(__file__).resolve().parents[1]
RUN_ALL = PROJECT / "run_all.py"
TRAINED = [step.notebook for step in study.STEPS if step.model]  # 02-08


def run_all(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python run_all.py ARGS`` in a child process (kernels inherit this environment)."""
    return subprocess.run([sys.executable, str(RUN_ALL), "--no-progress", *args], cwd=PROJECT, text=True,
                          capture_output=True, timeout=timeout, env=dict(os.environ))


# ------------------------------------------------------------------------------------------ unit tests

def test_profiles_cover_every_notebook_with_the_same_parameters():
    full, smoke = runner.profile("full"), runner.profile("smoke")
    assert list(full) == [step.notebook for step in study.STEPS]
    for notebook in full:
        assert set(full[notebook]) == set(smoke[notebook])
    assert full["03_finetune_vgg16"]["weights"] == "imagenet" and smoke["03_finetune_vgg16"]["weights"] is None
    assert full["04_finetune_inception_v3"]["image_size"] == [192, 256]
    assert min(smoke["05_finetune_inception_resnet_v2"]["image_size"]) >= 75  # keras.applications' minimum
    assert all(smoke[n]["epochs"] == 1 and smoke[n]["eager"] is True for n in TRAINED)
    with pytest.raises(runner.RunError, match="accepted: smoke, full"):
        runner.profile("quick")


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
    return {"notebook": step.notebook, "model": step.model, "protocol": "seed", "recipe": {"name": "seed"},
            "depth": step.depth, "parameters": {"total": step.params}, "metrics": {"val": report, "test": report},
            "data": {"train": 8012, "test": 1002, "test_images_sharing_a_lesion_with_train": 397},
            "device": "cpu", "backend": "tensorflow"}


def test_results_table_puts_the_study_beside_the_run(tmp_path):
    for step in study.STEPS[1:]:
        path = tmp_path / "results" / f"{step.notebook}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(fake_result(step, 0.8)))
    outcomes = [runner.Outcome(step.notebook, "ok", 1.0) for step in study.STEPS]
    outcomes[3] = runner.Outcome("04_finetune_inception_v3", "failed", 2.0, tmp_path / "x.ipynb", 5, 3,
                                 "history = run.train(model, data)", "ValueError: boom")
    md_path, csv_path = runner.write_results(tmp_path, outcomes, profile_name="full", settings={"protocol": "seed"},
                                             wall_seconds=75)
    table = pd.read_csv(csv_path)
    assert list(table["notebook"]) == [step.notebook for step in study.STEPS[1:]]
    vgg = table.set_index("notebook").loc["03_finetune_vgg16"]
    assert vgg["study_test_accuracy"] == 79.64 and vgg["test_accuracy"] == pytest.approx(80.0)
    assert vgg["study_params"] == vgg["params"] == 14_980_935
    failed = table.set_index("notebook").loc["04_finetune_inception_v3"]
    assert failed["status"] == "failed" and math.isnan(failed["test_accuracy"])  # no stale numbers
    text = md_path.read_text()
    assert "| 09_ensemble | ensemble | 88.80 |" in text
    assert "80.0 [78.0, 82.0]" in text and "FAILED at cell 5 (In [3])" in text and "1:15" in text


def test_missing_dataset_says_what_to_do(tmp_path):
    empty = tmp_path / "nothing"
    result = run_all("--data", str(empty), "--no-download", "--only", "01")
    assert result.returncode == 2
    assert str(empty) in result.stderr and "python -m skinlib download" in result.stderr
    assert "Will download" in result.stderr  # the plan of skinlib.download, with sizes
    assert not (empty / "HAM10000_metadata.csv").exists()


def test_unknown_parameter_is_refused_before_running(synthetic_data, tmp_path):
    result = run_all("--data", str(synthetic_data), "--only", "02", "-p", "epoch=1", "--out", str(tmp_path))
    assert result.returncode == 2 and "no parameter 'epoch'" in result.stderr


# ------------------------------------------------------------------------------------------ notebook runs

@pytest.mark.slow
def test_failing_notebook_is_named_with_its_cell_and_kept(synthetic_data, tmp_path):
    """A bad parameter value fails a cell: non-zero exit naming notebook and cell, the executed copy keeps the
    traceback, the rest is skipped, or run with --keep-going (on synthetic data in the official layout)."""
    out = tmp_path / "stop"
    result = run_all("--profile", "smoke", "--data", str(synthetic_data), "--only", "02,03",
                     "-p", "02:recipe=bogus", "--out", str(out))
    assert result.returncode == 1
    assert "FAILED 02_baseline_cnn" in result.stderr and "cell 5 (In [3])" in result.stderr
    assert "ParameterError" in result.stderr and "recipe='bogus'" in result.stderr
    assert "03_finetune_vgg16: skipped" in result.stderr
    executed = nbformat.read(out / "notebooks" / "02_baseline_cnn.ipynb", as_version=4)
    errors = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.outputs
              if o.output_type == "error"]
    assert errors and errors[0]["ename"] == "ParameterError"
    assert "FAILED at cell 5" in (out / "results.md").read_text()

    out = tmp_path / "keep-going"
    result = run_all("--profile", "smoke", "--data", str(synthetic_data), "--only", "01,02,03",
                     "-p", "02:recipe=bogus", "--keep-going", "--out", str(out))
    assert result.returncode == 1
    check_smoke_outputs(out, result, runner.select("01,03"), expect_failure=True)
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
        result_json = json.loads((out / "results" / f"{step.notebook}.json").read_text())
        for key in ("model", "protocol", "recipe", "params", "depth", "parameters", "metrics", "time", "device",
                    "backend"):
            assert key in result_json, f"{step.notebook} results lack {key}"
        assert result_json["params"]["out_dir"] == str(out)
        if step.model:
            assert (out / "models" / f"{step.notebook}.keras").is_file()
            assert result_json["depth"] == step.depth or step.depth is None
            assert result_json["parameters"]["total"] > 0 and result_json["params"]["epochs"] == 1
            assert len(result_json["history"]) == (1 if step.model == "baseline" else 2)  # one epoch per stage
    text = (out / "results.md").read_text()
    assert "| Notebook | Model | Val acc. study |" in text and "profile: **smoke**" in text
    return table


@pytest.mark.slow
def test_smoke_run_of_all_nine_notebooks(request, tmp_path):
    """The smoke profile end to end: all nine notebooks on the real data (synthetic where it is absent)."""
    from conftest import REAL_DATA

    if (REAL_DATA / "HAM10000_metadata.csv").is_file():
        data = REAL_DATA
    else:
        data = request.getfixturevalue("synthetic_data")
    result = run_all("--profile", "smoke", "--data", str(data), "--out", str(tmp_path), timeout=1500)
    table = check_smoke_outputs(tmp_path, result, study.STEPS)
    assert list(table.index) == [step.notebook for step in study.STEPS[1:]]
    ensemble = json.loads((tmp_path / "results" / "09_ensemble.json").read_text())
    assert set(ensemble["members"]) == {"07_retrain_inception_v3", "08_retrain_densenet201"}
    assert ensemble["members"]["07_retrain_inception_v3"].endswith("models/07_retrain_inception_v3.keras")
    assert sum(ensemble["weights"].values()) == pytest.approx(1.0)
    assert {row["model"] for row in ensemble["comparison"]} >= {"07_retrain_inception_v3", "ensemble"}

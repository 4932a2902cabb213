"""The shared notebook flow: parameters, paths, metrics with intervals, the study's table."""

import json
import math

import numpy as np
import pytest
from sklearn import metrics

from skinlib import evaluate, experiment, study


def params(**changes):
    values = dict(data_dir="data", out_dir="out")
    values.update(changes)
    return experiment.Params(step=changes.pop("step", "03"), **{k: v for k, v in values.items() if k != "step"})


def test_study_table_is_the_readme_of_the_study():
    table = study.table()
    assert list(table["notebook"]) == list(study.NOTEBOOKS)
    assert table.loc["02", "test_accuracy"] == 76.54 and table.loc["02", "params"] == 2_124_839
    assert table.loc["09", "test_accuracy"] == 88.52 and table.loc["09", "validation_accuracy"] == 88.8
    assert table.loc["05", "depth"] == 784
    assert table["params"].isna().sum() == 4  # not reported for 01 and 07-09: left empty, not guessed
    assert study.get("3") is study.get("03_finetune_vgg16") is study.get("03")
    with pytest.raises(KeyError, match="unknown study step"):
        study.get("10")


def test_parameters_are_checked_with_clear_messages():
    run = params(image_size=[75, 75], step="04")
    assert run.model == "inception_v3" and run.stage == "top" and run.input_size == (75, 75)
    assert params(step="07").stage == "all" and params(step="07").input_size == (192, 256)
    with pytest.raises(experiment.ParameterError, match="protocol='random'.*seed, grouped"):
        params(protocol="random")
    with pytest.raises(experiment.ParameterError, match="at least 75 for inception_v3"):
        params(step="04", image_size=[32, 32])
    with pytest.raises(experiment.ParameterError, match="recipe='fast'"):
        params(recipe="fast")
    with pytest.raises(experiment.ParameterError, match="epochs=0"):
        params(epochs=0)
    with pytest.raises(experiment.ParameterError, match="trains no single model"):
        params(step="09")
    namespace = {"data_dir": "d", "out_dir": "o", "epochs": 2, "unrelated": 1}
    assert experiment.Params.from_namespace("02", namespace).epochs == 2


def test_ensemble_parameters():
    assert experiment.EnsembleParams(data_dir="d", members=["7", "08"]).members == ("07", "08")
    with pytest.raises(experiment.ParameterError, match="at least two"):
        experiment.EnsembleParams(data_dir="d", members=["07"])
    with pytest.raises(experiment.ParameterError, match="saves no model"):
        experiment.EnsembleParams(data_dir="d", members=["01", "07"])


def test_paths_are_derived_in_one_place(tmp_path):
    assert experiment.model_path(tmp_path, "7") == tmp_path / "models" / "07_retrain_inception_v3.keras"
    assert experiment.results_path(tmp_path, "08") == tmp_path / "results" / "08_retrain_densenet201.json"
    with pytest.raises(FileNotFoundError, match="run notebooks/07_retrain_inception_v3.ipynb"):
        experiment.read_results(tmp_path, "07")
    path = experiment.write_json(experiment.results_path(tmp_path, "07"), {"a": math.inf, "b": np.float32(0.5),
                                                                          "c": (1, math.nan)})
    assert json.loads(path.read_text()) == {"a": None, "b": 0.5, "c": [1, None]}
    assert experiment.read_results(tmp_path, "07")["b"] == 0.5


def test_vectorised_metrics_equal_scikit_learn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 7, 300)
    proba = rng.dirichlet(np.ones(7), 300)
    proba[np.arange(300), y] += rng.uniform(0, 0.5, 300)
    proba = np.round(proba / proba.sum(axis=1, keepdims=True), 2)  # ties, as real probabilities have
    pred = proba.argmax(axis=1)
    labels = sorted(set(y) | set(pred))
    assert experiment.macro_f1_along(y, pred, labels) == pytest.approx(
        metrics.f1_score(y, pred, average="macro", labels=labels, zero_division=0))
    assert experiment.macro_auc_along(y, proba) == pytest.approx(
        np.mean([metrics.roc_auc_score(y == k, proba[:, k]) for k in range(7)]))
    report = evaluate.report(y, proba)
    experiment.add_intervals(report, y, proba, n_resamples=200)
    for name in ("macro_f1", "roc_auc_macro"):
        low, high = report.intervals[name]
        assert low < getattr(report, name) < high and high - low < 0.2


def test_depth_counts_layers_as_the_study_did():
    from skinlib import models

    assert experiment.depth(models.build("baseline", weights=None)) == study.get("02").depth == 11

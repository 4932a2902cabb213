"""The study as data: its reported table, each setting's value (so nothing drifts silently), the fidelity table,
run records, and the leak measured on the study's own test set."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from skinlib import augment, data, fidelity, leakage, outputs, recipes, settings, study

PROJECT = Path(__file__).resolve().parents[1]


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


# The study's values, setting by setting (its notebooks; cells[N] counted from 0): a later change to skinlib.study
# or to how skinlib turns it into training must fail here.
BATCH = {"02": 64, "03": 64, "04": 64, "05": 64, "06": 32, "07": 64, "08": 32}
EPOCHS = {"02": [30], "03": [3, 30], "04": [3, 35], "05": [3, 25, 5], "06": [3, 27], "07": [3, 20], "08": [3, 20]}
COOLDOWN = {"02": [0], "03": [None, 3], "04": [None, 2], "05": [None, 2, 1], "06": [None, 2], "07": [None, 2],
            "08": [None, 2]}
BN = {"02": ["none"], "03": ["none", "none"], "04": ["reset", "train"], "05": ["reset", "train", "train"],
      "06": ["reset", "train"], "07": ["keras2_frozen", "train"], "08": ["keras2_frozen", "train"]}


@pytest.mark.parametrize("number", list(BATCH))
def test_each_setting_is_the_studys(number):
    row = study.get(number)
    recipe = recipes.get("study")
    assert row.batch_size == BATCH[number]
    assert [s.epochs for s in row.stages] == EPOCHS[number]
    assert [None if s.plateau is None else s.plateau.cooldown for s in row.stages] == COOLDOWN[number]
    assert [recipe.bn_for(s) for s in row.stages] == BN[number]
    assert row.val_size == (0.2 if number == "02" else 0.1)
    for stage in row.stages:
        optimizer = recipe.make_optimizer(stage)
        assert type(optimizer).__name__ == "Adam"
        if stage.layers == "head":
            assert float(optimizer.learning_rate) == pytest.approx(1e-4) and optimizer.amsgrad
        elif number == "02":
            assert float(optimizer.learning_rate) == pytest.approx(1e-3) and not optimizer.amsgrad
        else:
            assert float(optimizer.learning_rate) == pytest.approx(1e-4) and not optimizer.amsgrad
        if stage.plateau is not None:
            assert (stage.plateau.factor, stage.plateau.min_lr) == (0.5, 1e-5 if number == "02" else 1e-6)
            assert stage.plateau.patience == (2 if stage.continues else 3)
    described = augment.describe(augment.pipeline(recipe.augment_for(row)))
    expected = {"rotation_range": 40.0 if number == "02" else 60.0, "width_shift_range": 0.2,
                "height_shift_range": 0.2, "shear_range": 0.2, "zoom_range": 0.2,
                "horizontal_flip": number == "02", "fill_mode": "nearest"}
    assert {k: described[k] for k in expected} == expected
    assert recipe.preprocess_for(row) == ("standardize" if number == "02" else "unit")
    assert not recipe.restore_best and recipe.balance is None and recipe.early_stopping is None
    assert recipe.standardize_on == ("train", "val", "test")  # the study's mean/std over every image


def test_fidelity_table_explains_every_difference():
    for recipe in ("study", "corrected"):
        table = fidelity.table(None, recipe)
        assert not (table["status"] == "differs (unexplained)").any(), table[table["status"].str.startswith("differs")]
        assert set(table["notebook"]) == {s.notebook for s in study.STEPS[1:]}
    table = fidelity.table("04")
    bn = table.set_index("setting").loc["BatchNorm (fit 1, head)"]
    assert (bn["study"], bn["skinlib"], bn["status"]) == ("reset", "reset", "matches")
    assert table["status"].str.startswith("deviation").sum() == len(fidelity.DEVIATIONS) - 1  # no baseline images
    corrected = fidelity.table("04", "corrected").set_index("setting")
    assert corrected.loc["BatchNorm (fit 1, head)", "status"] == "recipe: corrected"


def test_fidelity_document_is_up_to_date():
    assert (PROJECT / "docs" / "fidelity.md").read_text(encoding="utf-8") == fidelity.markdown(), (
        "docs/fidelity.md is stale: python -m skinlib.fidelity > docs/fidelity.md")


def test_run_folder_and_records(tmp_path):
    run = outputs.RunFolder(tmp_path, "7")
    assert run.model == tmp_path / "models" / "07_retrain_inception_v3.keras"
    assert run.record == tmp_path / "results" / "07_retrain_inception_v3.json"
    assert run.figure("roc").parent.is_dir()
    with pytest.raises(FileNotFoundError, match="run notebooks/07_retrain_inception_v3.ipynb"):
        outputs.read_record(tmp_path, "07")
    run07 = settings.resolve("07", {"out_dir": tmp_path, "protocol": "study", "seed": 0})
    record = outputs.record(run07, reports={"test": {"metrics": {"accuracy": math.nan}}, "isic2018": None},
                            extra=np.float32(0.5))
    outputs.write_record(run, record)
    again = outputs.read_record(tmp_path, "07")
    assert again["metrics"]["test"]["metrics"]["accuracy"] is None and again["extra"] == 0.5
    assert "isic2018" not in again["metrics"]  # not evaluated: left out
    assert again["study"]["test_accuracy"] == 86.826 and again["environment"]["backend"]
    assert again["parameters"]["image_size"] == [192, 256] and again["parameters"]["batch_size"] == 64
    assert again["recipe_settings"]["name"] == "study" and again["started"] == run07.started
    assert outputs.jsonable({"a": math.inf, "b": (1, np.int64(2)), "c": Path("x")}) == {"a": None, "b": [1, 2], "c": "x"}
    assert outputs.headline(again)["test_accuracy"] is None and outputs.headline(None) == {}


def test_leak_gap_on_known_predictions():
    y = np.array([0, 1, 2, 3] * 5)
    leaked = np.array([True, False] * 10)
    proba = np.eye(7)[np.where(leaked, y, (y + 1) % 7)]  # right where leaked, wrong elsewhere
    table = leakage.gap(y, proba, leaked, groups=np.arange(20) // 2, n_resamples=200)
    assert list(table.index) == list(leakage.ROWS)
    assert table.loc["whole test set", "accuracy"] == 0.5
    assert table.loc["leak-free part", "accuracy"] == 0.0 and table.loc["leaked part", "accuracy"] == 1.0
    difference = table.loc["leaked - leak-free"]
    for metric in ("balanced_accuracy", "reweighted_accuracy"):
        assert difference[metric] == 1.0 and difference[f"{metric}_low"] <= 1.0 <= difference[f"{metric}_high"]
    assert np.isnan(difference["accuracy"])
    assert table.loc["context: whole - leak-free", "accuracy"] == 0.5
    # the whole set reweighted to its own class mix is its accuracy
    assert table.loc["whole test set", "reweighted_accuracy"] == pytest.approx(0.5)
    assert table.loc["whole test set", "lesions"] == 10
    none_leaked = leakage.gap(y, proba, np.zeros(20, dtype=bool), n_resamples=50)
    assert none_leaked.loc["context: whole - leak-free", "accuracy"] == 0.0
    assert np.isnan(none_leaked.loc["leaked part", "accuracy"])
    assert np.isnan(none_leaked.loc["leaked - leak-free", "balanced_accuracy"])


def test_the_study_test_set_has_605_leak_free_images(real_data):
    meta = data.load_metadata(real_data, images="images_200x150")
    parts = data.split(meta, protocol="study", seed=0, val_size=0.1)
    leaked = leakage.shares_lesion(parts, "test")
    assert len(leaked) == 1002 and int((~leaked).sum()) == 605
    nevi = (parts.test["dx"] == "nv").to_numpy()
    assert round(nevi[leaked].mean(), 2) == 0.54 and round(nevi[~leaked].mean(), 2) == 0.77  # leakage.py's class mix
    grouped = data.split(meta, protocol="grouped", seed=0)
    assert not leakage.shares_lesion(grouped, "test").any()


def test_notebooks_find_the_data_as_run_all_does(tmp_path, monkeypatch):
    (tmp_path / "ham" / "images_200x150").mkdir(parents=True)
    monkeypatch.setenv("SKINLIB_DATA", str(tmp_path / "ham"))
    assert data.locate(None) == (tmp_path / "ham", "images_200x150")  # $SKINLIB_DATA, then an images* folder
    (tmp_path / "ham" / "HAM10000_images_part_1").mkdir()
    assert data.locate(None) == (tmp_path / "ham", None)  # the official layout wins
    assert data.locate(tmp_path / "ham", "mine") == (tmp_path / "ham", "mine")
    monkeypatch.delenv("SKINLIB_DATA")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "ham10000").mkdir(parents=True)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # a notebook's working folder: ../data/ham10000
    assert data.locate(None)[0] == Path("..") / "data" / "ham10000"

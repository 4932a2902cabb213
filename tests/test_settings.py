"""settings.resolve: one resolved, checked settings object per run, written into the record and read back."""

import textwrap

import nbformat
import numpy as np
import papermill
import pytest

from skinlib import fidelity, models, outputs, recipes, settings, study, train

NOTEBOOKS = __import__("pathlib").Path(__file__).resolve().parents[1] / "notebooks"


def test_none_becomes_the_studys_value_and_the_recipe_runs_the_stages():
    run = settings.resolve("04", {"recipe": "corrected", "protocol": "grouped"})
    row = study.get("04")
    assert (run.val_size, run.image_size, run.batch_size) == (row.val_size, row.image_size, row.batch_size)
    assert run.input_shape == (*row.image_size, 3) and run.backbone == "inception_v3"
    head, top = run.stages
    assert (head.bn, head.learning_rate, head.epochs) == ("frozen", 1e-3, 3)  # the corrected recipe's
    assert (top.bn, top.learning_rate, top.epochs) == ("frozen", 1e-4, 35)
    assert run.merged_duplicates and run.augmentation is recipes.CORRECTED_AUGMENTATION
    study_run = settings.resolve("04", {"epochs": 2})
    assert [(s.bn, s.epochs) for s in study_run.stages] == [("reset", 2), ("train", 2)]
    options = dict(study_run.fit_options)
    assert options.pop("hparams") == {"notebook": "04_finetune_inception_v3",
                                      **{k: v for k, v in study_run.to_dict().items() if k != "stages"}}
    assert options.pop("tensorboard") in (study_run.folder.tensorboard, None)  # None without TensorFlow
    assert options == {"batch_size": 64, "out_dir": study_run.folder.training, "seed": 0, "resume": False,
                       "run_eagerly": False}
    table = run.table()
    assert table.loc["recipe", "from"] == "parameter" and table.loc["batch_size", "from"] == "the study's"


@pytest.mark.parametrize("name, value, words", [
    ("batch_size", 0, "batch_size=0.*int >= 1"),
    ("image_size", "abc", "image_size='abc'.*\\[height, width\\]"),
    ("image_size", 64, "image_size=64.*\\[height, width\\]"),
    ("image_size", [10, 10], "image_size=\\[10, 10\\].*>= 75 for inception_v3"),
    ("seed", 1.5, "seed=1.5.*whole number"),
    ("subset", 10, "subset=10.*>= 100"),
    ("epochs", 0, "epochs=0"),
    ("val_size", 1.5, "val_size=1.5.*between 0 and 1"),
    ("protocol", "leaky", "protocol='leaky'.*study, grouped"),
    ("recipe", "fast", "recipe='fast'.*study, corrected"),
    ("tta", "d4", "tta='d4'.*square"),
    ("resume", "yes", "resume='yes'.*True or False"),
])
def test_a_bad_value_names_the_parameter_and_the_accepted_form(name, value, words):
    with pytest.raises(settings.SettingsError, match=words):
        settings.resolve("04", {name: value})


def test_the_record_is_written_from_the_settings_and_read_back(tmp_path):
    variant = recipes.get("corrected").replace(name="mine", weight_decay=0.01)
    run = settings.resolve("07", {"recipe": variant, "seed": 3, "epochs": 1, "out_dir": tmp_path, "tta": "flips"})
    outputs.write_record(run.folder, outputs.record(run, reports={}))
    record = outputs.read_record(tmp_path, "07")
    assert record["parameters"]["recipe"] == "mine" and record["parameters"]["seed"] == 3
    assert [s["epochs"] for s in record["parameters"]["stages"]] == [1, 1]
    assert settings.read(tmp_path, "07").folder.model == tmp_path / "models" / "07_retrain_inception_v3.keras"
    again = settings.from_record(record)
    assert again.recipe == variant and again.seed == 3 and again.tta == "flips" and again.stages == run.stages
    assert settings.from_record(outputs.jsonable(outputs.record(settings.resolve("08", {}), reports={}))).recipe \
        is recipes.STUDY


def test_the_ensemble_takes_its_members_split_and_refuses_two_splits():
    members = {"07": settings.resolve("07", {"seed": 1}), "08": settings.resolve("08", {"seed": 1})}
    split = settings.shared_split(members)
    assert split == {"protocol": "study", "seed": 1, "val_size": 0.1, "subset": None, "merged_duplicates": False,
                     "folds": None, "fold": None, "source": None}
    ensemble = settings.resolve("09", {"members": ["07", "08"]}).replace(**split)
    assert ensemble.seed == 1 and ensemble.members == ("07", "08")
    with pytest.raises(settings.SettingsError, match="different splits: seed=1 vs 2"):
        settings.shared_split({**members, "08": settings.resolve("08", {"seed": 2})})
    with pytest.raises(settings.SettingsError, match="members"):
        settings.resolve("09", {"members": ["07"]})


def test_fidelity_shows_a_runs_overrides():
    table = fidelity.table(settings.resolve("03", {"epochs": 1, "batch_size": 16})).set_index("setting")
    assert table.loc["batch size", "skinlib"] == "16" and table.loc["batch size", "status"].startswith("parameter")
    assert table.loc["epochs (fit 2, top)", "status"].startswith("parameter")
    assert table.loc["learning rate (fit 1, head)", "status"] == "matches"
    assert not table["status"].str.contains("unexplained").any()


def test_fit_refuses_a_model_set_for_another_stage():
    model = models.build("baseline", input_shape=(16, 16, 3), weights=None, preprocess="unit")
    stage, = settings.resolve("02", {"recipe": "corrected"}).stages
    models.set_trainable(model, "all", bn="frozen")
    data = {"train": (np.zeros((4, 16, 16, 3), "uint8"), np.arange(4)), "val": (np.zeros((2, 16, 16, 3), "uint8"),
                                                                            np.arange(2))}
    with pytest.raises(train.TrainError, match="set for layers='all', bn='frozen'.*bn='none'"):
        train.fit(model, data, "corrected", stage, batch_size=2)
    with pytest.raises(models.ModelError, match="a stage carries its BatchNorm mode"):
        models.set_trainable(model, stage, bn="train")


@pytest.mark.slow
def test_a_new_parameter_is_one_line_in_the_notebook_and_one_field(synthetic_data, tmp_path, monkeypatch):
    """Add a parameter to a copy of notebook 02 and a field to Settings: it is resolved and lands in the record."""
    notebook = nbformat.read(NOTEBOOKS / "02_baseline_cnn.ipynb", as_version=4)
    cell = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += '\nnote = "plain"                # a new parameter'
    copy = tmp_path / "notebooks" / "02_baseline_cnn.ipynb"
    copy.parent.mkdir()
    nbformat.write(notebook, copy)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(textwrap.dedent("""
        import dataclasses
        from skinlib import settings
        settings.Settings = dataclasses.make_dataclass(
            "Settings", [("note", str, settings.parameter("plain", "a new parameter"))],
            bases=(settings.Settings,), frozen=True)
    """))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path / 'site'}:{NOTEBOOKS.parent}")
    out = tmp_path / "out"
    papermill.execute_notebook(str(copy), str(tmp_path / "executed.ipynb"), cwd=str(copy.parent), progress_bar=False,
                               kernel_name="python3",
                               parameters={"data_dir": str(synthetic_data), "out_dir": str(out), "image_size": [32, 32],
                                           "epochs": 1, "batch_size": 256, "eager": True, "note": "hello"})
    record = outputs.read_record(out, "02")
    assert record["parameters"]["note"] == "hello" and record["parameters"]["epochs"] == 1

"""The benchmarks in bench/ run: a tiny dry run of each script, and the shared helpers. No timing assertions."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "bench"))

import _common  # noqa: E402


def run_script(*args: str, timeout: float = 300) -> str:
    """Run a bench script; fail with its output if it exits non-zero; return stdout."""
    process = subprocess.run([sys.executable, *args], cwd=PROJECT, capture_output=True, text=True, timeout=timeout)
    assert process.returncode == 0, f"{args[0]} exited {process.returncode}:\n{process.stdout}\n{process.stderr[-4000:]}"
    return process.stdout


def table_rows(output: str) -> list[list[str]]:
    """The body rows of the Markdown table in ``output`` (cells stripped)."""
    lines = [line for line in output.splitlines() if line.startswith("|")]
    assert len(lines) >= 3, f"no table in:\n{output}"
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_format_table_aligns_and_formats_ratios():
    text = _common.format_table(["method", "ratio"], [["a", 1.23456], ["longer name", float("nan")]])
    lines = text.splitlines()
    assert lines[0] == "| method      | ratio |"
    assert lines[2] == "| a           | 1.23  |"
    assert lines[3] == "| longer name | n/a   |"
    assert len({len(line) for line in lines}) == 1


def test_target_direction():
    assert _common.Target("x", 10.5, 10).held
    assert not _common.Target("x", 9.9, 10).held
    assert _common.Target("mem", 1.2, 1.5, at_least=False).held
    assert not _common.Target("mem", 1.6, 1.5, at_least=False).held
    assert "FAILED" in _common.Target("mem", 1.6, 1.5, at_least=False).line()


def test_measure_sees_an_allocation():
    with _common.measure() as m:
        block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, every page written
    assert m.peak_bytes >= 48 * 2**20, m
    assert m.seconds > 0 and m.memory_method
    del block


@pytest.mark.slow
def test_duplicates_dry_run(real_data):
    output = run_script("bench/duplicates.py", "--n", "60", "--dry-run", "--data", str(real_data))
    rows = {row[0].split(" (")[0]: row for row in table_rows(output)}
    assert {"copy search alone", "find_duplicates"} <= set(rows)
    assert "Study split (seed 0):" in output and "Targets (dry run" in output


@pytest.mark.slow
def test_image_cache_dry_run(real_data):
    output = run_script("bench/image_cache.py", "--n", "20", "--dry-run", "--data", str(real_data))
    rows = {row[0].split(" (")[0]: row for row in table_rows(output)}
    assert set(rows) == {"study", "floor", "skinlib load_images, cold", "skinlib load_images, warm",
                         "warm without the checksum"}
    assert rows["study"][1] == "1.00" and rows["floor"][2] == "1.00"  # each ratio's own reference
    assert "Floor, cold, warm and unchecked arrays identical: yes" in output
    assert "warm / unchecked wall time" in output
    assert "cold time / floor time" in output and "Targets (dry run" in output


@pytest.mark.slow
def test_train_throughput_dry_run():
    output = run_script("bench/train_throughput.py", "--n", "16", "--dry-run")
    (row,) = table_rows(output)
    assert row[0].startswith("baseline 32x32")
    assert all(float(cell) > 0 for cell in row[1:]), row
    assert "baseline: skinlib / bare+augmentation speed" in output


@pytest.mark.slow
def test_predict_throughput_dry_run():
    output = run_script("bench/predict_throughput.py", "--n", "8", "--batch-size", "4", "--dry-run")
    rows = table_rows(output)
    assert [row[0] for row in rows] == ["baseline 32x32", "ensemble of 1 (average) vs its members' bare"]
    assert float(rows[0][1]) > 0 and float(rows[0][2]) > 0
    assert "ensemble speed / members' bare speed" in output


@pytest.mark.slow
def test_gpu_dry_run_on_cpu():
    output = run_script("bench/gpu.py", "--dry-run")
    assert "keras-jax" in output
    # Frameworks that cannot be imported here are skipped with a line saying so; Keras runs on some backend.
    for module, framework in (("torch", "torch-eager"),):
        try:
            __import__(module)
        except ImportError:
            assert f"skipped {framework}" in output
    rows = table_rows(output)
    assert rows[0][0].startswith("baseline 32x32")
    assert "compile" in output and "Targets (dry run" in output


@pytest.mark.slow
def test_recipe_variants_dry_run(real_data, tmp_path):
    output = run_script("bench/recipe_variants.py", "--dry-run", "--seeds", "0", "--data", str(real_data),
                        "--out", str(tmp_path), "--variants", "corrected",
                        "corrected:weight_decay=1e-4;augment=d4;patience=6;ema=0.99")
    rows = {row[0]: row for row in table_rows(output)}
    assert set(rows) == {"corrected", "corrected:weight_decay=1e-4;augment=d4;patience=6;ema=0.99"}
    assert all(0.0 <= float(cell.split(" ± ")[0]) <= 1.0 for row in rows.values() for cell in row[2:])
    assert len((tmp_path / "runs.csv").read_text().splitlines()) == 3  # a header and one line per run


def test_recipe_variant_changes_are_applied():
    import recipe_variants
    from skinlib import study

    stage, = study.stages("02")
    recipe, spec, changed, callbacks = recipe_variants.parse_variant(
        "corrected:weight_decay=1e-4;monitor=val_loss;balance=none;augment=d4;patience=6;ema=0.99", stage)
    assert (recipe.weight_decay, recipe.monitor, recipe.balance, spec) == (1e-4, "val_loss", None, "d4")
    assert changed.plateau.patience == 6 and changed.plateau.factor == stage.plateau.factor
    assert recipe.make_optimizer(stage).use_ema and len(callbacks) == 1
    assert recipe_variants.parse_variant("study:plateau=none", stage)[2].plateau is None


def test_leak_worth_compares_the_two_runs_on_the_same_test_images(synthetic_data, tmp_path):
    import json

    import keras

    from skinlib import export, models

    for protocol in ("study", "study_deleaked", "study_control"):
        for seed in (0, 1):
            folder = tmp_path / protocol / f"seed{seed}"
            (folder / "results").mkdir(parents=True)
            (tmp_path / protocol / "seeds.md").write_text("run_all writes its summary beside the seed folders")
            (folder / "models").mkdir()
            parameters = {"protocol": protocol, "seed": seed, "val_size": 0.2, "subset": None, "image_size": [16, 16]}
            (folder / "results" / "02_baseline_cnn.json").write_text(json.dumps({"parameters": parameters}))
            keras.utils.set_random_seed(seed + len(protocol))
            model = models.build("baseline", (16, 16, 3), weights=None, preprocess="unit")
            export.export(model, folder / "models" / "02_baseline_cnn.keras", image_size=(16, 16))
    output = run_script("bench/leak_worth.py", str(tmp_path / "study"), str(tmp_path / "study_deleaked"),
                        "--data", str(synthetic_data))
    assert output.count("test images") == 2 and "balanced_accuracy_gain: " in output
    assert "total (leaky vs deleaked) over 2 seed(s)" in output and "give the study_control run" in output
    split_up = run_script("bench/leak_worth.py", str(tmp_path / "study"), str(tmp_path / "study_deleaked"),
                          str(tmp_path / "study_control"), "--data", str(synthetic_data))
    for comparison in ("leak (control vs deleaked)", "size (leaky vs control)", "total (leaky vs deleaked)"):
        assert f"{comparison} over 2 seed(s)" in split_up and f"{comparison}: gain of" in split_up
    mixed = subprocess.run([sys.executable, "bench/leak_worth.py", str(tmp_path / "study"), str(tmp_path / "study"),
                            "--data", str(synthetic_data)], cwd=PROJECT, capture_output=True, text=True)
    assert mixed.returncode != 0 and "expected the protocols study and study_deleaked" in mixed.stderr


def test_metadata_worth_compares_image_only_and_fused_on_the_same_test_images(synthetic_data, tmp_path):
    import json

    from skinlib import data, export, models, outputs

    test = data.split(data.load_metadata(synthetic_data), protocol="grouped", seed=0, val_size=0.2).test
    for name, fields in (("image", None), ("fused", ["age", "sex"])):
        folder = tmp_path / name
        (folder / "results").mkdir(parents=True)
        (folder / "models").mkdir()
        outputs.write_predictions(outputs.RunFolder(folder, "02"), test, np.full((len(test), 7), 1 / 7))
        parameters = {"protocol": "grouped", "seed": 0, "val_size": 0.2, "subset": None, "image_size": [16, 16],
                      "merged_duplicates": False, "tta": None, "metadata": fields}
        (folder / "results" / "02_baseline_cnn.json").write_text(json.dumps({"parameters": parameters}))
        model = models.build("baseline", (16, 16, 3), weights=None, preprocess="unit", seed=0, metadata=fields)
        export.export(model, folder / "models" / "02_baseline_cnn.keras")
    output = run_script("bench/metadata_worth.py", str(tmp_path / "image"), str(tmp_path / "fused"),
                        "--data", str(synthetic_data))
    assert output.count("test images") == 1 and "balanced_accuracy_gain: " in output
    assert "macro_f1_gain: " in output
    swapped = subprocess.run([sys.executable, "bench/metadata_worth.py", str(tmp_path / "fused"),
                              str(tmp_path / "image"), "--data", str(synthetic_data)], cwd=PROJECT,
                             capture_output=True, text=True)
    assert swapped.returncode != 0 and "expected" in swapped.stderr and "without metadata" in swapped.stderr
    other = data.split(data.load_metadata(synthetic_data), protocol="grouped", seed=1, val_size=0.2).test
    outputs.write_predictions(outputs.RunFolder(tmp_path / "fused", "02"), other, np.full((len(other), 7), 1 / 7))
    split_apart = subprocess.run([sys.executable, "bench/metadata_worth.py", str(tmp_path / "image"),
                                  str(tmp_path / "fused"), "--data", str(synthetic_data)], cwd=PROJECT,
                                 capture_output=True, text=True)
    assert split_apart.returncode != 0 and "is not the split rebuilt here" in split_apart.stderr


def test_the_macro_f1_gain_is_sklearn_s_difference_with_a_lesion_interval(capsys):
    import pandas as pd
    from _paired import macro_f1_gain
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 120)
    lesions = np.repeat(np.arange(40), 3)
    good = np.eye(4)[np.where(rng.random(120) < 0.7, labels, rng.integers(0, 4, 120))]
    poor = np.eye(4)[np.where(rng.random(120) < 0.4, labels, rng.integers(0, 4, 120))]
    found = macro_f1_gain(pd.DataFrame({"label": labels, "lesion_id": lesions}), good, poor, seed=0)
    expected = (f1_score(labels, good.argmax(1), average="macro", zero_division=0)
                - f1_score(labels, poor.argmax(1), average="macro", zero_division=0))
    assert found["macro_f1_gain"] == pytest.approx(expected)
    assert found["macro_f1_gain_low"] < expected < found["macro_f1_gain_high"]
    assert "macro_f1_gain: " in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")  # the guesses call absent classes
def test_source_shift_compares_the_source_out_model_with_the_folds_on_the_held_out_images(tmp_path):
    import pandas as pd
    from sklearn.metrics import balanced_accuracy_score

    from skinlib import outputs

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"image_id": [f"ISIC_{k:07d}" for k in range(60)],
                          "lesion_id": [f"HAM_{k // 2:07d}" for k in range(60)], "label": rng.integers(0, 5, 60)})
    source = frame.index < 24  # the held-out source: the first 24 images

    def run(folder, part, proba, parameters):
        folder = outputs.RunFolder(folder, "02")
        outputs.write_predictions(folder, part, proba)
        outputs.write_record(folder, {"parameters": parameters, "data": {"train": {"total": 100 + len(part)}}})

    truth = np.eye(7)[frame["label"]]
    guess = np.where(rng.random((60, 1)) < 0.5, truth, np.eye(7)[rng.integers(0, 7, 60)])
    for fold, rows in enumerate((frame.index % 2 == 0, frame.index % 2 == 1)):
        run(tmp_path / "cv" / f"fold{fold}", frame[rows], truth[rows], {"protocol": "grouped"})
    held = tmp_path / "out" / "source=a" / "seed-default"
    run(held, frame[source], guess[source], {"protocol": "source_out", "source": "a"})
    output = run_script("bench/source_shift.py", str(tmp_path / "out" / "source=a"), "--cv", str(tmp_path / "cv"),
                        "--bootstrap", "200")
    expected = balanced_accuracy_score(frame["label"][source], guess[source].argmax(1))
    assert f"held_out {100 * expected:.1f} [" in output and "cv 100.0 [100.0, 100.0]" in output
    assert f"held out - cv {100 * (expected - 1):+.1f} [" in output and "24 images, 12 lesions" in output
    assert "2 folds, 60 test images" in output
    twice = subprocess.run([sys.executable, "bench/source_shift.py", str(held), "--cv", str(tmp_path / "cv" / ".."),
                            "--bootstrap", "10"], cwd=PROJECT, capture_output=True, text=True)
    assert twice.returncode != 0 and "no fold<j> folders" in twice.stderr


def test_source_probe_on_a_subset(real_data):
    output = run_script("bench/source_probe.py", "--subset", "200", "--size", "24", "32", "--data", str(real_data),
                        "--images", "images_200x150")
    rows = table_rows(output)
    assert [row[:2] for row in rows] == [["colour", "all"], ["colour", "nv"], ["metadata", "all"], ["metadata", "nv"]]
    assert all(0.0 <= float(row[4]) <= 1.0 and row[6] == "0.250" for row in rows)
    assert "vidir_molemax" in output and "nv share" in output

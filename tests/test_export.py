"""skinlib.export and the predict CLI: one safe .keras file, any image size in, same probabilities out."""

import json

import keras
import numpy as np
import pytest

from skinlib import CLASSES, export, predict
from skinlib.preprocessing import Preprocess

SHAPE = (24, 32, 3)


@pytest.fixture(scope="module")
def tiny():
    """An untrained 7-class model with skinlib's preprocessing layer inside."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input(SHAPE, name="image")
    x = Preprocess("tf")(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(x), name="tiny")


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    recipe = {"name": "corrected", "epochs": 3, "optimizer": {"name": "adam", "learning_rate": 1e-4}}
    return export.export(tiny, tmp_path_factory.mktemp("models") / "tiny.keras", recipe=recipe)


def images(n, height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3)).astype(np.uint8)


def test_round_trip_gives_the_same_probabilities(tiny, exported):
    loaded = export.load(exported)
    in_memory = export.deployable(tiny)
    for height, width in ((24, 32), (45, 60), (450, 600), (31, 17)):  # any size, any aspect
        batch = images(2, height, width)
        np.testing.assert_allclose(loaded.predict(batch, verbose=0), in_memory.predict(batch, verbose=0),
                                   rtol=0, atol=1e-6)
    # at the model's own size the resize is the identity: same as the bare model
    batch = images(3, *SHAPE[:2])
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), tiny.predict(batch.astype("float32"), verbose=0),
                               atol=1e-6)
    assert loaded.input.dtype == "uint8" and tuple(loaded.input.shape) == (None, None, None, 3)


def test_model_card_travels_in_the_file(exported):
    card = export.model_card(export.load(exported))
    assert card["classes"] == list(CLASSES)
    assert card["class_names"]["mel"] == "Melanoma"
    assert card["image_size"] == [24, 32]
    assert card["recipe"]["optimizer"]["learning_rate"] == 1e-4


def test_recipe_dataclass_is_stored_as_json():
    from skinlib import recipes

    stored = export._jsonable(recipes.get("corrected"))
    assert json.loads(json.dumps(stored)) == stored and stored["name"] == "corrected"


def test_load_is_safe_mode(tmp_path):
    inputs = keras.Input((4, 4, 3))
    outputs = keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(
        keras.layers.Lambda(lambda x: x * 2.0)(inputs)))
    path = tmp_path / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    with pytest.raises(ValueError, match="lambda.keras"):
        export.load(path)
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        export.load(tmp_path / "missing.keras")


def test_export_checks_its_input(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"\.keras"):
        export.export(tiny, tmp_path / "model.h5")
    with pytest.raises(ValueError, match="3 classes"):
        export.deployable(tiny, classes=["a", "b", "c"])
    flexible = keras.Sequential([keras.Input((None, None, 3)), keras.layers.GlobalAveragePooling2D(),
                                 keras.layers.Dense(7, activation="softmax")])
    with pytest.raises(ValueError, match="image_size"):
        export.deployable(flexible)
    assert export.deployable(flexible, image_size=(8, 8)).output_shape == (None, 7)


def test_a_built_skinlib_model_exports(tmp_path):
    models = pytest.importorskip("skinlib.models")
    model = models.build("baseline", input_shape=(32, 32, 3), weights=None, preprocess="unit")
    loaded = export.load(export.export(model, tmp_path / "baseline.keras"))
    batch = images(2, 32, 32)
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6)


# ------------------------------------------------------------------------------------------------
# python -m skinlib predict
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_images(real_data):
    return sorted((real_data / "images_600x450").glob("ISIC_*.jpg"))[:2]


def run_cli(capsys, *argv):
    from skinlib.__main__ import main

    code = main(["predict", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_prints_seven_probabilities_summing_to_one(exported, real_images, capsys):
    code, out, err = run_cli(capsys, real_images[0], "--model", exported, "--json")
    assert code == 0, err
    [result] = json.loads(out)
    probabilities = result["probabilities"]
    assert sorted(probabilities) == sorted(CLASSES)
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    values = list(probabilities.values())
    assert values == sorted(values, reverse=True) and result["top"] == next(iter(probabilities))
    # the same numbers as the model on the decoded image
    model = export.load(exported)
    expected = model.predict(predict.read_image(real_images[0])[None], verbose=0)[0]
    assert probabilities[CLASSES[int(expected.argmax())]] == pytest.approx(float(expected.max()), abs=1e-6)


def test_cli_text_output_and_tta(exported, real_images, capsys):
    code, out, _ = run_cli(capsys, *real_images, "--model", exported, "--tta")
    assert code == 0
    blocks = out.strip().split("\n" + str(real_images[1]))
    assert len(blocks) == 2
    lines = blocks[0].splitlines()
    assert lines[0].startswith(f"{real_images[0]}: ") and len(lines) == 1 + 7
    assert sum(float(line.split()[1]) for line in lines[1:]) == pytest.approx(1.0, abs=5e-4)
    assert any("Melanoma" in line for line in lines[1:])


def test_cli_reports_bad_files_and_continues(exported, real_images, tmp_path, capsys):
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not a JPEG")
    missing = tmp_path / "missing.jpg"
    code, out, err = run_cli(capsys, missing, real_images[0], not_an_image, "--model", exported, "--json")
    assert code == 1
    results = json.loads(out)
    assert [r["image"] for r in results] == [str(missing), str(real_images[0]), str(not_an_image)]
    assert "no such file" in results[0]["error"] and "not a readable image" in results[2]["error"]
    assert sum(results[1]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert str(missing) in err and str(not_an_image) in err
    code, _, err = run_cli(capsys, real_images[0], "--model", tmp_path / "nope.keras")
    assert code == 2 and "nope.keras" in err

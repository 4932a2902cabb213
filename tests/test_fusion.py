"""Metadata fusion: the encoding (dx_type refused, missing values explicit), the two-input model through fit,
predict (TTA varies the image only), Grad-CAM, export and reload, and ``python -m skinlib predict --age ...``;
under TensorFlow here, under JAX in a subprocess."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skinlib import settings
from skinlib.data import encoding

PROJECT = Path(__file__).resolve().parents[1]
FIELDS = ("age", "sex", "localization")
SIZE = (24, 24)


# -- the encoding ------------------------------------------------------------------------------------------------

def test_dx_type_is_refused_because_it_leaks_the_diagnosis():
    with pytest.raises(encoding.MetadataError, match="dx_type.*leaks the label"):
        encoding.check_fields(["age", "dx_type"])
    with pytest.raises(settings.SettingsError, match="parameter metadata=.*leaks the label"):
        settings.resolve("02", {"metadata": ["dx_type"]})


@pytest.mark.parametrize("fields, message", [(["age", "weight"], "unknown metadata field 'weight'; accepted fields: "
                                                                 "age, sex, localization"),
                                             ("age", "give a list of field names"),
                                             ([], "give None for an image-only model"),
                                             (["age", "age"], "each field once")])
def test_bad_fields_are_refused_with_the_accepted_form(fields, message):
    with pytest.raises(encoding.MetadataError, match=message):
        encoding.check_fields(fields)


def test_missing_values_are_encoded_explicitly():
    frame = pd.DataFrame({"age": [55.0, np.nan, 0.0], "sex": ["male", None, "unknown"],
                          "localization": ["back", "", np.nan]})
    vectors = pd.DataFrame(encoding.encode(frame, FIELDS), columns=encoding.columns(FIELDS))
    assert vectors.shape == (3, 2 + len(encoding.SEXES) + len(encoding.SITES))
    np.testing.assert_allclose(vectors[["age", "age_missing"]], [[0.55, 0], [0, 1], [0, 0]])  # age 0 is known
    assert vectors["sex=male"].tolist() == [1, 0, 0] and vectors["sex=unknown"].tolist() == [0, 1, 1]
    assert vectors["localization=back"].tolist() == [1, 0, 0]
    assert vectors["localization=unknown"].tolist() == [0, 1, 1]
    assert (vectors.filter(like="=").sum(axis=1) == 2).all()  # exactly one sex and one site each
    np.testing.assert_array_equal(encoding.missing(FIELDS)[0], vectors.iloc[1].to_numpy(dtype="float32"))
    np.testing.assert_array_equal(encoding.encode_values(FIELDS, age=55, sex="male", localization="back"),
                                  vectors.iloc[0].to_numpy(dtype="float32"))


def test_bad_values_name_the_field_and_the_accepted_values():
    with pytest.raises(encoding.MetadataError, match="sex value.*'x'.*accepted values: female, male, unknown"):
        encoding.encode(pd.DataFrame({"sex": ["x"]}), ["sex"])
    with pytest.raises(encoding.MetadataError, match="age must be years between 0 and 120"):
        encoding.encode(pd.DataFrame({"age": [-3.0]}), ["age"])
    with pytest.raises(encoding.MetadataError, match="no column"):
        encoding.encode(pd.DataFrame({"age": [3.0]}), FIELDS)


def test_the_parameter_resolves_in_field_order_and_round_trips_through_the_record():
    run = settings.resolve("02", {"metadata": ["sex", "age"]})
    assert run.metadata == ("age", "sex") and run.model_options["metadata"] == ("age", "sex")
    assert run.to_dict()["metadata"] == ["age", "sex"]
    assert settings.from_record({"step": "02", "parameters": run.to_dict()}).metadata == ("age", "sex")
    assert settings.resolve("02", {}).metadata is None


# -- the model -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fused(synthetic_data):
    """A fused baseline trained one epoch per recipe on the synthetic data: (model, arrays, vectors)."""
    from skinlib import data, models, recipes, study, train

    meta = data.load_metadata(synthetic_data)
    parts = {"train": meta.iloc[:44], "val": meta.iloc[44:58], "test": meta.iloc[58:]}
    arrays = data.load_parts(parts, size=SIZE, progress=False)
    vectors = data.metadata_vectors(parts, FIELDS)
    model = models.build("baseline", (*SIZE, 3), weights=None, preprocess="unit", seed=0, metadata=FIELDS)
    for name in ("corrected", "study"):  # balanced sampling, then Keras' own shuffling of arrays
        recipe = recipes.get(name)
        stage = recipe.apply(study.stages("02", 1)[0])
        models.set_trainable(model, stage)
        history = train.fit(model, arrays, recipe, stage, batch_size=8, metadata=vectors, verbose=0)
        assert np.isfinite(history["loss"]).all()
    return model, arrays, vectors


def test_image_only_model_is_unchanged_and_the_metadata_joins_before_the_dense_layer():
    from skinlib import models

    image_only = models.build("baseline", (*SIZE, 3), weights=None, preprocess="unit")
    fused = models.build("baseline", (*SIZE, 3), weights=None, preprocess="unit", metadata=FIELDS)
    assert [t.name for t in image_only.inputs] == ["image"] and [t.name for t in fused.inputs] == ["image", "metadata"]
    width, units = encoding.width(FIELDS), 64
    branch = width * units + units + units * units + units + units * 512  # two dense layers, wider head_dense input
    assert models.param_counts(fused)["total"] == models.param_counts(image_only)["total"] + branch
    assert [layer.name for layer in models.backbone_layers(fused)] == [
        layer.name for layer in models.backbone_layers(image_only)]
    with pytest.raises(models.ModelError, match="leaks the label"):
        models.build("baseline", (*SIZE, 3), weights=None, metadata=["dx_type"])


def test_fit_refuses_a_fused_model_without_metadata(fused):
    from skinlib import recipes, study, train

    model, arrays, _ = fused
    stage = recipes.get("study").apply(study.stages("02", 1)[0])
    with pytest.raises(ValueError, match="takes metadata.*data.metadata_vectors"):
        train.fit(model, arrays, "study", stage, batch_size=8, verbose=0)


def test_balanced_batches_carry_the_metadata():
    from skinlib import train

    x, y = np.zeros((14, 4, 4, 3), "uint8"), np.arange(14) % 7
    m = np.arange(14, dtype="float32")[:, None]
    batch, labels = train.BalancedBatches(x, y, 5, metadata=m)[0]
    assert set(batch) == {"image", "metadata"} and batch["metadata"].shape == (5, 1) and labels.shape == (5, 7)


class _Spy:
    """Stands for a model: records what evaluate.predict feeds it."""

    def __init__(self, model):
        self.model, self.layers, self.name, self.fed = model, model.layers, model.name, []

    def predict_on_batch(self, inputs):
        self.fed.append({k: np.array(v) for k, v in inputs.items()})
        return self.model.predict_on_batch(inputs)


def test_tta_varies_the_image_only(fused):
    from skinlib import evaluate

    model, arrays, vectors = fused
    spy = _Spy(model)
    proba = evaluate.predict(spy, arrays["test"][0][:4], tta="d4", metadata=vectors["test"][:4])
    assert proba.shape == (4, 7) and len(spy.fed) == 8
    for fed in spy.fed:
        np.testing.assert_array_equal(fed["metadata"], vectors["test"][:4])
    assert len({fed["image"].tobytes() for fed in spy.fed}) == 8  # eight views of the images


def test_predict_falls_back_to_the_missing_code_and_refuses_wrong_vectors(fused):
    from skinlib import evaluate, fusion

    model, arrays, vectors = fused
    x = arrays["test"][0]
    np.testing.assert_allclose(evaluate.predict(model, x), evaluate.predict(
        model, x, metadata=encoding.missing(FIELDS, len(x))), atol=1e-6)
    with pytest.raises(fusion.FusionError, match="shape"):
        evaluate.predict(model, x, metadata=vectors["test"][:, :3])


def test_gradcam_explains_the_image_branch_with_the_metadata_held_fixed(fused):
    import keras

    from skinlib import gradcam, models

    model, arrays, vectors = fused
    x, m = arrays["test"][0][:3], vectors["test"][:3]
    features, head = models.split(model)
    assert [t.name for t in features.inputs] == ["image"]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head([features(x), keras.ops.convert_to_tensor(m)])),
                               model.predict_on_batch({"image": x, "metadata": m}), atol=1e-5)
    heat = gradcam.gradcam(model, x, metadata=m)
    assert heat.shape == (3, *SIZE) and 0.0 <= heat.min() and heat.max() <= 1.0


def test_export_takes_image_and_metadata_and_reloads(fused, tmp_path):
    from skinlib import evaluate, export

    model, arrays, vectors = fused
    path = export.export(model, tmp_path / "fused.keras", recipe={"name": "test"})
    loaded = export.load(path)
    assert [t.name for t in loaded.inputs] == ["image", "metadata"]
    assert export.model_card(loaded)["metadata"] == list(FIELDS)
    x, m = arrays["test"][0], vectors["test"]
    np.testing.assert_allclose(evaluate.predict(loaded, x, metadata=m), evaluate.predict(model, x, metadata=m),
                               atol=1e-5)


def test_cli_takes_age_sex_and_site(fused, tmp_path, capsys):
    from PIL import Image

    from skinlib import export, predict

    model, arrays, _ = fused
    path = export.export(model, tmp_path / "fused.keras")
    lesion = tmp_path / "lesion.jpg"
    Image.fromarray(arrays["test"][0][0]).save(lesion)
    assert predict.main([str(lesion), "--model", str(path), "--age", "55", "--sex", "male", "--site", "back",
                         "--json"]) == 0
    given = json.loads(capsys.readouterr().out)[0]["probabilities"]
    assert predict.main([str(lesion), "--model", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    assert "--age, --sex, --site not given: encoded as missing" in captured.err
    missing = json.loads(captured.out)[0]["probabilities"]
    assert sum(given.values()) == pytest.approx(1.0) and given != missing
    assert predict.main([str(lesion), "--model", str(path), "--age", "-5"]) == 2
    assert "age must be years between 0 and 120" in capsys.readouterr().err


def test_cli_refuses_metadata_for_an_image_only_model(tmp_path, capsys):
    from PIL import Image

    from skinlib import export, models, predict

    path = export.export(models.build("baseline", (*SIZE, 3), weights=None, preprocess="unit"), tmp_path / "m.keras")
    lesion = tmp_path / "lesion.png"
    Image.new("RGB", (30, 20), (150, 90, 80)).save(lesion)
    assert predict.main([str(lesion), "--model", str(path), "--sex", "female"]) == 2
    assert "takes images only" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_jax_backend_trains_predicts_explains_and_exports_a_fused_model(tmp_path):
    code = f"""
    import numpy as np, keras
    from skinlib import evaluate, export, gradcam, models, study, train
    from skinlib.data import encoding
    assert keras.backend.backend() == "jax"
    rng = np.random.default_rng(0)
    y = np.arange(28) % 7
    x = (rng.integers(0, 40, (28, 16, 16, 3)) + (y * 30)[:, None, None, None]).astype("uint8")
    m = encoding.encode_values(["age", "sex"], age=40, sex="female")[None].repeat(28, axis=0)
    model = models.build("baseline", (16, 16, 3), weights=None, preprocess="unit", metadata=["age", "sex"])
    stage = study.Stage("all", 2, 1e-3, False, "none")
    history = train.fit(model, {{"train": (x, y), "val": (x, y)}}, "corrected", stage, batch_size=8, verbose=0,
                        metadata={{"train": m, "val": m}})
    assert np.isfinite(history["loss"]).all()
    proba = evaluate.predict(model, x, tta="d4", metadata=m)
    assert gradcam.gradcam(model, x[:2], metadata=m[:2]).shape == (2, 16, 16)
    loaded = export.load(export.export(model, {str(tmp_path / "fused.keras")!r}))
    np.testing.assert_allclose(evaluate.predict(loaded, x, tta="d4", metadata=m), proba, atol=1e-5)
    print("OK")
    """
    path = os.pathsep.join(p for p in (str(PROJECT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]

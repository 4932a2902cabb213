"""Training: the study's stage plan, a real short fit, resume, balanced data, MirroredStrategy, other backends."""

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from skinlib import models, recipes, train

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_session():
    keras.backend.clear_session()
    yield
    keras.backend.clear_session()


def _learnable(n=56, size=16, seed=0):
    """Images whose brightness tells their class."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 7
    x = (rng.integers(0, 40, (n, size, size, 3)) + (y * 30)[:, None, None, None]).astype("uint8")
    return {"train": (x, y), "val": (x[: n // 2], y[: n // 2])}


class _StopAfter(keras.callbacks.Callback):
    """Simulates an interruption after ``epochs`` finished epochs (after skinlib saved its checkpoint)."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


class _CountEpochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.count = 0

    def on_epoch_end(self, epoch, logs=None):
        self.count += 1


def _stage(layers="all", epochs=2, **changes):
    from dataclasses import replace

    from skinlib import study

    return replace(study.Stage(layers, epochs, 1e-3, False, "none"), **changes)


def test_stages_come_from_the_study():
    from skinlib import study

    assert [(s.layers, s.epochs) for s in study.stages("05")] == [("head", 3), ("top", 25), ("top", 5)]
    assert study.stages("05")[2].continues and study.stages("05")[2].plateau.patience == 2
    assert [(s.layers, s.epochs) for s in study.stages("08", epochs=1)] == [("head", 1), ("all", 1)]
    with pytest.raises(ValueError, match="epochs=0"):
        study.stages("08", epochs=0)


@pytest.mark.slow
def test_short_fit_on_real_images_lowers_the_loss(real_data, tmp_path):
    from skinlib import data

    meta = data.subset(data.load_metadata(real_data, images="images_200x150"), 280, seed=0)
    images = data.load_images(meta, size=(32, 32), progress=False)
    labels = meta["label"].to_numpy()
    model = models.build("baseline", input_shape=(32, 32, 3), weights=None, preprocess="standardize")
    models.preprocess_of(model).adapt(images)
    history = train.fit(model, {"train": (images, labels), "val": (images[::4], labels[::4])}, "study",
                        _stage(epochs=6), batch_size=32, out_dir=tmp_path, verbose=0)
    assert list(history.columns) == list(train.HISTORY_COLUMNS)
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5, 6] and set(history["layers"]) == {"all"}
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    logged = pd.read_csv(tmp_path / "stage1_all" / "history.csv")
    np.testing.assert_allclose(logged["loss"], history["loss"])
    # saved weights rebuild a model that predicts: the mean and std travel beside them (preprocess.json)
    again = models.build("baseline", (32, 32, 3), weights=tmp_path / "stage1_all" / "last.weights.h5",
                         preprocess="standardize")
    np.testing.assert_allclose(again.predict(images[:8], verbose=0), model.predict(images[:8], verbose=0), rtol=1e-5)


def test_weights_without_their_statistics_say_how_to_restore_them(tmp_path):
    model = models.build("baseline", (16, 16, 3), weights=None, preprocess="standardize")
    models.preprocess_of(model).adapt(_learnable()["train"][0])
    model.save_weights(tmp_path / "alone.weights.h5")
    bare = models.build("baseline", (16, 16, 3), weights=tmp_path / "alone.weights.h5", preprocess="standardize")
    with pytest.raises(ValueError, match="preprocess.json"):
        bare.predict(_learnable()["train"][0][:2], verbose=0)


def test_resume_continues_from_the_saved_epoch(tmp_path):
    data = _learnable()
    model = models.build("baseline", input_shape=(16, 16, 3), weights=None, preprocess="unit")
    with pytest.raises(KeyboardInterrupt):
        train.fit(model, data, "study", _stage(epochs=4), batch_size=8, out_dir=tmp_path, verbose=0,
                  callbacks=[_StopAfter(2)])
    assert len(pd.read_csv(tmp_path / "stage1_all" / "history.csv")) == 2

    keras.backend.clear_session()
    fresh = models.build("baseline", input_shape=(16, 16, 3), weights=None, preprocess="unit")  # a new process
    counter = _CountEpochs()
    history = train.fit(fresh, data, "study", _stage(epochs=4), batch_size=8, out_dir=tmp_path, verbose=0,
                        resume=True, callbacks=[counter])
    assert counter.count == 2  # only the missing epochs ran
    assert history["epoch"].tolist() == [1, 2, 3, 4] and history["stage_epoch"].tolist() == [1, 2, 3, 4]
    assert history["loss"].iloc[2] < history["loss"].iloc[0]  # epoch 3 continues where epoch 2 ended
    # a finished stage is skipped on resume: its weights are loaded, no epoch runs
    counter = _CountEpochs()
    again = train.fit(fresh, data, "study", _stage(epochs=4), batch_size=8, out_dir=tmp_path, verbose=0,
                      resume=True, callbacks=[counter])
    assert counter.count == 0 and again["epoch"].tolist() == [1, 2, 3, 4]


@pytest.mark.slow
def test_two_stages_freeze_then_unfreeze_and_merge_history(tmp_path):
    from skinlib import augment, study

    data = _learnable(28, 32)
    recipe = recipes.get("study")
    row = study.get("03")
    head, top = study.stages("03", epochs=1)
    top = top.__class__(**{**top.__dict__, "epochs": 2})
    model = models.build("vgg16", input_shape=(32, 32, 3), weights=None, preprocess=recipe.preprocess_for(row))
    augmentation = augment.pipeline(recipe.augment_for(row), (32, 32, 3), seed=0)
    first_conv = model.get_layer("block1_conv1").get_weights()[0].copy()
    last_conv = model.get_layer("block5_conv3").get_weights()[0].copy()
    models.set_trainable(model, "head", bn=recipe.bn_for(head))
    history = train.fit(model, data, recipe, head, batch_size=14, augmentation=augmentation, out_dir=tmp_path,
                        verbose=0)
    np.testing.assert_array_equal(model.get_layer("block5_conv3").get_weights()[0], last_conv)  # frozen
    models.set_trainable(model, "top", bn=recipe.bn_for(top))
    history = train.fit(model, data, recipe, top, batch_size=14, augmentation=augmentation, out_dir=tmp_path,
                        history=history, verbose=0)
    assert history[["stage", "layers", "stage_epoch"]].values.tolist() == [[1, "head", 1], [2, "top", 1],
                                                                          [2, "top", 2]]
    assert history["lr"].tolist() == [1e-4, 1e-4, 1e-4]  # float32 precision, shortest repr
    np.testing.assert_array_equal(model.get_layer("block1_conv1").get_weights()[0], first_conv)  # never unfrozen
    assert not np.array_equal(model.get_layer("block5_conv3").get_weights()[0], last_conv)  # "top" trained it
    assert {p.name for p in (tmp_path / "stage2_top").iterdir()} >= {"best.weights.h5", "last.weights.h5",
                                                                      "history.csv", "final.weights.h5"}
    assert_done_holds_the_weights(model, tmp_path / "stage2_top")  # the study's recipe: the last epoch's


def assert_done_holds_the_weights(model, folder):
    """The finished stage's file (a copy of the recipe's checkpoint) holds exactly the model's weights at the end,
    and no partial file is left beside it."""
    again = keras.models.clone_model(model)
    again.load_weights(folder / train.DONE)
    for mine, theirs in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    assert not list(folder.glob("partial.*"))


def test_continued_stage_keeps_the_optimizer_state():
    data = _learnable()
    model = models.build("baseline", input_shape=(16, 16, 3), weights=None, preprocess="unit")
    history = train.fit(model, data, "study", _stage(epochs=1), batch_size=8, verbose=0)
    optimizer = train._WRAPPERS[model][0].optimizer
    steps = int(keras.ops.convert_to_numpy(optimizer.iterations))
    history = train.fit(model, data, "study", _stage(epochs=1, continues=True), batch_size=8, history=history,
                        verbose=0)
    assert train._WRAPPERS[model][0].optimizer is optimizer
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 2 * steps
    assert history["stage"].tolist() == [1, 2]


def test_corrected_recipe_ends_with_the_best_weights(tmp_path):
    data = _learnable()
    model = models.build("baseline", input_shape=(16, 16, 3), weights=None, preprocess="unit")
    recipe = recipes.get("corrected").replace(restore_best=True, early_stopping=2, label_smoothing=0.1)
    history = train.fit(model, data, recipe, _stage(epochs=3), batch_size=8, out_dir=tmp_path, verbose="tqdm")
    best = models.build("baseline", (16, 16, 3), weights=tmp_path / "stage1_all" / "best.weights.h5",
                        preprocess="unit")
    x = data["val"][0]
    np.testing.assert_allclose(model.predict(x, verbose=0), best.predict(x, verbose=0), rtol=1e-5)
    assert_done_holds_the_weights(model, tmp_path / "stage1_all")
    assert history["val_loss"].min() == pytest.approx(
        keras.ops.convert_to_numpy(keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(
            keras.utils.to_categorical(data["val"][1], 7), model.predict(x, verbose=0))), rel=1e-3)


def test_balanced_batches_and_class_weights():
    y = np.array([5] * 90 + [0] * 10)
    x = np.zeros((100, 2, 2, 3), dtype="uint8")
    drawn = np.argmax(train.BalancedBatches(x, y, batch_size=100, seed=0)[0][1], axis=1)
    assert 30 < np.sum(drawn == 0) < 70  # about half, not a tenth
    weights = train.balanced_class_weight(y)
    assert weights[0] == pytest.approx(5.0) and weights[5] == pytest.approx(100 / 180)


def test_fit_rejects_bad_input(tmp_path):
    data = _learnable()
    model = models.build("baseline", input_shape=(16, 16, 3), weights=None, preprocess="unit")
    stage = _stage()
    with pytest.raises(ValueError, match=r"the model expects \(N, \*\(16, 16, 3\)\)"):
        train.fit(model, {"train": (data["train"][0][:, :8], data["train"][1]), "val": data["val"]}, "study", stage,
                  batch_size=8)
    with pytest.raises(ValueError, match="ints in 0..6"):
        train.fit(model, {"train": (data["train"][0], data["train"][1] + 7), "val": data["val"]}, "study", stage,
                  batch_size=8)
    with pytest.raises(ValueError, match='"train"'):
        train.fit(model, (data["train"], data["val"]), "study", stage, batch_size=8)
    with pytest.raises(ValueError, match="accepted values: study, corrected"):
        train.fit(model, data, "fast", stage, batch_size=8)
    with pytest.raises(ValueError, match="needs the out_dir"):
        train.fit(model, data, "study", stage, batch_size=8, resume=True)
    with pytest.raises(ValueError, match="mixed_precision=True"):
        train.fit(model, data, "study", stage, batch_size=8, mixed_precision=True)
    with pytest.raises(ValueError, match="batch_size=None"):
        train.fit(model, data, "study", stage, batch_size=None)
    standardized = models.build("baseline", input_shape=(16, 16, 3), weights=None, preprocess="standardize")
    with pytest.raises(ValueError, match="adapt"):
        train.fit(standardized, data, "study", stage, batch_size=8)


def _run_python(code: str, env_extra: dict, timeout=300) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (str(PROJECT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2", **env_extra}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=timeout)


_TINY_FIT = """
    import numpy as np
    from skinlib import models, study, train
    rng = np.random.default_rng(0)
    y = np.arange(28) % 7
    x = (rng.integers(0, 40, (28, 16, 16, 3)) + (y * 30)[:, None, None, None]).astype("uint8")
    data = {"train": (x, y), "val": (x, y)}
    stage = study.Stage("all", 2, 1e-3, False, "none")
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus():
    code = """
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    """ + _TINY_FIT + """
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    try:
        train.fit(models.build("baseline", (16, 16, 3), weights=None, preprocess="unit"), data, "study", stage,
                  batch_size=8, strategy=strategy)
    except ValueError as error:
        assert "strategy.scope()" in str(error)
    else:
        raise AssertionError("a model built outside the strategy was accepted")
    with strategy.scope():
        model = models.build("baseline", (16, 16, 3), weights=None, preprocess="unit")
    history = train.fit(model, data, "study", stage, batch_size=8, strategy=strategy, verbose=0)
    assert strategy.num_replicas_in_sync == 2
    assert type(model.weights[0].value).__name__ == "MirroredVariable", type(model.weights[0].value)
    assert len(history) == 2 and history["loss"].notna().all()
    print("OK")
    """
    result = _run_python(code, {"KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_jax_backend_builds_and_trains_the_baseline():
    code = _TINY_FIT + """
    import keras
    assert keras.backend.backend() == "jax"
    model = models.build("baseline", (16, 16, 3), weights=None, preprocess="unit")
    history = train.fit(model, data, "study", stage, batch_size=8, verbose=0)
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert model.predict(x[:2], verbose=0).shape == (2, 7)
    print("OK")
    """
    result = _run_python(code, {"KERAS_BACKEND": "jax"})
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_balanced_accuracy_metric_equals_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 200)  # classes 5 and 6 absent, as in a small validation set
    proba = rng.dirichlet(np.ones(7), 200)
    metric = train.BalancedAccuracy()
    for start in range(0, 200, 64):  # accumulated over batches, as Keras evaluates
        metric.update_state(keras.utils.to_categorical(y[start:start + 64], 7), proba[start:start + 64])
    assert float(metric.result()) == pytest.approx(balanced_accuracy_score(y, proba.argmax(axis=1)), abs=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_balanced_accuracy_metric_uses_sample_weight():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 7, 150)
    proba = rng.dirichlet(np.ones(7), 150)
    weight = rng.integers(0, 4, 150).astype("float32")  # integer weights: rows repeated, some left out
    metric = train.BalancedAccuracy()
    for start in range(0, 150, 64):
        batch = slice(start, start + 64)
        metric.update_state(keras.utils.to_categorical(y[batch], 7), proba[batch], sample_weight=weight[batch])
    expected = balanced_accuracy_score(y, proba.argmax(axis=1), sample_weight=weight)
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    assert expected != pytest.approx(balanced_accuracy_score(y, proba.argmax(axis=1)), abs=1e-3)
    with pytest.raises(ValueError, match="sample_weight has 3 values for 64 samples"):
        metric.update_state(keras.utils.to_categorical(y[:64], 7), proba[:64], sample_weight=weight[:3])


class _SetRate(keras.callbacks.Callback):
    """Stands for a plateau that lowered the learning rate by the end of a stage."""

    def __init__(self, rate):
        super().__init__()
        self.rate = rate

    def on_train_end(self, logs=None):
        self.model.optimizer.learning_rate = self.rate


class _OptimizerAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        self.iterations = int(keras.ops.convert_to_numpy(optimizer.iterations))
        self.rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def test_a_continued_stage_resumed_in_a_new_process_keeps_the_optimizer_state(tmp_path):
    data = _learnable()
    model = models.build("baseline", input_shape=(16, 16, 3), weights=None, preprocess="unit")
    train.fit(model, data, "study", _stage(epochs=1), batch_size=8, out_dir=tmp_path, verbose=0,
              callbacks=[_SetRate(2.5e-4)])
    steps = int(keras.ops.convert_to_numpy(train._WRAPPERS[model][0].optimizer.iterations))
    moments = [np.array(v) for v in train._WRAPPERS[model][0].optimizer.variables[2:]]

    keras.backend.clear_session()  # a new process: stage 1 is skipped on resume, stage 2 continues its optimizer
    fresh = models.build("baseline", input_shape=(16, 16, 3), weights=None, preprocess="unit")
    history = train.fit(fresh, data, "study", _stage(epochs=1), batch_size=8, out_dir=tmp_path, verbose=0,
                        resume=True)
    seen = _OptimizerAtStart()
    train.fit(fresh, data, "study", _stage(epochs=1, continues=True), batch_size=8, out_dir=tmp_path,
              history=history, verbose=0, resume=True, callbacks=[seen])
    assert (seen.iterations, seen.rate) == (steps, pytest.approx(2.5e-4))
    restored = train._WRAPPERS[fresh][0].optimizer
    assert int(keras.ops.convert_to_numpy(restored.iterations)) == 2 * steps
    assert len(restored.variables) == len(moments) + 2

    keras.backend.clear_session()  # another out_dir, without the saved state: a warning and a fresh optimizer
    alone = models.build("baseline", input_shape=(16, 16, 3), weights=None, preprocess="unit")
    seen = _OptimizerAtStart()
    with pytest.warns(UserWarning, match="optimizer.npz is missing: it starts a fresh optimizer"):
        train.fit(alone, data, "study", _stage(epochs=1, continues=True), batch_size=8, out_dir=tmp_path / "other",
                  history=history, verbose=0, callbacks=[seen])
    assert seen.iterations == 0

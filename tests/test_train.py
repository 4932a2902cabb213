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

from skinlib import backbones, models, recipes, train

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


def test_plan_follows_the_studys_table():
    seed = recipes.get("seed")
    vgg = train.plan(backbones.get("vgg16"), seed)
    assert [(s.name, s.epochs) for s in vgg] == [("head", 3), ("top", 30)]
    assert vgg[0].optimizer.amsgrad and vgg[0].optimizer.learning_rate == 1e-4 and vgg[0].plateau is None
    assert (vgg[1].plateau.factor, vgg[1].plateau.patience, vgg[1].plateau.min_lr) == (0.5, 3, 1e-6)
    irv2 = train.plan(backbones.get("inception_resnet_v2"), seed)
    assert [(s.name, s.epochs, s.recompile) for s in irv2] == [("head", 3, True), ("top", 25, True), ("top", 5, False)]
    assert (irv2[2].plateau.patience, irv2[2].plateau.cooldown) == (2, 1)
    assert [(s.name, s.epochs) for s in train.plan(backbones.get("inception_v3"), seed, "all")] == [
        ("head", 3), ("all", 20)
    ]
    assert [(s.name, s.epochs) for s in train.plan(backbones.get("baseline"), seed)] == [("all", 30)]
    assert [(s.name, s.epochs) for s in train.plan(backbones.get("densenet201"), seed, epochs=1)] == [
        ("head", 1), ("top", 1)
    ]
    with pytest.raises(ValueError, match="accepted values: top, all"):
        train.plan(backbones.get("vgg16"), seed, "bottom")
    with pytest.raises(ValueError, match="one stage"):
        train.plan(backbones.get("baseline"), seed, "top")


@pytest.mark.slow
def test_short_fit_on_real_images_lowers_the_loss(real_data, tmp_path):
    from skinlib import data

    meta = data.subset(data.load_metadata(real_data, images="images_200x150"), 280, seed=0)
    images = data.load_images(meta, size=(32, 32), progress=False)
    labels = meta["label"].to_numpy()
    model = models.build("baseline", input_shape=(32, 32, 3), weights=None)
    history = train.fit(
        model, {"train": (images, labels), "val": (images[::4], labels[::4])}, "seed",
        out_dir=tmp_path, epochs=6, batch_size=32, verbose=0,
    )
    assert list(history.columns) == list(train.HISTORY_COLUMNS)
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5, 6] and set(history["stage"]) == {"all"}
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "history.csv"), history, check_dtype=False)
    # the saved weights are the inference model's: models.build can load them
    pre = models.preprocess_of(model)
    again = models.build("baseline", (32, 32, 3), weights=tmp_path / "last.weights.h5", preprocess=pre)
    np.testing.assert_allclose(again.predict(images[:8], verbose=0), model.predict(images[:8], verbose=0), rtol=1e-5)


def test_resume_continues_from_the_saved_epoch(tmp_path):
    data = _learnable()
    model = models.build("baseline", input_shape=(16, 16, 3), weights=None)
    with pytest.raises(KeyboardInterrupt):
        train.fit(model, data, "seed", out_dir=tmp_path, epochs=4, batch_size=8, verbose=0,
                  callbacks=[_StopAfter(2)])
    assert len(pd.read_csv(tmp_path / "history.csv")) == 2

    keras.backend.clear_session()
    fresh = models.build("baseline", input_shape=(16, 16, 3), weights=None)  # a new process would do this
    counter = _CountEpochs()
    history = train.fit(fresh, data, "seed", out_dir=tmp_path, epochs=4, batch_size=8, verbose=0,
                        resume=True, callbacks=[counter])
    assert counter.count == 2  # only the missing epochs ran
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert history["stage_epoch"].tolist() == [1, 2, 3, 4]
    # the restored weights continue the run: epoch 3 starts near where epoch 2 ended
    assert history["loss"].iloc[2] < history["loss"].iloc[0]


@pytest.mark.slow
def test_two_stage_fit_freezes_then_unfreezes_and_merges_history(tmp_path):
    data = _learnable(28, 32)
    model = models.build("vgg16", input_shape=(32, 32, 3), weights=None)
    first_conv = model.get_layer("block1_conv1").get_weights()[0].copy()
    last_conv = model.get_layer("block5_conv3").get_weights()[0].copy()
    history = train.fit(model, data, "seed", epochs={"head": 1, "top": 2}, batch_size=14, verbose=0,
                        out_dir=tmp_path)
    assert history[["stage", "stage_epoch"]].values.tolist() == [["head", 1], ["top", 1], ["top", 2]]
    assert history["lr"].tolist() == [1e-4, 1e-4, 1e-4]  # stored at float32 precision, shortest repr
    np.testing.assert_array_equal(model.get_layer("block1_conv1").get_weights()[0], first_conv)  # never unfrozen
    assert not np.array_equal(model.get_layer("block5_conv3").get_weights()[0], last_conv)  # "top" trained it
    assert (tmp_path / "best.weights.h5").is_file() and (tmp_path / "last.weights.h5").is_file()


def test_corrected_recipe_ends_with_the_best_weights(tmp_path):
    data = _learnable()
    model = models.build("baseline", input_shape=(16, 16, 3), weights=None, preprocess="corrected")
    recipe = recipes.get("corrected").replace(balance="sampling", label_smoothing=0.1)
    history = train.fit(model, data, recipe, out_dir=tmp_path, epochs=3, batch_size=8, verbose="tqdm")
    best = models.build("baseline", (16, 16, 3), weights=tmp_path / "best.weights.h5",
                        preprocess=models.preprocess_of(model))
    x = data["val"][0]
    np.testing.assert_allclose(model.predict(x, verbose=0), best.predict(x, verbose=0), rtol=1e-5)
    assert history["val_loss"].min() == pytest.approx(
        keras.ops.convert_to_numpy(keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(
            keras.utils.to_categorical(data["val"][1], 7), model.predict(x, verbose=0))), rel=1e-3)


def test_batches_balance_classes_and_weight_samples():
    y = np.array([5] * 90 + [0] * 10)
    x = np.zeros((100, 2, 2, 3), dtype="uint8")
    balanced = train.TrainBatches(x, y, batch_size=100, seed=0, balanced=True)
    drawn = np.argmax(balanced[0][1], axis=1)
    assert 30 < np.sum(drawn == 0) < 70  # about half, not a tenth
    weights = train.balanced_class_weight(y)
    assert weights[0] == pytest.approx(5.0) and weights[5] == pytest.approx(100 / 180)
    _, onehot, sample_weight = train.TrainBatches(x, y, batch_size=10, class_weight=weights)[0]
    np.testing.assert_allclose(sample_weight, [weights[int(c)] for c in np.argmax(onehot, axis=1)])


def test_fit_rejects_bad_input(tmp_path):
    data = _learnable()
    model = models.build("baseline", input_shape=(16, 16, 3), weights=None)
    with pytest.raises(ValueError, match=r"the model expects \(N, \*\(16, 16, 3\)\)"):
        train.fit(model, {"train": (data["train"][0][:, :8], data["train"][1]), "val": data["val"]}, "seed")
    with pytest.raises(ValueError, match="ints in 0..6"):
        train.fit(model, {"train": (data["train"][0], data["train"][1] + 7), "val": data["val"]}, "seed")
    with pytest.raises(ValueError, match='"train"'):
        train.fit(model, (data["train"], data["val"]), "seed")
    with pytest.raises(ValueError, match="accepted values: seed, corrected"):
        train.fit(model, data, "fast")
    with pytest.raises(ValueError, match="needs the out_dir"):
        train.fit(model, data, "seed", resume=True)
    with pytest.raises(ValueError, match="mixed_precision=True"):
        train.fit(model, data, "seed", mixed_precision=True)


def _run_python(code: str, env_extra: dict, timeout=300) -> subprocess.CompletedProcess:
    path = os.pathsep.join(p for p in (str(PROJECT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2", **env_extra}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=timeout)


_TINY_FIT = """
    import numpy as np
    from skinlib import models, train
    rng = np.random.default_rng(0)
    y = np.arange(28) % 7
    x = (rng.integers(0, 40, (28, 16, 16, 3)) + (y * 30)[:, None, None, None]).astype("uint8")
    data = {"train": (x, y), "val": (x, y)}
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
        train.fit(models.build("baseline", (16, 16, 3), weights=None), data, "seed", strategy=strategy)
    except ValueError as error:
        assert "strategy.scope()" in str(error)
    else:
        raise AssertionError("a model built outside the strategy was accepted")
    with strategy.scope():
        model = models.build("baseline", (16, 16, 3), weights=None)
    history = train.fit(model, data, "seed", epochs=2, batch_size=8, strategy=strategy, verbose=0)
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
    model = models.build("baseline", (16, 16, 3), weights=None)
    history = train.fit(model, data, "seed", epochs=3, batch_size=8, verbose=0)
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert model.predict(x[:2], verbose=0).shape == (2, 7)
    print("OK")
    """
    result = _run_python(code, {"KERAS_BACKEND": "jax"})
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]

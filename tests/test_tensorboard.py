"""TensorBoard logs: Keras' TensorBoard callback per stage and the run's settings as an HParams record, so that
``tensorboard --logdir <out>`` compares a sweep's runs."""

from dataclasses import replace

import keras
import numpy as np
import pytest

from skinlib import models, settings, study, tensorboard_logs, train

pytestmark = pytest.mark.skipif(not tensorboard_logs.available(), reason="TensorBoard logs need TensorFlow")


def _events(folder):
    """{tag: [values]} of every event file directly in ``folder``, and the plugins named."""
    import tensorflow as tf

    tags, plugins = {}, set()
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                plugins.add(value.metadata.plugin_data.plugin_name)
                tags.setdefault(value.tag, []).append(value)
    return tags, plugins


def test_each_stage_logs_its_epochs_and_the_run_its_hparams_once(tmp_path):
    keras.backend.clear_session()
    rng = np.random.default_rng(0)
    labels = np.arange(28) % 7
    images = (rng.integers(0, 40, (28, 16, 16, 3)) + (labels * 30)[:, None, None, None]).astype("uint8")
    data = {"train": (images, labels), "val": (images[:14], labels[:14])}
    run = settings.resolve("02", {"protocol": "grouped", "seed": 3, "image_size": [16, 16], "subset": 280,
                                  "out_dir": str(tmp_path)})
    assert run.tensorboard is True  # None resolves to on where TensorFlow is installed
    options = run.fit_options
    assert options["tensorboard"] == tmp_path / "tensorboard" / "02_baseline_cnn"
    model = models.build("baseline", (16, 16, 3), weights=None, preprocess="unit")
    stage = replace(study.Stage("all", 2, 1e-3, False, "none"))
    history = None
    for _ in range(2):  # two stages; the second must not write a second HParams record
        history = train.fit(model, data, "study", stage, batch_size=14, out_dir=tmp_path / "training", verbose=0,
                            history=history, tensorboard=options["tensorboard"], hparams=run.hparams)
    log_dir = options["tensorboard"]
    tags, plugins = _events(log_dir)
    assert "hparams" in plugins and len(tags["_hparams_/session_start_info"]) == 1
    start = tags["_hparams_/session_start_info"][0]
    from tensorboard.plugins.hparams import plugin_data_pb2

    info = plugin_data_pb2.HParamsPluginData.FromString(start.metadata.plugin_data.content).session_start_info
    assert info.hparams["protocol"].string_value == "grouped" and info.hparams["seed"].number_value == 3
    assert info.hparams["notebook"].string_value == "02_baseline_cnn"
    for stage_dir in ("stage1_all", "stage2_all"):
        for part in ("train", "validation"):
            logged, _ = _events(log_dir / stage_dir / part)
            assert len(logged["epoch_loss"]) == 2, (stage_dir, part, sorted(logged))


def test_tensorboard_true_without_tensorflow_says_what_to_do(monkeypatch):
    monkeypatch.setattr(tensorboard_logs, "available", lambda: False)
    assert settings.resolve("02", {}).tensorboard is False  # None: off, silently, where TensorFlow is absent
    with pytest.raises(settings.SettingsError, match="tensorboard=True .*pip install tensorflow tensorboard, or give False"):
        settings.resolve("02", {"tensorboard": True})

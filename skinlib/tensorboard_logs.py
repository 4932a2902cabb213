"""TensorBoard logs of a run: Keras' own ``TensorBoard`` callback per training stage, and the run's settings as
TensorBoard's HParams record, so that ``tensorboard --logdir <out>`` compares every run of a sweep side by side.

::

    train.fit(..., tensorboard=run.folder.tensorboard, hparams=run.hparams)   # what run.fit_options passes

Layout: ``<log_dir>/`` holds the HParams record of the run (one TensorBoard "session"); each stage writes its
epochs under ``<log_dir>/stage<k>_<layers>/{train,validation}``. Both use TensorFlow's summary writer: without
TensorFlow and ``tensorboard`` installed (e.g. ``KERAS_BACKEND=jax`` alone) the notebooks' ``tensorboard=None`` resolves to off.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Mapping


def available() -> bool:
    """Whether TensorFlow's summary writer (which Keras' TensorBoard callback uses) and the ``tensorboard`` package
    (its HParams plugin; TensorFlow 2.21 does not install it) are installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "tensorboard"))


def callback(log_dir: str | Path, stage: str):
    """Keras' ``TensorBoard`` callback writing one stage's epochs under ``<log_dir>/<stage>``."""
    import keras

    return keras.callbacks.TensorBoard(log_dir=str(Path(log_dir) / stage), write_graph=False, profile_batch=0)


def hparams_values(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as HParams accepts them: bools, numbers and strings kept, None as "None", anything else its text."""
    return {name: value if isinstance(value, (bool, int, float, str)) else str(value)
            for name, value in settings.items()}


def write_hparams(log_dir: str | Path, hparams: Mapping[str, Any]) -> Path:
    """Writes the run's HParams record (``tensorboard.plugins.hparams.api.hparams``) into ``log_dir``, once: a
    resumed run finds it there and writes no second one."""
    log_dir = Path(log_dir)
    if list(log_dir.glob("events.out.tfevents.*")):
        return log_dir
    import tensorflow as tf
    from tensorboard.plugins.hparams import api

    log_dir.mkdir(parents=True, exist_ok=True)
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        api.hparams(hparams_values(hparams), trial_id=log_dir.as_posix())
    writer.close()
    return log_dir

"""BatchNormalization modes: the one vocabulary of the study's rows, the recipes and ``models.set_trainable``.

:data:`MODES` names what every BatchNormalization layer of a backbone does during a stage. The study's rows
(``skinlib.study``) give each stage's mode; a recipe keeps it (``bn="study"``) or replaces it with one of these
(``bn="frozen"``); ``models.set_trainable(model, stage)`` applies it. Nothing here imports Keras until a layer is
changed, so the study's table and the recipes stay light.
"""

from __future__ import annotations

import numpy as np

MODES = ("frozen", "train", "reset", "keras2_frozen", "none")
"""- "frozen": inference mode (moving statistics used and kept; gamma, beta fixed): Keras 3's frozen BN.
- "train": trainable (batch statistics while training, moving statistics updated).
- "reset": "train", with the moving mean and variance first set to zero: the study's README workaround (its
  partial fine-tuning notebooks, before the head stage).
- "keras2_frozen": Keras 2.2.4's frozen BN, which the study's full retrains ran on in their head stage: batch
  statistics while training, moving statistics, gamma and beta kept (the layer runs in training mode with
  momentum 1 and its gamma and beta not trainable).
- "none": the model has no BN (it is an error if it has)."""


def check(mode: str, what: str = "bn") -> str:
    """``mode`` if it is one of :data:`MODES`, else a ValueError naming ``what`` and the accepted modes."""
    if mode not in MODES:
        raise ValueError(f"unknown {what} mode {mode!r}; accepted values: {', '.join(MODES)}")
    return mode


def apply(layer, mode: str, key: str) -> None:
    """Puts one ``keras.layers.BatchNormalization`` of model ``key`` into ``mode``."""
    import keras

    if mode == "none":
        raise ValueError(f"{key!r} has BatchNormalization layers: choose a bn mode among {', '.join(MODES[:4])}")
    layer.trainable = mode != "frozen"
    layer.momentum = 1.0 if mode == "keras2_frozen" else keras.layers.BatchNormalization().momentum
    for variable in (layer.gamma, layer.beta):
        if variable is not None:
            variable.trainable = mode in ("train", "reset")  # after layer.trainable, which sets them too
    if mode == "reset":
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, dtype="float32"))
        layer.moving_variance.assign(np.zeros(layer.moving_variance.shape, dtype="float32"))


def state(layers) -> dict[str, int]:
    """How many of ``layers`` (BatchNormalization layers) are trainable, run on batch statistics without updates
    (keras2_frozen), and have all-zero moving means: for tests and notebooks that show a stage's BN action."""
    import keras

    layers = list(layers)
    return {"bn_layers": len(layers),
            "trainable": sum(layer.trainable for layer in layers),
            "keras2_frozen": sum(layer.trainable and layer.momentum == 1.0 for layer in layers),
            "zeroed": sum(not np.any(keras.ops.convert_to_numpy(layer.moving_mean)) for layer in layers)}

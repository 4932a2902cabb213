"""Training-time augmentation as Keras preprocessing layers (never the removed ImageDataGenerator).

``pipeline(name, input_shape, seed)`` returns a ``keras.Sequential`` of random layers that act only when
called with ``training=True``; ``skinlib.train.fit`` puts it in front of the model, so augmentation runs inside
the training step on the accelerator, in every Keras backend, and never at inference.

Pipelines (the recipes pick them by name):

- ``"seed"``: the study's ImageDataGenerator(rotation_range=60, width/height_shift_range=0.2,
  shear_range=0.2, zoom_range=0.2, fill_mode="nearest"), no flips. ImageDataGenerator's ``shear_range`` is
  an angle in DEGREES, so 0.2 is a shear factor of tan(0.2 deg) = 0.0035: kept for fidelity, though tiny.
- ``"seed_baseline"``: the study's baseline CNN: rotation up to 40 degrees and horizontal flips.
- ``"corrected"``: flips both ways and 90-degree rotations (dermoscopy has no "up"), plus the study's
  geometric jitter, with reflected (not smeared) borders.
- ``"none"``: no augmentation.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from skinlib.errors import SkinlibError

PIPELINES = ("seed", "seed_baseline", "corrected", "none")

SEED_SHEAR = math.tan(math.radians(0.2))  # ImageDataGenerator(shear_range=0.2) is 0.2 degrees


class AugmentError(SkinlibError, ValueError):
    """An unknown augmentation pipeline."""


@keras.saving.register_keras_serializable(package="skinlib")
class RandomRot90(keras.layers.Layer):
    """Rotates each image by a random multiple of 90 degrees while training (square images only).

    A non-square image cannot turn by 90 degrees without changing shape, so for those the layer only
    rotates by 0 or 180 degrees (which flips in both directions already cover).
    """

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        if not training:
            return inputs
        batch = ops.shape(inputs)[0]
        square = inputs.shape[1] is not None and inputs.shape[1] == inputs.shape[2]
        turns = 4 if square else 2
        k = keras.random.randint((batch, 1, 1, 1), 0, turns, seed=self.seed_generator)
        if not square:
            k = k * 2
        rot180 = ops.flip(ops.flip(inputs, axis=1), axis=2)
        out = ops.where(k == 2, rot180, inputs)
        if square:
            rot90 = ops.flip(ops.transpose(inputs, (0, 2, 1, 3)), axis=1)  # counter-clockwise
            rot270 = ops.flip(ops.transpose(inputs, (0, 2, 1, 3)), axis=2)
            out = ops.where(k == 1, rot90, out)
            out = ops.where(k == 3, rot270, out)
        return out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(seed=self.seed)
        return config


def _geometric(rotation_degrees: float, shift: float, zoom: float, shear: float, fill_mode: str, seed):
    """The study's affine jitter, as Keras layers."""
    return [
        keras.layers.RandomRotation(rotation_degrees / 360.0, fill_mode=fill_mode, seed=seed),
        keras.layers.RandomTranslation(shift, shift, fill_mode=fill_mode, seed=None if seed is None else seed + 1),
        keras.layers.RandomShear(x_factor=shear, fill_mode=fill_mode, seed=None if seed is None else seed + 2),
        keras.layers.RandomZoom(zoom, zoom, fill_mode=fill_mode, seed=None if seed is None else seed + 3),
    ]


def pipeline(name: str, input_shape=None, seed: int | None = None) -> keras.Sequential:
    """The augmentation pipeline ``name`` (one of :data:`PIPELINES`) as a ``keras.Sequential``.

    ``input_shape`` (height, width, channels) builds it eagerly; ``seed`` makes it reproducible.
    """
    offset = (lambda i: None) if seed is None else (lambda i: seed + 10 * i)
    if name == "seed":
        layers = _geometric(60, 0.2, 0.2, SEED_SHEAR, "nearest", offset(0))
    elif name == "seed_baseline":
        layers = [
            keras.layers.RandomRotation(40 / 360.0, fill_mode="nearest", seed=offset(0)),
            keras.layers.RandomFlip("horizontal", seed=offset(1)),
        ]
    elif name == "corrected":
        layers = [
            keras.layers.RandomFlip("horizontal_and_vertical", seed=offset(0)),
            RandomRot90(seed=offset(1)),
            *_geometric(60, 0.2, 0.2, SEED_SHEAR, "reflect", offset(2)),
        ]
    elif name == "none":
        layers = [keras.layers.Identity()]
    else:
        raise AugmentError(f"unknown augmentation pipeline {name!r}; accepted values: {', '.join(PIPELINES)}")
    model = keras.Sequential(layers, name=f"augment_{name}")
    if input_shape is not None:
        model.build((None, *input_shape))
    return model

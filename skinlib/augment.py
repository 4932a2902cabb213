"""Training-time augmentation as Keras preprocessing layers (never the removed ImageDataGenerator).

``pipeline(spec, input_shape, seed)`` returns a ``keras.Sequential`` of random layers that act only when called
with ``training=True``; ``skinlib.train.fit`` puts it in front of the model, so augmentation runs inside the
training step, in every Keras backend, and never at inference. ``spec`` is either

- a ``skinlib.study.Augmentation``: the study's ``ImageDataGenerator`` arguments of that notebook, as layers
  (rotation, shifts, shear, zoom, optional horizontal flip, the same fill mode). ``ImageDataGenerator`` read
  ``shear_range`` in DEGREES, so the study's 0.2 is a shear factor of tan(0.2 deg) = 0.0035: kept, though tiny;
  ``recipes.CORRECTED_AUGMENTATION`` is such a record too: flips both ways, plus 90-degree turns of square
  inputs, since dermoscopy has no "up"; then the study's geometric jitter with reflected borders;
- or ``"none"``.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from skinlib.errors import SkinlibError

PIPELINES = ("corrected", "none")


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


def _geometric(spec, seed) -> list:
    """A ``study.Augmentation``'s affine jitter (ImageDataGenerator's), as Keras layers, seeded from ``seed``."""
    def offset(i):
        return None if seed is None else seed + i

    fill = spec.fill_mode
    return [
        keras.layers.RandomRotation(spec.rotation_range / 360.0, fill_mode=fill, seed=offset(0)),
        keras.layers.RandomTranslation(spec.height_shift_range, spec.width_shift_range, fill_mode=fill,
                                       seed=offset(1)),
        keras.layers.RandomShear(x_factor=math.tan(math.radians(spec.shear_range)), fill_mode=fill, seed=offset(2)),
        keras.layers.RandomZoom(spec.zoom_range, spec.zoom_range, fill_mode=fill, seed=offset(3)),
    ]


def pipeline(spec, input_shape=None, seed: int | None = None) -> keras.Sequential:
    """The augmentation for ``spec``: a ``study.Augmentation`` record, "corrected" (``recipes.CORRECTED_AUGMENTATION``)
    or "none".

    The study's records (``ImageDataGenerator``) jitter, then flip horizontally if they say so. A record with
    vertical flips or 90-degree turns (``recipes.CORRECTED_AUGMENTATION``) flips and turns first, then jitters.
    ``input_shape`` (height, width, channels) builds it eagerly; ``seed`` makes it reproducible.
    """
    def offset(i):
        return None if seed is None else seed + 10 * i

    if spec == "corrected":  # the corrected recipe's record, by name
        from skinlib.recipes import CORRECTED_AUGMENTATION

        spec = CORRECTED_AUGMENTATION
    if hasattr(spec, "rotation_range") and (spec.vertical_flip or spec.rot90):
        mode = "horizontal_and_vertical" if spec.horizontal_flip else "vertical"
        layers = [keras.layers.RandomFlip(mode, seed=offset(0))]
        layers += [RandomRot90(seed=offset(1))] if spec.rot90 else []
        layers += _geometric(spec, offset(2))
        name = "dermoscopy"
    elif hasattr(spec, "rotation_range"):  # the study's ImageDataGenerator settings
        layers = _geometric(spec, offset(0))
        if spec.horizontal_flip:
            layers.append(keras.layers.RandomFlip("horizontal", seed=offset(1)))
        name = "study"
    elif spec == "none":
        layers, name = [keras.layers.Identity()], spec
    else:
        raise AugmentError(f"unknown augmentation {spec!r}; give a study.Augmentation record (the study's, or "
                           f"recipes.CORRECTED_AUGMENTATION) or one of {', '.join(PIPELINES)}")
    model = keras.Sequential(layers, name=f"augment_{name}")
    if input_shape is not None:
        model.build((None, *input_shape))
    return model


def describe(augmentation: keras.Sequential) -> dict[str, object]:
    """What a pipeline does, read from its layers (degrees for rotation; factors otherwise)."""
    found: dict[str, object] = {}
    for layer in augmentation.layers:
        if isinstance(layer, keras.layers.RandomRotation):
            found["rotation_range"] = round(_upper(layer.factor) * 360.0, 6)
            found["fill_mode"] = layer.fill_mode
        elif isinstance(layer, keras.layers.RandomTranslation):
            found["width_shift_range"] = _upper(layer.width_factor)
            found["height_shift_range"] = _upper(layer.height_factor)
        elif isinstance(layer, keras.layers.RandomShear):
            found["shear_range"] = round(math.degrees(math.atan(_upper(layer.x_factor))), 6)
        elif isinstance(layer, keras.layers.RandomZoom):
            found["zoom_range"] = _upper(layer.width_factor)
        elif isinstance(layer, keras.layers.RandomFlip):
            found["horizontal_flip"] = "horizontal" in layer.mode
            found["vertical_flip"] = "vertical" in layer.mode
        elif isinstance(layer, RandomRot90):
            found["rot90"] = True
    found.setdefault("horizontal_flip", False)
    return found


def _upper(factor) -> float:
    """The upper bound of a Keras random layer's factor (a number or a (low, high) pair)."""
    return float(factor[1]) if isinstance(factor, (tuple, list)) else float(factor)

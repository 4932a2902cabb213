"""Metadata fusion, the Keras side: the metadata branch of a model and the inputs a fused model is fed.

``models.build(name, ..., metadata=("age", "sex", "localization"))`` gives a model with two inputs, ``"image"``
(raw pixels) and ``"metadata"`` (the vector of :mod:`skinlib.data.encoding`). The image's pooled features (the
head's ``head_pool``, or the baseline's ``head_flatten``) are concatenated (``head_concat``) with the embedding of
a small MLP on the metadata (``metadata_dense_1``, ``metadata_dense_2``: 64 ReLU units each), and the study's
head (dense 512, dropout 0.5, softmax) runs on both, as published fusion systems do (Gessert et al.'s ISIC 2019
entry; sklesion). The fields travel in the model: :class:`MetadataFields`, an identity layer on the metadata
input, holds them in its config, so an exported or reloaded model knows what it takes (:func:`fields_of`).

:func:`inputs` is what ``evaluate.predict``, ``gradcam`` and ``train.fit`` feed a model: the images alone for an
image-only model; ``{"image": images, "metadata": vectors}`` for a fused one, where missing metadata falls back
to the missing-value code (age unknown, sex and site "unknown": ``encoding.missing``).
"""

from __future__ import annotations

import keras
import numpy as np

from skinlib.data import encoding
from skinlib.errors import SkinlibError

IMAGE_INPUT = "image"
METADATA_INPUT = "metadata"
FIELDS_LAYER = "metadata_fields"
BRANCH_LAYERS = (FIELDS_LAYER, "metadata_dense_1", "metadata_dense_2", "head_concat")
"""The layers a fused model adds to the image-only one (they train with the head)."""
UNITS = 64


class FusionError(SkinlibError, ValueError):
    """Metadata given to a model that does not take it, or a fused model fed the wrong vectors."""


@keras.saving.register_keras_serializable(package="skinlib")
class MetadataFields(keras.layers.Layer):
    """Identity layer on the metadata input whose config names the encoded fields (saved in ``.keras`` files)."""

    def __init__(self, fields, **kwargs):
        kwargs.setdefault("name", FIELDS_LAYER)
        super().__init__(**kwargs)
        self.fields = list(encoding.check_fields(fields))

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "fields": list(self.fields)}


def branch(fields):
    """``(metadata input, embedding)``: the metadata vector of ``fields`` through the small MLP."""
    fields = encoding.check_fields(fields)
    vector = keras.Input(shape=(encoding.width(fields),), name=METADATA_INPUT)
    x = MetadataFields(fields)(vector)
    for k in (1, 2):
        x = keras.layers.Dense(UNITS, activation="relu", name=f"metadata_dense_{k}")(x)
    return vector, x


def fuse(pooled, fields):
    """``(metadata input, pooled image features concatenated with the metadata embedding)``."""
    vector, embedding = branch(fields)
    return vector, keras.layers.Concatenate(name="head_concat")([pooled, embedding])


def fields_of(model) -> tuple[str, ...]:
    """The metadata fields ``model`` takes (searching wrapped models too, e.g. an export); () for image only."""
    for layer in model.layers:
        if isinstance(layer, MetadataFields):
            return tuple(layer.fields)
        if isinstance(layer, keras.Model):
            inner = fields_of(layer)
            if inner:
                return inner
    return ()


def vectors(model, n: int, metadata=None) -> np.ndarray | None:
    """The (n, width) metadata vectors to feed ``model`` for ``n`` images, or None for an image-only model.

    ``metadata``: the vectors (``encoding.encode``), or None: the missing-value code for a fused model. Vectors
    given to an image-only model are refused (zero-width ones, ``encoding.encode(frame, None)``, are ignored)."""
    fields = fields_of(model)
    given = None if metadata is None else np.asarray(metadata, dtype=np.float32)
    if not fields:
        if given is not None and given.size and given.shape[-1] != 0:
            raise FusionError(f"metadata given, but model {model.name!r} takes images only (built with "
                              "metadata=None): drop the metadata, or build the model with metadata=[...fields]")
        return None
    if given is None:
        return encoding.missing(fields, n)
    expected = (n, encoding.width(fields))
    if given.shape != expected:
        raise FusionError(f"model {model.name!r} takes metadata vectors of shape {expected} (fields "
                          f"{', '.join(fields)}) for {n} images, got {given.shape}: encode them with "
                          f"data.metadata_vectors(parts, {list(fields)}) or encoding.encode(frame, fields)")
    return given


def inputs(model, images, metadata=None):
    """What to feed ``model``: ``images``, or ``{"image": images, "metadata": vectors}`` for a fused model
    (see :func:`vectors` for ``metadata``)."""
    found = vectors(model, len(images), metadata)
    return images if found is None else {IMAGE_INPUT: images, METADATA_INPUT: found}


def part_vectors(model, metadata, sizes: dict[str, int]) -> dict[str, np.ndarray | None]:
    """``{part: vectors}`` for the parts of ``sizes`` (``{"train": n, "val": n}``), checked as :func:`vectors`
    does, except that a fused model must be given them (training on the missing-value code alone is refused)."""
    fields = fields_of(model)
    if fields and metadata is None:
        raise FusionError(f"model {model.name!r} takes metadata ({', '.join(fields)}): pass metadata="
                          f"{{{', '.join(f'{part!r}: vectors' for part in sizes)}}} (data.metadata_vectors(parts, "
                          f"{list(fields)}))")
    if metadata is not None and any(part not in metadata for part in sizes):
        raise FusionError(f"metadata must have the parts {list(sizes)}, got {sorted(metadata)}")
    return {part: vectors(model, n, None if metadata is None else metadata[part]) for part, n in sizes.items()}

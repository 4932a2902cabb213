"""Input preprocessing as a Keras layer, so that a model takes raw 0..255 pixels (uint8 or float).

``Preprocess(mode)`` is the in-model equivalent of ``keras.applications.<net>.preprocess_input``::

    >>> layer = Preprocess("tf")
    >>> float(layer(np.full((1, 2, 2, 3), 255.0))[0, 0, 0, 0])
    1.0

Modes:

- ``"unit"``: x / 255 (the study's, which skipped the backbones' own preprocessing);
- ``"tf"``: x / 127.5 - 1 (Inception V3, Inception-ResNet V2);
- ``"caffe"``: RGB to BGR, minus the ImageNet BGR means (VGG16);
- ``"torch"``: x / 255, minus the ImageNet means, divided by their stds (DenseNet);
- ``"standardize"``: (x - mean) / std with ONE mean and ONE std of the pixels (the study's baseline, which took
  them over all 10,015 images; the corrected recipe over the training images); set them with ``mean=``/``std=``
  or :meth:`Preprocess.adapt`;
- ``"none"``: the raw values, as float.

The constants sit in the layer config, not in weights: the layer has no parameters, so a model's parameter
count stays the study's, and a saved ``.keras`` model restores the same preprocessing.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from skinlib.errors import SkinlibError

MODES = ("unit", "tf", "caffe", "torch", "standardize", "none")

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


class PreprocessError(SkinlibError, ValueError):
    """A preprocessing mode or constant that cannot be used."""


@keras.saving.register_keras_serializable(package="skinlib")
class Preprocess(keras.layers.Layer):
    """Maps raw 0..255 RGB pixels (NHWC) to a network's expected input range; no weights.

    Args:
        mode: one of :data:`MODES`.
        mean, std: the pixel mean and standard deviation for ``mode="standardize"`` (floats).
    """

    def __init__(self, mode: str = "unit", mean: float | None = None, std: float | None = None, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise PreprocessError(f"unknown preprocess mode {mode!r}; accepted values: {', '.join(MODES)}")
        if mode != "standardize" and (mean is not None or std is not None):
            raise PreprocessError(f"mean/std apply only to mode 'standardize', not {mode!r}")
        if std is not None and not float(std) > 0:
            raise PreprocessError(f"std must be positive, got {std!r}")
        self.mode = mode
        self.mean = None if mean is None else float(mean)
        self.std = None if std is None else float(std)

    @property
    def adapted(self) -> bool:
        """Whether the layer can run: always, except "standardize" before its mean/std are set."""
        return self.mode != "standardize" or (self.mean is not None and self.std is not None)

    def adapt(self, images) -> "Preprocess":
        """Sets mean and std (mode "standardize") from a uint8/float image array, or a list of arrays (e.g. the
        train, validation and test images, as the study did), without concatenating them."""
        if self.mode != "standardize":
            raise PreprocessError(f"adapt() applies only to mode 'standardize', not {self.mode!r}")
        arrays = [np.asarray(a) for a in images] if isinstance(images, (list, tuple)) else [np.asarray(images)]
        if sum(a.size for a in arrays) == 0:
            raise PreprocessError("adapt() needs at least one image")
        # float64 accumulation over uint8 pixels, chunked so that a 10,000-image array needs no float copy
        total = squares = count = 0.0
        for array in arrays:
            flat = array.reshape(len(array), -1)
            for start in range(0, len(flat), 512):
                chunk = flat[start : start + 512].astype(np.float64)
                total += chunk.sum()
                squares += np.square(chunk).sum()
                count += chunk.size
        mean = total / count
        std = float(np.sqrt(max(squares / count - mean * mean, 0.0)))
        self.mean, self.std = float(mean), std if std > 0 else 1.0
        return self

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=self.compute_dtype)
        if self.mode == "torch":
            mean = ops.convert_to_tensor(IMAGENET_MEAN_RGB, dtype=self.compute_dtype)
            std = ops.convert_to_tensor(IMAGENET_STD_RGB, dtype=self.compute_dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "standardize":
            if not self.adapted:
                raise PreprocessError(
                    "Preprocess('standardize') has no mean/std yet: call layer.adapt(train_images) or pass mean= and "
                    "std=. A model rebuilt with models.build(name, weights='<file>.weights.h5') takes them from the "
                    "preprocess.json that skinlib.train.fit writes beside its weights: keep the two files together"
                )
            return (x - self.mean) / self.std
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode, mean=self.mean, std=self.std)
        return config

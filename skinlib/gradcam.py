"""Grad-CAM: where in the image did the model look? And did it look at the lesion?

Grad-CAM (Selvaraju et al., 2017) weights each channel of a convolutional layer's output by the mean
gradient of the class score over that channel, sums them and keeps the positive part: a coarse map of
the regions that raised the score. Here the target layer defaults to the backbone's last convolutional
block (``skinlib.models.last_conv_layer_name``), and it may sit inside a *nested* backbone model, which
the usual recipe ``keras.Model(model.inputs, [model.get_layer(name).output, model.output])`` cannot
reach. The class score is the centred logit ``log p_c - mean_j log p_j``, recovered from the softmax
output (it does not saturate as the probability does).

    >>> heat = gradcam.gradcam(model, images)                 # (N, H, W) in 0..1, image-sized
    >>> picture = gradcam.overlay(images[0], heat[0])         # RGB uint8
    >>> gradcam.lesion_focus(heat[0], gradcam.load_mask(mask_path, heat[0].shape))

:func:`lesion_focus` is the share of the heat that falls on the official lesion segmentation: a model
that looks at rulers, ink or hair scores low.

How it works, backend-agnostically: the model is re-traced (sharing its layers and weights) with an
extra input ``delta`` added to the target layer's output; the gradient of the score with respect to
``delta`` at zero is the gradient with respect to the activations. Only that one gradient, of a
function with respect to an input, needs the backend's own API (:func:`input_gradient`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import keras
import numpy as np
from keras import ops
from PIL import Image

EPSILON = 1e-7


# ----------------------------------------------------------------------------------------------------
# The one backend-specific piece
# ----------------------------------------------------------------------------------------------------

def input_gradient(function: Callable, value: np.ndarray) -> np.ndarray:
    """The gradient of the scalar ``function(value)`` with respect to the array ``value``.

    ``function`` is written with ``keras.ops``; the differentiation uses the active backend's API.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensor = tf.convert_to_tensor(value)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            result = function(tensor)
        return np.asarray(tape.gradient(result, tensor))
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(function)(ops.convert_to_tensor(value)))
    if backend == "torch":
        tensor = ops.convert_to_tensor(value).detach().requires_grad_(True)
        function(tensor).backward()
        return tensor.grad.detach().cpu().numpy()
    raise NotImplementedError(f"Grad-CAM needs gradients, which the {backend!r} backend does not provide; "
                              f"use KERAS_BACKEND=tensorflow, jax or torch")


# ----------------------------------------------------------------------------------------------------
# Finding the target layer, also inside nested models
# ----------------------------------------------------------------------------------------------------

def _is_model(layer) -> bool:
    return isinstance(layer, keras.Model)


def _contains(model: keras.Model, target) -> bool:
    return any(layer is target or (_is_model(layer) and _contains(layer, target)) for layer in model.layers)


def find_layer(model: keras.Model, name: str):
    """The layer called ``name`` in ``model`` or in any model nested in it (depth first)."""
    for layer in model.layers:
        if layer.name == name:
            return layer
    for layer in model.layers:
        if _is_model(layer):
            try:
                return find_layer(layer, name)
            except ValueError:
                pass
    raise ValueError(f"no layer named {name!r} in model {model.name!r} or the models nested in it")


def last_conv_layer(model: keras.Model):
    """The layer Grad-CAM explains by default.

    ``skinlib.models.last_conv_layer_name`` when it knows the model (the backbone registry's
    ``last_conv_layer``), else the last layer, nested models included, whose output is a 4-D
    (N, H, W, C) feature map.
    """
    try:
        from skinlib import models

        return find_layer(model, models.last_conv_layer_name(model))
    except (ImportError, ValueError, KeyError):  # a model skinlib.models did not build: use the shapes
        pass
    for layer in reversed(model.layers):
        if _is_model(layer):
            try:
                return last_conv_layer(layer)
            except ValueError:
                continue
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if len(shape) == 4:
            return layer
    raise ValueError(f"model {model.name!r} has no layer with a 4-D output to explain; pass layer=...")


class GradCAM:
    """Grad-CAM for one model and target layer; reusable over many batches.

    Args:
        model: a Keras model outputting class probabilities.
        layer: the target layer, its name, or None for :func:`last_conv_layer`.
    """

    def __init__(self, model: keras.Model, layer=None):
        self.model = model
        self.layer = last_conv_layer(model) if layer is None else (
            find_layer(model, layer) if isinstance(layer, str) else layer)
        if not _contains(model, self.layer):
            raise ValueError(f"layer {self.layer.name!r} is not part of model {model.name!r}")
        if len(model.inputs) != 1:
            raise ValueError(f"Grad-CAM needs a model with one image input; {model.name!r} has {len(model.inputs)}")
        image = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype, name="gradcam_image")
        delta = keras.Input(batch_shape=self.layer.output.shape, name="gradcam_delta_input")
        activations, probabilities = self._trace(image, delta)
        self.features = keras.Model(image, activations, name="gradcam_features")
        self.traced = keras.Model([image, delta], probabilities, name="gradcam_traced")

    def _trace(self, image, delta):
        tap = {}
        target = self.layer

        def run(model, x):
            def call(layer, *args, **kwargs):
                if layer is target:
                    tap["activations"] = layer(*args, **kwargs)
                    return keras.layers.Add()([tap["activations"], delta])
                if _is_model(layer) and _contains(layer, target):
                    return run(layer, args[0])
                return layer(*args, **kwargs)

            if isinstance(model, keras.Sequential):
                for layer in model.layers:
                    if not isinstance(layer, keras.layers.InputLayer):
                        x = call(layer, x)
                return x
            # Re-run the functional graph on our tensors, reusing its layers: what keras.models.clone_model
            # does with clone_function=identity, minus building a Model (delta is not among its inputs).
            return model._run_through_graph(x, operation_fn=lambda layer: layer, call_fn=call)

        probabilities = run(self.model, image)
        if "activations" not in tap:
            raise ValueError(f"layer {target.name!r} is not reached when calling model {self.model.name!r}")
        return tap["activations"], probabilities

    def __call__(self, images, class_index=None, upsample: bool = True) -> np.ndarray:
        """Heatmaps (N, h, w) in 0..1 for ``images`` (N, H, W, 3, raw pixels as the model takes them).

        ``class_index``: an int, one int per image, or None for each image's predicted class.
        ``upsample``: resize the maps to the images' height and width (else the layer's own grid).
        """
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        image_tensor = ops.convert_to_tensor(images)
        activations = ops.convert_to_numpy(self.features(image_tensor))
        if class_index is None:
            probabilities = ops.convert_to_numpy(self.traced([image_tensor, ops.zeros_like(activations)]))
            class_index = probabilities.argmax(axis=1)
        classes = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (len(images),))
        n_classes = self.traced.output.shape[-1]
        selector = ops.convert_to_tensor(np.eye(n_classes, dtype="float32")[classes])

        def score(delta):
            log_p = ops.log(self.traced([image_tensor, delta]) + EPSILON)
            centred = log_p - ops.mean(log_p, axis=-1, keepdims=True)
            return ops.sum(centred * selector)

        gradients = input_gradient(score, activations.astype("float32"))
        weights = gradients.mean(axis=(1, 2), keepdims=True)
        maps = np.maximum((weights * activations).sum(axis=-1), 0.0)
        peaks = maps.max(axis=(1, 2), keepdims=True)
        maps = np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)
        if upsample:
            maps = np.stack([resize_map(m, images.shape[1:3]) for m in maps])
        return maps.astype(np.float32)


def gradcam(model: keras.Model, images, class_index=None, layer=None, upsample: bool = True) -> np.ndarray:
    """Grad-CAM heatmaps (N, H, W) in 0..1 of ``model`` on ``images``; see :class:`GradCAM`."""
    return GradCAM(model, layer)(images, class_index=class_index, upsample=upsample)


# ----------------------------------------------------------------------------------------------------
# Pictures and the lesion-focus score
# ----------------------------------------------------------------------------------------------------

def resize_map(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A 2-D float map resized (bilinear) to ``size`` = (height, width)."""
    height, width = size
    image = Image.fromarray(np.asarray(heatmap, dtype=np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def overlay(image, heatmap, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """``image`` (H, W, 3, 0..255) blended with ``heatmap`` (any size, 0..1) in ``colormap``: RGB uint8."""
    import matplotlib

    image = np.asarray(image, dtype=np.float32)
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.shape != image.shape[:2]:
        heat = resize_map(heat, image.shape[:2])
    colours = matplotlib.colormaps[colormap](np.clip(heat, 0.0, 1.0))[..., :3] * 255.0
    return np.clip((1.0 - alpha) * image + alpha * colours, 0, 255).astype(np.uint8)


def load_mask(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A lesion segmentation (e.g. ``ISIC_0024306_segmentation.png``) as a boolean (H, W) array.

    ``size`` = (height, width) resizes it (nearest neighbour) to match a heatmap or image.
    """
    try:
        with Image.open(path) as mask:
            mask = mask.convert("L")
            if size is not None and mask.size != (size[1], size[0]):
                mask = mask.resize((size[1], size[0]), Image.Resampling.NEAREST)
            return np.asarray(mask) > 127
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"cannot read lesion mask '{path}': {error}. Masks are the official "
                         f"HAM10000_segmentations_lesion_tschandl PNGs (0 background, 255 lesion)") from error


def lesion_focus(heatmap, mask) -> float:
    """The share (0..1) of the heatmap's total heat that lies on the lesion ``mask``.

    A map spread evenly scores the lesion's share of the image; one on the lesion scores near 1; one
    on a ruler or the border near 0. ``mask`` is resized to the heatmap if needed. NaN for an all-zero
    heatmap.
    """
    heat = np.asarray(heatmap, dtype=np.float64)
    mask = np.asarray(mask)
    if mask.shape != heat.shape:
        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(
            (heat.shape[1], heat.shape[0]), Image.Resampling.NEAREST)) > 127
    total = heat.sum()
    return float(heat[mask.astype(bool)].sum() / total) if total > 0 else float("nan")

"""Grad-CAM: where in the image did the model look? And did it look at the lesion?

Grad-CAM (Selvaraju et al., 2017) weights each channel of a convolutional feature map by the mean gradient of
the class score over that channel, sums them and keeps the positive part: a coarse map of the regions that
raised the score. The model is split, with the public functional API, into ``features`` (image -> the target
layer's maps; by default the backbone's last conv layer, ``skinlib.backbones``) and ``head`` (maps ->
probabilities), as in the keras-io example; the class score is the centred logit ``log p_c - mean_j log p_j``,
recovered from the softmax output (it does not saturate as the probability does).

    >>> heat = gradcam.gradcam(model, images)                 # (N, H, W) in 0..1, image-sized
    >>> picture = gradcam.overlay(images[0], heat[0])         # RGB uint8
    >>> gradcam.lesion_focus(heat[0], gradcam.load_mask(mask_path, heat[0].shape))

:func:`lesion_focus` is the share of the heat that falls on the official lesion segmentation (a model that looks
at rulers, ink or hair scores low); :func:`focus_table` puts it beside the lesion's share of the image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import keras
import numpy as np
import pandas as pd
from keras import ops
from PIL import Image

EPSILON = 1e-7


def input_gradient(function: Callable, value: np.ndarray) -> np.ndarray:
    """The gradient of the scalar ``function(value)`` with respect to the array ``value``: the one piece that
    needs the backend's own API (``function`` itself is written with ``keras.ops``)."""
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


def target_layer(model: keras.Model, layer=None):
    """The layer Grad-CAM explains: ``layer`` (a name or a layer of ``model``); else the backbone's last conv
    layer when skinlib built ``model``; else the last layer of ``model`` with a 4-D (N, H, W, C) output."""
    if isinstance(layer, str):
        try:
            return model.get_layer(layer)
        except ValueError:
            raise ValueError(f"no layer named {layer!r} in model {model.name!r}: Grad-CAM explains a layer of the "
                             f"model itself (for an exported model, explain the model it wraps)") from None
    if layer is not None:
        return layer
    from skinlib import backbones

    if model.name in backbones.BACKBONES:
        return model.get_layer(backbones.get(model.name).last_conv_layer)
    for candidate in reversed(model.layers):
        if isinstance(candidate, keras.Model):
            continue
        shape = getattr(getattr(candidate, "output", None), "shape", ())
        if len(shape) == 4 and not isinstance(candidate, keras.layers.InputLayer):
            return candidate
    raise ValueError(f"model {model.name!r} has no layer with a 4-D output to explain; pass layer=...")


class GradCAM:
    """Grad-CAM for one model and target layer; reusable over many batches.

    Args:
        model: a Keras functional model outputting class probabilities.
        layer: the target layer, its name, or None for :func:`target_layer`'s choice.
    """

    def __init__(self, model: keras.Model, layer=None):
        self.model = model
        self.layer = target_layer(model, layer)
        from skinlib import fusion, models

        if len(model.inputs) != 1 + bool(fusion.fields_of(model)):
            raise ValueError(f"Grad-CAM needs a model with one image input (and a skinlib metadata input); "
                             f"{model.name!r} has {len(model.inputs)}")

        try:
            self.features, self.head = models.split(model, self.layer.name)
        except Exception as error:  # the layer is not on the path from the input to the output
            raise ValueError(f"cannot split model {model.name!r} at layer {self.layer.name!r} into features and "
                             f"head: {error}") from error

    def __call__(self, images, class_index=None, upsample: bool = True, metadata=None) -> np.ndarray:
        """Heatmaps (N, h, w) in 0..1 for ``images`` (N, H, W, 3, raw pixels as the model takes them).

        ``class_index``: an int, one int per image, or None for each image's predicted class.
        ``upsample``: resize the maps to the images' height and width (else the layer's own grid).
        ``metadata``: a fused model's (N, width) vectors, held fixed while the image branch is explained (None:
        the missing-value code, ``skinlib.fusion.vectors``).
        """
        from skinlib import fusion

        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        vectors = fusion.vectors(self.model, len(images), metadata)
        fixed = [] if vectors is None else [ops.convert_to_tensor(vectors)]

        def head(maps):
            return self.head([maps, *fixed] if fixed else maps)

        activations = ops.convert_to_numpy(self.features(ops.convert_to_tensor(images))).astype("float32")
        if class_index is None:
            class_index = ops.convert_to_numpy(head(ops.convert_to_tensor(activations))).argmax(axis=1)
        classes = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (len(images),))
        selector = ops.convert_to_tensor(np.eye(self.head.output.shape[-1], dtype="float32")[classes])

        def score(maps):
            log_p = ops.log(ops.cast(head(maps), "float32") + EPSILON)
            return ops.sum((log_p - ops.mean(log_p, axis=-1, keepdims=True)) * selector)

        gradients = input_gradient(score, activations)
        weights = gradients.mean(axis=(1, 2), keepdims=True)
        maps = np.maximum((weights * activations).sum(axis=-1), 0.0)
        peaks = maps.max(axis=(1, 2), keepdims=True)
        maps = np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)
        if upsample:
            maps = np.stack([resize_map(m, images.shape[1:3]) for m in maps])
        return maps.astype(np.float32)


def gradcam(model: keras.Model, images, class_index=None, layer=None, upsample: bool = True,
            batch_size: int = 32, metadata=None) -> np.ndarray:
    """Grad-CAM heatmaps (N, H, W) in 0..1 of ``model`` on ``images``, ``batch_size`` at a time; see :class:`GradCAM`
    (``metadata``: a fused model's vectors, held fixed; None: the missing-value code)."""
    from skinlib import fusion

    explainer = GradCAM(model, layer)
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    vectors = fusion.vectors(model, len(images), metadata)
    classes = None if class_index is None else np.broadcast_to(np.asarray(class_index), (len(images),))
    return np.concatenate([explainer(images[start:start + batch_size],
                                     None if classes is None else classes[start:start + batch_size], upsample,
                                     None if vectors is None else vectors[start:start + batch_size])
                           for start in range(0, len(images), batch_size)])


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


def focus_table(heat: np.ndarray, frame: pd.DataFrame, masks_dir: str | Path | None, predicted=None) -> pd.DataFrame:
    """Per explained image: id, true class, the explained (predicted) class, the share of the heat on the lesion,
    the lesion's share of the image, and their ratio (``focus_ratio``: 1 is what a map spread evenly scores, so
    large lesions do not score high by area alone). NaN where ``masks_dir`` has no mask for the image.
    ``predicted``: the explained class of each image, as indices or as probabilities (N, classes)."""
    from skinlib import CLASSES

    if predicted is not None and np.ndim(predicted) == 2:
        predicted = np.asarray(predicted).argmax(axis=1)
    rows = []
    for i, image_id in enumerate(frame["image_id"]):
        path = None if masks_dir is None else Path(masks_dir) / f"{image_id}_segmentation.png"
        focus = share = np.nan
        if path is not None and path.is_file():
            mask = load_mask(path, heat[i].shape)
            focus, share = lesion_focus(heat[i], mask), float(mask.mean())
        rows.append({"image_id": image_id, "dx": frame["dx"].iloc[i],
                     "explained": None if predicted is None else CLASSES[int(predicted[i])],
                     "lesion_focus": focus, "lesion_share": share,
                     "focus_ratio": focus / share if share and share > 0 else np.nan})
    return pd.DataFrame(rows)


def sample_per_class(labels, per_class: int = 2, seed: int = 0) -> np.ndarray:
    """Positions of up to ``per_class`` images of each class, drawn with ``seed``, in order: a Grad-CAM sample that
    does not depend on how the test set happens to be sorted."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == k), size=min(per_class, int(np.sum(labels == k))), replace=False)
              for k in np.unique(labels)]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=int)


def titles(table: pd.DataFrame) -> list[str]:
    """Panel titles for :func:`focus_table`'s rows: the true class, the explained class, and the focus ratio."""
    return [f"true {row.dx} | explains {row.explained}" + ("" if np.isnan(row.focus_ratio) else
                                                           f" | focus {row.focus_ratio:.1f}x")
            for row in table.itertuples()]


def mean_focus(table: pd.DataFrame) -> dict[str, float]:
    """The mean ``lesion_focus`` and ``focus_ratio`` of :func:`focus_table`'s rows (NaN without masks)."""
    return table[["lesion_focus", "focus_ratio"]].mean().to_dict()

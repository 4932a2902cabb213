"""The classifiers: the study's baseline CNN, or a ``skinlib.backbones`` network with the study's head.

::

    model = models.build("densenet201", weights=None)     # raw 0..255 pixels in, 7 probabilities out
    models.set_trainable(model, stage)                     # what trains in the next stage, and BatchNorm's mode
    features, head = models.split(model)                  # image -> last conv maps, maps -> probabilities
    fused = models.build("vgg16", metadata=("age", "sex", "localization"))  # inputs "image" and "metadata"

Every model takes raw RGB pixels (uint8 or float, NHWC) and starts with a weightless
:class:`skinlib.preprocessing.Preprocess` layer named ``"preprocess"``, so ``model.predict(uint8_images)`` is
right and parameter counts are the study's. The model is named after its backbone key, and is FLAT: the
``keras.applications`` layers sit directly in ``model.layers`` between ``"preprocess"`` and the head
(``"head_pool"`` or ``"head_flatten"``, ``"head_dense"``, ``"head_dropout"``, ``"predictions"``), so every
intermediate output is reachable from ``model.input`` through the public functional API. With ``metadata``, the
model has a second input, ``"metadata"``, whose small MLP's embedding joins the pooled image features before the
head's dense layers (:mod:`skinlib.fusion`); without, the model is exactly the image-only one.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from pathlib import Path

import keras
import numpy as np

from skinlib import CLASSES, backbones, batchnorm, fusion
from skinlib.backbones import Backbone
from skinlib.data import encoding
from skinlib.errors import SkinlibError
from skinlib.preprocessing import MODES, Preprocess
from skinlib.study import LAYERS

NUM_CLASSES = len(CLASSES)
HEAD_LAYERS = ("head_pool", "head_flatten", "head_dense", "head_dropout", "predictions")
PREPROCESS_LAYER = "preprocess"
_TRAINABLE: "weakref.WeakKeyDictionary[keras.Model, tuple[str, str]]" = weakref.WeakKeyDictionary()


class ModelError(SkinlibError, ValueError):
    """An invalid model request: shape, stage, preprocessing, or a model skinlib did not build."""


class WeightsError(SkinlibError, ValueError):
    """Weights that cannot be loaded: a missing file, another architecture, or a failed download."""


def build(
    name: str,
    input_shape: tuple[int, int, int] | None = None,
    weights: str | Path | None = "imagenet",
    preprocess: str | Preprocess = "backbone",
    mixed_precision: bool | str = False,
    seed: int | None = None,
    metadata=None,
) -> keras.Model:
    """Builds a classifier: the backbone ``name`` with the study's head (global max pooling, dense 512 ReLU,
    dropout 0.5, dense 7 softmax; the baseline flattens instead of pooling).

    Args:
        name: a key of ``skinlib.backbones``.
        input_shape: (height, width, 3); default the backbone's.
        weights: ``"imagenet"`` (Keras downloads and caches them under ``$KERAS_HOME``), ``None`` (random), or
            a weights file: this whole model's (``model.save_weights``) or the bare backbone's (Keras'
            ``*_notop.h5``). The baseline has no pretrained weights: ``"imagenet"`` means random for it.
        preprocess: "backbone" (the backbone's own ``preprocess_input``), a mode of
            ``skinlib.preprocessing.MODES`` (the study used "unit", x / 255), or a ``Preprocess`` layer.
        mixed_precision: ``True`` ("mixed_float16") or a policy name ("mixed_bfloat16"); the output stays float32.
        seed: seeds Python, NumPy and the backend first (``keras.utils.set_random_seed``), so that the random
            initial weights, and so the run, repeat; None leaves the random state as it is.
        metadata: None (image only), or fields of ``skinlib.data.encoding.FIELDS`` (e.g. ``("age", "sex",
            "localization")``): a second input ``"metadata"`` of their vectors, fused before ``head_dense``
            (:mod:`skinlib.fusion`). ``dx_type`` is refused: it leaks the diagnosis.

    Returns:
        A ``keras.Model`` named ``name``: raw pixels in, 7 softmax probabilities (float32) out, all layers
        trainable (call :func:`set_trainable` for a stage).
    """
    spec = backbones.get(name)
    fields = _check_metadata(metadata)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    input_shape = _check_input_shape(spec, input_shape)
    preprocess_layer = _preprocess_layer(spec, preprocess)
    weights_file = _check_weights(spec, weights)
    policy = "mixed_float16" if mixed_precision is True else (mixed_precision or None)

    with _dtype_policy(policy):
        inputs = keras.Input(shape=input_shape, name="image")
        x = preprocess_layer(inputs)
        if spec.application is None:
            backbone_app = None
            x = keras.layers.Flatten(name="head_flatten")(_baseline_features(x))
        else:
            backbone_app = _application(spec, x, input_shape, "imagenet" if weights == "imagenet" else None)
            x = keras.layers.GlobalMaxPooling2D(name="head_pool")(backbone_app.output)
        if fields:
            vector, x = fusion.fuse(x, fields)
            inputs = [inputs, vector]
        x = keras.layers.Dense(512, activation="relu", name="head_dense")(x)
        x = keras.layers.Dropout(0.5, name="head_dropout")(x)
        outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="predictions")(x)
        model = keras.Model(inputs, outputs, name=spec.key)

    if weights_file is not None:
        _load_weights(model, backbone_app, weights_file, spec)
    return model


def _check_metadata(metadata) -> tuple[str, ...]:
    if metadata is None:
        return ()
    try:
        return encoding.check_fields(metadata)
    except encoding.MetadataError as error:
        raise ModelError(f"models.build(metadata={metadata!r}): {error}") from None


def spec_of(model: keras.Model) -> Backbone:
    """The registry entry of a model made by :func:`build` (its name is the backbone key)."""
    try:
        return backbones.get(model.name)
    except backbones.UnknownBackboneError:
        raise ModelError(
            f"model {model.name!r} was not made by skinlib.models.build (its name must be one of "
            f"{', '.join(backbones.names())})"
        ) from None


def preprocess_of(model: keras.Model) -> Preprocess:
    """The model's ``Preprocess`` layer."""
    return model.get_layer(PREPROCESS_LAYER)


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The backbone's layers, in order (``keras.applications``' ``layers[1:]``; the baseline's conv blocks)."""
    skip = {PREPROCESS_LAYER, *HEAD_LAYERS, *fusion.BRANCH_LAYERS}
    return [layer for layer in model.layers
            if layer.name not in skip and not isinstance(layer, keras.layers.InputLayer)]


def split(model: keras.Model, layer: str | None = None) -> tuple[keras.Model, keras.Model]:
    """``(features, head)``: image -> the feature maps of ``layer`` (default the backbone's last conv layer),
    and those maps -> probabilities. ``head(features(x))`` equals ``model(x)``; both share ``model``'s layers.

    A fused model's features are the image branch's (image in); its head takes ``[maps, metadata]``, so the
    image branch is explained with the metadata held fixed: ``head([features(x), m])`` equals ``model([x, m])``."""
    name = layer or spec_of(model).last_conv_layer
    try:
        maps = model.get_layer(name).output
    except ValueError:
        raise ModelError(f"no layer {name!r} in model {model.name!r}") from None
    image, *others = model.inputs
    features = keras.Model(model.inputs if not others else image, maps, name=f"{model.name}_features")
    if others:  # the metadata enters the head at the fields layer's output (the same vector): a head built on
        others = [model.get_layer(fusion.FIELDS_LAYER).output]  # the model's own Input would break saving it
    head = keras.Model([maps, *others] if others else maps, model.output, name=f"{model.name}_head")
    return features, head


def depth(model: keras.Model) -> int:
    """Layers as the study (Keras 2) counted them: input, backbone and head; skinlib's weightless preprocessing
    layer, which the study's models did not have, is not counted."""
    return sum(1 for layer in model.layers if layer.name != PREPROCESS_LAYER)


def param_counts(model: keras.Model) -> dict[str, int]:
    """``{"total", "trainable", "non_trainable"}`` parameter counts (as ``model.summary()`` reports them)."""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    return {"total": trainable + non_trainable, "trainable": trainable, "non_trainable": non_trainable}


def set_trainable(model: keras.Model, stage, bn: str | None = None) -> keras.Model:
    """Sets what trains in the next stage, and how BatchNormalization behaves; returns ``model``.

    Args:
        stage: a ``study.Stage`` as the recipe runs it (``recipe.apply(stage)``, or a ``settings.Settings``'
            ``stages``): its ``layers`` and ``bn`` say it all, and ``train.fit`` checks that the model was set for
            the stage it trains. Or the layers alone, "head" (backbone frozen, head trains), "top" (the backbone
            from its registry ``unfreeze`` layer on, as the study's partial fine-tuning) or "all", with ``bn``.
        bn: with layers given by name, the mode of every BatchNormalization layer of the backbone
            (``skinlib.batchnorm.MODES``; default "frozen"). A stage carries its own: giving both is an error.

    The compiled train step bakes in ``trainable``: compile (``skinlib.train.fit`` does) after this.
    """
    if isinstance(stage, str):
        layers, bn = stage, bn or "frozen"
    elif bn is not None:
        raise ModelError(f"set_trainable(model, stage, bn={bn!r}): a stage carries its BatchNorm mode "
                         f"({stage.bn!r}); pass recipe.apply(stage) for the recipe's, or the layers by name")
    else:
        layers, bn = stage.layers, stage.bn
    spec = spec_of(model)
    if layers not in LAYERS:
        raise ModelError(f"unknown layers {layers!r}; accepted values: {', '.join(LAYERS)}")
    try:
        batchnorm.check(bn)
    except ValueError as error:
        raise ModelError(str(error)) from None
    if spec.unfreeze is None and layers != "all":
        raise ModelError(f"{spec.key!r} has no pretrained backbone to freeze; it trains 'all' its layers")

    found = backbone_layers(model)
    first_trained = {"head": len(found), "all": 0}.get(layers)
    if first_trained is None:
        first_trained = _unfreeze_position(spec, found)
    model.trainable = True
    for position, layer in enumerate(found):
        if isinstance(layer, keras.layers.BatchNormalization):
            try:
                batchnorm.apply(layer, bn, spec.key)
            except ValueError as error:
                raise ModelError(str(error)) from None
        else:
            layer.trainable = position >= first_trained
    for name in (*HEAD_LAYERS, *fusion.BRANCH_LAYERS):
        with contextlib.suppress(ValueError):
            model.get_layer(name).trainable = True
    _TRAINABLE[model] = (layers, bn)
    return model


def trainable_setting(model: keras.Model) -> tuple[str, str] | None:
    """``(layers, bn)`` of the last :func:`set_trainable` call on ``model`` (None: never called)."""
    return _TRAINABLE.get(model)


def batch_norm_state(model: keras.Model) -> dict[str, int]:
    """``skinlib.batchnorm.state`` of the backbone's BatchNormalization layers."""
    return batchnorm.state(layer for layer in backbone_layers(model)
                           if isinstance(layer, keras.layers.BatchNormalization))


def _unfreeze_position(spec: Backbone, layers) -> int:
    names = [layer.name for layer in layers]
    try:
        position = names.index(spec.unfreeze)
    except ValueError:
        raise ModelError(f"layer {spec.unfreeze!r} of {spec.key!r} not found in the model") from None
    return position if spec.unfreeze_inclusive else position + 1


def _baseline_features(x):
    """The study's baseline CNN: three 3x3 conv (16, 32, 64 filters, same, relu), each then 2x2 max pool."""
    for block, filters in enumerate((16, 32, 64), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{block}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{block}")(x)
    return x


def _application(spec: Backbone, x, input_shape, weights) -> keras.Model:
    constructor = getattr(keras.applications, spec.application)
    try:
        return constructor(include_top=False, weights=weights, input_tensor=x, input_shape=input_shape,
                           **spec.arguments)
    except Exception as error:  # the download is the only step here that fails on valid arguments
        if weights != "imagenet":
            raise
        raise WeightsError(
            f"could not get the ImageNet weights of {spec.key!r} ({spec.application}): {error}. Keras downloads "
            "them once into $KERAS_HOME/models (default ~/.keras/models); without internet access, copy the "
            "file there, or pass weights=None or weights='<path to a weights file>'"
        ) from error


def _check_input_shape(spec: Backbone, input_shape) -> tuple[int, int, int]:
    if input_shape is None:
        return spec.input_shape
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ModelError(f"input_shape must be (height, width, 3), got {input_shape!r}") from None
    if len(shape) != 3 or shape[2] != 3:
        raise ModelError(f"input_shape must be (height, width, 3) with 3 RGB channels, got {input_shape!r}")
    if min(shape[:2]) < spec.min_size:
        raise ModelError(
            f"input_shape {shape} is too small for {spec.key!r}: height and width must be at least "
            f"{spec.min_size} (the study used {spec.input_shape})"
        )
    return shape


def _preprocess_layer(spec: Backbone, preprocess) -> Preprocess:
    if isinstance(preprocess, Preprocess):
        if preprocess.name != PREPROCESS_LAYER:
            preprocess = Preprocess.from_config({**preprocess.get_config(), "name": PREPROCESS_LAYER})
        return preprocess
    aliases = {"backbone": spec.preprocess}
    mode = aliases.get(preprocess, preprocess)
    if mode not in MODES:
        accepted = ", ".join([*aliases, *MODES])
        raise ModelError(f"unknown preprocess {preprocess!r}; accepted values: {accepted}, or a Preprocess layer")
    return Preprocess(mode, name=PREPROCESS_LAYER)


def _check_weights(spec: Backbone, weights) -> Path | None:
    """The weights file to load after building, or None; validates ``weights``."""
    if weights is None or weights == "imagenet":
        return None
    if not isinstance(weights, (str, Path)):
        raise WeightsError(f"weights must be 'imagenet', None or a file path, got {weights!r}")
    path = Path(weights)
    if not path.is_file():
        raise WeightsError(
            f"weights file {str(path)!r} not found; pass weights='imagenet', None, or an existing weights file "
            f"(.weights.h5 saved by model.save_weights, or Keras' {spec.application or spec.key} *_notop.h5)"
        )
    return path


def _load_weights(model: keras.Model, backbone_app, path: Path, spec: Backbone) -> None:
    """Loads a whole-model weights file, else a bare-backbone one; raises WeightsError if neither fits."""
    errors = []
    targets = [("the whole model", model)]
    if backbone_app is not None:
        targets.append(("the backbone", backbone_app))
    for what, target in targets:
        try:
            _strict_load(target, path)
            _restore_preprocess(model, path)
            return
        except Exception as error:  # keras raises ValueError, KeyError or OSError depending on the format
            errors.append(f"as {what}: {type(error).__name__}: {error}")
    raise WeightsError(
        f"weights file {str(path)!r} does not fit a {spec.key!r} model "
        f"(input {model.input_shape[1:]}): it was saved from another architecture or input shape, or is not a "
        "Keras weights file. Tried " + "; ".join(e[:300] for e in errors)
    )


PREPROCESS_FILE = "preprocess.json"


def save_preprocess(model: keras.Model, folder: str | Path) -> Path:
    """Writes the model's ``Preprocess`` config (mode, and the baseline's mean and std) to
    ``folder/preprocess.json``, so that weights saved in ``folder`` rebuild a model that predicts."""
    import json

    path = Path(folder) / PREPROCESS_FILE
    config = preprocess_of(model).get_config()
    path.write_text(json.dumps({k: config[k] for k in ("mode", "mean", "std")}) + "\n", encoding="utf-8")
    return path


def _restore_preprocess(model: keras.Model, weights_path: Path) -> None:
    """The mean and std of a "standardize" layer, from the preprocess.json beside the weights file."""
    import json

    layer = preprocess_of(model)
    saved = weights_path.parent / PREPROCESS_FILE
    if layer.mode != "standardize" or layer.adapted or not saved.is_file():
        return
    config = json.loads(saved.read_text(encoding="utf-8"))
    if config.get("mode") == "standardize" and config.get("std"):
        layer.mean, layer.std = float(config["mean"]), float(config["std"])


def _strict_load(target: keras.Model, path: Path) -> None:
    """``target.load_weights(path)``, failing (instead of only warning) when variables are left unloaded."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        target.load_weights(str(path))
    messages = [str(w.message) for w in caught]
    problems = [m for m in messages if "could not be loaded" in m or "mismatch" in m.lower()]
    if problems:
        raise ValueError(problems[0])


@contextlib.contextmanager
def _dtype_policy(policy):
    if policy is None:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)

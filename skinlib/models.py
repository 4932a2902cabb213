"""The study's five classifiers: a baseline CNN and four ImageNet backbones with the study's head.

::

    model = models.build("densenet201", weights=None)   # raw 0..255 pixels in, 7 probabilities out
    models.set_trainable(model, "top", bn="seed")       # the study's partial fine-tuning
    model.compile(...)                                  # recompiling is the caller's job

Every model takes raw RGB pixels (uint8 or float, NHWC) and starts with a weightless
:class:`skinlib.preprocessing.Preprocess` layer named ``"preprocess"``, so ``model.predict(uint8_images)`` is
right and parameter counts are the study's. The model is named after its registry key (``model.name ==
"vgg16"``); that is how :func:`set_trainable`, :func:`backbone_of` and :func:`last_conv_layer_name` find the
backbone's facts in ``skinlib.backbones``.

The model is FLAT: the ``keras.applications`` backbone's layers sit directly in ``model.layers``, between
``"preprocess"`` and the head (``"head_pool"``, ``"head_dense"``, ``"head_dropout"``, ``"predictions"``).
So every intermediate output is connected to ``model.input``, and Grad-CAM needs no unpacking of a nested
model: ``grad_model(model)`` returns ``keras.Model(model.inputs, [last conv output, predictions])``.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import keras
import numpy as np

from skinlib import CLASSES, backbones
from skinlib.backbones import Backbone
from skinlib.errors import SkinlibError
from skinlib.preprocessing import MODES, Preprocess

NUM_CLASSES = len(CLASSES)
HEAD_LAYERS = ("head_pool", "head_flatten", "head_dense", "head_dropout", "predictions")
PREPROCESS_LAYER = "preprocess"
STAGES = ("head", "top", "all")
BN_MODES = ("frozen", "seed")


class ModelError(SkinlibError, ValueError):
    """An invalid model request: shape, stage, preprocessing, or a model skinlib did not build."""


class WeightsError(SkinlibError, ValueError):
    """Weights that cannot be loaded: a missing file, another architecture, or a failed download."""


def build(
    name: str,
    input_shape: tuple[int, int, int] | None = None,
    weights: str | Path | None = "imagenet",
    preprocess="seed",
    mixed_precision: bool | str = False,
) -> keras.Model:
    """Builds a classifier of the study.

    Args:
        name: a key of ``skinlib.backbones`` ("baseline", "vgg16", "inception_v3", "inception_resnet_v2",
            "densenet201").
        input_shape: (height, width, 3); default the study's (64x64 baseline, 192x256 otherwise).
        weights: ``"imagenet"`` (Keras downloads and caches them under ``$KERAS_HOME``), ``None`` (random),
            or the path of a weights file: either this whole model's (``model.save_weights``) or the bare
            backbone's (e.g. Keras' ``*_notop.h5``). The baseline has no pretrained weights: ``"imagenet"``
            means random for it.
        preprocess: "seed" (the study's: x / 255, or one mean/std for the baseline), "backbone" or
            "corrected" (the backbone's own ``preprocess_input``), a mode of ``skinlib.preprocessing.MODES``,
            or a ``Preprocess`` layer.
        mixed_precision: ``True`` ("mixed_float16") or a policy name ("mixed_bfloat16") to build with;
            the output layer stays float32.

    Returns:
        A ``keras.Model`` named ``name``: raw pixels in, 7 softmax probabilities (float32) out, all layers
        trainable (call :func:`set_trainable` for a stage).
    """
    spec = backbones.get(name)
    input_shape = _check_input_shape(spec, input_shape)
    preprocess_layer = _preprocess_layer(spec, preprocess)
    weights_file = _check_weights(spec, weights)
    policy = "mixed_float16" if mixed_precision is True else (mixed_precision or None)

    with _dtype_policy(policy):
        inputs = keras.Input(shape=input_shape, name="image")
        x = preprocess_layer(inputs)
        if spec.application is None:
            backbone_app = None
            features = _baseline_features(x)
            x = keras.layers.Flatten(name="head_flatten")(features)
        else:
            backbone_app = _application(spec, x, input_shape, "imagenet" if weights == "imagenet" else None)
            x = keras.layers.GlobalMaxPooling2D(name="head_pool")(backbone_app.output)
        x = keras.layers.Dense(512, activation="relu", name="head_dense")(x)
        x = keras.layers.Dropout(0.5, name="head_dropout")(x)
        outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="predictions")(x)
        model = keras.Model(inputs, outputs, name=spec.key)

    if weights_file is not None:
        _load_weights(model, backbone_app, weights_file, spec)
    return model


def spec_of(model: keras.Model) -> Backbone:
    """The registry entry of a model made by :func:`build` (found by its name)."""
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
    spec_of(model)
    skip = {PREPROCESS_LAYER, *HEAD_LAYERS}
    return [
        layer
        for layer in model.layers
        if layer.name not in skip and not isinstance(layer, keras.layers.InputLayer)
    ]


def backbone_of(model: keras.Model) -> keras.Model:
    """The backbone as a ``keras.Model`` sharing the model's layers: preprocessed image -> feature maps."""
    spec = spec_of(model)
    first_head = model.get_layer("head_flatten" if spec.application is None else "head_pool")
    return keras.Model(preprocess_of(model).output, first_head.input, name=f"{spec.key}_backbone")


def last_conv_layer_name(model: keras.Model) -> str:
    """Name of the backbone's last convolutional block output (Grad-CAM's target layer) in ``model``."""
    return spec_of(model).last_conv_layer


def grad_model(model: keras.Model) -> keras.Model:
    """``keras.Model(model.inputs, [last conv block output, predictions])``, for Grad-CAM."""
    conv = model.get_layer(last_conv_layer_name(model))
    return keras.Model(model.inputs, [conv.output, model.output], name=f"{model.name}_grad")


def param_counts(model: keras.Model) -> dict[str, int]:
    """``{"total", "trainable", "non_trainable"}`` parameter counts (as ``model.summary()`` reports them)."""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    return {"total": trainable + non_trainable, "trainable": trainable, "non_trainable": non_trainable}


def set_trainable(model: keras.Model, stage: str, bn: str = "frozen") -> keras.Model:
    """Sets which layers train in a stage; returns ``model``. Recompile afterwards (the caller's job).

    Args:
        stage: "head" (backbone frozen, head trains), "top" (the study's partial unfreeze: the backbone from
            the registry's ``unfreeze`` layer on), or "all". The baseline CNN, trained from scratch, has only
            "all".
        bn: "frozen": every BatchNormalization layer is non-trainable, which in Keras 3 also runs it in
            inference mode (moving statistics used and kept). "seed": the study's workaround: every
            BatchNormalization layer of the backbone trainable (batch statistics in training, moving
            statistics updated) with its moving mean and variance reset to zero, at every call, as the study
            did in both stages of its partial fine-tuning notebooks.

    Keras bakes ``trainable`` into the compiled train step: call ``model.compile(...)`` after this.
    """
    spec = spec_of(model)
    if stage not in STAGES:
        raise ModelError(f"unknown stage {stage!r}; accepted values: {', '.join(STAGES)}")
    if bn not in BN_MODES:
        raise ModelError(f"unknown bn mode {bn!r}; accepted values: {', '.join(BN_MODES)}")
    if spec.unfreeze is None and stage != "all":
        raise ModelError(f"{spec.key!r} has no pretrained backbone to freeze; its only stage is 'all'")

    layers = backbone_layers(model)
    first_trained = len(layers)  # "head"
    if stage == "all":
        first_trained = 0
    elif stage == "top":
        first_trained = _unfreeze_position(spec, layers)

    model.trainable = True
    for position, layer in enumerate(layers):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = bn == "seed"
            if bn == "seed":
                layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, dtype="float32"))
                layer.moving_variance.assign(np.zeros(layer.moving_variance.shape, dtype="float32"))
        else:
            layer.trainable = position >= first_trained
    for name in HEAD_LAYERS:
        with contextlib.suppress(ValueError):
            model.get_layer(name).trainable = True
    return model


def _unfreeze_position(spec: Backbone, layers) -> int:
    names = [layer.name for layer in layers]
    try:
        position = names.index(spec.unfreeze.layer)
    except ValueError:
        raise ModelError(f"layer {spec.unfreeze.layer!r} of {spec.key!r} not found in the model") from None
    return position if spec.unfreeze.inclusive else position + 1


def _baseline_features(x):
    """The study's baseline CNN: three 3x3 conv (16, 32, 64 filters, same, relu), each then 2x2 max pool."""
    for block, filters in enumerate((16, 32, 64), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{block}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{block}")(x)
    return x


def _application(spec: Backbone, x, input_shape, weights) -> keras.Model:
    constructor = getattr(keras.applications, spec.application)
    try:
        return constructor(include_top=False, weights=weights, input_tensor=x, input_shape=input_shape)
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
    aliases = {"seed": spec.seed_preprocess, "backbone": spec.preprocess, "corrected": spec.preprocess}
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
            return
        except Exception as error:  # keras raises ValueError, KeyError or OSError depending on the format
            errors.append(f"as {what}: {type(error).__name__}: {error}")
    raise WeightsError(
        f"weights file {str(path)!r} does not fit a {spec.key!r} model "
        f"(input {model.input_shape[1:]}): it was saved from another architecture or input shape, or is not a "
        "Keras weights file. Tried " + "; ".join(e[:300] for e in errors)
    )


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

"""A trained model in one file that anyone can use: raw RGB images of any size in, class probabilities out.

    >>> export.export(model, "vgg16.keras", recipe=recipes.get("corrected"))
    >>> deployed = export.load("vgg16.keras")
    >>> deployed.predict(image[None])          # uint8 (1, H, W, 3), any H and W
    >>> export.model_card(deployed)["classes"]
    ['akiec', 'bcc', 'bkl', 'df', 'mel', 'nv', 'vasc']

The exported model is ``Input(None, None, 3, uint8) -> Resizing(model's size) -> model -> ModelCard``. A model
fused with metadata (``models.build(..., metadata=fields)``) is exported with its second input, ``"metadata"``
(the vectors of ``skinlib.data.encoding``), and the card names the fields: feed
``{"image": images, "metadata": vectors}``, or let ``evaluate.predict`` fill in the missing-value code.
The model keeps its own preprocessing layer; :class:`ModelCard` is an identity layer whose config holds
the class codes and names, the input size and the training recipe, so they travel inside the
``.keras`` file. Everything is a registered Keras layer: :func:`load` uses ``safe_mode=True`` (no Lambda
layers, no pickled code).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import keras

from skinlib import CLASS_NAMES, CLASSES

CARD_LAYER = "model_card"


@keras.saving.register_keras_serializable(package="skinlib")
class ModelCard(keras.layers.Layer):
    """Identity layer that carries a model's metadata in its config (saved in the ``.keras`` file).

    Args:
        classes: class codes in output order.
        class_names: code -> human-readable name.
        image_size: (height, width) the wrapped model was trained at.
        recipe: JSON-compatible dict describing how the model was trained.
        metadata: the metadata fields the model takes besides the image ([]: image only).
    """

    def __init__(self, classes, class_names=None, image_size=None, recipe=None, metadata=None, **kwargs):
        kwargs.setdefault("name", CARD_LAYER)
        super().__init__(**kwargs)
        self.classes = [str(c) for c in classes]
        self.class_names = {str(k): str(v) for k, v in (class_names or {}).items()}
        self.image_size = None if image_size is None else [int(v) for v in image_size]
        self.recipe = recipe or {}
        self.metadata = [str(name) for name in (metadata or [])]

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def card(self) -> dict[str, Any]:
        """The metadata as a plain dict."""
        return {"classes": list(self.classes), "class_names": dict(self.class_names),
                "image_size": self.image_size, "recipe": self.recipe, "metadata": list(self.metadata)}

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self.card()}


def _jsonable(recipe) -> dict[str, Any]:
    """A recipe (dataclass, dict or None) as a JSON-compatible dict."""
    from skinlib.outputs import jsonable

    if recipe is None:
        return {}
    if not isinstance(recipe, dict) and not (dataclasses.is_dataclass(recipe) and not isinstance(recipe, type)):
        raise TypeError(f"recipe must be a dataclass (e.g. skinlib.recipes.Recipe), a dict or None, "
                        f"got {type(recipe).__name__}")
    return jsonable(recipe)


def deployable(model: keras.Model, *, classes=CLASSES, class_names=None, recipe=None, image_size=None,
               interpolation: str = "bilinear") -> keras.Model:
    """``model`` wrapped to take raw RGB uint8 images of any size (see the module docstring).

    ``image_size`` (height, width) defaults to the model's input size. Resizing is antialiased (close to
    the LANCZOS resize the training images got; ``interpolation="lanczos3"`` matches it better where the
    backend supports it).
    """
    classes = list(classes)
    if image_size is None:
        image_size = tuple(model.inputs[0].shape[1:3])
    if len(image_size) != 2 or any(v is None for v in image_size):
        raise ValueError(f"model {model.name!r} has no fixed input size ({model.input_shape}); pass "
                         f"image_size=(height, width) it was trained at")
    if model.output_shape[-1] != len(classes):
        raise ValueError(f"model {model.name!r} outputs {model.output_shape[-1]} values but {len(classes)} "
                         f"classes were given: {classes}")
    if class_names is None:
        class_names = {c: CLASS_NAMES.get(c, c) for c in classes}
    from skinlib import fusion

    fields = list(fusion.fields_of(model))
    images = keras.Input(shape=(None, None, 3), dtype="uint8", name=fusion.IMAGE_INPUT)
    resized = keras.layers.Resizing(*image_size, interpolation=interpolation, antialias=True,
                                    name="resize")(images)
    inputs = [images, keras.Input(shape=model.inputs[1].shape[1:], name=fusion.METADATA_INPUT)] if fields else images
    probabilities = model([resized, inputs[1]] if fields else resized)
    card = ModelCard(classes, class_names, image_size, _jsonable(recipe), fields)(probabilities)
    return keras.Model(inputs, card, name=f"skinlib_{model.name}")


def export(model: keras.Model, path: str | Path, **options) -> Path:
    """Save ``model`` as one deployable ``.keras`` file (see :func:`deployable` for ``options``)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"export path must end in .keras, got '{path}'")
    path.parent.mkdir(parents=True, exist_ok=True)
    deployable(model, **options).save(path)
    return path


def _register_skinlib_layers() -> None:
    """Import the modules whose registered layers a skinlib model may contain."""
    import importlib

    for module in ("skinlib.preprocessing", "skinlib.augment", "skinlib.models", "skinlib.fusion"):
        try:
            importlib.import_module(module)
        except ImportError:
            pass


def load(path: str | Path, run_eagerly: bool = False) -> keras.Model:
    """Load an exported model (``safe_mode=True``: no Lambda layers or pickled code are accepted);
    ``run_eagerly`` predicts without graph compilation (tiny smoke runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file '{path}' not found: give the .keras file written by "
                                f"skinlib.export.export")
    _register_skinlib_layers()
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:
        raise ValueError(f"cannot load model '{path}': {error}") from error
    model.run_eagerly = run_eagerly
    return model


def model_card(model: keras.Model) -> dict[str, Any]:
    """The metadata of an exported model: classes, class_names, image_size, recipe.

    A model without a :class:`ModelCard` (not exported by skinlib) gets skinlib's seven classes.
    """
    for layer in model.layers:
        if isinstance(layer, ModelCard):
            return layer.card()
    classes = list(CLASSES)
    return {"classes": classes, "class_names": {c: CLASS_NAMES[c] for c in classes},
            "image_size": list(model.inputs[0].shape[1:3]), "recipe": {}, "metadata": []}


def wrapped(deployed: keras.Model) -> keras.Model:
    """The classifier inside an exported model (for Grad-CAM, which explains a layer of a flat model); it takes
    images at the card's ``image_size``."""
    inner = [layer for layer in deployed.layers if isinstance(layer, keras.Model)]
    if len(inner) != 1:
        raise ValueError(f"model {deployed.name!r} is not a skinlib export (it wraps {len(inner)} models, not 1)")
    return inner[0]

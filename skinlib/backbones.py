"""The backbone registry: architecture facts only, one record per backbone (as timm's registry).

Each record says how to build the network and where its parts are; nothing here says how to train it (that is
``skinlib.recipes``) or what the study did with it (``skinlib.study``)::

    >>> from skinlib import backbones
    >>> backbones.get("densenet201").unfreeze
    'conv5_block1_0_bn'
    >>> backbones.names()[:3]
    ('baseline', 'vgg16', 'inception_v3')

Adding a backbone is adding one :class:`Backbone` to ``_TABLE``: ``models.build``, ``models.set_trainable``,
Grad-CAM and export read everything they need from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from skinlib.errors import SkinlibError


class UnknownBackboneError(SkinlibError, KeyError):
    """A backbone key that is not in the registry."""

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class Backbone:
    """One architecture.

    Attributes:
        key: skinlib's name (``models.build(key)``); the built model is named after it.
        application: the ``keras.applications`` constructor, or ``None`` for the study's baseline CNN.
        arguments: extra keyword arguments of the constructor (e.g. ``include_preprocessing=False`` where an
            application has its own preprocessing: skinlib's ``Preprocess`` layer does that job).
        input_size: the default (height, width).
        min_size: the smallest height or width the architecture accepts.
        preprocess: the mode of the architecture's own ``preprocess_input`` (``skinlib.preprocessing.MODES``).
        unfreeze: the layer from which partial ("top") fine-tuning trains the backbone (``None``: no
            pretrained backbone, so no partial stage).
        unfreeze_inclusive: whether ``unfreeze`` itself trains (``from block5_conv1``) or only the layers
            after it (``after mixed8``).
        last_conv_layer: the last convolutional feature map: Grad-CAM's target and the features/head split.
        imagenet: whether ImageNet weights exist (``weights="imagenet"``).
    """

    key: str
    application: str | None
    input_size: tuple[int, int]
    min_size: int
    preprocess: str
    unfreeze: str | None
    last_conv_layer: str
    unfreeze_inclusive: bool = True
    arguments: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    imagenet: bool = True

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The default input shape, (height, width, 3)."""
        return (*self.input_size, 3)


STUDY_INPUT_SIZE = (192, 256)  # 256x192 LANCZOS-resized images, as the study's four ImageNet backbones took them

_TABLE = (
    Backbone(key="baseline", application=None, input_size=(64, 64), min_size=8,  # three 2x2 max pools
             preprocess="standardize", unfreeze=None, last_conv_layer="conv3", imagenet=False),
    Backbone(key="vgg16", application="VGG16", input_size=STUDY_INPUT_SIZE, min_size=32,
             preprocess="caffe", unfreeze="block5_conv1", last_conv_layer="block5_conv3"),
    Backbone(key="inception_v3", application="InceptionV3", input_size=STUDY_INPUT_SIZE, min_size=75,
             preprocess="tf", unfreeze="mixed8", unfreeze_inclusive=False,  # trains mixed9 and mixed10
             last_conv_layer="mixed10"),
    Backbone(key="inception_resnet_v2", application="InceptionResNetV2", input_size=STUDY_INPUT_SIZE, min_size=75,
             preprocess="tf", unfreeze="mixed_7a", unfreeze_inclusive=False,  # the Inception-ResNet-C blocks
             last_conv_layer="conv_7b_ac"),
    Backbone(key="densenet201", application="DenseNet201", input_size=STUDY_INPUT_SIZE, min_size=32,
             preprocess="torch", unfreeze="conv5_block1_0_bn", last_conv_layer="relu"),  # the last dense block
    # Not part of the study: a modern, small backbone (7.1 M parameters), to show that a backbone is one record.
    Backbone(key="efficientnetv2_b0", application="EfficientNetV2B0", input_size=STUDY_INPUT_SIZE, min_size=32,
             preprocess="torch", unfreeze="block6a_expand_conv", last_conv_layer="top_activation",
             arguments=MappingProxyType({"include_preprocessing": False})),
)

BACKBONES: Mapping[str, Backbone] = MappingProxyType({b.key: b for b in _TABLE})


def names() -> tuple[str, ...]:
    """The accepted backbone keys, the study's five first."""
    return tuple(BACKBONES)


def get(key: str) -> Backbone:
    """The registry entry of ``key``; an unknown key raises an error listing the accepted ones."""
    try:
        return BACKBONES[key]
    except (KeyError, TypeError):
        raise UnknownBackboneError(
            f"unknown backbone {key!r}; accepted values: {', '.join(names())}"
        ) from None

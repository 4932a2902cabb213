"""The backbone registry: every per-architecture fact skinlib uses, in ONE table of data.

Each entry is a frozen :class:`Backbone` record, looked up by key with :func:`get`::

    >>> from skinlib import backbones
    >>> backbones.get("vgg16").batch_size
    64
    >>> backbones.names()
    ('baseline', 'vgg16', 'inception_v3', 'inception_resnet_v2', 'densenet201')

The values are the study's own (its notebooks; see the issue "skinlib models and training"):
input size 192x256 (height x width, from 256x192 LANCZOS-resized images) for the four ImageNet backbones and
64x64 for the baseline CNN; the layer from which the study unfroze the backbone for partial ("top")
fine-tuning, with its index in ``keras.applications``' layer list; batch size; and the epochs of each stage.
``models.build`` and ``train.fit`` read this table; nothing else hard-codes a per-backbone value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from skinlib.errors import SkinlibError


class UnknownBackboneError(SkinlibError, KeyError):
    """A backbone key that is not in the registry."""

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class Unfreeze:
    """Where the study's partial ("top") fine-tuning starts in the backbone.

    ``layer`` is the layer named in the study; ``inclusive`` says whether that layer itself is trained
    (``from block5_conv1``) or only the layers after it (``after mixed8``). ``index`` is the position of the
    first trained layer in ``keras.applications``' ``model.layers`` (the study's ``layers[index:]``), which
    the tests check against ``layer``; skinlib finds the layer by name, never by index.
    """

    layer: str
    index: int
    inclusive: bool = True


@dataclass(frozen=True)
class Phase:
    """A run of fine-tuning epochs with one ReduceLROnPlateau setting (the study changed it mid-way once)."""

    epochs: int
    patience: int = 3
    cooldown: int = 0


@dataclass(frozen=True)
class Backbone:
    """One architecture of the study.

    Attributes:
        key: skinlib's name (``models.build(key)``).
        application: the ``keras.applications`` constructor, or ``None`` for the baseline CNN.
        input_size: the study's (height, width).
        min_size: smallest height/width the architecture accepts (keras.applications' own limit).
        preprocess: the mode of the architecture's own ``preprocess_input`` (see ``skinlib.preprocessing``).
        seed_preprocess: the mode of the study's ("seed") recipe: "unit" (x / 255), or "standardize"
            (one mean and one std of the training pixels) for the baseline.
        unfreeze: the study's partial unfreeze point (``None``: no backbone to unfreeze).
        last_conv_layer: the backbone's last convolutional block output (Grad-CAM's usual target).
        batch_size: the study's batch size.
        head_epochs: epochs of stage "head" (backbone frozen); 0 for the baseline (a single stage).
        finetune: for each fine-tuning stage the study ran ("top", "all"), its phases; the first key is the
            default stage.
        imagenet: whether ImageNet weights exist (``weights="imagenet"``).
    """

    key: str
    application: str | None
    input_size: tuple[int, int]
    min_size: int
    preprocess: str
    seed_preprocess: str
    unfreeze: Unfreeze | None
    last_conv_layer: str
    batch_size: int
    head_epochs: int
    finetune: Mapping[str, tuple[Phase, ...]] = field(default_factory=dict)
    imagenet: bool = True

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The study's input shape, (height, width, 3)."""
        return (*self.input_size, 3)

    @property
    def default_finetune(self) -> str:
        """The fine-tuning stage used when none is asked for: the first the study ran."""
        return next(iter(self.finetune))

    def epochs(self, stage: str) -> int:
        """Total epochs of a stage ("head", "top" or "all") in the study."""
        if stage == "head":
            return self.head_epochs
        return sum(phase.epochs for phase in self.finetune.get(stage, ()))


STUDY_INPUT_SIZE = (192, 256)

_TABLE = (
    Backbone(
        key="baseline",
        application=None,
        input_size=(64, 64),
        min_size=8,  # three 2x2 max pools
        preprocess="standardize",
        seed_preprocess="standardize",
        unfreeze=None,
        last_conv_layer="conv3",
        batch_size=32,
        head_epochs=0,
        finetune=MappingProxyType({"all": (Phase(30),)}),
        imagenet=False,
    ),
    Backbone(
        key="vgg16",
        application="VGG16",
        input_size=STUDY_INPUT_SIZE,
        min_size=32,
        preprocess="caffe",
        seed_preprocess="unit",
        unfreeze=Unfreeze("block5_conv1", index=15, inclusive=True),
        last_conv_layer="block5_conv3",
        batch_size=64,
        head_epochs=3,
        finetune=MappingProxyType({"top": (Phase(30),)}),
    ),
    Backbone(
        key="inception_v3",
        application="InceptionV3",
        input_size=STUDY_INPUT_SIZE,
        min_size=75,
        preprocess="tf",
        seed_preprocess="unit",
        unfreeze=Unfreeze("mixed8", index=249, inclusive=False),  # mixed9 and mixed10
        last_conv_layer="mixed10",
        batch_size=64,
        head_epochs=3,
        finetune=MappingProxyType({"top": (Phase(35),), "all": (Phase(20),)}),
    ),
    Backbone(
        key="inception_resnet_v2",
        application="InceptionResNetV2",
        input_size=STUDY_INPUT_SIZE,
        min_size=75,
        preprocess="tf",
        seed_preprocess="unit",
        unfreeze=Unfreeze("mixed_7a", index=618, inclusive=False),  # the Inception-ResNet-C blocks
        last_conv_layer="conv_7b_ac",
        batch_size=64,
        head_epochs=3,
        finetune=MappingProxyType({"top": (Phase(25), Phase(5, patience=2, cooldown=1))}),
    ),
    Backbone(
        key="densenet201",
        application="DenseNet201",
        input_size=STUDY_INPUT_SIZE,
        min_size=32,
        preprocess="torch",
        seed_preprocess="unit",
        unfreeze=Unfreeze("conv5_block1_0_bn", index=481, inclusive=True),  # the last dense block
        last_conv_layer="relu",
        batch_size=32,
        head_epochs=3,
        finetune=MappingProxyType({"top": (Phase(27),), "all": (Phase(20),)}),
    ),
)

BACKBONES: Mapping[str, Backbone] = MappingProxyType({b.key: b for b in _TABLE})


def names() -> tuple[str, ...]:
    """The accepted backbone keys, in the study's order."""
    return tuple(BACKBONES)


def get(key: str) -> Backbone:
    """The registry entry of ``key``; an unknown key raises an error listing the accepted ones."""
    try:
        return BACKBONES[key]
    except (KeyError, TypeError):
        raise UnknownBackboneError(
            f"unknown backbone {key!r}; accepted values: {', '.join(names())}"
        ) from None

"""Training recipes as data: the study's ("seed") and a careful modern one ("corrected").

A :class:`Recipe` says how to train; the backbone table (``skinlib.backbones``) says how long and with which
batch size. ``skinlib.train.fit`` reads both::

    >>> from skinlib import recipes
    >>> recipes.get("seed").bn
    'seed'
    >>> recipes.get("corrected").restore_best
    True

Use ``dataclasses.replace(recipes.get("corrected"), label_smoothing=0.1)`` for a variant.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType

import keras

from skinlib.errors import SkinlibError


class RecipeError(SkinlibError, ValueError):
    """An unknown recipe or an invalid recipe field."""


@dataclass(frozen=True)
class Optimizer:
    """An optimizer setting; :meth:`make` returns a fresh Keras optimizer."""

    name: str = "adam"  # "adam" or "adamw"
    learning_rate: float = 1e-4
    amsgrad: bool = False
    weight_decay: float | None = None

    def make(self) -> keras.optimizers.Optimizer:
        if self.name == "adam":
            return keras.optimizers.Adam(self.learning_rate, amsgrad=self.amsgrad)
        if self.name == "adamw":
            return keras.optimizers.AdamW(
                self.learning_rate, weight_decay=self.weight_decay or 0.004, amsgrad=self.amsgrad
            )
        raise RecipeError(f"unknown optimizer {self.name!r}; accepted values: adam, adamw")


@dataclass(frozen=True)
class Plateau:
    """ReduceLROnPlateau settings (the backbone table's phases may override patience and cooldown)."""

    factor: float = 0.5
    patience: int = 3
    min_lr: float = 1e-6
    cooldown: int = 0


@dataclass(frozen=True)
class Recipe:
    """How to train.

    Attributes:
        name: the recipe's name.
        preprocess: "seed" (the table's ``seed_preprocess``: x / 255, or one mean/std for the baseline) or
            "backbone" (each backbone's own ``preprocess_input``).
        augment: augmentation pipeline for ImageNet backbones (``skinlib.augment.PIPELINES``).
        augment_baseline: augmentation pipeline for the baseline CNN.
        bn: BatchNormalization handling, "seed" (the study's reset-and-train workaround) or "frozen".
        head_optimizer: stage "head" (backbone frozen).
        finetune_optimizer: stages "top"/"all".
        scratch_optimizer: a model trained from scratch in one stage (the baseline CNN).
        monitor: the validation metric for plateaus, best weights and early stopping.
        plateau: ReduceLROnPlateau during fine-tuning (and the baseline's single stage), or ``None``.
        early_stopping: patience in epochs, or ``None`` for none.
        restore_best: end with the best validation weights (True) or the last epoch's (False).
        balance: ``None``, "class_weight" (inverse class frequency, sklearn's "balanced") or "sampling"
            (batches drawn with equal class probability).
        label_smoothing: for the categorical cross-entropy.
    """

    name: str
    preprocess: str
    augment: str
    augment_baseline: str
    bn: str
    head_optimizer: Optimizer
    finetune_optimizer: Optimizer
    scratch_optimizer: Optimizer
    monitor: str = "val_accuracy"
    plateau: Plateau | None = Plateau()
    early_stopping: int | None = None
    restore_best: bool = False
    balance: str | None = None
    label_smoothing: float = 0.0

    def __post_init__(self):
        checks = {
            "preprocess": (self.preprocess, ("seed", "backbone")),
            "bn": (self.bn, ("seed", "frozen")),
            "balance": (self.balance, (None, "class_weight", "sampling")),
            "monitor": (self.monitor, ("val_accuracy", "val_loss")),
        }
        for field_name, (value, accepted) in checks.items():
            if value not in accepted:
                raise RecipeError(f"recipe field {field_name}={value!r}; accepted values: {accepted}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise RecipeError(f"recipe field label_smoothing={self.label_smoothing!r} must be in [0, 1)")

    @property
    def monitor_mode(self) -> str:
        """"max" for accuracy, "min" for loss."""
        return "min" if self.monitor.endswith("loss") else "max"

    def replace(self, **changes) -> "Recipe":
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


SEED = Recipe(
    name="seed",
    preprocess="seed",
    augment="seed",
    augment_baseline="seed_baseline",
    bn="seed",
    head_optimizer=Optimizer("adam", 1e-4, amsgrad=True),
    finetune_optimizer=Optimizer("adam", 1e-4),
    scratch_optimizer=Optimizer("adam", 1e-3),
    monitor="val_accuracy",
    plateau=Plateau(factor=0.5, patience=3, min_lr=1e-6),
    early_stopping=None,
    restore_best=False,
)

CORRECTED = Recipe(
    name="corrected",
    preprocess="backbone",
    augment="corrected",
    augment_baseline="corrected",
    bn="frozen",
    head_optimizer=Optimizer("adamw", 1e-3, weight_decay=1e-4),
    finetune_optimizer=Optimizer("adamw", 1e-4, weight_decay=1e-4),
    scratch_optimizer=Optimizer("adamw", 1e-3, weight_decay=1e-4),
    monitor="val_loss",
    plateau=Plateau(factor=0.5, patience=3, min_lr=1e-6),
    early_stopping=8,
    restore_best=True,
    balance=None,
)

RECIPES = MappingProxyType({r.name: r for r in (SEED, CORRECTED)})


def get(recipe: "str | Recipe") -> Recipe:
    """The recipe named ``recipe`` ("seed" or "corrected"), or ``recipe`` itself if it is a Recipe."""
    if isinstance(recipe, Recipe):
        return recipe
    try:
        return RECIPES[recipe]
    except (KeyError, TypeError):
        raise RecipeError(f"unknown recipe {recipe!r}; accepted values: {', '.join(RECIPES)}") from None

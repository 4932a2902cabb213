"""The study, as data: one row per notebook with its training schedule and the results it reported.

The study is "Skin Lesions Classification with Deep Convolutional Neural Network" (Hoang Ho, CIS 5526, Keras 2.2.4 /
TensorFlow 1.11), https://github.com/hoang-ho/Skin_Lesions_Classification_DCNNs. Every value below comes from its
notebooks; ``cells`` names where (``cells[N]`` is the N-th cell of the ``.ipynb``, counted from 0, markdown
included). The README's results table is kept as reported (accuracy in percent; depth and parameters only for
the first five models, the others left empty rather than guessed)::

    >>> from skinlib import study
    >>> row = study.get("05")
    >>> [(s.layers, s.epochs) for s in row.stages]
    [('head', 3), ('top', 25), ('top', 5)]
    >>> row.schedule()            # the stages as a table, for a notebook

Architecture facts (which layer "top" starts from) live in ``skinlib.backbones``; how to train under the
study's or the corrected recipe in ``skinlib.recipes``; ``skinlib.fidelity`` compares all three with the study.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import pandas as pd

from skinlib import batchnorm
from skinlib.backbones import STUDY_INPUT_SIZE

SOURCE = "https://github.com/hoang-ho/Skin_Lesions_Classification_DCNNs"
TITLE = "Skin Lesions Classification with Deep Convolutional Neural Network"



@dataclass(frozen=True)
class Augmentation:
    """An augmentation as ``ImageDataGenerator`` arguments (rotation in degrees, shear in degrees, as Keras 2 read
    them): the study's per notebook, and the corrected recipe's (``recipes.CORRECTED_AUGMENTATION``), which adds
    vertical flips and 90-degree turns (``skinlib.augment.pipeline`` builds either as Keras layers)."""

    rotation_range: float
    width_shift_range: float
    height_shift_range: float
    shear_range: float
    zoom_range: float
    horizontal_flip: bool = False
    fill_mode: str = "nearest"
    cells: str = ""
    vertical_flip: bool = False
    rot90: bool = False


@dataclass(frozen=True)
class Plateau:
    """The study's ``ReduceLROnPlateau`` (it monitored ``val_acc``, Keras 3's ``val_accuracy``)."""

    factor: float
    patience: int
    min_lr: float
    cooldown: int = 0


@dataclass(frozen=True)
class Stage:
    """One ``fit`` of the study.

    Attributes:
        layers: what trains: "head" (backbone frozen), "top" (the backbone from ``backbones``' unfreeze layer
            on) or "all".
        epochs: epochs of this fit.
        learning_rate, amsgrad: its ``Adam``.
        bn: the BatchNormalization mode at the start of the stage (``skinlib.batchnorm.MODES``): in the study's
            rows, what its code did; a recipe may replace it (``recipes.Recipe.apply``).
        plateau: its ``ReduceLROnPlateau`` (None: no callback).
        continues: the same optimizer goes on (no recompile), only the plateau changes.
        cells: where the study did it.
    """

    layers: str
    epochs: int
    learning_rate: float
    amsgrad: bool
    bn: str
    plateau: Plateau | None = None
    continues: bool = False
    cells: str = ""

    def __post_init__(self):
        batchnorm.check(self.bn, "stage bn")
        if self.layers not in LAYERS:
            raise ValueError(f"stage layers {self.layers!r}; accepted values: {', '.join(LAYERS)}")


LAYERS = ("head", "top", "all")
"""What a stage trains: the head (backbone frozen), the backbone from its unfreeze layer on, or everything."""


@dataclass(frozen=True)
class Step:
    """One notebook of the study.

    Attributes:
        number, notebook, title: the notebook (``notebooks/<notebook>.ipynb``).
        study_notebook: the study's own notebook for this step.
        model: the ``skinlib.backbones`` key it trains (None for the EDA and the ensemble).
        image_size: the study's (height, width).
        batch_size: the study's batch size (every stage).
        val_size: validation share of the images left after the 10 % test part.
        preprocess: the study's input scaling: "unit" (x / 255) or "standardize" (one mean and one std).
        augmentation: the study's ImageDataGenerator.
        stages: the study's fits, in order.
        members: for the ensemble, the steps it averages.
        validation_accuracy, test_accuracy, depth, params: the study's README.
    """

    number: str
    notebook: str
    title: str
    study_notebook: str
    model: str | None = None
    image_size: tuple[int, int] | None = None
    batch_size: int | None = None
    val_size: float = 0.1
    preprocess: str | None = None
    augmentation: Augmentation | None = None
    stages: tuple[Stage, ...] = ()
    members: tuple[str, ...] = ()
    validation_accuracy: float | None = None
    test_accuracy: float | None = None
    depth: int | None = None
    params: int | None = None

    def schedule(self, epochs: int | None = None) -> pd.DataFrame:
        """The study's stages as a table (one row per ``fit``), with ``epochs`` in every stage if given."""
        return schedule(stages(self.number, epochs), self.batch_size)


def schedule(fits, batch_size: int | None) -> pd.DataFrame:
    """Stages as a table, one row per ``fit``: what trains, epochs, batch, Adam, plateau, BatchNorm, study cells."""
    rows = []
    for number, stage in enumerate(fits, start=1):
        plateau = stage.plateau
        rows.append({"fit": number, "layers": stage.layers, "epochs": stage.epochs, "batch": batch_size,
                     "optimizer": f"Adam({stage.learning_rate:g}{', amsgrad' if stage.amsgrad else ''})"
                                  + (" continued" if stage.continues else ""),
                     "plateau (factor/patience/min lr/cooldown)": "—" if plateau is None else
                     f"{plateau.factor}/{plateau.patience}/{plateau.min_lr:g}/{plateau.cooldown}",
                     "BatchNorm": stage.bn, "study cells": stage.cells})
    return pd.DataFrame(rows).set_index("fit")


_BACKBONE_AUGMENTATION = Augmentation(60, 0.2, 0.2, 0.2, 0.2, cells="ImageDataGenerator cell")
_HEAD = dict(epochs=3, learning_rate=1e-4, amsgrad=True)


def _augmentation(cell: int) -> Augmentation:
    return replace(_BACKBONE_AUGMENTATION, cells=f"cells[{cell}]")


def _plateau(cooldown: int, patience: int = 3) -> Plateau:
    return Plateau(factor=0.5, patience=patience, min_lr=1e-6, cooldown=cooldown)


STEPS: tuple[Step, ...] = (
    Step("01", "01_eda", "Exploratory data analysis", "Skin_Cancer_EDA.ipynb"),
    Step("02", "02_baseline_cnn", "Baseline CNN", "Baseline_CNN.ipynb", model="baseline", image_size=(64, 64),
         batch_size=64, val_size=0.2, preprocess="standardize",
         augmentation=Augmentation(40, 0.2, 0.2, 0.2, 0.2, horizontal_flip=True, cells="cells[22]"),
         stages=(Stage("all", 30, 1e-3, False, "none", Plateau(0.5, 3, 1e-5), cells="cells[19], [23], [24]"),),
         validation_accuracy=77.48, test_accuracy=76.54, depth=11, params=2_124_839),
    Step("03", "03_finetune_vgg16", "Fine-tuned VGG16 (from the last block)", "Fine_Tuning_VGG16.ipynb",
         model="vgg16", image_size=STUDY_INPUT_SIZE, batch_size=64, preprocess="unit", augmentation=_augmentation(21),
         stages=(Stage("head", bn="none", cells="cells[14], [17], [22]", **_HEAD),
                 Stage("top", 30, 1e-4, False, "none", _plateau(cooldown=3), cells="cells[25], [26], [29], [30]")),
         validation_accuracy=79.82, test_accuracy=79.64, depth=23, params=14_980_935),
    Step("04", "04_finetune_inception_v3", "Fine-tuned Inception V3 (from the last 2 inception blocks)",
         "Fine_Tuning_InceptionV3.ipynb", model="inception_v3", image_size=STUDY_INPUT_SIZE, batch_size=64,
         preprocess="unit", augmentation=_augmentation(13),
         stages=(Stage("head", bn="reset", cells="cells[9], [11], [14]", **_HEAD),
                 Stage("top", 35, 1e-4, False, "train", _plateau(cooldown=2), cells="cells[15], [16], [17], [19]")),
         validation_accuracy=79.935, test_accuracy=79.94, depth=315, params=22_855_463),
    Step("05", "05_finetune_inception_resnet_v2", "Fine-tuned Inception-ResNet V2 (from the Inception-ResNet-C)",
         "Fine_Tuning_InceptionResNet.ipynb", model="inception_resnet_v2", image_size=STUDY_INPUT_SIZE, batch_size=64,
         preprocess="unit", augmentation=_augmentation(19),
         stages=(Stage("head", bn="reset", cells="cells[12], [15], [20]", **_HEAD),
                 Stage("top", 25, 1e-4, False, "train", _plateau(cooldown=2), cells="cells[23], [24], [25], [27]"),
                 Stage("top", 5, 1e-4, False, "train", _plateau(cooldown=1, patience=2), continues=True,
                       cells="cells[28], [29]")),
         validation_accuracy=80.82, test_accuracy=82.53, depth=784, params=55_127_271),
    # cells[27] asks for 30 epochs; its output stops during epoch 28, and the saved model is the one after 27.
    Step("06", "06_finetune_densenet201", "Fine-tuned DenseNet 201 (from the last dense block)",
         "Fine_Tuning_DenseNet.ipynb", model="densenet201", image_size=STUDY_INPUT_SIZE, batch_size=32,
         preprocess="unit", augmentation=_augmentation(19),
         stages=(Stage("head", bn="reset", cells="cells[12], [15], [20]", **_HEAD),
                 Stage("top", 27, 1e-4, False, "train", _plateau(cooldown=2), cells="cells[23], [24], [25], [27]")),
         validation_accuracy=85.8, test_accuracy=83.9, depth=711, params=19_309_127),
    Step("07", "07_retrain_inception_v3", "Fine-tuned Inception V3 (all layers)", "Retraining_InceptionV3.ipynb",
         model="inception_v3", image_size=STUDY_INPUT_SIZE, batch_size=64, preprocess="unit",
         augmentation=_augmentation(20),
         stages=(Stage("head", bn="keras2_frozen", cells="cells[13], [16], [21]", **_HEAD),
                 Stage("all", 20, 1e-4, False, "train", _plateau(cooldown=2), cells="cells[23], [24], [25], [27]")),
         validation_accuracy=86.92, test_accuracy=86.826),
    Step("08", "08_retrain_densenet201", "Fine-tuned DenseNet 201 (all layers)", "Retraining_DenseNet.ipynb",
         model="densenet201", image_size=STUDY_INPUT_SIZE, batch_size=32, preprocess="unit",
         augmentation=_augmentation(19),
         stages=(Stage("head", bn="keras2_frozen", cells="cells[12], [15], [20]", **_HEAD),
                 Stage("all", 20, 1e-4, False, "train", _plateau(cooldown=2), cells="cells[22], [23], [24], [26]")),
         validation_accuracy=86.696, test_accuracy=87.725),
    Step("09", "09_ensemble", "Ensemble of the fully fine-tuned Inception V3 and DenseNet 201",
         "Ensemble_Models.ipynb", members=("07", "08"), validation_accuracy=88.8, test_accuracy=88.52),
)
"""The nine steps in order."""

NOTEBOOKS: tuple[str, ...] = tuple(step.notebook for step in STEPS)


def get(key: str) -> Step:
    """The step for a number ("03"), a notebook name ("03_finetune_vgg16") or a number without the zero ("3")."""
    text = str(key).strip().removesuffix(".ipynb")
    for step in STEPS:
        if text in (step.number, step.notebook) or (text.isdigit() and int(text) == int(step.number)):
            return step
    accepted = ", ".join(f"{s.number} ({s.notebook})" for s in STEPS)
    raise KeyError(f"unknown study step {key!r}; accepted: {accepted}")


def stages(key: str, epochs: int | None = None) -> tuple[Stage, ...]:
    """The study's stages of a step; ``epochs`` (an int >= 1) replaces every stage's epochs (smoke runs)."""
    found = get(key).stages
    if epochs is None:
        return found
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs={epochs!r}: give None (the study's) or an int >= 1")
    return tuple(replace(stage, epochs=epochs) for stage in found)


def compare(key: str, val_report=None, test_report=None) -> pd.DataFrame:
    """The study's reported accuracies beside a run's (``skinlib.evaluate.Report`` s), in percent, with the
    metrics the study did not report."""
    step = get(key)

    def metric(report, name, scale=100.0):
        return None if report is None else scale * getattr(report, name)

    rows = {
        "validation accuracy (%)": (step.validation_accuracy, metric(val_report, "accuracy")),
        "test accuracy (%)": (step.test_accuracy, metric(test_report, "accuracy")),
        "test balanced accuracy (%)": (None, metric(test_report, "balanced_accuracy")),
        "test macro F1": (None, metric(test_report, "macro_f1", 1.0)),
        "test macro AUC": (None, metric(test_report, "roc_auc_macro", 1.0)),
    }
    frame = pd.DataFrame(rows, index=["study", "this run"]).T
    frame.index.name = step.notebook
    return frame


def architecture(key: str, depth: int, params: int) -> pd.DataFrame:
    """A model's depth and parameter count (``models.depth``, ``models.param_counts``) beside the study's."""
    step = get(key)
    return pd.DataFrame({"study": [step.depth, step.params], "this model": [depth, params]},
                        index=pd.Index(["depth (layers)", "parameters"], name=step.notebook)).astype("Int64")


def table() -> pd.DataFrame:
    """The study's results table, one row per notebook (accuracies in percent; missing values as NA)."""
    rows = [{key: value for key, value in asdict(step).items() if key not in ("stages", "augmentation")}
            | {"members": ", ".join(step.members)} for step in STEPS]
    frame = pd.DataFrame(rows).set_index("number")
    for column in ("depth", "params", "batch_size"):
        frame[column] = frame[column].astype("Int64")
    return frame

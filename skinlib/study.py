"""The study's nine steps and the results it reported, as one table of data.

The study is "Skin Lesions Classification with Deep Convolutional Neural Network" (Hoang Ho, CIS 5526
Machine Learning project, Keras 2.2.4 / TensorFlow 1.11), https://github.com/hoang-ho/Skin_Lesions_Classification_DCNNs.
Its README's results table is reproduced in :data:`STEPS` as reported: validation and test accuracy in
percent, depth in layers and parameter count. The README gives depth and parameters for the first five models
only; the others are left empty (``None``) rather than guessed.

Each step is one notebook of ``notebooks/``::

    >>> from skinlib import study
    >>> study.get("09").test_accuracy
    88.52
    >>> [step.notebook for step in study.STEPS][:2]
    ['01_eda', '02_baseline_cnn']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

SOURCE = "https://github.com/hoang-ho/Skin_Lesions_Classification_DCNNs"
TITLE = "Skin Lesions Classification with Deep Convolutional Neural Network"


@dataclass(frozen=True)
class Step:
    """One step of the study (one notebook).

    Attributes:
        number: two digits, the notebook's prefix ("01" ... "09").
        notebook: the notebook's name without ``.ipynb``.
        title: what the step does, in words.
        study_notebook: the study's own notebook for this step.
        model: the ``skinlib.models`` key trained in the step (None for the EDA and the ensemble).
        stage: the fine-tuning stage after the frozen-backbone one: "top" (the study's partial unfreeze) or
            "all"; the baseline CNN trains in one stage, "all".
        members: for the ensemble, the steps whose models it averages.
        validation_accuracy, test_accuracy: the study's reported accuracy, in percent (None: not reported).
        depth: layers, as the study counted them (None: not reported).
        params: parameters (None: not reported).
    """

    number: str
    notebook: str
    title: str
    study_notebook: str
    model: str | None = None
    stage: str | None = None
    members: tuple[str, ...] = ()
    validation_accuracy: float | None = None
    test_accuracy: float | None = None
    depth: int | None = None
    params: int | None = None


STEPS: tuple[Step, ...] = (
    Step("01", "01_eda", "Exploratory data analysis", "Skin_Cancer_EDA.ipynb"),
    Step("02", "02_baseline_cnn", "Baseline CNN", "Baseline_CNN.ipynb", model="baseline", stage="all",
         validation_accuracy=77.48, test_accuracy=76.54, depth=11, params=2_124_839),
    Step("03", "03_finetune_vgg16", "Fine-tuned VGG16 (from the last block)", "Fine_Tuning_VGG16.ipynb",
         model="vgg16", stage="top",
         validation_accuracy=79.82, test_accuracy=79.64, depth=23, params=14_980_935),
    Step("04", "04_finetune_inception_v3", "Fine-tuned Inception V3 (from the last 2 inception blocks)",
         "Fine_Tuning_InceptionV3.ipynb", model="inception_v3", stage="top",
         validation_accuracy=79.935, test_accuracy=79.94, depth=315, params=22_855_463),
    Step("05", "05_finetune_inception_resnet_v2", "Fine-tuned Inception-ResNet V2 (from the Inception-ResNet-C)",
         "Fine_Tuning_InceptionResNet.ipynb", model="inception_resnet_v2", stage="top",
         validation_accuracy=80.82, test_accuracy=82.53, depth=784, params=55_127_271),
    Step("06", "06_finetune_densenet201", "Fine-tuned DenseNet 201 (from the last dense block)",
         "Fine_Tuning_DenseNet.ipynb", model="densenet201", stage="top",
         validation_accuracy=85.8, test_accuracy=83.9, depth=711, params=19_309_127),
    Step("07", "07_retrain_inception_v3", "Fine-tuned Inception V3 (all layers)", "Retraining_InceptionV3.ipynb",
         model="inception_v3", stage="all", validation_accuracy=86.92, test_accuracy=86.826),
    Step("08", "08_retrain_densenet201", "Fine-tuned DenseNet 201 (all layers)", "Retraining_DenseNet.ipynb",
         model="densenet201", stage="all", validation_accuracy=86.696, test_accuracy=87.725),
    Step("09", "09_ensemble", "Ensemble of the fully fine-tuned Inception V3 and DenseNet 201",
         "Ensemble_Models.ipynb", members=("07", "08"), validation_accuracy=88.8, test_accuracy=88.52),
)
"""The nine steps in order; the notebooks are ``notebooks/<notebook>.ipynb``."""

NOTEBOOKS: tuple[str, ...] = tuple(step.notebook for step in STEPS)


def get(key: str) -> Step:
    """The step for a number ("03"), a notebook name ("03_finetune_vgg16") or a number without the zero ("3")."""
    text = str(key).strip().removesuffix(".ipynb")
    for step in STEPS:
        if text in (step.number, step.notebook) or (text.isdigit() and int(text) == int(step.number)):
            return step
    accepted = ", ".join(f"{s.number} ({s.notebook})" for s in STEPS)
    raise KeyError(f"unknown study step {key!r}; accepted: {accepted}")


def table() -> pd.DataFrame:
    """The study's results table, one row per notebook (accuracies in percent; missing values as NA)."""
    rows = [{**asdict(step), "members": ", ".join(step.members)} for step in STEPS]
    frame = pd.DataFrame(rows).set_index("number")
    for column in ("depth", "params"):
        frame[column] = frame[column].astype("Int64")
    return frame

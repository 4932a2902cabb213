"""The fidelity table: every setting of notebooks 02-09, the study's value beside what skinlib runs.

The study's values are the rows of ``skinlib.study`` (each with its notebook cells). skinlib's values are read back
from what a run resolves and uses: its ``settings.Settings`` (validation share, input size, batch size, the stages
as the recipe runs them, so a notebook's overrides show), the optimizer ``recipe.make_optimizer`` makes, the
callbacks ``train.schedule_callbacks`` gives ``train.fit``, and the augmentation layers ``augment.pipeline``
builds. A setting skinlib cannot run as the study did is a named deviation (:data:`DEVIATIONS`), with its
reason; one that the run's parameters change is marked "parameter"; one the recipe changes, "recipe"::

    >>> fidelity.table(run)                  # a notebook's run (settings.resolve), overrides included
    >>> fidelity.table("04")                 # one notebook with its defaults, the study's recipe
    >>> fidelity.table(None, "corrected")    # what the corrected recipe changes
    >>> fidelity.markdown()                  # docs/fidelity.md
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd

from skinlib import augment, backbones, recipes, settings, study

COLUMNS = ("notebook", "setting", "study", "study cells", "skinlib", "status")

DEVIATIONS: dict[str, tuple[str, str, str]] = {
    # setting: (study's value, skinlib's value, reason)
    "validation each epoch": (
        "validation_steps = N_val // batch batches of a shuffled generator of Keras' default batch 32: 448 of the "
        "902 images at batch 64, 896 at batch 32, a new subset each epoch",
        "every validation image, every epoch",
        "a fixed, complete validation set makes the plateau and checkpoint decisions depend on the model, not on "
        "which half of the images was drawn"),
    "steps per epoch": (
        "N_train // batch (the remainder, up to batch - 1 images, unseen that epoch)",
        "ceil(N_train / batch): every image every epoch, the last batch smaller",
        "Keras 3 feeds NumPy arrays whole; the difference is under one batch per epoch"),
    "augmentation resampling": (
        "one affine transform per image (ImageDataGenerator), one interpolation",
        "RandomRotation, RandomTranslation, RandomShear, RandomZoom in turn, each interpolating bilinearly",
        "Keras 3 removed ImageDataGenerator; its preprocessing layers compose the same ranges, slightly softer"),
    "image decoding": (
        "full JPEG decode, then LANCZOS to the input size",
        "JPEG draft (DCT) scaling to at least twice the size, then LANCZOS",
        "faster decoding of large JPEGs; mean absolute difference 0.66 of 255 at 192x256 (99th percentile 3) and 0.79 "
        "at 64x64, on the 239 originals (python bench/decode_difference.py)"),
    "baseline images": (
        "Kaggle's hmnist_64_64_RGB.csv (64x64 images resized by its uploader, method unknown)",
        "the HAM10000 JPEGs resized to 64x64 by skinlib (LANCZOS)",
        "the CSV is not part of the official release (Harvard Dataverse); skinlib reads the official images"),
    "randomness": (
        "unseeded (every run differs)", "seeded (keras.utils.set_random_seed; splits, augmentation, shuffling)",
        "repeatable runs; the split itself is the study's (random_state 0 and 1)"),
}

_STUDY_ONLY_DEVIATIONS = {"06": {"epochs (fit 2)": "cells[27] asks for 30 epochs but its output stops during epoch "
                                                   "28: the reported model had 27, which skinlib runs"}}


def _fit_settings(recipe, theirs, ours) -> Iterable[tuple[str, object, object]]:
    """(setting, study value, skinlib value) of one fit: the study's stage beside the stage the run trains."""
    from skinlib import train

    made = recipe.make_optimizer(ours)
    optimizer = made.get_config()
    yield "epochs", theirs.epochs, ours.epochs
    yield "optimizer", "Adam", type(made).__name__
    yield "learning rate", theirs.learning_rate, float(optimizer["learning_rate"])
    yield "amsgrad", theirs.amsgrad, bool(optimizer["amsgrad"])
    yield "Adam epsilon", 1e-7, float(optimizer["epsilon"])  # Keras 2.2.4: epsilon=None means K.epsilon(), 1e-7
    yield "continues the previous optimizer", theirs.continues, ours.continues
    yield "BatchNorm", theirs.bn, ours.bn
    callbacks = train.schedule_callbacks(ours, recipe)
    plateau = next((c for c in callbacks if type(c).__name__ == "ReduceLROnPlateau"), None)
    planned = theirs.plateau
    yield ("plateau", "none" if planned is None else
           f"val_accuracy, factor {planned.factor}, patience {planned.patience}, min_lr {planned.min_lr:g}, "
           f"cooldown {planned.cooldown}",
           "none" if plateau is None else
           f"{plateau.monitor}, factor {plateau.factor}, patience {plateau.patience}, min_lr {plateau.min_lr:g}, "
           f"cooldown {plateau.cooldown}")
    stopping = next((c for c in callbacks if type(c).__name__ == "EarlyStopping"), None)
    yield "early stopping", "none", "none" if stopping is None else f"{stopping.monitor}, patience {stopping.patience}"


def _step_rows(run: settings.Settings) -> list[dict]:
    step, recipe = run.step, run.recipe
    rows = []

    def add(setting, theirs, ours, cells="", checked_by=None):
        rows.append({"notebook": step.notebook, "setting": setting, "study": _text(theirs), "study cells": cells,
                     "skinlib": _text(ours), "status": None if checked_by is None else f"matches ({checked_by})"})

    if step.members:
        add("members", "the fully fine-tuned Inception V3 and DenseNet 201", ", ".join(run.members), "cells[11], [18]",
            checked_by="notebook 09's members parameter defaults to them")
        add("combination", "Keras Average() of the two softmax outputs", "ensemble.average: the mean probability",
            "cells[24]", checked_by="the same arithmetic mean; tests/test_ensemble.py")
        add("evaluation", "accuracy", "accuracy, plus every metric of the report and a validation-weighted ensemble "
            "beside the plain average", checked_by="additions; the study's plain average is reported as the ensemble")
        return rows
    study_split = "train_test_split(test 0.1, random_state=0), then validation with random_state=1"
    if run.protocol == "study" and run.seed == 0:
        add("split", study_split, 'data.split(protocol="study", seed=0)', "Baseline_CNN cells[8], [10]",
            checked_by="the same two train_test_split calls; tests/test_splits.py")
    else:
        add("split", study_split, f'data.split(protocol="{run.protocol}", seed={run.seed})', "Baseline_CNN cells[8], [10]")
    add("validation share", step.val_size, run.val_size, "Baseline_CNN cells[10]" if step.number == "02" else "")
    add("input size (height, width)", step.image_size, run.image_size)
    add("input scaling", step.preprocess, run.preprocess if recipe.preprocess == "study" else
        f"the backbone's own ({backbones.get(step.model).preprocess})")
    if step.preprocess == "standardize":
        add("mean and std over", "train, val, test", ", ".join(recipe.standardize_on), "cells[7]")
    pipeline = augment.describe(augment.pipeline(run.augmentation))
    for name in ("rotation_range", "width_shift_range", "height_shift_range", "shear_range", "zoom_range",
                 "horizontal_flip", "fill_mode"):
        add(f"augmentation {name}", getattr(step.augmentation, name), pipeline.get(name), step.augmentation.cells)
    if pipeline.get("vertical_flip") or pipeline.get("rot90"):
        add("augmentation flips and turns", "none", "vertical flips and 90-degree turns of square inputs")
    add("batch size", step.batch_size, run.batch_size)
    for number, (theirs, ours) in enumerate(zip(step.stages, run.stages), start=1):
        for setting, study_value, value in _fit_settings(recipe, theirs, ours):
            add(f"{setting} (fit {number}, {theirs.layers})", study_value, value, theirs.cells)
    add("class balancing", "none", recipe.balance or "none")
    add("weights kept", "the last epoch's", "the best validation epoch's" if recipe.restore_best else "the last epoch's")
    add("loss", "categorical cross-entropy", "categorical cross-entropy" + (
        f", label smoothing {recipe.label_smoothing}" if recipe.label_smoothing else ""))
    for setting, (theirs, ours, _) in DEVIATIONS.items():
        if setting == "baseline images" and step.number != "02":
            continue
        if setting == "validation each epoch" and step.number == "02":  # no validation_steps: every image
            add(setting, "every validation image (no validation_steps)", "every validation image, every epoch",
                "cells[24]", checked_by="fit_generator's default covers the whole generator")
            continue
        add(setting, theirs, ours)
    return rows


def _runs(run, recipe) -> list[settings.Settings]:
    if isinstance(run, settings.Settings):
        return [run]
    steps = [study.get(run)] if run is not None else [s for s in study.STEPS if s.model or s.members]
    return [settings.resolve(s, {"recipe": recipe, "members": list(s.members)}) for s in steps]


def table(run: "settings.Settings | str | None" = None, recipe: str | recipes.Recipe = "study") -> pd.DataFrame:
    """One row per setting of a run: the study's value and cells, skinlib's value, and the status: "matches",
    "deviation: <reason>", "parameter: ..." for what the run's parameters change, or "recipe: <name>" for what a
    recipe other than the study's changes on purpose. "differs (unexplained)" would be a bug (the tests look for
    it). ``run``: a ``settings.Settings`` (its recipe and overrides), a notebook number (its defaults under
    ``recipe``), or None (every notebook 02-09 under ``recipe``)."""
    rows = []
    for resolved in _runs(run, recipe):
        defaults = {(r["setting"]): r["skinlib"] for r in _step_rows(_runs(resolved.number, resolved.recipe)[0])}
        special_rows = _STUDY_ONLY_DEVIATIONS.get(resolved.number, {})
        for row in _step_rows(resolved):
            bare = row["setting"].split(" (fit")[0]
            special = special_rows.get(row["setting"])
            if row["status"] is not None:
                pass
            elif bare in DEVIATIONS:
                row["status"] = f"deviation: {DEVIATIONS[bare][2]}"
            elif row["study"] == row["skinlib"]:
                row["status"] = "matches" if special is None else f"matches what ran: {special}"
            elif defaults.get(row["setting"]) != row["skinlib"]:
                row["status"] = "parameter: this run's parameters set it (the notebook's default: "\
                                f"{defaults.get(row['setting'])})"
            elif resolved.recipe.name != "study":
                row["status"] = f"recipe: {resolved.recipe.name}"
            else:
                row["status"] = "differs (unexplained)"
            rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def markdown(recipe: str | recipes.Recipe = "study") -> str:
    """The table as Markdown (``docs/fidelity.md``), deviations first."""
    frame = table(None, recipe)
    deviations = frame[frame["status"].str.startswith("deviation")].drop_duplicates("setting")
    lines = [f"# Fidelity to the study ({study.SOURCE})", "",
             "Generated by `python -m skinlib.fidelity` from `skinlib.study`, `skinlib.recipes` and the objects "
             "training uses; `cells[N]` is the N-th cell of the study's notebook, counted from 0.", "",
             "## Deviations that remain", "", "| setting | study | skinlib | why |", "|---|---|---|---|"]
    lines += [f"| {r.setting} | {r.study} | {r.skinlib} | {r.status.removeprefix('deviation: ')} |"
              for r in deviations.itertuples()]
    lines += ["", "## Every setting, per notebook", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(v).replace("|", "/") for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _text(value) -> str:
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value) if all(isinstance(v, int) for v in value) else str(list(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


if __name__ == "__main__":
    print(markdown(), end="")

"""The evaluation figures: training curves, confusion matrices, ROC curves, reliability, mistakes, Grad-CAM.

Each function returns a :class:`matplotlib.figure.Figure` and, given ``path``, also saves it as a PNG.
The figures are not registered with pyplot: one shows inline when it is the last expression of a
notebook cell (or through ``display(fig)``), is never shown twice, and is freed when no longer
referenced, so figures made in a loop do not pile up.

    >>> figures.training_curves(history, path="figures/vgg16_curves.png")
    >>> figures.confusion_matrices(y_test, proba)
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from skinlib import CLASSES
from skinlib.calibration import DEFAULT_BINS, expected_calibration_error, reliability

DPI = 120


def _finish(figure: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=DPI, format="png", bbox_inches="tight")
    return figure


def _predictions(proba_or_pred) -> np.ndarray:
    values = np.asarray(proba_or_pred)
    return values.argmax(axis=1) if values.ndim == 2 else values.astype(np.int64)


def training_curves(history: pd.DataFrame, path: str | Path | None = None, title: str | None = None) -> Figure:
    """Loss, accuracy (and learning rate, if logged) per epoch over all training stages.

    ``history`` is ``skinlib.train.fit``'s frame (columns epoch, stage, loss, accuracy, val_loss,
    val_accuracy, lr; one row per epoch, in order). Epochs are counted across stages; a dashed line
    marks where each stage begins.
    """
    missing = {"stage", "loss"} - set(history.columns)
    if missing:
        raise ValueError(f"history lacks the columns {sorted(missing)}; expected skinlib.train.fit's frame "
                         f"(epoch, stage, loss, accuracy, val_loss, val_accuracy, lr)")
    frame = history.reset_index(drop=True)
    x = np.arange(1, len(frame) + 1)
    panels = [("loss", "loss"), ("accuracy", "accuracy")]
    if "lr" in frame and frame["lr"].notna().any():
        panels.append(("lr", "learning rate"))
    figure = Figure(figsize=(5 * len(panels), 4), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    stages = frame["stage"].astype(str).tolist()
    starts = [i for i in range(len(stages)) if i == 0 or stages[i] != stages[i - 1]]
    for ax, (column, label) in zip(axes, panels):
        for prefix, name in (("", "train"), ("val_", "validation")):
            key = prefix + column if column != "lr" else ("lr" if prefix == "" else None)
            if key in frame and frame[key].notna().any():
                ax.plot(x, frame[key].astype(float), marker=".", label=name if column != "lr" else "lr")
        for start in starts[1:]:
            ax.axvline(start + 0.5, color="grey", linestyle="--", linewidth=1)
        for start in starts:
            ax.annotate(stages[start], xy=(start + 0.6, 1.0), xycoords=("data", "axes fraction"),
                        va="top", fontsize=8, color="grey")
        if column == "lr":
            ax.set_yscale("log")
        ax.set_xlabel("epoch (all stages)")
        ax.set_ylabel(label)
        ax.legend(loc="best")
        ax.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    return _finish(figure, path)


def confusion_matrices(y_true, proba_or_pred, classes: Sequence[str] = CLASSES,
                       path: str | Path | None = None, title: str | None = None) -> Figure:
    """Raw counts and row-normalised (recall) confusion matrices side by side, with class names."""
    import seaborn as sns
    from sklearn.metrics import confusion_matrix

    labels = list(range(len(classes)))
    counts = confusion_matrix(np.asarray(y_true), _predictions(proba_or_pred), labels=labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = counts / counts.sum(axis=1, keepdims=True)
    figure = Figure(figsize=(13, 5.5), layout="constrained")
    left, right = figure.subplots(1, 2)
    sns.heatmap(counts, annot=True, fmt="d", cmap="Blues", cbar=False, ax=left,
                xticklabels=classes, yticklabels=classes)
    sns.heatmap(normalised, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, ax=right,
                xticklabels=classes, yticklabels=classes)
    left.set_title("counts")
    right.set_title("normalised by true class (recall on the diagonal)")
    for ax in (left, right):
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    if title:
        figure.suptitle(title)
    return _finish(figure, path)


def roc_curves(y_true, proba, classes: Sequence[str] = CLASSES, path: str | Path | None = None,
               title: str | None = None) -> Figure:
    """One-vs-rest ROC curve of every class present (with both positives and negatives) in ``y_true``."""
    from sklearn.metrics import RocCurveDisplay

    y_true, proba = np.asarray(y_true), np.asarray(proba)
    figure = Figure(figsize=(6.5, 6), layout="constrained")
    ax = figure.subplots()
    for k, name in enumerate(classes):
        positives = y_true == k
        if positives.any() and not positives.all():
            RocCurveDisplay.from_predictions(positives, proba[:, k], name=name, ax=ax)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title(title or "one-vs-rest ROC curves")
    ax.legend(loc="lower right", fontsize=8)
    return _finish(figure, path)


def reliability_diagram(y_true, proba, n_bins: int = DEFAULT_BINS, path: str | Path | None = None,
                        title: str | None = None) -> Figure:
    """Accuracy against confidence per bin (top label), with each set's ECE and a confidence histogram.

    ``proba`` is one array or a dict name -> array (e.g. before and after temperature scaling).
    """
    sets = dict(proba) if isinstance(proba, Mapping) else {"model": proba}
    figure = Figure(figsize=(6, 6.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for name, values in sets.items():
        table = reliability(y_true, values, n_bins)
        filled = table[table["count"] > 0]
        ece = expected_calibration_error(y_true, values, n_bins)
        top.plot(filled["confidence"], filled["accuracy"], marker="o", label=f"{name} (ECE {ece:.3f})")
        bottom.hist(np.asarray(values).max(axis=1), bins=np.linspace(0, 1, n_bins + 1), histtype="step",
                    label=name)
    top.set_ylabel("accuracy")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(loc="upper left")
    top.set_title(title or "reliability diagram")
    bottom.set_xlabel("confidence (highest class probability)")
    bottom.set_ylabel("images")
    return _finish(figure, path)


def image_grid(images, titles: Sequence[str] | None = None, ncols: int = 4, path: str | Path | None = None,
               title: str | None = None, cell: float = 2.6) -> Figure:
    """Images (N, H, W, 3; uint8 or 0..1 float) in a grid, each with an optional title."""
    images = list(images)
    rows = max(1, -(-len(images) // ncols))
    figure = Figure(figsize=(cell * ncols, cell * 0.85 * rows + 0.4), layout="constrained")
    axes = figure.subplots(rows, ncols, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i < len(images):
            ax.imshow(np.asarray(images[i]))
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if not images:
        axes[0].text(0.5, 0.5, "nothing to show", ha="center", va="center", transform=axes[0].transAxes)
    if title:
        figure.suptitle(title)
    return _finish(figure, path)


def confident_mistakes(images, y_true, proba, classes: Sequence[str] = CLASSES, n: int = 16, ncols: int = 4,
                       path: str | Path | None = None) -> Figure:
    """The ``n`` wrong predictions made with the highest confidence, titled "true / predicted (p)"."""
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    predicted = proba.argmax(axis=1)
    confidence = proba.max(axis=1)
    wrong = np.flatnonzero(predicted != y_true)
    chosen = wrong[np.argsort(-confidence[wrong], kind="stable")][:n]
    titles = [f"true {classes[y_true[i]]} / pred {classes[predicted[i]]} ({confidence[i]:.2f})" for i in chosen]
    return image_grid([images[i] for i in chosen], titles, ncols=ncols, path=path,
                      title=f"most confident mistakes ({len(wrong)} of {len(y_true)} images wrong)")


def gradcam_grid(images, heatmaps, titles: Sequence[str] | None = None, ncols: int = 4, alpha: float = 0.4,
                 path: str | Path | None = None, title: str | None = None) -> Figure:
    """Grad-CAM heatmaps overlaid on their images (see :func:`skinlib.gradcam.overlay`)."""
    from skinlib.gradcam import overlay

    pictures = [overlay(image, heat, alpha=alpha) for image, heat in zip(images, heatmaps)]
    return image_grid(pictures, titles, ncols=ncols, path=path, title=title)


def subgroup_metrics(result, metric: str = "balanced_accuracy", path: str | Path | None = None) -> Figure:
    """Per group, ``metric`` with its interval: one panel of horizontal points and error bars per attribute.

    ``result`` is :func:`skinlib.evaluate.subgroups`'s result (or its ``table``); ``metric`` one of its
    metrics (``balanced_accuracy``, ``roc_auc_macro``, ``melanoma_sensitivity``, ``melanoma_specificity``).
    """
    table = getattr(result, "table", result)
    if metric not in table.columns or f"{metric}_low" not in table.columns:
        metrics = [c[:-4] for c in table.columns if c.endswith("_low")]
        raise ValueError(f"subgroup_metrics(metric={metric!r}): not in the table; choose one of {metrics}")
    attributes = list(dict.fromkeys(table["attribute"]))
    if not attributes:
        raise ValueError("subgroup_metrics: the table has no groups (no attribute of `by` was in the frame)")
    heights = [max(1, (table["attribute"] == a).sum()) for a in attributes]
    figure = Figure(figsize=(7, 0.45 * sum(heights) + 0.7 * len(attributes)))
    axes = figure.subplots(len(attributes), 1, sharex=True, squeeze=False,
                           gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, attribute in zip(axes, attributes):
        rows = table[table["attribute"] == attribute].iloc[::-1]
        value = rows[metric].to_numpy(dtype=float)
        errors = np.abs(np.vstack([value - rows[f"{metric}_low"], rows[f"{metric}_high"] - value]))
        ax.errorbar(value, np.arange(len(rows)), xerr=np.nan_to_num(errors), fmt="o", capsize=3)
        ax.set_yticks(np.arange(len(rows)),
                      [f"{g} ({n:,})" for g, n in zip(rows["group"], rows["images"])])
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_ylabel(attribute)
        ax.grid(axis="x", alpha=0.3)
    unit = getattr(result, "interval_unit", "lesion")
    axes[-1].set_xlabel(f"{metric.replace('_', ' ')} (interval over {unit}s; images per group)")
    figure.tight_layout()
    return _finish(figure, path)

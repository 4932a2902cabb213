"""Predict class probabilities and report what the field reports about them.

The study reported accuracy and loss. On a test set that is two-thirds nevi, a model that always answers
"nevus" reaches 67 % accuracy, so :func:`report` adds the ISIC 2018 metric (balanced accuracy, the mean
per-class recall), macro F1, one-vs-rest ROC AUC, per-class precision / recall / F1, melanoma sensitivity
and specificity, log loss, calibration error, the confusion matrix, and bootstrap confidence intervals
(the grouped test set's 1,002 images of 748 lesions give roughly +-3 accuracy points when lesions are
resampled, +-2.5 when images are)::

    >>> proba = evaluate.predict(model, x_test, tta=True)
    >>> result = evaluate.report(y_test, proba, groups=test["lesion_id"])
    >>> result                # a table in a notebook
    >>> print(result.summary())
    >>> result.to_json("results/vgg16.json")

Every metric is computed by scikit-learn; classes absent from a (small) test set give NaN with a note
instead of an error. Intervals come from :mod:`skinlib.bootstrap`: with ``groups`` (the lesion of each
image) they resample lesions, since photos of one lesion are not independent; without, images.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn import metrics

from skinlib import CLASSES, bootstrap
from skinlib.bootstrap import bootstrap_interval  # the one bootstrap, also available here
from skinlib.calibration import DEFAULT_BINS, check_labels, check_proba, expected_calibration_error
from skinlib.report import Report
from skinlib.subgroups import subgroups  # noqa: F401  (metrics per sex, age, site, source: evaluate.subgroups)

MELANOMA = "mel"
IMAGE_INTERVALS_NOTE = ("intervals resample images: no lesion ids (groups) were given, e.g. for an external "
                        "test set; they are optimistic (too narrow) when several images show the same lesion")

# ----------------------------------------------------------------------------------------------------
# Prediction with test-time augmentation
# ----------------------------------------------------------------------------------------------------

# Dermoscopic images have no up, down, left or right: the eight symmetries of the square (the dihedral
# group D4) are all plausible views of a lesion. Arrays are (N, H, W, C).
_FLIPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda x: x,
    "flip_left_right": lambda x: x[:, :, ::-1],
    "flip_up_down": lambda x: x[:, ::-1],
    "rotate_180": lambda x: x[:, ::-1, ::-1],
}
_QUARTER_TURNS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "rotate_90": lambda x: np.rot90(x, 1, axes=(1, 2)),
    "rotate_270": lambda x: np.rot90(x, 3, axes=(1, 2)),
    "transpose": lambda x: np.swapaxes(x, 1, 2),
    "anti_transpose": lambda x: np.rot90(x, 2, axes=(1, 2)).swapaxes(1, 2),
}
TTA_MODES = ("flips", "d4", "auto")


def tta_transforms(tta, image_shape: Sequence[int]) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """The transforms averaged over for a ``tta`` setting and images of ``image_shape`` (H, W, ...).

    ``None``/``False``: identity only. ``"flips"``: identity, both flips and the half turn (4 views, the
    shape is kept). ``"d4"``: those plus the quarter turns and both transposes (8 views; square images
    only, since a turned landscape image would be squashed into the model's landscape input).
    ``True``/``"auto"``: ``"d4"`` for square images, else ``"flips"``.
    """
    if tta is None or tta is False:
        return {"identity": _FLIPS["identity"]}
    mode = "auto" if tta is True else tta
    if mode not in TTA_MODES:
        raise ValueError(f"tta must be None, True or one of {TTA_MODES}, got {tta!r}")
    square = image_shape[0] == image_shape[1]
    if mode == "auto":
        mode = "d4" if square else "flips"
    if mode == "d4" and not square:
        raise ValueError(f"tta='d4' needs square images, got {tuple(image_shape[:2])} (H, W): use "
                         f"tta='flips' or tta=True, which keep the shape")
    return dict(_FLIPS, **_QUARTER_TURNS) if mode == "d4" else dict(_FLIPS)


def predict(model, images, tta=None, batch_size: int = 32, verbose: bool = False, metadata=None) -> np.ndarray:
    """Class probabilities (N, classes) of ``model`` on ``images`` (N, H, W, 3; uint8 or float 0..255).

    ``tta`` averages the probabilities over flipped and turned copies (see :func:`tta_transforms`); only the
    image varies. ``metadata``: a fused model's (N, width) vectors (``data.metadata_vectors``); None: the
    missing-value code (``skinlib.fusion.vectors``); an image-only model takes None or zero-width vectors.
    Images are fed batch by batch, so a memory-mapped array from ``data.load_images`` is never copied
    whole.
    """
    if len(getattr(images, "shape", ())) != 4:
        raise ValueError(f"images must be a 4-D array (N, H, W, channels), got shape "
                         f"{getattr(images, 'shape', type(images))}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    transforms = tta_transforms(tta, images.shape[1:])
    from skinlib import fusion

    vectors = fusion.vectors(model, len(images), metadata)
    starts = range(0, len(images), batch_size)
    if verbose:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="predict", unit="batch")
    outputs = []
    for start in starts:
        batch = np.asarray(images[start:start + batch_size])
        fed = None if vectors is None else vectors[start:start + batch_size]
        views = (fusion.inputs(model, np.ascontiguousarray(transform(batch)), fed) for transform in transforms.values())
        total = sum(np.asarray(model.predict_on_batch(view), dtype=np.float64) for view in views)
        outputs.append(total / len(transforms))
    if not outputs:
        n_classes = model.output_shape[-1]
        return np.zeros((0, n_classes), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------

def _roc_auc_per_class(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str],
                       notes: list[str]) -> np.ndarray:
    aucs = np.full(len(classes), np.nan)
    undefined = []
    for k, name in enumerate(classes):
        positives = y_true == k
        if positives.all() or not positives.any():
            undefined.append(name)
            continue
        aucs[k] = metrics.roc_auc_score(positives, proba[:, k])
    only = [name for k, name in enumerate(classes) if name in undefined and (y_true == k).any()]
    if only:
        notes.append(f"ROC AUC undefined (NaN) for {', '.join(only)}: y_true has no other class")
    if undefined:
        averaged = [name for name in classes if name not in undefined]
        notes.append(f"the macro ROC AUC averages the {len(averaged)} classes whose AUC is defined: "
                     f"{', '.join(averaged)}")
    return aucs


def _melanoma_rates(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str],
                    melanoma: str, notes: list[str]) -> tuple[float, float]:
    if melanoma not in classes:
        notes.append(f"no class {melanoma!r} among {list(classes)}: melanoma sensitivity and specificity NaN")
        return math.nan, math.nan
    k = list(classes).index(melanoma)
    actual, called = y_true == k, y_pred == k
    sensitivity = float(called[actual].mean()) if actual.any() else math.nan
    specificity = float((~called[~actual]).mean()) if (~actual).any() else math.nan
    if not actual.any():
        notes.append("no melanoma in y_true: melanoma sensitivity is NaN")
    if actual.all():
        notes.append("only melanoma in y_true: melanoma specificity is NaN")
    return sensitivity, specificity


def _as_labels(y_true, classes: Sequence[str]) -> np.ndarray:
    """Integer labels from integer labels or class codes."""
    array = np.asarray(y_true)
    if array.dtype.kind in "OUS" or isinstance(getattr(y_true, "dtype", None), pd.StringDtype):
        lookup = {name: k for k, name in enumerate(classes)}
        unknown = sorted({str(v) for v in array if v not in lookup})
        if unknown:
            raise ValueError(f"y_true has unknown class codes {unknown}; expected some of {list(classes)}")
        return np.array([lookup[v] for v in array], dtype=np.int64)
    return array


def report(y_true, proba, *, groups=None, unit: str = "lesion", classes: Sequence[str] = CLASSES,
           n_bootstrap: int = 1000, confidence_level: float = 0.95, seed: int = 0, n_bins: int = DEFAULT_BINS,
           melanoma: str = MELANOMA) -> Report:
    """Evaluate class probabilities ``proba`` (N, classes) against labels ``y_true`` (indices or codes).

    Predictions are the argmax of ``proba``. Accuracy, balanced accuracy, macro F1 and macro ROC AUC get
    percentile bootstrap intervals (``n_bootstrap`` resamples, seeded; the same resamples for all four)
    that resample ``groups`` (one id per image, e.g. the ``lesion_id`` column; ``unit`` names them): whole
    lesions are drawn with replacement. Without ``groups`` images are resampled, with a note that this is
    optimistic when images repeat lesions.
    """
    classes = tuple(classes)
    proba = check_proba(proba, len(classes))
    y_true = check_labels(_as_labels(y_true, classes), len(proba), len(classes))
    if len(y_true) == 0:
        raise ValueError("cannot evaluate an empty set of predictions")
    y_pred = proba.argmax(axis=1)
    labels = list(range(len(classes)))
    notes: list[str] = []
    _, n_groups = bootstrap.group_codes(groups, len(y_true))

    absent = [name for k, name in enumerate(classes) if not (y_true == k).any()]
    if absent:
        notes.append(f"classes absent from y_true: {', '.join(absent)} (their recall, F1 and AUC are NaN; "
                     f"balanced accuracy averages the classes present, macro F1 those present or predicted)")
    present = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=np.nan)
    aucs = _roc_auc_per_class(y_true, proba, classes, notes)
    per_class = pd.DataFrame({"precision": precision, "recall": recall, "f1": f1, "support": support,
                              "roc_auc": aucs}, index=pd.Index(classes, name="class"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true": handled as sklearn does
        balanced = float(metrics.balanced_accuracy_score(y_true, y_pred))
        macro_f1 = float(metrics.f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0))
    sensitivity, specificity = _melanoma_rates(y_true, y_pred, classes, melanoma, notes)
    normalised = proba / proba.sum(axis=1, keepdims=True)
    if groups is None:
        notes.append(IMAGE_INTERVALS_NOTE)
    intervals = _intervals(y_true, proba, groups=groups, n_resamples=n_bootstrap,
                           confidence_level=confidence_level, seed=seed)
    return Report(
        n=len(y_true), classes=classes,
        accuracy=float(metrics.accuracy_score(y_true, y_pred)),
        balanced_accuracy=balanced,
        macro_f1=macro_f1,
        roc_auc_macro=float(np.nanmean(aucs)) if not np.isnan(aucs).all() else math.nan,
        log_loss=float(metrics.log_loss(y_true, normalised, labels=labels)),
        ece=expected_calibration_error(y_true, proba, n_bins),
        melanoma_sensitivity=sensitivity, melanoma_specificity=specificity,
        intervals=intervals, per_class=per_class,
        confusion=metrics.confusion_matrix(y_true, y_pred, labels=labels),
        confidence_level=confidence_level, notes=notes, n_groups=n_groups,
        interval_unit="image" if groups is None else unit)


def _intervals(y_true: np.ndarray, proba: np.ndarray, **options) -> dict[str, tuple[float, float]]:
    """Bootstrap intervals of the headline metrics; ``options`` go to :func:`bootstrap.bootstrap_interval`
    (the same seed, so the same resampled groups, for every metric)."""
    y_pred = proba.argmax(axis=1)
    return {
        "accuracy": bootstrap_interval(bootstrap.accuracy, y_true, y_pred, **options),
        "balanced_accuracy": bootstrap_interval(bootstrap.balanced_accuracy, y_true, y_pred, **options),
        "macro_f1": bootstrap_interval(bootstrap.macro_f1, y_true, y_pred, **options),
        "roc_auc_macro": bootstrap_interval(bootstrap.macro_roc_auc, y_true, proba, **options),
    }


def reports(parts, proba: dict[str, np.ndarray], seed: int = 0, **options) -> dict[str, Report]:
    """:func:`report` for each entry of ``proba`` ({name: probabilities}) against its part of ``parts`` (a
    ``data.Split``): labels from the part's ``label`` column, intervals resampling its ``lesion_id``. A name that
    is not a part ("test_calibrated") scores against the part before its first underscore ("test")."""
    found = {}
    for name, probabilities in proba.items():
        frame = getattr(parts, name, None)
        if not isinstance(frame, pd.DataFrame):
            frame = getattr(parts, name.partition("_")[0])
        found[name] = report(frame["label"].to_numpy(), probabilities, groups=frame["lesion_id"], seed=seed,
                             **options)
    return found


def isic2018_predictions(model, test_dir, *, size: Sequence[int], tta=None) -> tuple[pd.DataFrame, np.ndarray] | None:
    """``(frame, probabilities)`` of ``model`` on the ISIC 2018 Task 3 test set in ``test_dir`` (an external test
    from other sources; ``frame`` from ``data.load_isic2018_test``), images resized to ``size``; None when
    ``test_dir`` is None (not evaluated)."""
    if test_dir is None:
        return None
    from skinlib import data

    external = data.load_isic2018_test(test_dir)
    return external, predict(model, data.load_images(external, size=tuple(size)), tta=tta)


def external_report(predictions: tuple[pd.DataFrame, np.ndarray] | None, seed: int = 0) -> Report | None:
    """The report of :func:`isic2018_predictions`' ``(frame, probabilities)``, intervals resampling its
    ``lesion_id`` (the image where the ground truth names no lesion); None when not evaluated."""
    if predictions is None:
        return None
    frame, proba = predictions
    return report(frame["label"].to_numpy(), proba, groups=frame["lesion_id"].to_numpy(), seed=seed)


def isic2018(model, test_dir, *, size: Sequence[int], tta=None, seed: int = 0) -> Report | None:
    """The report of ``model`` on the ISIC 2018 Task 3 test set in ``test_dir``; None when ``test_dir`` is None."""
    return external_report(isic2018_predictions(model, test_dir, size=size, tta=tta), seed=seed)

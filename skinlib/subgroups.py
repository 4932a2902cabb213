"""Metrics per subgroup of patients and images: sex, age, body site, image source; and the worst-to-best gap.

One number over a test set hides who the model fails. :func:`subgroups` scores each group of each attribute
and brackets every metric with a 95 % interval that resamples lesions (:mod:`skinlib.bootstrap`)::

    >>> result = evaluate.subgroups(y_test, proba, test, by=("sex", "age_60", "site"))
    >>> result.table          # attribute, group, images, lesions, balanced_accuracy, ..._low, ..._high
    >>> result.gaps           # per attribute: best and worst group by balanced accuracy, gap with interval
    >>> result.to_dict()      # JSON-able: outputs.record(..., subgroups=result.to_dict()) (the frames as rows)

The attributes (:data:`ATTRIBUTES`, names for ``by``):

* ``sex``: ``sex`` (female, male; missing or "unknown": "unknown").
* ``age_60``: ``age`` split at 60 as MEDFAIR (Zong et al., ICLR 2023) does: "<60", ">=60"; missing: "unknown".
* ``age_band``: ``age`` in bands of 20 years: "0-19", "20-39", ...; missing: "unknown".
* ``site``: ``localization``; sites with fewer than ``min_site_images`` images in the frame pooled as "other".
* ``source``: ``dataset``, the image collection (Dataverse metadata only; the Kaggle CSV lacks it: then the
  attribute is skipped with a note, and a warning if it was asked for by name).

Per group: balanced accuracy (mean recall over the classes present in the group), macro ROC AUC (one-vs-rest,
averaged over the classes with both positives and negatives in the group, listed in ``auc_classes``),
melanoma sensitivity and specificity, each with a percentile bootstrap interval over the group's lesions.
The gap of an attribute is the best group's balanced accuracy minus the worst's (groups named "unknown" left
out); its interval is paired: each resample draws lesions over the whole frame once and scores both groups on
it (a lesion lies in one group of each attribute, so the two groups' resamples are independent draws of one
resampling of the test set).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn import metrics

from skinlib import CLASSES, bootstrap
from skinlib.bootstrap import bootstrap_interval
from skinlib.calibration import check_labels, check_proba
from skinlib.outputs import jsonable

ATTRIBUTES = {"sex": "sex", "age_60": "age", "age_band": "age", "site": "localization", "source": "dataset"}
"""Names accepted in ``by`` and the metadata column each reads."""
DEFAULT_BY = ("sex", "age_60", "age_band", "site", "source")
METRICS = ("balanced_accuracy", "roc_auc_macro", "melanoma_sensitivity", "melanoma_specificity")
UNKNOWN = "unknown"
OTHER = "other"
MIN_SITE_IMAGES = 50
AGE_SPLIT = 60
AGE_BAND = 20


# ----------------------------------------------------------------------------------------------------
# Groups
# ----------------------------------------------------------------------------------------------------

def _text(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip().str.lower()
    return text.mask(text.isna() | (text == ""), UNKNOWN).astype(object)


def _age_groups(age: pd.Series, attribute: str) -> pd.Series:
    age = pd.to_numeric(age, errors="coerce")
    if attribute == "age_60":
        named = np.where(age < AGE_SPLIT, f"<{AGE_SPLIT}", f">={AGE_SPLIT}")
    else:
        start = (age // AGE_BAND * AGE_BAND).fillna(0).astype(int)
        named = (start.astype(str) + "-" + (start + AGE_BAND - 1).astype(str)).to_numpy()
    return pd.Series(np.where(age.isna(), UNKNOWN, named), index=age.index, dtype=object)


def group_labels(frame: pd.DataFrame, attribute: str, min_site_images: int = MIN_SITE_IMAGES) -> pd.Series:
    """The group of each row of ``frame`` for one attribute of :data:`ATTRIBUTES` (strings, same index)."""
    column = ATTRIBUTES[attribute]
    if attribute.startswith("age"):
        return _age_groups(frame[column], attribute)
    labels = _text(frame[column])
    if attribute == "site":
        counts = labels.value_counts()
        rare = counts.index[(counts < min_site_images) & (counts.index != UNKNOWN)]
        labels = labels.where(~labels.isin(rare), OTHER)
    return labels


def _order(labels: pd.Series, attribute: str) -> list[str]:
    """Groups in reading order: by name for sex, age and source (ages numerically), by size for sites;
    "other" and "unknown" last."""
    names = [name for name in labels.unique() if name not in (OTHER, UNKNOWN)]
    if attribute == "site":
        counts = labels.value_counts()
        names.sort(key=lambda name: (-counts[name], name))
    elif attribute == "age_band":
        names.sort(key=lambda name: int(name.split("-")[0]))
    else:
        names.sort()
    return names + [name for name in (OTHER, UNKNOWN) if (labels == name).any()]


# ----------------------------------------------------------------------------------------------------
# Metrics (point values by scikit-learn; weighted versions for the bootstrap from skinlib.bootstrap)
# ----------------------------------------------------------------------------------------------------

def _rates(melanoma: int, n_classes: int):
    """Weighted melanoma sensitivity and specificity (one value per resample) from bootstrap.class_counts."""
    def sensitivity(y_true, y_pred, weights=None):
        hits, support, _ = bootstrap.class_counts(y_true, y_pred, weights, n_classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            return hits[..., melanoma] / support[..., melanoma]

    def specificity(y_true, y_pred, weights=None):
        hits, support, called = bootstrap.class_counts(y_true, y_pred, weights, n_classes)
        total = support.sum(axis=-1)
        negatives = total - support[..., melanoma]
        true_negatives = negatives - (called[..., melanoma] - hits[..., melanoma])
        with np.errstate(invalid="ignore", divide="ignore"):
            return true_negatives / negatives

    return sensitivity, specificity


def _auc_classes(y_true: np.ndarray, n_classes: int) -> list[int]:
    """The classes with both positives and negatives in ``y_true`` (those a one-vs-rest AUC is defined for)."""
    present = np.bincount(y_true, minlength=n_classes)
    return [k for k in range(n_classes) if 0 < present[k] < len(y_true)]


def _point_metrics(y_true: np.ndarray, proba: np.ndarray, melanoma: int) -> dict[str, float]:
    y_pred = proba.argmax(axis=1)
    aucs = [metrics.roc_auc_score(y_true == k, proba[:, k]) for k in _auc_classes(y_true, proba.shape[1])]
    actual, called = y_true == melanoma, y_pred == melanoma
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true": sklearn's handling is ours
        balanced = float(metrics.balanced_accuracy_score(y_true, y_pred))
    return {
        "balanced_accuracy": balanced,
        "roc_auc_macro": float(np.mean(aucs)) if aucs else math.nan,
        "melanoma_sensitivity": float(metrics.recall_score(actual, called)) if actual.any() else math.nan,
        "melanoma_specificity": (float(metrics.recall_score(~actual, ~called)) if (~actual).any() else math.nan),
    }


def _balanced_gap(y_true, y_pred, best, worst, weights=None):
    """Balanced accuracy of the rows ``best`` minus that of the rows ``worst`` (boolean masks), per resample."""
    w = np.ones(len(y_true)) if weights is None else np.asarray(weights, dtype=np.float64)
    return (bootstrap.balanced_accuracy(y_true[best], y_pred[best], w[..., best])
            - bootstrap.balanced_accuracy(y_true[worst], y_pred[worst], w[..., worst]))


# ----------------------------------------------------------------------------------------------------
# The result
# ----------------------------------------------------------------------------------------------------

@dataclass
class Subgroups:
    """The result of :func:`subgroups`.

    ``table``: one row per group of each attribute, columns ``attribute, group, images, lesions`` then each of
    :data:`METRICS` with ``_low`` and ``_high`` (the interval), and ``auc_classes`` (the classes the macro AUC
    averages). ``gaps``: one row per attribute with two or more groups (other than "unknown"): ``attribute,
    best, worst, best_balanced_accuracy, worst_balanced_accuracy, gap, gap_low, gap_high``. ``notes``: what
    was skipped and why.
    """

    table: pd.DataFrame
    gaps: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    confidence_level: float = 0.95
    interval_unit: str = "lesion"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (the frames as lists of row dicts; NaN becomes None)."""
        return jsonable({"table": self.table.to_dict(orient="records"),
                         "gaps": self.gaps.to_dict(orient="records"), "notes": list(self.notes),
                         "confidence_level": self.confidence_level, "interval_unit": self.interval_unit})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Subgroups":
        """Rebuild from :meth:`to_dict` (None back to NaN)."""
        def frame(rows, columns):
            return pd.DataFrame(rows, columns=columns).fillna(np.nan) if rows else pd.DataFrame(columns=columns)

        return cls(table=frame(data["table"], TABLE_COLUMNS), gaps=frame(data["gaps"], GAP_COLUMNS),
                   notes=list(data["notes"]), confidence_level=float(data["confidence_level"]),
                   interval_unit=data["interval_unit"])

    def _repr_html_(self) -> str:
        parts = [f"<p><b>Subgroups</b> ({100 * self.confidence_level:g} % intervals over {self.interval_unit}s, "
                 f"percentile bootstrap)</p>", self.table.to_html(float_format=lambda v: f"{v:.3f}", na_rep="–"),
                 "<p>Best minus worst group by balanced accuracy (paired interval)</p>",
                 self.gaps.to_html(float_format=lambda v: f"{v:.3f}", na_rep="–")]
        return "\n".join(parts + [f"<p><i>Note: {note}</i></p>" for note in self.notes])


TABLE_COLUMNS = (["attribute", "group", "images", "lesions"]
                 + [f"{m}{s}" for m in METRICS for s in ("", "_low", "_high")] + ["auc_classes"])
GAP_COLUMNS = ["attribute", "best", "worst", "best_balanced_accuracy", "worst_balanced_accuracy", "gap",
               "gap_low", "gap_high"]


# ----------------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------------

def _check_by(by, frame: pd.DataFrame, notes: list[str]) -> list[str]:
    named = by is not None
    by = list(DEFAULT_BY if by is None else ([by] if isinstance(by, str) else by))
    unknown = [name for name in by if name not in ATTRIBUTES]
    if unknown:
        raise ValueError(f"subgroups(by=...): unknown attribute(s) {unknown}; accepted: {', '.join(ATTRIBUTES)} "
                         f"(default {list(DEFAULT_BY)})")
    kept = []
    for name in by:
        column = ATTRIBUTES[name]
        if column in frame.columns:
            kept.append(name)
            continue
        note = (f"attribute {name!r} skipped: the frame has no `{column}` column"
                + (" (the Kaggle metadata has no image source; use the Dataverse CSV, e.g. "
                   "skinlib.provenance.attach(meta, data_dir))" if name == "source" else ""))
        notes.append(note)
        if named:
            warnings.warn(note, stacklevel=3)
    return kept


def _lesion_ids(frame: pd.DataFrame, groups, n: int, notes: list[str]):
    if isinstance(groups, str):
        if groups not in frame.columns:
            raise ValueError(f"subgroups(groups={groups!r}): no such column in frame; pass a column name, one id "
                             f"per row, or None to resample images")
        return frame[groups].to_numpy()
    if groups is None:
        notes.append("intervals resample images (groups=None): optimistic when images repeat lesions")
        return np.arange(n)
    return np.asarray(groups, dtype=object)


def subgroups(labels, probabilities, frame: pd.DataFrame, by: Sequence[str] | str | None = None,
              groups="lesion_id", *, min_site_images: int = MIN_SITE_IMAGES, n_bootstrap: int = 1000,
              confidence_level: float = 0.95, seed: int = 0, classes: Sequence[str] = CLASSES,
              melanoma: str = "mel") -> Subgroups:
    """Metrics per group of each attribute in ``by`` and the best-to-worst gap (see the module's docstring).

    Args:
        labels: true classes (indices or codes), one per row of ``frame``.
        probabilities: (N, classes) probabilities; predictions are their argmax.
        frame: the evaluated rows' metadata (e.g. ``split.test``), in the order of ``labels``.
        by: names from :data:`ATTRIBUTES`; None: :data:`DEFAULT_BY` (those whose column is present).
        groups: the resampled unit: a column of ``frame`` (default ``lesion_id``), one id per row, or None
            (images).
        min_site_images: sites with fewer images in ``frame`` are pooled as "other".
        n_bootstrap, confidence_level, seed: of the intervals (:func:`skinlib.bootstrap.bootstrap_interval`;
            the same seed for every group and metric).
    """
    from skinlib.evaluate import _as_labels  # evaluate re-exports this function: import it on use

    classes = tuple(classes)
    proba = check_proba(probabilities, len(classes), name="probabilities")
    y_true = check_labels(_as_labels(labels, classes), len(proba), len(classes), name="labels")
    if len(frame) != len(y_true):
        raise ValueError(f"subgroups: frame has {len(frame)} rows for {len(y_true)} labels; pass the metadata "
                         f"of the evaluated images, in the same order")
    if melanoma not in classes:
        raise ValueError(f"subgroups(melanoma={melanoma!r}): not one of the classes {list(classes)}")
    notes: list[str] = []
    attributes = _check_by(by, frame, notes)
    lesions = _lesion_ids(frame, groups, len(y_true), notes)
    frame = frame.reset_index(drop=True)
    mel = classes.index(melanoma)
    sensitivity, specificity = _rates(mel, len(classes))
    y_pred = proba.argmax(axis=1)
    options = dict(n_resamples=n_bootstrap, confidence_level=confidence_level, seed=seed)
    rows, gaps = [], []
    for attribute in attributes:
        labelled = group_labels(frame, attribute, min_site_images)
        for name in _order(labelled, attribute):
            mask = (labelled == name).to_numpy()
            y, p, ids = y_true[mask], proba[mask], lesions[mask]
            row = {"attribute": attribute, "group": name, "images": int(mask.sum()),
                   "lesions": int(pd.Series(ids).nunique()), **_point_metrics(y, p, mel)}
            intervals = {
                "balanced_accuracy": bootstrap_interval(bootstrap.balanced_accuracy, y, y_pred[mask],
                                                        groups=ids, **options),
                "roc_auc_macro": bootstrap_interval(bootstrap.macro_roc_auc, y, p, groups=ids, **options),
                "melanoma_sensitivity": bootstrap_interval(sensitivity, y, y_pred[mask], groups=ids, **options),
                "melanoma_specificity": bootstrap_interval(specificity, y, y_pred[mask], groups=ids, **options),
            }
            for metric, (low, high) in intervals.items():
                row[f"{metric}_low"], row[f"{metric}_high"] = low, high
            row["auc_classes"] = ",".join(classes[k] for k in _auc_classes(y, len(classes)))
            rows.append(row)
        gap = _gap(attribute, labelled, rows, y_true, y_pred, lesions, options)
        if gap is not None:
            gaps.append(gap)
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return Subgroups(table=table, gaps=pd.DataFrame(gaps, columns=GAP_COLUMNS), notes=notes,
                     confidence_level=confidence_level, interval_unit="image" if groups is None else "lesion")


def _gap(attribute: str, labelled: pd.Series, rows: list[dict], y_true, y_pred, lesions, options) -> dict | None:
    """The best and worst group of ``attribute`` by balanced accuracy ("unknown" left out) and the paired
    interval of their difference; None with fewer than two such groups."""
    scored = [row for row in rows if row["attribute"] == attribute and row["group"] != UNKNOWN
              and not math.isnan(row["balanced_accuracy"])]
    if len(scored) < 2:
        return None
    ranked = sorted(scored, key=lambda row: row["balanced_accuracy"])
    worst, best = ranked[0], ranked[-1]
    in_best = (labelled == best["group"]).to_numpy()
    in_worst = (labelled == worst["group"]).to_numpy()
    low, high = bootstrap_interval(_balanced_gap, y_true, y_pred, in_best, in_worst, groups=lesions, **options)
    return {"attribute": attribute, "best": best["group"], "worst": worst["group"],
            "best_balanced_accuracy": best["balanced_accuracy"],
            "worst_balanced_accuracy": worst["balanced_accuracy"],
            "gap": best["balanced_accuracy"] - worst["balanced_accuracy"], "gap_low": low, "gap_high": high}

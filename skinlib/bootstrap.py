"""Percentile bootstrap intervals that resample clusters (lesions), and the metrics they resample.

HAM10000 has several photos of many lesions; photos of one lesion are not independent evidence, so the
unit to resample is the lesion. :func:`bootstrap_interval` draws whole groups (e.g. ``lesion_id``) with
replacement, as many as there are, and keeps every row of each drawn group (the cluster bootstrap). With
no groups every row is its own group: the ordinary image bootstrap is the special case.

A resample is not materialised as duplicated rows: it is a *count* per row (how many times the row's
group was drawn), and the metrics here take those counts as integer ``weights``. A weighted metric is
exactly the metric of the rows repeated ``weights`` times, so resamples of unequal size stay one
rectangular (resamples, rows) array::

    >>> bootstrap_interval(accuracy, y_true, y_pred, groups=lesion_ids)       # over lesions
    >>> gain = paired_difference(accuracy)                                     # metric(a) - metric(b)
    >>> bootstrap_interval(gain, y_true, pred_a, pred_b, groups=lesion_ids)   # paired: same lesions
    >>> part_gap = paired_difference(balanced_accuracy, first=leaked, second=~leaked)
    >>> bootstrap_interval(part_gap, y_true, y_pred, y_pred, groups=lesion_ids)  # one model, two parts

Every metric takes ``weights`` of shape (N,) or (resamples, N) (None: each row once) and returns one value
per resample; like scikit-learn, it averages over the classes present in that resample.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

BATCH = 250  # resamples evaluated together: bounds memory at (BATCH, N) floats per array

Statistic = Callable[..., np.ndarray]


# ----------------------------------------------------------------------------------------------------
# Resampling
# ----------------------------------------------------------------------------------------------------

def group_codes(groups, n: int) -> tuple[np.ndarray, int]:
    """Integer codes 0..G-1 of ``groups`` (one id per row, numbered in order of first appearance) and G.

    ``None`` makes every row its own group (codes 0..n-1), as do ids that are all distinct.
    """
    if groups is None:
        return np.arange(n), n
    codes, uniques = pd.factorize(pd.Series(np.asarray(groups, dtype=object)), use_na_sentinel=True)
    if len(codes) != n:
        raise ValueError(f"groups must hold one id per row ({n}), got {len(codes)}")
    if (codes < 0).any():
        raise ValueError("groups contains missing ids (NaN/None): every row needs a group, e.g. its lesion_id")
    return codes.astype(np.int64), len(uniques)


def resample_weights(codes: np.ndarray, n_groups: int, n_resamples: int, seed: int,
                     batch: int = BATCH) -> Iterator[np.ndarray]:
    """Batches of (resamples, rows) counts: each resample draws ``n_groups`` groups with replacement; a row
    counts as many times as its group was drawn (seeded)."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, batch):
        size = min(batch, n_resamples - start)
        drawn = rng.integers(0, n_groups, size=(size, n_groups))
        flat = (drawn + n_groups * np.arange(size)[:, None]).ravel()
        group_counts = np.bincount(flat, minlength=size * n_groups).reshape(size, n_groups)
        yield group_counts[:, codes].astype(np.float64)


def percentile_interval(values: np.ndarray, confidence_level: float = 0.95) -> tuple[float, float]:
    """The central ``confidence_level`` percentile interval of ``values``, NaN (undefined) values left out."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (math.nan, math.nan)
    alpha = (1 - confidence_level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return (float(low), float(high))


def percentile_p_value(values: np.ndarray, null: float = 0.0) -> float:
    """Two-sided percentile-bootstrap p-value of ``null``: twice the smaller share of the resampled values at or
    below and at or above it, capped at 1 (about the smallest 1 - level at which the percentile interval excludes
    ``null``). The shares count as (k + 1) / (resamples + 1), so the p-value is never 0: at least
    2 / (resamples + 1), the resolution of the resamples. NaN values left out, NaN if none is left."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan
    below, above = np.sum(values <= null), np.sum(values >= null)
    return float(min(1.0, 2 * (min(below, above) + 1) / (values.size + 1)))


def bootstrap_values(statistic: Statistic, *samples, groups=None, n_resamples: int = 1000,
                     seed: int = 0) -> np.ndarray:
    """``statistic(*samples, weights=counts)`` on each of ``n_resamples`` resamples of ``groups`` (see
    :func:`bootstrap_interval`); empty for fewer than two groups."""
    if not samples:
        raise ValueError("bootstrap_interval needs at least one sample array")
    n = len(samples[0])
    if any(len(sample) != n for sample in samples):
        raise ValueError(f"samples must have the same number of rows, got {[len(s) for s in samples]}")
    codes, n_groups = group_codes(groups, n)
    if n_groups < 2:
        return np.empty(0)
    arrays = [np.asarray(sample) for sample in samples]
    values = [np.asarray(statistic(*arrays, weights=weights), dtype=np.float64).reshape(len(weights))
              for weights in resample_weights(codes, n_groups, n_resamples, seed)]
    return np.concatenate(values)


def bootstrap_interval(statistic: Statistic, *samples, groups=None, n_resamples: int = 1000,
                       confidence_level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*samples, weights=counts)``, resampling ``groups``.

    ``samples`` are arrays with one row per image (labels, predictions, probabilities). Each resample draws
    the groups (``groups``: one id per row, e.g. ``lesion_id``; None: each row is its own group, i.e. the
    image bootstrap) with replacement, as many as there are, and keeps every row of a drawn group; the
    statistic gets the rows' counts as ``weights`` (resamples, N) and returns one value per resample. All
    samples share the resampled groups (a paired bootstrap). Resamples where the statistic is NaN (e.g. a
    class absent) are left out. (NaN, NaN) for fewer than two groups.
    """
    values = bootstrap_values(statistic, *samples, groups=groups, n_resamples=n_resamples, seed=seed)
    return percentile_interval(values, confidence_level)


def paired_difference(metric: Statistic, first=None, second=None) -> Statistic:
    """The paired statistic ``metric(first rows, pred_first) - metric(second rows, pred_second)``.

    The returned function takes ``(y_true, pred_first, pred_second, weights=None)`` like the metrics here, so
    :func:`bootstrap_interval` resamples both terms from the same groups. ``first`` and ``second`` are boolean
    row masks (None: every row): two models on the same images (masks None), or one model on two parts of a
    test set (the same predictions twice, two masks).
    """
    def rows(mask, n: int):
        if mask is None:
            return slice(None)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (n,):
            raise ValueError(f"paired_difference: a row mask of shape {mask.shape} for {n} rows; give one "
                             f"True/False per row")
        return mask

    def statistic(y_true, pred_first, pred_second, weights=None):
        y_true, pred_first, pred_second = (np.asarray(v) for v in (y_true, pred_first, pred_second))
        w = _weights(weights, len(y_true))
        a, b = rows(first, len(y_true)), rows(second, len(y_true))
        return metric(y_true[a], pred_first[a], w[..., a]) - metric(y_true[b], pred_second[b], w[..., b])
    return statistic


# ----------------------------------------------------------------------------------------------------
# Metrics with integer weights (one value per resample)
# ----------------------------------------------------------------------------------------------------

def _weights(weights, n: int) -> np.ndarray:
    return np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)


def _one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return (np.asarray(labels)[:, None] == np.arange(n_classes)).astype(np.float64)


def _n_classes(*label_arrays: np.ndarray) -> int:
    return int(max(np.max(labels, initial=-1) for labels in label_arrays)) + 1


def class_counts(y_true, y_pred, weights=None, n_classes: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted true positives, true counts and predicted counts per class, each (..., classes)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    n_classes = _n_classes(y_true, y_pred) if n_classes is None else n_classes
    w = _weights(weights, len(y_true))
    truth, called = _one_hot(y_true, n_classes), _one_hot(y_pred, n_classes)
    return w @ (truth * called), w @ truth, w @ called


def accuracy(y_true, y_pred, weights=None) -> np.ndarray:
    """Weighted share of correct predictions (``sklearn.metrics.accuracy_score``)."""
    w = _weights(weights, len(y_true))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ (np.asarray(y_true) == np.asarray(y_pred)).astype(np.float64)) / w.sum(axis=-1)


def balanced_accuracy(y_true, y_pred, weights=None) -> np.ndarray:
    """Mean recall over the classes present in each (weighted) resample of ``y_true``
    (``sklearn.metrics.balanced_accuracy_score``)."""
    hits, support, _ = class_counts(y_true, y_pred, weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _nanmean(np.where(support > 0, hits / support, np.nan))


def reweighted_accuracy(y_true, y_pred, weights=None, shares: Sequence[float] | None = None) -> np.ndarray:
    """Accuracy reweighted to the class mix ``shares`` (one share per class; direct standardisation): the
    ``shares``-weighted mean of the per-class recalls, over the classes present in each resample (their shares
    renormalised to sum to 1). On a set whose own class shares are ``shares`` this is its accuracy; with equal
    shares it is the balanced accuracy. Two sets with different class mixes compare fairly at one ``shares``."""
    if shares is None:
        raise ValueError("reweighted_accuracy needs shares: one share per class (e.g. a test set's class shares)")
    shares = np.asarray(shares, dtype=np.float64)
    hits, support, _ = class_counts(y_true, y_pred, weights, max(len(shares), _n_classes(y_true, y_pred)))
    if support.shape[-1] != len(shares):
        raise ValueError(f"reweighted_accuracy: {len(shares)} shares for labels up to {support.shape[-1] - 1}; "
                         f"give one share per class")
    present = np.where(support > 0, shares, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, hits / support, 0.0)
        return (present * recall).sum(axis=-1) / present.sum(axis=-1)


def macro_f1(y_true, y_pred, weights=None, labels: Sequence[int] | None = None) -> np.ndarray:
    """Macro F1 (``sklearn.metrics.f1_score(average="macro", zero_division=0)``): the mean over the classes
    in ``y_true`` or ``y_pred`` of each resample, or over ``labels`` if given (a class in neither scores 0)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    n_classes = max(_n_classes(y_true, y_pred), 1 + max(labels or [], default=-1))
    tp, support, called = class_counts(y_true, y_pred, weights, n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(support + called > 0, 2 * tp / (support + called), 0.0)
    if labels is not None:
        return f1[..., list(labels)].mean(axis=-1)
    return _nanmean(np.where(support + called > 0, f1, np.nan))


def roc_auc(scores, positive, weights=None) -> np.ndarray:
    """Weighted ROC AUC of ``scores`` for the boolean ``positive`` (ties count half, as
    ``sklearn.metrics.roc_auc_score``); NaN where a resample has no positive or no negative."""
    scores, positive = np.asarray(scores), np.asarray(positive, dtype=bool)
    weights = _weights(weights, len(scores))
    w = np.atleast_2d(weights)
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])  # blocks of tied scores
    w_sorted, pos_sorted = w[:, order], positive[order]
    pos = np.add.reduceat(w_sorted * pos_sorted, starts, axis=1)
    neg = np.add.reduceat(w_sorted * ~pos_sorted, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg  # negative weight scored strictly lower than each block
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
    auc = np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)
    return auc.reshape(weights.shape[:-1])


def macro_roc_auc(y_true, proba, weights=None) -> np.ndarray:
    """Mean one-vs-rest ROC AUC over the classes that have positives and negatives in each resample."""
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    aucs = [roc_auc(proba[:, k], y_true == k, weights) for k in range(proba.shape[1])]
    return _nanmean(np.stack(aucs, axis=-1))


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; NaN (no warning) where all are NaN."""
    defined = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined, values, 0.0).sum(axis=-1) / defined.sum(axis=-1)

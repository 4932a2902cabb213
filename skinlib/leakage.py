"""The study's leak, measured directly: the same model scored on the whole test set and on its leak-free part.

Under the study's image-level split, 397 of its 1,002 test images have a photo of the same lesion in training. The
605 others form a leak-free part of the same test set, so scoring one model on both separates what the leak is
worth from the luck of a different test sample (comparing with a grouped split mixes the two)::

    >>> leaked = leakage.shares_lesion(parts, "test")          # bool per test image
    >>> leakage.gap(y_test, proba_test, leaked, groups=parts.test["lesion_id"])
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from skinlib import bootstrap

ROWS = ("whole test set", "leak-free part", "leaked part", "gap: whole - leak-free")


def shares_lesion(parts, part: str = "test") -> np.ndarray:
    """Whether each image of ``part`` has a photo of the same lesion in training (a ``data.Split``)."""
    return getattr(parts, part)["lesion_id"].isin(set(parts.train["lesion_id"])).to_numpy()


def gap(y_true, proba, leaked, groups=None, seed: int = 0, n_resamples: int = 1000,
        confidence_level: float = 0.95) -> pd.DataFrame:
    """Accuracy and balanced accuracy on the whole set, its leak-free part and its leaked part, and the gap between
    the whole and the leak-free part, with 95 % intervals that resample ``groups`` (lesions; None: images). The gap's
    interval is paired: the same resampled lesions for both. Rows without images are NaN."""
    y_true, leaked = np.asarray(y_true), np.asarray(leaked, dtype=bool)
    y_pred = np.asarray(proba).argmax(axis=1)
    free = ~leaked
    codes = None if groups is None else np.asarray(groups, dtype=object)
    rows = {}
    for name, mask in ((ROWS[0], np.ones_like(leaked)), (ROWS[1], free), (ROWS[2], leaked)):
        rows[name] = _scores(y_true[mask], y_pred[mask], None if codes is None else codes[mask], seed, n_resamples,
                             confidence_level)

    def differences(metric):
        def statistic(y, p, weights):
            return metric(y, p, weights) - metric(y[free], p[free], weights[..., free])
        return statistic

    row = {"images": int(free.size), "lesions": _count(codes, np.ones_like(leaked))}
    for name, metric in (("accuracy", bootstrap.accuracy), ("balanced_accuracy", bootstrap.balanced_accuracy)):
        row[name] = rows[ROWS[0]][name] - rows[ROWS[1]][name]
        row[f"{name}_low"], row[f"{name}_high"] = bootstrap.bootstrap_interval(
            differences(metric), y_true, y_pred, groups=codes, n_resamples=n_resamples,
            confidence_level=confidence_level, seed=seed) if free.any() else (np.nan, np.nan)
    rows[ROWS[3]] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def _count(codes, mask) -> int:
    return int(mask.sum()) if codes is None else int(pd.Series(codes[mask]).nunique())


def _scores(y, p, codes, seed, n_resamples, confidence_level) -> dict:
    row = {"images": int(len(y)), "lesions": int(len(y)) if codes is None else int(pd.Series(codes).nunique())}
    for name, metric in (("accuracy", bootstrap.accuracy), ("balanced_accuracy", bootstrap.balanced_accuracy)):
        row[name] = float(metric(y, p)) if len(y) else np.nan
        row[f"{name}_low"], row[f"{name}_high"] = bootstrap.bootstrap_interval(
            metric, y, p, groups=codes, n_resamples=n_resamples, confidence_level=confidence_level,
            seed=seed) if len(y) >= 2 else (np.nan, np.nan)
    return row

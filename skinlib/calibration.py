"""Calibration: is a predicted 0.9 right nine times out of ten?

* :func:`expected_calibration_error` and :func:`reliability` measure it on the top-label confidence
  (the highest class probability of each image), in equal-width confidence bins.
* :class:`TemperatureScaling` corrects it with one parameter fitted on the *validation* set (Guo et al.,
  "On Calibration of Modern Neural Networks", 2017): logits are divided by a temperature ``T`` before the
  softmax. The models output probabilities; their logarithms are the logits up to a constant per image,
  which the softmax ignores, so no access to the logits is needed. Accuracy never changes (the argmax is
  kept); only the confidence does.

    >>> scaler = TemperatureScaling().fit(val_proba, y_val)
    >>> test_proba_calibrated = scaler.transform(test_proba)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

EPSILON = 1e-12  # probabilities are clipped here before taking logarithms
DEFAULT_BINS = 15  # the number of bins of Guo et al.


def check_proba(proba, n_classes: int | None = None, name: str = "proba") -> np.ndarray:
    """``proba`` as a float64 (N, K) array of probabilities, or a clear error."""
    array = np.asarray(proba, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (images x classes), got shape {array.shape}")
    if n_classes is not None and array.shape[1] != n_classes:
        raise ValueError(f"{name} has {array.shape[1]} columns, expected one per class ({n_classes})")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def check_labels(y_true, n: int, n_classes: int, name: str = "y_true") -> np.ndarray:
    """``y_true`` as an int array of ``n`` class indices in 0..n_classes-1, or a clear error."""
    labels = np.asarray(y_true)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"{name} must be a 1-D array of {n} class indices, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices (the `label` column), got {labels.dtype}")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"{name} has labels outside 0..{n_classes - 1}")
    return labels.astype(np.int64)


def reliability(y_true, proba, n_bins: int = DEFAULT_BINS) -> pd.DataFrame:
    """Top-label reliability table: one row per confidence bin.

    Columns: ``lower``, ``upper`` (bin edges), ``count``, ``confidence`` (mean top probability) and
    ``accuracy`` (fraction of correct top predictions; NaN for an empty bin). A calibrated model has
    ``accuracy`` close to ``confidence`` in every bin.
    """
    proba = check_proba(proba)
    y_true = check_labels(y_true, len(proba), proba.shape[1])
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bins are (lower, upper]; a confidence of exactly 0 cannot occur for a top label.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    frame = pd.DataFrame({"bin": index, "confidence": confidence, "correct": correct.astype(float)})
    grouped = frame.groupby("bin").agg(count=("correct", "size"), confidence=("confidence", "mean"),
                                       accuracy=("correct", "mean"))
    table = pd.DataFrame({"lower": edges[:-1], "upper": edges[1:]}).join(grouped)
    table["count"] = table["count"].fillna(0).astype(int)
    table.index.name = "bin"
    return table


def expected_calibration_error(y_true, proba, n_bins: int = DEFAULT_BINS) -> float:
    """Expected calibration error: the count-weighted mean gap |accuracy - confidence| over the bins."""
    table = reliability(y_true, proba, n_bins)
    filled = table[table["count"] > 0]
    if filled.empty:
        return float("nan")
    gaps = (filled["accuracy"] - filled["confidence"]).abs()
    return float(np.average(gaps, weights=filled["count"]))


def apply_temperature(proba, temperature: float) -> np.ndarray:
    """Probabilities after dividing the (implied) logits by ``temperature``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = np.log(np.clip(check_proba(proba), EPSILON, 1.0))
    return softmax(logits / temperature, axis=1)


def _negative_log_likelihood(logits: np.ndarray, y_true: np.ndarray, temperature: float) -> float:
    return float(-log_softmax(logits / temperature, axis=1)[np.arange(len(y_true)), y_true].mean())


class TemperatureScaling:
    """Temperature scaling, fitted on validation probabilities and applied to any others.

    ``temperature_`` > 1 means the model was over-confident (its probabilities get softened).
    """

    def __init__(self, bounds: tuple[float, float] = (0.05, 20.0)):
        self.bounds = bounds
        self.temperature_: float | None = None

    def fit(self, proba, y_true) -> "TemperatureScaling":
        """Find the temperature minimising the validation negative log-likelihood."""
        proba = check_proba(proba)
        y_true = check_labels(y_true, len(proba), proba.shape[1])
        if len(y_true) == 0:
            raise ValueError("cannot fit a temperature on an empty validation set")
        logits = np.log(np.clip(proba, EPSILON, 1.0))
        low, high = np.log(self.bounds)
        result = minimize_scalar(lambda log_t: _negative_log_likelihood(logits, y_true, np.exp(log_t)),
                                 bounds=(low, high), method="bounded", options={"xatol": 1e-4})
        self.temperature_ = float(np.exp(result.x))
        return self

    def transform(self, proba) -> np.ndarray:
        """``proba`` with the fitted temperature applied."""
        if self.temperature_ is None:
            raise RuntimeError("TemperatureScaling is not fitted: call fit(val_proba, y_val) first")
        return apply_temperature(proba, self.temperature_)

    def __repr__(self) -> str:
        fitted = "unfitted" if self.temperature_ is None else f"temperature={self.temperature_:.3f}"
        return f"TemperatureScaling({fitted})"

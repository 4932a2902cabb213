"""Ensembles: average the probabilities of several models, and check that the average really is better.

    >>> weights = ensemble.fit_weights(val_probas, y_val)          # validation only, never test
    >>> test_proba = ensemble.average(test_probas, weights)
    >>> ensemble.compare(y_test, {**test_probas, "ensemble": test_proba}, groups=test["lesion_id"])

``compare`` puts the ensemble and every member side by side on the same images, with a paired bootstrap
interval of each accuracy difference and McNemar's test on the images where exactly one of the two is
right, so that "better" means more than noise. Give ``groups`` (each image's ``lesion_id``): photos of one
lesion are not independent, so the bootstrap then resamples lesions and McNemar's test is clustered.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import optimize, special, stats
from sklearn import metrics

from skinlib.bootstrap import accuracy, balanced_accuracy, bootstrap_interval, group_codes
from skinlib.calibration import EPSILON, check_labels, check_proba

ProbaCollection = Sequence[np.ndarray] | Mapping[str, np.ndarray]
CLUSTERED_MCNEMAR = "clustered (Durkalski 2003)"


def _stack(probas: ProbaCollection, name: str = "probas") -> tuple[list[str] | None, np.ndarray]:
    """Names (None for a sequence) and the probabilities stacked as (models, N, classes)."""
    names = list(probas) if isinstance(probas, Mapping) else None
    arrays = [check_proba(p, name=f"{name}[{key!r}]") for key, p in
              (probas.items() if isinstance(probas, Mapping) else enumerate(probas))]
    if not arrays:
        raise ValueError(f"{name} is empty: give the probabilities of at least one model")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(f"{name} must all have the same shape (same images, same classes), got {sorted(shapes)}")
    return names, np.stack(arrays)


def _weight_vector(weights, names: list[str] | None, n_models: int) -> np.ndarray:
    if weights is None:
        return np.full(n_models, 1.0 / n_models)
    if isinstance(weights, Mapping):
        if names is None or set(weights) != set(names):
            raise ValueError(f"weights are keyed {sorted(weights)} but the models are "
                             f"{names if names is not None else 'an unnamed sequence'}")
        weights = [weights[name] for name in names]
    vector = np.asarray(weights, dtype=np.float64)
    if vector.shape != (n_models,):
        raise ValueError(f"need one weight per model ({n_models}), got {vector.shape}")
    if (vector < 0).any() or vector.sum() <= 0:
        raise ValueError(f"weights must be non-negative and not all zero, got {vector.tolist()}")
    return vector / vector.sum()


def average(probas: ProbaCollection, weights=None) -> np.ndarray:
    """The (weighted) mean of several models' probabilities (N, classes) on the same images.

    ``probas`` is a list of arrays or a dict name -> array; ``weights`` (normalised to sum to 1) is a
    matching list or dict, or None for equal weights.
    """
    names, stacked = _stack(probas)
    vector = _weight_vector(weights, names, len(stacked))
    return np.tensordot(vector, stacked, axes=1)


def fit_weights(val_probas: ProbaCollection, y_val) -> np.ndarray | dict[str, float]:
    """Ensemble weights minimising the log loss of :func:`average` on the **validation** set.

    Fit them on validation predictions only: weights chosen on the test set make the test result
    optimistic. The weights are non-negative and sum to 1 (a softmax parametrisation); a dict input
    gives a dict of weights.
    """
    names, stacked = _stack(val_probas, "val_probas")
    y_val = check_labels(y_val, stacked.shape[1], stacked.shape[2], "y_val")
    if len(y_val) == 0:
        raise ValueError("cannot fit ensemble weights on an empty validation set")
    # Probability each model gives to the true class: (models, N). The mixture's log loss is convex.
    true_class = stacked[:, np.arange(len(y_val)), y_val]

    def loss(theta: np.ndarray) -> float:
        return float(-np.log(np.clip(special.softmax(theta) @ true_class, EPSILON, None)).mean())

    result = optimize.minimize(loss, np.zeros(len(stacked)), method="L-BFGS-B")
    vector = special.softmax(result.x)
    return dict(zip(names, vector.tolist())) if names is not None else vector


def mcnemar(y_true, pred_a, pred_b, exact: bool = True, *, groups=None) -> dict[str, float | str]:
    """McNemar's test of two classifiers on the same images.

    ``b``: images only ``a`` gets right; ``c``: images only ``b`` gets right. Without ``groups``: ``exact``
    uses the binomial test on b of b + c (valid for any count); otherwise the chi-square statistic with
    continuity correction. With ``groups`` (one id per image, e.g. ``lesion_id``) images of one group are
    not independent and the clustered test of Durkalski et al. (2003, "Analysis of clustered matched-pair
    data", Stat. Med. 22:2417) is used (``exact`` is ignored): with b_k - c_k the discordance of group k,
    ``statistic`` = (sum_k (b_k - c_k))^2 / sum_k (b_k - c_k)^2, chi-square with 1 degree of freedom (an
    approximation for many groups; for groups of one image it is the uncorrected McNemar statistic). A
    small ``p_value`` means the two differ by more than chance. ``test`` names the test used.
    """
    y_true, pred_a, pred_b = (np.asarray(v) for v in (y_true, pred_a, pred_b))
    right_a, right_b = pred_a == y_true, pred_b == y_true
    only_a, only_b = right_a & ~right_b, ~right_a & right_b
    b, c = int(np.sum(only_a)), int(np.sum(only_b))
    if groups is not None:
        return {"b": b, "c": c, **_clustered_mcnemar(only_a, only_b, groups), "test": CLUSTERED_MCNEMAR}
    if b + c == 0:
        return {"b": b, "c": c, "statistic": 0.0, "p_value": 1.0, "test": "exact" if exact else "chi-square"}
    if exact:
        return {"b": b, "c": c, "statistic": float(min(b, c)),
                "p_value": float(stats.binomtest(b, b + c, 0.5).pvalue), "test": "exact"}
    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    return {"b": b, "c": c, "statistic": float(statistic), "p_value": float(stats.chi2.sf(statistic, df=1)),
            "test": "chi-square"}


def _clustered_mcnemar(only_a: np.ndarray, only_b: np.ndarray, groups) -> dict[str, float]:
    """Durkalski et al.'s statistic and p-value from the per-image discordance indicators."""
    codes, n_groups = group_codes(groups, len(only_a))
    discordance = np.bincount(codes, weights=only_a.astype(float) - only_b, minlength=n_groups)  # b_k - c_k
    spread = float(np.sum(discordance ** 2))
    if spread == 0:
        return {"statistic": 0.0, "p_value": 1.0}
    statistic = float(discordance.sum() ** 2 / spread)
    return {"statistic": statistic, "p_value": float(stats.chi2.sf(statistic, df=1))}


def _difference(metric):
    """The paired statistic metric(reference) - metric(other), for :func:`bootstrap_interval`."""
    def statistic(y_true, pred_reference, pred_other, weights=None):
        return metric(y_true, pred_reference, weights) - metric(y_true, pred_other, weights)
    return statistic


def compare(y_true, probas_by_name: Mapping[str, np.ndarray], reference: str | None = None, *,
            groups=None, unit: str = "lesion", n_bootstrap: int = 1000, confidence_level: float = 0.95,
            seed: int = 0) -> pd.DataFrame:
    """Each model's metrics, and how the ``reference`` model differs from each other one.

    ``reference`` defaults to ``"ensemble"`` if present, else the first model. For every other model the
    table gives ``accuracy_gain`` and ``balanced_accuracy_gain`` (reference minus model) with paired
    percentile bootstrap intervals (``*_low``, ``*_high``) and McNemar's test (``reference_only_right``,
    ``model_only_right``: images; ``mcnemar_p``). With ``groups`` (one id per image, e.g. ``lesion_id``)
    the bootstrap resamples whole groups, the same ones for both models, and McNemar's test is the
    clustered one of Durkalski et al. (2003); without, it resamples images and the test is McNemar's exact
    test. A gain whose interval excludes 0 (``significant``) is more than noise. ``table.attrs`` records
    ``reference``, ``interval_unit`` (``unit`` with groups, else "image"), ``n_groups`` and ``mcnemar_test``.
    """
    names, stacked = _stack(probas_by_name, "probas_by_name")
    if names is None:
        raise ValueError("probas_by_name must be a dict name -> probabilities")
    if reference is None:
        reference = "ensemble" if "ensemble" in names else names[0]
    if reference not in names:
        raise ValueError(f"reference {reference!r} is not one of the models {names}")
    y_true = check_labels(y_true, stacked.shape[1], stacked.shape[2])
    labels = list(range(stacked.shape[2]))
    _, n_groups = group_codes(groups, len(y_true))
    predictions = {name: p.argmax(axis=1) for name, p in zip(names, stacked)}
    rows = []
    for name, proba in zip(names, stacked):
        pred = predictions[name]
        row = {"model": name,
               "accuracy": float(metrics.accuracy_score(y_true, pred)),
               "balanced_accuracy": float(balanced_accuracy(y_true, pred)),
               "macro_f1": float(metrics.f1_score(y_true, pred, average="macro", zero_division=0)),
               "log_loss": float(metrics.log_loss(y_true, proba / proba.sum(axis=1, keepdims=True),
                                                  labels=labels))}
        if name != reference:
            pair = (y_true, predictions[reference], pred)
            for metric_name, metric in (("accuracy", accuracy), ("balanced_accuracy", balanced_accuracy)):
                gain = _difference(metric)
                row[f"{metric_name}_gain"] = float(gain(*pair))
                row[f"{metric_name}_gain_low"], row[f"{metric_name}_gain_high"] = bootstrap_interval(
                    gain, *pair, groups=groups, n_resamples=n_bootstrap, confidence_level=confidence_level,
                    seed=seed)
            test = mcnemar(*pair, groups=groups)
            row.update(reference_only_right=test["b"], model_only_right=test["c"], mcnemar_p=test["p_value"],
                       significant=bool(row["accuracy_gain_low"] > 0 or row["accuracy_gain_high"] < 0))
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    table.attrs.update(reference=reference, interval_unit="image" if groups is None else unit,
                       n_groups=n_groups, mcnemar_test="exact" if groups is None else CLUSTERED_MCNEMAR)
    return table

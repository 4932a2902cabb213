"""Ensembles: average the probabilities of several models, and check that the average really is better.

    >>> weights = ensemble.fit_weights(val_probas, y_val)          # validation only, never test
    >>> test_proba = ensemble.average(test_probas, weights)
    >>> ensemble.compare(y_test, {**test_probas, "ensemble": test_proba}, groups=test["lesion_id"])

``compare`` puts the ensemble and every member side by side on the same images, with a paired bootstrap
interval of each accuracy and balanced-accuracy difference and McNemar's test on the images where exactly one
of the two is right, so that "better" means more than noise; "significant" is decided with Holm's step-down
adjustment over every member and both metrics compared. Give ``groups`` (each image's ``lesion_id``): photos of
one lesion are not independent, so the bootstrap then resamples lesions and McNemar's test is the clustered
one of Obuchowski (1998) in the simplified form of Yang et al. (2010).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import warnings

from scipy import optimize, special, stats
from sklearn import metrics

from skinlib.bootstrap import (accuracy, balanced_accuracy, bootstrap_values, group_codes, paired_difference,
                               percentile_interval, percentile_p_value)
from skinlib.calibration import EPSILON, check_labels, check_proba

ProbaCollection = Sequence[np.ndarray] | Mapping[str, np.ndarray]
CLUSTERED_MCNEMAR = "clustered McNemar (Obuchowski 1998, as simplified by Yang et al. 2010)"
DURKALSKI_MCNEMAR = "clustered McNemar (Durkalski et al. 2003)"
CLUSTERED_TESTS = {"obuchowski": CLUSTERED_MCNEMAR, "durkalski": DURKALSKI_MCNEMAR}
MIN_DISCORDANT_GROUPS = 10  # fewer discordant lesions: the chi-square approximation of a clustered test is poor


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


def mcnemar(y_true, pred_a, pred_b, exact: bool = True, *, groups=None,
            clustered: str = "obuchowski") -> dict[str, float | str]:
    """McNemar's test of two classifiers on the same images.

    ``b``: images only ``a`` gets right; ``c``: images only ``b`` gets right. Without ``groups``: ``exact``
    uses the binomial test on b of b + c (valid for any count); otherwise the chi-square statistic with
    continuity correction. With ``groups`` (one id per image, e.g. ``lesion_id``) images of one group are
    not independent and a clustered test is used (``exact`` is ignored), with b_k - c_k the discordance of
    group k and n_k its number of images, chi-square with 1 degree of freedom (an approximation for many
    groups; for groups of one image both are the uncorrected McNemar statistic):

    * ``clustered="obuchowski"`` (default): Obuchowski (1998, "On the comparison of correlated proportions
      for clustered data", Stat. Med. 17:1495) as simplified by Yang, Sun & Hardin (2010, Biometrical J.
      52:638): ``statistic`` = (sum_k (b_k - c_k))^2 / sum_k (b_k - c_k)^2 = (b - c)^2 / sum_k (b_k - c_k)^2.
    * ``clustered="durkalski"``: Durkalski et al. (2003, Stat. Med. 22:2417), each group's discordance as a
      share of its images: (sum_k (b_k - c_k) / n_k)^2 / sum_k ((b_k - c_k) / n_k)^2 (the form the R package
      clust.bin.pair implements; tests/test_ensemble.py checks both statistics on a toy computed by hand).

    Fewer than ``MIN_DISCORDANT_GROUPS`` groups with a discordant image give a warning with the count. A
    small ``p_value`` means the two differ by more than chance. ``test`` names the test used;
    ``discordant_groups`` counts the groups with a discordant image.
    """
    y_true, pred_a, pred_b = (np.asarray(v) for v in (y_true, pred_a, pred_b))
    right_a, right_b = pred_a == y_true, pred_b == y_true
    only_a, only_b = right_a & ~right_b, ~right_a & right_b
    b, c = int(np.sum(only_a)), int(np.sum(only_b))
    if groups is not None:
        if clustered not in CLUSTERED_TESTS:
            raise ValueError(f"clustered={clustered!r}: accepted are {', '.join(CLUSTERED_TESTS)}")
        return {"b": b, "c": c, **_clustered_mcnemar(only_a, only_b, groups, clustered),
                "test": CLUSTERED_TESTS[clustered]}
    if b + c == 0:
        return {"b": b, "c": c, "statistic": 0.0, "p_value": 1.0, "test": "exact" if exact else "chi-square"}
    if exact:
        return {"b": b, "c": c, "statistic": float(min(b, c)),
                "p_value": float(stats.binomtest(b, b + c, 0.5).pvalue), "test": "exact"}
    statistic = (abs(b - c) - 1) ** 2 / (b + c)
    return {"b": b, "c": c, "statistic": float(statistic), "p_value": float(stats.chi2.sf(statistic, df=1)),
            "test": "chi-square"}


def _clustered_mcnemar(only_a: np.ndarray, only_b: np.ndarray, groups, clustered: str) -> dict[str, float]:
    """The clustered statistic (Obuchowski/Yang or Durkalski) and p-value from the per-image discordance."""
    codes, n_groups = group_codes(groups, len(only_a))
    discordance = np.bincount(codes, weights=only_a.astype(float) - only_b, minlength=n_groups)  # b_k - c_k
    discordant = int(np.count_nonzero(np.bincount(codes, weights=(only_a | only_b).astype(float), minlength=n_groups)))
    if discordant < MIN_DISCORDANT_GROUPS:
        warnings.warn(f"clustered McNemar test on {discordant} discordant group(s) (lesions where exactly one "
                      f"model is right on some image), fewer than {MIN_DISCORDANT_GROUPS}: its chi-square "
                      f"p-value is unreliable; report the counts, or compare on more lesions", stacklevel=3)
    if clustered == "durkalski":
        discordance = discordance / np.bincount(codes, minlength=n_groups)  # (b_k - c_k) / n_k
    spread = float(np.sum(discordance ** 2))
    if spread == 0:
        return {"statistic": 0.0, "p_value": 1.0, "discordant_groups": discordant}
    statistic = float(discordance.sum() ** 2 / spread)
    return {"statistic": statistic, "p_value": float(stats.chi2.sf(statistic, df=1)),
            "discordant_groups": discordant}


def holm(p_values) -> np.ndarray:
    """Holm's (1979) step-down adjusted p-values: with the m p-values sorted ascending, the i-th (from 1) times
    m - i + 1, made non-decreasing by a running maximum, capped at 1. Rejecting the adjusted p-values below
    alpha keeps the chance of any false rejection among the m at most alpha. NaN entries are left out."""
    p_values = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p_values.shape, np.nan)
    defined = np.flatnonzero(~np.isnan(p_values))
    order = defined[np.argsort(p_values[defined], kind="stable")]
    steps = p_values[order] * (len(order) - np.arange(len(order)))
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(steps)) if len(order) else steps
    return adjusted


def compare(y_true, probas_by_name: Mapping[str, np.ndarray], reference: str | None = None, *,
            groups=None, unit: str = "lesion", n_bootstrap: int = 1000, confidence_level: float = 0.95,
            seed: int = 0) -> pd.DataFrame:
    """Each model's metrics, and how the ``reference`` model differs from each other one.

    ``reference`` defaults to ``"ensemble"`` if present, else the first model. For every other model the
    table gives ``accuracy_gain`` and ``balanced_accuracy_gain`` (reference minus model) with paired
    percentile bootstrap intervals (``*_low``, ``*_high``) and two-sided percentile-bootstrap p-values
    (``*_p``), and McNemar's test (``reference_only_right``, ``model_only_right``: images; ``mcnemar_p``).
    With ``groups`` (one id per image, e.g. ``lesion_id``) the bootstrap resamples whole groups, the same ones
    for both models, and McNemar's test is the clustered one of Obuchowski (1998) as simplified by Yang et al.
    (2010); without, it resamples images and the test is McNemar's exact test.

    Multiplicity: the gains of every model in both metrics form one family; ``*_p_holm`` are their Holm-adjusted
    p-values (:func:`holm`, over 2 x the models compared) and ``mcnemar_p_holm`` McNemar's, adjusted over the
    models. ``significant_accuracy`` / ``significant_balanced_accuracy``: that gain's adjusted p-value is below
    1 - ``confidence_level``; ``significant``: either is. ``table.attrs`` records ``reference``,
    ``interval_unit`` (``unit`` with groups, else "image"), ``n_groups``, ``mcnemar_test`` and ``adjustment``.
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
    gains = (("accuracy", accuracy), ("balanced_accuracy", balanced_accuracy))
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
            for metric_name, metric in gains:
                gain = paired_difference(metric)
                values = bootstrap_values(gain, *pair, groups=groups, n_resamples=n_bootstrap, seed=seed)
                row[f"{metric_name}_gain"] = float(gain(*pair))
                row[f"{metric_name}_gain_low"], row[f"{metric_name}_gain_high"] = percentile_interval(
                    values, confidence_level)
                row[f"{metric_name}_gain_p"] = percentile_p_value(values)
            test = mcnemar(*pair, groups=groups)
            row.update(reference_only_right=test["b"], model_only_right=test["c"], mcnemar_p=test["p_value"])
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    _flag_significant(table, [name for name in names if name != reference], 1 - confidence_level)
    table.attrs.update(reference=reference, interval_unit="image" if groups is None else unit,
                       n_groups=n_groups, mcnemar_test="exact" if groups is None else CLUSTERED_MCNEMAR,
                       adjustment="Holm over every model and both metrics (accuracy, balanced accuracy)")
    return table


def _flag_significant(table: pd.DataFrame, compared: list[str], alpha: float) -> None:
    """Add the Holm-adjusted p-values and the ``significant*`` flags of :func:`compare` to ``table`` (in place)."""
    if not compared:
        return
    columns = ["accuracy_gain_p", "balanced_accuracy_gain_p"]
    adjusted = holm(table.loc[compared, columns].to_numpy(dtype=float).ravel()).reshape(len(compared), 2)
    flags = adjusted < alpha
    table["mcnemar_p_holm"] = pd.Series(holm(table.loc[compared, "mcnemar_p"].to_numpy(dtype=float)), compared)
    for k, column in enumerate(columns):
        table[f"{column}_holm"] = pd.Series(adjusted[:, k], compared)
        table[f"significant_{column.removesuffix('_gain_p')}"] = pd.Series(flags[:, k], compared, dtype=object)
    table["significant"] = pd.Series(flags.any(axis=1), compared, dtype=object)

"""Leaks between the parts of a split: the study's leak measured directly, and near-duplicate photos across parts.

:func:`gap` scores one model on the leaked and the leak-free part of one test set and compares the two.

Under the study's image-level split (metadata in file order, seed 0), 397 of its 1,002 test images have a photo of
the same lesion in training at val_size 0.1 (notebooks 03-09); the 605 others form the leak-free part. At
val_size 0.2 (notebook 02) the parts are 361 and 641. "Leaked" counts training only: 441 test images share a
lesion with training *or* validation (at either val_size), and validation decides the plateaus and the checkpoint
kept, so the leak-free part is free of training lesions, not of every influence::

    >>> leaked = leakage.shares_lesion(parts, "test")          # bool per test image
    >>> leakage.gap(y_test, proba_test, leaked, groups=parts.test["lesion_id"])

The two parts differ in class mix: lesions photographed several times are less often nevi (54 % of the leaked part,
77 % of the leak-free part at seed 0), so their plain accuracies differ for that reason alone, even for a model that
gained nothing from the leak. :func:`gap` therefore compares the parts in balanced accuracy (the mean recall over
classes) and in accuracy reweighted to one class mix (each part's per-class recalls weighted by the whole test set's
class shares, :func:`skinlib.bootstrap.reweighted_accuracy`), each with a lesion-level paired bootstrap interval.
The whole set minus its leak-free part is shown only as context: it is the leaked-minus-leak-free accuracy
difference diluted by the leaked share (397 / 1,002 = 0.40 of it) and confounded by the class mix. What the leak is
worth to a model is measured by training it again without the test lesions, ``split(..., protocol=
"study_deleaked")``, against the control ``protocol="study_control"`` (as many images removed at random), both
scored on the same test images (``bench/leak_worth.py``).

The other functions show what ``skinlib.data.find_duplicates`` finds (notebook 01): the strongest pairs, the
lesions their merging joins, the copy similarity of same-lesion against random pairs, and how many pairs each
protocol leaves across parts.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from skinlib import bootstrap
from skinlib.data import DUPLICATE_THRESHOLD, duplicate_groups, load_images, split

ROWS = ("whole test set", "leak-free part", "leaked part", "leaked - leak-free", "context: whole - leak-free")
METRICS = ("accuracy", "balanced_accuracy", "reweighted_accuracy")
COMPARED = ("balanced_accuracy", "reweighted_accuracy")  # the class-mix-fair metrics of the row leaked - leak-free


def shares_lesion(parts, part: str = "test") -> np.ndarray:
    """Whether each image of ``part`` has a photo of the same lesion in training (a ``data.Split``); validation is
    not counted (``parts.shared_lesions(part, "val")`` counts it)."""
    return getattr(parts, part)["lesion_id"].isin(set(parts.train["lesion_id"])).to_numpy()


def gap(y_true, proba, leaked, groups=None, seed: int = 0, n_resamples: int = 1000,
        confidence_level: float = 0.95) -> pd.DataFrame:
    """One model on the whole test set, its leak-free part and its leaked part, and the leaked part against the
    leak-free part.

    Rows (:data:`ROWS`): ``"whole test set"``, ``"leak-free part"``, ``"leaked part"``: images, lesions,
    ``accuracy``, ``balanced_accuracy`` and ``reweighted_accuracy`` (per-class recall weighted by the whole test
    set's class shares, so both parts are scored at one class mix), each with ``*_low`` / ``*_high`` intervals
    that resample ``groups`` (lesions; None: images). ``"leaked - leak-free"``: the differences in
    ``balanced_accuracy`` and ``reweighted_accuracy`` (leaked minus leak-free), with a paired bootstrap interval
    (the same resampled lesions for both parts); its ``accuracy`` is NaN, as plain accuracy differs with the class
    mix. ``"context: whole - leak-free"``: the accuracy of the whole set minus that of its leak-free part, without
    an interval, for comparison with older results only. Rows or values without images are NaN.
    """
    y_true, leaked = np.asarray(y_true), np.asarray(leaked, dtype=bool)
    proba = np.asarray(proba)
    y_pred = proba.argmax(axis=1)
    free = ~leaked
    codes = None if groups is None else np.asarray(groups, dtype=object)
    shares = np.bincount(y_true, minlength=proba.shape[1]) / max(len(y_true), 1)
    metrics = {"accuracy": bootstrap.accuracy, "balanced_accuracy": bootstrap.balanced_accuracy,
               "reweighted_accuracy": partial(bootstrap.reweighted_accuracy, shares=shares)}
    options = dict(groups=codes, n_resamples=n_resamples, confidence_level=confidence_level, seed=seed)
    rows = {}
    for name, mask in ((ROWS[0], np.ones_like(leaked)), (ROWS[1], free), (ROWS[2], leaked)):
        part = None if codes is None else codes[mask]
        rows[name] = _scores(y_true[mask], y_pred[mask], metrics, {**options, "groups": part})
    both = bool(leaked.any() and free.any())
    difference = {"images": int(leaked.size), "lesions": _count(codes, np.ones_like(leaked)),
                  "accuracy": np.nan, "accuracy_low": np.nan, "accuracy_high": np.nan}
    for name in COMPARED:
        statistic = bootstrap.paired_difference(metrics[name], first=leaked, second=free)
        difference[name] = float(statistic(y_true, y_pred, y_pred)) if both else np.nan
        difference[f"{name}_low"], difference[f"{name}_high"] = bootstrap.bootstrap_interval(
            statistic, y_true, y_pred, y_pred, **options) if both else (np.nan, np.nan)
    rows[ROWS[3]] = difference
    rows[ROWS[4]] = {"images": int(leaked.size), "lesions": difference["lesions"],
                     "accuracy": rows[ROWS[0]]["accuracy"] - rows[ROWS[1]]["accuracy"]}
    return pd.DataFrame.from_dict(rows, orient="index")


def _count(codes, mask) -> int:
    return int(mask.sum()) if codes is None else int(pd.Series(codes[mask]).nunique())


def _scores(y, p, metrics: dict, options: dict) -> dict:
    row = {"images": int(len(y)), "lesions": _count(options["groups"], np.ones(len(y), dtype=bool))}
    for name, metric in metrics.items():
        row[name] = float(metric(y, p)) if len(y) else np.nan
        row[f"{name}_low"], row[f"{name}_high"] = bootstrap.bootstrap_interval(
            metric, y, p, **options) if len(y) >= 2 else (np.nan, np.nan)
    return row


# ---------------------------------------------------------------------------------------------------------
# Near-duplicates that lesion_id misses
# ---------------------------------------------------------------------------------------------------------

def duplicate_pairs_figure(meta: pd.DataFrame, pairs: pd.DataFrame, n: int = 8, cross_lesion: bool = True,
                           size: tuple[int, int] = (150, 200)) -> Figure:
    """The ``n`` strongest pairs of :func:`skinlib.data.find_duplicates`, side by side with their inlier count
    (SIFT matches that one shift + turn + zoom explains) and copy similarity.

    Args:
        meta: metadata with the images of the pairs (``image_id`` and ``path``).
        pairs: from :func:`skinlib.data.find_duplicates`, strongest first.
        cross_lesion: show only pairs filed under different lesion ids (the leaks lesion_id misses).
    """
    shown = (pairs[~pairs["same_lesion"]] if cross_lesion else pairs).head(n)
    rows = max(1, len(shown))
    fig = Figure(figsize=(6.4, 2.5 * rows), layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    if shown.empty:
        axes[0, 0].text(0, 0.5, "no pair at this threshold", fontsize=12)
        return fig
    by_id = meta.set_index("image_id")
    for row, pair in enumerate(shown.itertuples(index=False)):
        ids = [pair.image_id_a, pair.image_id_b]
        images = load_images(by_id.loc[ids].reset_index(), size=size, cache=False, progress=False)
        lesions, classes = [pair.lesion_id_a, pair.lesion_id_b], [pair.dx_a, pair.dx_b]
        for col, (image_id, lesion, dx) in enumerate(zip(ids, lesions, classes)):
            axes[row, col].imshow(images[col])
            axes[row, col].set_title(f"{image_id} · {lesion} · {dx}", fontsize=8)
        axes[row, 0].text(1.02, 0.5, f"{pair.inliers} inliers\nsim. {pair.similarity:.2f}",
                          transform=axes[row, 0].transAxes, fontsize=9, va="center", ha="left")
    fig.suptitle(f"Strongest {'cross-lesion ' if cross_lesion else ''}pairs (inlier matches, copy similarity)")
    return fig


def merged_lesions(meta: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """What merging the pairs of :func:`skinlib.data.find_duplicates` does to the groups of a grouped split: lesions
    before, groups after, the groups that join several lesion ids, and the images and lesions in them."""
    groups = duplicate_groups(meta, pairs)
    lesions_per_group = meta.groupby(groups.to_numpy())["lesion_id"].nunique()
    joined = lesions_per_group[lesions_per_group > 1]
    return pd.Series({"pairs": len(pairs), "cross-lesion pairs": int((~pairs["same_lesion"]).sum()),
                      "lesion ids": meta["lesion_id"].nunique(), "groups after merging": groups.nunique(),
                      "groups joining several lesion ids": len(joined), "lesion ids in them": int(joined.sum()),
                      "images in them": int(groups.isin(joined.index).sum())}).to_frame("count")


def similarity_quantiles(reference: pd.DataFrame,
                         quantiles=(0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999)) -> pd.DataFrame:
    """Quantiles, count and maximum of the similarity of same-lesion and random pairs (:func:`similarity_reference`)."""
    grouped = reference.groupby("kind")["similarity"]
    table = grouped.quantile(list(quantiles)).unstack()
    table.columns = [f"q{q:g}" for q in quantiles]
    table.insert(0, "pairs", grouped.size())
    table["max"] = grouped.max()
    return table


def similarity_figure(reference: pd.DataFrame, threshold: float = DUPLICATE_THRESHOLD) -> Figure:
    """Histograms of the similarity of same-lesion pairs and of random pairs, with the duplicate threshold."""
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    bins = np.linspace(0.0, 1.0, 51)
    for kind, colour in (("random", "tab:blue"), ("same lesion", "tab:orange")):
        values = reference.loc[reference["kind"] == kind, "similarity"]
        ax.hist(values, bins=bins, density=True, alpha=0.55, color=colour, label=f"{kind} (n={len(values):,})")
    ax.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:g}")
    ax.set(title="Image similarity: pairs of one lesion vs random pairs of different lesions", xlabel="similarity",
           ylabel="density", yscale="log")
    ax.legend()
    return fig


def duplicate_leakage(meta: pd.DataFrame, pairs: pd.DataFrame, seed: int = 0, val_size: float = 0.1) -> pd.DataFrame:
    """Near-duplicate pairs that span two parts under the study's split, the grouped one, and grouped with merging.

    Columns: pairs across any two parts, across train and test, and of those the cross-lesion ones (which
    only merging the duplicates removes).
    """
    splits = {"study": split(meta, "study", seed=seed, val_size=val_size),
              "grouped": split(meta, "grouped", seed=seed, val_size=val_size),
              "grouped, duplicates merged": split(meta, "grouped", seed=seed, val_size=val_size, duplicates=pairs)}
    rows = {}
    for name, parts in splits.items():
        across = parts.pairs_across(pairs)
        test = across[(across["part_a"] == "test") | (across["part_b"] == "test")]
        train_test = test[(test["part_a"] == "train") | (test["part_b"] == "train")]
        rows[name] = {"pairs": len(pairs), "pairs across parts": len(across),
                      "across train and test": len(train_test),
                      "cross-lesion, across train and test": int((~train_test["same_lesion"]).sum())}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("protocol")

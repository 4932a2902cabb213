"""The image source as a shortcut: where HAM10000's images come from, and how well the pixels alone tell it.

HAM10000 pools four collections (the Dataverse metadata's ``dataset`` column): ViDIR's MoleMax archive
(``vidir_molemax``: almost only nevi), ViDIR's modern archive (``vidir_modern``), the Rosendahl practice
(``rosendahl``: most keratoses and carcinomas) and the Vienna dermatoscopy archive (``vienna_dias``). Each was
taken with its own cameras and light; if a classifier can tell the source from colour alone, a network can use
the source as a stand-in for the diagnosis::

    >>> meta = provenance.attach(meta, data_dir)   # adds `dataset` from the Dataverse CSV; None without it
    >>> provenance.by_diagnosis(meta)              # images per source and class, with the nevus share
    >>> result = provenance.probe(meta, images)    # logistic regression on colour statistics, 5 lesion folds
    >>> result.to_frame()                          # balanced accuracy against chance and the majority rate

The probe is scored by lesion-grouped cross-validation (:class:`~sklearn.model_selection.StratifiedGroupKFold`
over ``lesion_id``, stratified by source): no lesion has photos in both the fitted and the scored folds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from skinlib import bootstrap, eda
from skinlib.data.metadata import read_metadata_table

SOURCE = "dataset"
UNAVAILABLE = ("No image source: the metadata found has no `dataset` column (the Kaggle CSV); put the Dataverse "
               "CSV (HAM10000_metadata_dataverse.csv) in data_dir to see it.")
PERCENTILES = (5, 25, 50, 75, 95)
HISTOGRAM_BINS = 8


def attach(meta: pd.DataFrame, root: str | Path | None = None) -> pd.DataFrame | None:
    """``meta`` with the image source column ``dataset``: its own, else joined by ``image_id`` from the Dataverse
    metadata in ``root`` (:func:`skinlib.eda.find_dataverse_metadata`). None when neither has it."""
    if SOURCE in meta.columns:
        return meta
    path = eda.find_dataverse_metadata(root) if root is not None else None
    if path is None:
        return None
    table = read_metadata_table(path)[["image_id", SOURCE]]
    lookup = table.assign(image_id=table["image_id"].astype(str).str.strip()).set_index("image_id")[SOURCE]
    return meta.assign(**{SOURCE: meta["image_id"].map(lookup)})


def with_source(meta: pd.DataFrame, root: str | Path | None, required: bool = False) -> pd.DataFrame:
    """``meta`` with the image source (:func:`attach`) where the Dataverse metadata is in ``root``, else ``meta`` as
    it is; ``required`` (a ``source_out`` split) turns a missing source into a clear error."""
    found = attach(meta, root)
    if found is not None:
        return found
    if required:
        raise ValueError(f"protocol='source_out' needs the image source, the `dataset` column of the Dataverse "
                         f"metadata: put HAM10000_metadata_dataverse.csv in data_dir ({root})")
    return meta


def _check_source(meta: pd.DataFrame, caller: str) -> None:
    if SOURCE not in meta.columns:
        raise ValueError(f"{caller}: meta has no `{SOURCE}` column (the image source, in the Dataverse metadata "
                         f"only); add it with provenance.attach(meta, data_dir)")


def by_diagnosis(meta: pd.DataFrame) -> pd.DataFrame:
    """Images per source (rows) and class (columns), then ``images``, ``lesions`` and ``nv share`` (the share
    of the source's images that are nevi), and a ``total`` row."""
    _check_source(meta, "provenance.by_diagnosis")
    table = eda.dataset_sources(meta).T
    table.columns.name, table.index.name = "dx", "source"
    lesions = meta.groupby(meta[SOURCE].astype("string").fillna("unknown"))["lesion_id"].nunique()
    table.loc["total"] = table.sum()
    table["images"] = table.sum(axis=1)
    table["lesions"] = lesions.reindex(table.index).fillna(meta["lesion_id"].nunique()).astype("int64")
    table["nv share"] = table["nv"] / table["images"] if "nv" in table else 0.0
    return table


def colour_features(images, chunk: int = 512) -> pd.DataFrame:
    """Colour statistics of each uint8 RGB image (N, H, W, 3): per channel the mean, standard deviation, the
    :data:`PERCENTILES` (the smallest level 0..255 with that share of the pixels at or below it, NumPy's
    ``method="inverted_cdf"``) and a :data:`HISTOGRAM_BINS`-bin histogram (shares
    of the pixels); all read off one 256-level histogram per image and channel."""
    if len(getattr(images, "shape", ())) != 4 or images.shape[-1] != 3:
        raise ValueError(f"colour_features(images=...): expected an (N, H, W, 3) RGB array, got shape "
                         f"{getattr(images, 'shape', type(images))}")
    levels = np.arange(256, dtype=np.float64)
    rows = []
    for start in range(0, len(images), chunk):
        batch = np.asarray(images[start:start + chunk], dtype=np.uint8)
        n = len(batch)
        offsets = (np.arange(n)[:, None, None, None] * 3 + np.arange(3)) * 256
        counts = np.bincount((batch + offsets).ravel(), minlength=n * 3 * 256).reshape(n, 3, 256)
        shares = counts / counts.sum(axis=-1, keepdims=True)
        mean = shares @ levels
        std = np.sqrt(np.maximum(shares @ levels**2 - mean**2, 0.0))
        below = counts.cumsum(axis=-1) * 100  # integers: exact comparisons with p % of the pixels
        total = counts.sum(axis=-1, keepdims=True)
        percentiles = [(below < p * total).sum(axis=-1) for p in PERCENTILES]
        histogram = shares.reshape(n, 3, HISTOGRAM_BINS, 256 // HISTOGRAM_BINS).sum(axis=-1)
        rows.append(np.concatenate([mean, std, *percentiles, *np.moveaxis(histogram, -1, 0)], axis=1))
    names = [f"{stat}_{channel}" for stat in ("mean", "std", *(f"p{p}" for p in PERCENTILES),
                                              *(f"hist{b}" for b in range(HISTOGRAM_BINS)))
             for channel in eda.CHANNELS]
    values = np.concatenate(rows) if rows else np.empty((0, len(names)))
    return pd.DataFrame(values, columns=names)


@dataclass
class SourceProbe:
    """How well colour statistics predict the image source (:func:`probe`), out of fold."""

    sources: tuple[str, ...]
    images: int
    lesions: int
    folds: int
    balanced_accuracy: float
    interval: tuple[float, float]
    accuracy: float
    chance: float
    majority_source: str
    majority_rate: float
    confusion: pd.DataFrame
    within: str | None = None
    inputs: str = "colour statistics"

    def to_frame(self) -> pd.DataFrame:
        """The probe's scores beside what guessing gets: balanced accuracy (95 % interval over lesions) against
        chance (1 / sources), accuracy against the majority-class rate."""
        low, high = self.interval
        return pd.DataFrame({
            "probe": [self.balanced_accuracy, self.accuracy],
            "ci_low": [low, math.nan], "ci_high": [high, math.nan],
            "guessing": [self.chance, self.majority_rate],
            "guess": [f"chance, 1/{len(self.sources)}", f"always {self.majority_source}"],
        }, index=pd.Index(["balanced accuracy", "accuracy"], name="metric"))

    def recall(self) -> pd.Series:
        """Share of each source's images predicted as that source."""
        return pd.Series(np.diag(self.confusion) / self.confusion.sum(axis=1).to_numpy(),
                         index=self.confusion.index, name="recall")

    def summary(self) -> str:
        scope = f" (dx {self.within} only)" if self.within else ""
        return (f"source probe on {self.inputs}{scope}: {self.images:,} images of {self.lesions:,} lesions, {self.folds} lesion-"
                f"grouped folds: balanced accuracy {self.balanced_accuracy:.3f} [{self.interval[0]:.3f}, "
                f"{self.interval[1]:.3f}] vs chance {self.chance:.3f}; accuracy {self.accuracy:.3f} vs "
                f"{self.majority_rate:.3f} always {self.majority_source}")


def probe(meta: pd.DataFrame, images=None, folds: int = 5, seed: int = 0, within: str | None = None,
          n_bootstrap: int = 1000, features: np.ndarray | None = None) -> SourceProbe:
    """Predict each image's source from its :func:`colour_features` alone, out of fold.

    A standardised multinomial logistic regression, scored by ``folds``-fold cross-validation grouped by
    ``lesion_id`` and stratified by source (``cross_val_predict`` with ``StratifiedGroupKFold``). ``within``:
    only the images of one class (e.g. ``"nv"``), so the source cannot be read off the diagnosis. The
    balanced accuracy's interval resamples lesions (:func:`skinlib.bootstrap.bootstrap_interval`).
    ``features``: one row per metadata row, used instead of the images' colour statistics (e.g.
    ``data.encoding.encode(meta, ("age", "sex", "localization"))``: how much the patient's metadata tells the
    source); give ``images`` or ``features``.
    """
    _check_source(meta, "provenance.probe")
    if (images is None) == (features is None):
        raise ValueError("provenance.probe: give the images (colour statistics) or features, one of the two")
    given, what = (images, "images") if features is None else (features, "feature rows")
    if len(given) != len(meta):
        raise ValueError(f"provenance.probe: {len(given)} {what} for {len(meta)} metadata rows")
    keep = meta[SOURCE].notna().to_numpy()
    if within is not None:
        if within not in set(meta["dx"]):
            raise ValueError(f"provenance.probe(within={within!r}): no such class in meta; present: "
                             f"{sorted(set(meta['dx']))}")
        keep = keep & (meta["dx"] == within).to_numpy()
    rows = np.flatnonzero(keep)
    frame = meta.iloc[rows]
    target = frame[SOURCE].astype(str).to_numpy()
    lesions = frame["lesion_id"].to_numpy()
    counts = pd.Series(target).value_counts()
    if len(counts) < 2:
        raise ValueError(f"provenance.probe: needs images of two sources or more, got {dict(counts)}")
    folds = min(folds, int(counts.min()), frame["lesion_id"].nunique())
    if folds < 2:
        raise ValueError(f"provenance.probe: too few images per source for two folds ({dict(counts)})")
    inputs = "colour statistics" if features is None else "the given features"
    features = (colour_features(images[rows] if isinstance(images, np.ndarray) else np.asarray(images)[rows])
                if features is None else np.asarray(features, dtype=np.float64)[rows])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with threadpool_limits(limits=1, user_api="blas"):  # small matrices: BLAS threads only contend for the cores
        predicted = cross_val_predict(model, features, target, groups=lesions, cv=splitter)
    names = tuple(sorted(counts.index))
    codes = {name: k for k, name in enumerate(names)}
    truth, guess = (np.array([codes[v] for v in values]) for values in (target, predicted))
    return SourceProbe(
        sources=names, images=len(frame), lesions=int(pd.Series(lesions).nunique()), folds=folds,
        balanced_accuracy=float(metrics.balanced_accuracy_score(truth, guess)),
        interval=bootstrap.bootstrap_interval(bootstrap.balanced_accuracy, truth, guess, groups=lesions,
                                              n_resamples=n_bootstrap, seed=seed),
        accuracy=float(metrics.accuracy_score(truth, guess)), chance=1.0 / len(names),
        majority_source=str(counts.index[0]), majority_rate=float(counts.iloc[0] / len(frame)),
        confusion=pd.DataFrame(metrics.confusion_matrix(truth, guess, labels=range(len(names))),
                               index=pd.Index(names, name="source"), columns=pd.Index(names, name="predicted")),
        within=within, inputs=inputs)

"""Train / validation / test splits: the study's leaky one, and a leakage-free grouped one.

HAM10000 has 10,015 images of 7,470 lesions: many lesions were photographed several times. The study
split *images* at random, so a test image often has a sibling photo of the same lesion in training.
``protocol="grouped"`` keeps every lesion in exactly one part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from skinlib.classes import CLASSES

PROTOCOLS = ("study", "grouped")
PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Three disjoint parts of the metadata (each a DataFrame with the metadata's columns)."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    protocol: str
    seed: int

    def parts(self) -> dict[str, pd.DataFrame]:
        """``{"train": ..., "val": ..., "test": ...}``."""
        return {name: getattr(self, name) for name in PARTS}

    def shared_lesions(self, part: str, other: str = "train") -> int:
        """Number of images in ``part`` whose lesion also has an image in ``other``."""
        lesions = set(getattr(self, other)["lesion_id"])
        return int(getattr(self, part)["lesion_id"].isin(lesions).sum())

    def summary(self) -> pd.DataFrame:
        """Images per class per part, totals, class shares, and images sharing a lesion with training.

        Rows are the classes then ``total`` and ``shares lesion with train``; columns are the parts.
        """
        counts = pd.DataFrame(
            {name: frame["dx"].value_counts().reindex(CLASSES, fill_value=0) for name, frame in self.parts().items()}
        )
        counts.loc["total"] = counts.sum()
        counts.loc["shares lesion with train"] = [0, self.shared_lesions("val"), self.shared_lesions("test")]
        counts.index.name = "dx"
        return counts.astype("int64")

    def class_shares(self) -> pd.DataFrame:
        """Fraction of each class in each part (columns) and in all images together."""
        shares = {name: frame["dx"].value_counts(normalize=True).reindex(CLASSES, fill_value=0.0)
                  for name, frame in self.parts().items()}
        everything = pd.concat(list(self.parts().values()))
        shares["all"] = everything["dx"].value_counts(normalize=True).reindex(CLASSES, fill_value=0.0)
        return pd.DataFrame(shares)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name} {len(frame)}" for name, frame in self.parts().items())
        return (f"Split(protocol={self.protocol!r}, seed={self.seed}: {sizes}; test images sharing a lesion "
                f"with train: {self.shared_lesions('test')})")


def split(meta: pd.DataFrame, protocol: str = "grouped", seed: int = 0, val_size: float = 0.1,
          test_size: float = 0.1) -> Split:
    """Split metadata into train, validation and test.

    Args:
        meta: frame from :func:`skinlib.data.load_metadata`, in file order.
        protocol: ``"study"`` reproduces the study exactly: ``train_test_split(test_size=0.1,
            random_state=seed)`` on all rows, then ``train_test_split(test_size=val_size,
            random_state=seed + 1)`` on the rest (the study used seed 0; its baseline used val_size 0.2).
            Images of one lesion land in different parts. ``"grouped"`` is leakage-free: no lesion in two
            parts, stratified by ``dx``, deterministic for a seed.
        seed: random seed.
        val_size: validation share of what remains after the test part ("study") or of all ("grouped").
        test_size: test share of all images.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown split protocol {protocol!r}; accepted: {', '.join(PROTOCOLS)}.")
    missing = {"lesion_id", "dx"} - set(meta.columns)
    if missing:
        raise ValueError(f"split() needs the metadata columns {sorted(missing)}; use skinlib.data.load_metadata.")
    if protocol == "study":
        rest, test = train_test_split(meta, test_size=test_size, random_state=seed)
        train, val = train_test_split(rest, test_size=val_size, random_state=seed + 1)
    else:
        rest, test = _grouped_holdout(meta, test_size, seed)
        train, val = _grouped_holdout(rest, val_size / (1.0 - test_size), seed + 1)
    return Split(train=train, val=val, test=test, protocol=protocol, seed=seed)


def _grouped_holdout(frame: pd.DataFrame, size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out about ``size`` of ``frame`` as whole lesions, stratified by class (one StratifiedGroupKFold fold)."""
    n_splits = max(2, int(round(1.0 / size)))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    keep, hold = next(folds.split(frame, frame["dx"], groups=frame["lesion_id"]))
    return frame.iloc[np.sort(keep)], frame.iloc[np.sort(hold)]


def subset(meta: pd.DataFrame, n: int | None, seed: int = 0) -> pd.DataFrame:
    """A class-stratified sample of ``n`` rows (all rows if ``n`` is None or not smaller), in file order.

    Every class keeps at least one row where ``n`` allows, so tiny smoke runs still see all seven.
    """
    if n is None or n >= len(meta):
        return meta
    if n < 1:
        raise ValueError(f"subset size must be positive, not {n}")
    rng = np.random.default_rng(seed)
    shares = meta["dx"].value_counts(normalize=True)
    quota = (shares * n).round().clip(lower=1).astype(int)
    while quota.sum() > n:
        quota[quota.idxmax()] -= 1
    picked = []
    for dx, k in quota.items():
        rows = meta.index[meta["dx"] == dx].to_numpy()
        picked.extend(rng.choice(rows, size=min(k, len(rows)), replace=False))
    return meta.loc[sorted(picked)]

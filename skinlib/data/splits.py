"""Train / validation / test splits: the study's leaky one, and a leakage-free grouped one.

HAM10000 has 10,015 images of 7,470 lesions: many lesions were photographed several times. The study
split *images* at random, so a test image often has a sibling photo of the same lesion in training.
``protocol="grouped"`` keeps every lesion in exactly one part; with ``duplicates=`` (pairs from
:func:`skinlib.data.find_duplicates`) it also keeps near-identical images filed under different lesion ids
in one part, by merging their lesions into one group. ``protocol="study_deleaked"`` keeps the study's test set
and removes from training and validation every image of a test lesion (and, given ``duplicates``, every
near-duplicate of a test image): the same test images scored with and without the leak. Removing them also
leaves less data, with another class mix (at seed 0, val_size 0.1: 498 training and 76 validation images
fewer, of 9,013). ``protocol="study_control"`` separates the two: the study's train and validation minus as
many images drawn at random (seeded), class by class and part by part, as ``study_deleaked`` removes; same test
set. Deleaked against control is what the leak is worth; control against the study's split is what the images
removed are worth.

How much of the study's test set leaks (metadata in file order, seed 0): 397 of its 1,002 test images have a
photo of the same lesion in *training* at val_size 0.1 (notebooks 03-09), 605 do not; at val_size 0.2
(notebook 02) 361 and 641. With validation counted too, 441 test images share a lesion with training or
validation at either val_size, and validation decides the learning-rate plateaus and the checkpoint kept.

``protocol="source_out"`` (with ``source=``) tests on one image source (the Dataverse ``dataset``
column) and trains and validates on the others: how far the model carries to a collection it never saw.
``protocol="grouped"`` with ``folds=K, fold=j`` is lesion-grouped K-fold cross-validation: the test part is fold
``j`` of K folds over the lesion groups (:func:`grouped_folds`: every lesion and merged group in exactly one fold,
class-stratified), validation is held out of the other folds, grouped; over ``j = 0 .. K-1`` every image is tested
exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from skinlib.classes import CLASSES

PROTOCOLS = ("study", "grouped", "study_deleaked", "study_control", "source_out")
PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Three disjoint parts of the metadata (each a DataFrame with the metadata's columns)."""

    train: pd.DataFrame
    val: pd.DataFrame
    test: pd.DataFrame
    protocol: str
    seed: int
    folds: int | None = None  # K of K-fold cross-validation (None: one split)
    fold: int | None = None  # the test fold, 0 .. folds-1

    def parts(self) -> dict[str, pd.DataFrame]:
        """``{"train": ..., "val": ..., "test": ...}``."""
        return {name: getattr(self, name) for name in PARTS}

    def shared_lesions(self, part: str, other: str = "train") -> int:
        """Number of images in ``part`` whose lesion also has an image in ``other``."""
        lesions = set(getattr(self, other)["lesion_id"])
        return int(getattr(self, part)["lesion_id"].isin(lesions).sum())

    def pairs_across(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """The image pairs (e.g. from :func:`skinlib.data.find_duplicates`) whose two images lie in different
        parts, with columns ``part_a`` and ``part_b`` added. Pairs with an image outside the split are ignored."""
        _check_pairs(pairs)
        part_of = pd.concat([pd.Series(name, index=frame["image_id"].to_numpy())
                             for name, frame in self.parts().items()])
        part_a = pairs["image_id_a"].map(part_of)
        part_b = pairs["image_id_b"].map(part_of)
        across = part_a.notna() & part_b.notna() & (part_a != part_b)
        return pairs.loc[across].assign(part_a=part_a[across], part_b=part_b[across])

    def duplicates_in(self, part: str, pairs: pd.DataFrame, other: str = "train") -> int:
        """Number of images in ``part`` with a near-duplicate (a pair in ``pairs``) in ``other``."""
        across = self.pairs_across(pairs)
        forward = across.loc[(across["part_a"] == part) & (across["part_b"] == other), "image_id_a"]
        backward = across.loc[(across["part_b"] == part) & (across["part_a"] == other), "image_id_b"]
        return int(pd.concat([forward, backward]).nunique())

    def summary(self, duplicates: pd.DataFrame | None = None) -> pd.DataFrame:
        """Images per class per part, totals, class shares, and images sharing a lesion with training.

        Rows are the classes then ``total`` and ``shares lesion with train`` (and, given ``duplicates``
        pairs, ``near-duplicate in train``); columns are the parts.
        """
        counts = pd.DataFrame(
            {name: frame["dx"].value_counts().reindex(CLASSES, fill_value=0) for name, frame in self.parts().items()}
        )
        counts.loc["total"] = counts.sum()
        counts.loc["shares lesion with train"] = [0, self.shared_lesions("val"), self.shared_lesions("test")]
        if duplicates is not None:
            counts.loc["near-duplicate in train"] = [0, self.duplicates_in("val", duplicates),
                                                     self.duplicates_in("test", duplicates)]
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
        fold = "" if self.folds is None else f", fold {self.fold} of {self.folds}"
        return (f"Split(protocol={self.protocol!r}, seed={self.seed}{fold}: {sizes}; test images sharing a lesion "
                f"with train: {self.shared_lesions('test')})")


def split(meta: pd.DataFrame, protocol: str = "grouped", seed: int = 0, val_size: float = 0.1,
          test_size: float = 0.1, duplicates: pd.DataFrame | None = None, source: str | None = None,
          folds: int | None = None, fold: int | None = None) -> Split:
    """Split metadata into train, validation and test.

    Args:
        meta: frame from :func:`skinlib.data.load_metadata`, in file order.
        protocol: ``"study"`` reproduces the study exactly: ``train_test_split(test_size=0.1,
            random_state=seed)`` on all rows, then ``train_test_split(test_size=val_size,
            random_state=seed + 1)`` on the rest (the study used seed 0; its baseline used val_size 0.2).
            Images of one lesion land in different parts. ``"grouped"`` is leakage-free: no lesion in two
            parts, stratified by ``dx``, deterministic for a seed. ``"study_deleaked"``: the study's split with
            the images of its test lesions removed from train and validation (574 of their 9,013 images at seed 0).
            ``"source_out"``: every image of the source ``source`` is the test set; the other sources give train
            and validation, grouped and stratified as ``"grouped"``, with ``val_size`` their validation share;
            images of a test lesion (or, given ``duplicates``, group) filed under another source are dropped
            (9 lesions of HAM10000 span two sources). Needs the ``dataset`` column (the Dataverse metadata).
            ``"study_control"``: the study's split with as many images of each class removed at random (seeded)
            from train and from validation as ``"study_deleaked"`` removes there: the same sizes and class mix
            as ``"study_deleaked"``, the same test set, but the leak (mostly) kept.
        seed: random seed.
        val_size: validation share of what remains after the test part ("study") or of all ("grouped").
        test_size: test share of all images.
        duplicates: near-duplicate pairs (from :func:`skinlib.data.find_duplicates`). ``"grouped"``: kept in
            one part (the lesions of each pair are merged into one group, :func:`duplicate_groups`);
            ``"study_deleaked"``: those of test images are removed from train and validation too (and
            ``"study_control"`` removes as many at random). None (default): groups are the lesion ids.
        source: the held-out image source of ``"source_out"`` (a value of ``dataset``, e.g. ``"rosendahl"``).
        folds: ``"grouped"`` only: K-fold cross-validation over the lesion groups (:func:`grouped_folds` with this
            seed); the test part is fold ``fold`` (``test_size`` is then ``1/folds``), validation ``val_size`` of
            all images, held out of the other folds. None (default): one split.
        fold: the test fold, ``0 .. folds-1`` (needs ``folds``).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown split protocol {protocol!r}; accepted: {', '.join(PROTOCOLS)}.")
    missing = {"lesion_id", "dx"} - set(meta.columns)
    if missing:
        raise ValueError(f"split() needs the metadata columns {sorted(missing)}; use skinlib.data.load_metadata.")
    if source is not None and protocol != "source_out":
        raise ValueError(f"split(source={source!r}) holds out an image source and needs protocol='source_out', "
                         f"not {protocol!r}.")
    _check_folds(protocol, folds, fold)
    if protocol == "study":
        if duplicates is not None:
            raise ValueError("split(protocol='study') reproduces the study's image-level split and takes no "
                             "duplicates; use protocol='grouped' to keep near-duplicates in one part.")
        rest, test = train_test_split(meta, test_size=test_size, random_state=seed)
        train, val = train_test_split(rest, test_size=val_size, random_state=seed + 1)
    elif protocol == "study_deleaked":
        study = split(meta, "study", seed=seed, val_size=val_size, test_size=test_size)
        groups = meta["lesion_id"] if duplicates is None else duplicate_groups(meta, duplicates)
        tested = set(groups.loc[study.test.index])
        train, val = (frame[~groups.loc[frame.index].isin(tested)] for frame in (study.train, study.val))
        test = study.test
    elif protocol == "source_out":
        groups = meta["lesion_id"] if duplicates is None else duplicate_groups(meta, duplicates)
        held = _held_out_source(meta, source)
        test = meta[held]
        rest = meta[~held & ~groups.isin(set(groups[held]))]
        train, val = _grouped_holdout(rest, groups, val_size, seed + 1)
    elif folds is not None:
        groups = meta["lesion_id"] if duplicates is None else duplicate_groups(meta, duplicates)
        tested = grouped_folds(meta, folds, seed, groups=groups) == fold
        test, rest = meta[tested], meta[~tested]
        train, val = _grouped_holdout(rest, groups, val_size / (1.0 - 1.0 / folds), seed + 1)
    elif protocol == "study_control":
        study = split(meta, "study", seed=seed, val_size=val_size, test_size=test_size)
        deleaked = split(meta, "study_deleaked", seed=seed, val_size=val_size, test_size=test_size,
                         duplicates=duplicates)
        rng = np.random.default_rng(seed)
        train, val = (_drop_like(full, kept, rng) for full, kept in ((study.train, deleaked.train),
                                                                      (study.val, deleaked.val)))
        test = study.test
    else:
        groups = meta["lesion_id"] if duplicates is None else duplicate_groups(meta, duplicates)
        rest, test = _grouped_holdout(meta, groups, test_size, seed)
        train, val = _grouped_holdout(rest, groups, val_size / (1.0 - test_size), seed + 1)
    return Split(train=train, val=val, test=test, protocol=protocol, seed=seed, folds=folds, fold=fold)


def _check_folds(protocol: str, folds, fold) -> None:
    """Clear errors for ``folds`` / ``fold`` that cannot be used, before any work."""
    if folds is None:
        if fold is not None:
            raise ValueError(f"split(fold={fold!r}) needs folds= (the number of folds, e.g. folds=5).")
        return
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"split(folds={folds!r}): give the number of folds, an int >= 2 (or None: one split).")
    if protocol != "grouped":
        raise ValueError(f"split(folds={folds}) is lesion-grouped cross-validation and needs protocol='grouped', "
                         f"not {protocol!r} (the study's protocols are one fixed split).")
    if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < folds:
        raise ValueError(f"split(folds={folds}, fold={fold!r}): give the test fold, an int from 0 to {folds - 1}.")


def grouped_folds(meta: pd.DataFrame, folds: int, seed: int = 0, duplicates: pd.DataFrame | None = None,
                  groups: pd.Series | None = None) -> pd.Series:
    """Each row's fold (0 .. folds-1) of lesion-grouped K-fold cross-validation: StratifiedGroupKFold by ``dx``
    over the lesion ids (with ``duplicates``, over :func:`duplicate_groups`; or over given ``groups``), shuffled
    with ``seed``. Every group lies in exactly one fold. Returns an int Series aligned with ``meta``."""
    _check_folds("grouped", folds, 0)
    if groups is None:
        groups = meta["lesion_id"] if duplicates is None else duplicate_groups(meta, duplicates)
    assigned = np.full(len(meta), -1)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for number, (_, held) in enumerate(splitter.split(meta, meta["dx"], groups=groups.loc[meta.index].to_numpy())):
        assigned[held] = number
    return pd.Series(assigned, index=meta.index, name="fold")


def _held_out_source(meta: pd.DataFrame, source: str | None) -> pd.Series:
    """The rows of image source ``source`` (``protocol="source_out"``), or a clear error."""
    if "dataset" not in meta.columns:
        raise ValueError("split(protocol='source_out') needs the image source, the `dataset` column of the "
                         "Dataverse metadata (HAM10000_metadata_dataverse.csv); the Kaggle CSV lacks it. Load that "
                         "file, or add the column with skinlib.provenance.attach(meta, data_dir).")
    present = sorted(meta["dataset"].dropna().astype(str).unique())
    if source is None or source not in present:
        given = "needs source=" if source is None else f"has no source {source!r}:"
        raise ValueError(f"split(protocol='source_out') {given} the image source to test on; the sources "
                         f"present are {', '.join(present)}.")
    return meta["dataset"] == source
def _drop_like(frame: pd.DataFrame, kept: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """``frame`` without, in each class, as many rows drawn at random as ``kept`` (a subset of it) lacks of that
    class; the rows keep their order."""
    removed = frame.loc[frame.index.difference(kept.index), "dx"].value_counts().sort_index()
    dropped = [rng.choice(frame.index[frame["dx"] == dx].to_numpy(), size=int(n), replace=False)
               for dx, n in removed.items()]
    return frame.drop(np.concatenate(dropped)) if dropped else frame


def _grouped_holdout(frame: pd.DataFrame, groups: pd.Series, size: float,
                     seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out about ``size`` of ``frame`` as whole groups, stratified by class (one StratifiedGroupKFold fold).

    ``groups`` labels the rows of the full metadata (same index); by default the lesion ids.
    """
    n_splits = max(2, int(round(1.0 / size)))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    keep, hold = next(folds.split(frame, frame["dx"], groups=groups.loc[frame.index].to_numpy()))
    return frame.iloc[np.sort(keep)], frame.iloc[np.sort(hold)]


def _check_pairs(pairs: pd.DataFrame) -> None:
    missing = [c for c in ("image_id_a", "image_id_b", "lesion_id_a", "lesion_id_b") if c not in pairs.columns]
    if missing:
        raise ValueError(f"duplicate pairs lack the column(s) {missing}; pass the table made by "
                         f"skinlib.data.find_duplicates.")


def duplicate_groups(meta: pd.DataFrame, pairs: pd.DataFrame) -> pd.Series:
    """Each row's group: its lesion id, with the lesions of every pair in ``pairs`` merged (union-find).

    A group is named by its smallest lesion id, so an unmerged lesion keeps its own id. Pairs whose
    lesions are not both in ``meta`` are ignored. Returns a Series aligned with ``meta``.
    """
    _check_pairs(pairs)
    parent = {lesion: lesion for lesion in meta["lesion_id"].unique()}

    def root(lesion):
        while parent[lesion] != lesion:
            parent[lesion] = parent[parent[lesion]]
            lesion = parent[lesion]
        return lesion

    for first, second in zip(pairs["lesion_id_a"], pairs["lesion_id_b"]):
        if first in parent and second in parent:
            a, b = root(first), root(second)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return meta["lesion_id"].map({lesion: root(lesion) for lesion in parent}).rename("group")


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

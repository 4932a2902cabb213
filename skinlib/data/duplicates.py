"""Near-duplicate images, found from the pixels: the leaks that ``lesion_id`` does not know about.

HAM10000 files some photos of one lesion under two lesion ids (Abhishek et al., Sci. Data 12, 196, 2025):
the same photo again, or the lesion photographed again, shifted, turned, zoomed or in other light. A grouped
split that trusts ``lesion_id`` can put such a pair in train and test. :func:`find_duplicates` finds them in
two searches, whose candidate pairs it scores both ways:

* copies of one photo (:mod:`skinlib.data.copies`): a 16 x 16 colour grid of the centre, best of 8 flips and
  quarter turns and 3 zooms; its ``similarity`` is a correlation;
* re-takes (:mod:`skinlib.data.retakes`): candidates from colour-normalised thumbnails, HOG and visual words,
  verified by SIFT matches and a RANSAC fit of a shift + turn + zoom; its ``inliers`` count the matches that fit.

A pair is a near-duplicate when ``inliers >= INLIER_THRESHOLD`` or ``similarity >= DUPLICATE_THRESHOLD``
(a mirrored copy has no SIFT matches but a high similarity).
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from skinlib.config import cache_dir as default_cache_dir
from skinlib.data import copies, retakes
from skinlib.data.copies import DUPLICATE_THRESHOLD, NEIGHBOURS, similarity_reference
from skinlib.data.feature_store import FeatureStore, _write_atomic, image_keys
from skinlib.data.images import file_stamps
from skinlib.errors import DataError

__all__ = ["DUPLICATE_THRESHOLD", "INLIER_THRESHOLD", "PAIR_COLUMNS", "find_duplicates", "similarity_reference"]

INLIER_THRESHOLD = 10
"""Inlier matches from which a pair counts as a re-take. Measured on all 10,015 HAM10000 images at 200x150
(``python bench/duplicates.py``, bench/README.md): of 408,433 candidate pairs, 2,158 reach it, 97 % of them filed
under one lesion by the metadata (a lower bound on precision: some of the 65 others are one lesion filed twice);
cross-lesion candidates have a median of 0 inliers, 99th percentile 4, 99.9th 6. At 8: 112 cross-lesion pairs
(precision 0.95); at 6: 725 (0.75)."""
CACHE_FORMAT = 3  # bump when the search changes, so older result caches are not reused
PAIR_COLUMNS = ("image_id_a", "image_id_b", "lesion_id_a", "lesion_id_b", "dx_a", "dx_b", "similarity",
                "inliers", "same_lesion")
RESULT_ARRAYS = ("a", "b", "similarity", "inliers", "copy_candidate")


def describe_images(paths: list[str], workers: int | None = None, progress: bool = True) -> list[dict]:
    """The descriptors of both searches for each image file: :func:`skinlib.data.retakes.describe` plus the
    copy ``embedding`` of :func:`skinlib.data.copies.embed_image`."""
    def work(path: str) -> dict:
        return {**retakes.describe(retakes.read_image(path)), "embedding": copies.embed_path(path)}

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        return list(tqdm(pool.map(work, paths), total=len(paths), desc=f"Describing {len(paths)} images",
                         disable=not progress or not paths, unit="img", mininterval=0.5))


def _features(paths: list[str], keys: np.ndarray, store: FeatureStore, workers, progress) -> list[dict]:
    """The descriptors of every image: from the store where kept, computed (and kept) for the others."""
    known = store.load_images(keys)
    missing = sorted({key: path for key, path in zip(keys, paths) if key not in known}.items())
    described = dict(zip([key for key, _ in missing], describe_images([p for _, p in missing], workers, progress)))
    store.save_images(described)
    known.update(described)
    return [known[key] for key in keys]


def _inliers(features: list[dict], keys: np.ndarray, pairs: np.ndarray, store: FeatureStore, workers,
             progress) -> np.ndarray:
    """The verified inlier count of each pair: from the store where kept, verified (and kept) for the others.
    Each pair is verified in the order of its images' keys, so the count does not depend on the frame's order."""
    swap = keys[pairs[:, 0]] > keys[pairs[:, 1]]
    ordered = np.where(swap[:, None], pairs[:, ::-1], pairs)
    known = store.load_pairs()
    key_a, key_b = keys[ordered[:, 0]], keys[ordered[:, 1]]
    found = np.array([known.get(pair, -1) for pair in zip(key_a.tolist(), key_b.tolist())], dtype=np.int32)
    todo = np.flatnonzero(found < 0)
    found[todo] = retakes.verify_pairs([f["points"] for f in features], [f["descriptors"] for f in features],
                                       ordered[todo], workers=workers, progress=progress)
    store.save_pairs(key_a[todo], key_b[todo], found[todo])
    return found


def search(frame: pd.DataFrame, neighbours: int = NEIGHBOURS, candidates: int = retakes.CANDIDATES,
           store: FeatureStore | None = None, workers: int | None = None, progress: bool = True) -> dict:
    """Candidate pairs of both searches, each unordered pair once (``a`` < ``b``, row positions into ``frame``),
    with their ``similarity`` and ``inliers``, and whether the copy search proposed them (``copy_candidate``).

    The work is parallel over images and pairs (``workers`` threads), so BLAS, OpenMP and OpenCV run one thread
    each meanwhile: threads inside threads oversubscribe the cores."""
    opencv_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(limits=1):
            return _search(frame, neighbours, candidates, store, workers, progress)
    finally:
        cv2.setNumThreads(opencv_threads)


def _search(frame, neighbours, candidates, store, workers, progress) -> dict:
    paths = [str(p) for p in frame["path"]]
    keys = image_keys(paths)
    store = store or FeatureStore(None)
    features = _features(paths, keys, store, workers, progress)
    if len(features) < 2:
        return {"a": np.zeros(0, np.int64), "b": np.zeros(0, np.int64), "similarity": np.zeros(0, np.float32),
                "inliers": np.zeros(0, np.int32), "copy_candidate": np.zeros(0, bool)}
    embeddings = np.stack([f["embedding"] for f in features])
    found = copies.copy_candidates(embeddings, k=neighbours, progress=progress)
    stacked = {name: np.stack([f[name] for f in features]) for name in ("lab", "hog")}
    retake_pairs = retakes.candidates(stacked["lab"], stacked["hog"], [f["descriptors"] for f in features],
                                      k=candidates)
    copy_pairs = np.stack([found["a"], found["b"]], axis=1)
    pairs = np.unique(np.concatenate([copy_pairs, retake_pairs]), axis=0)
    codes = pairs[:, 0] * len(features) + pairs[:, 1]
    return {"a": pairs[:, 0], "b": pairs[:, 1],
            "similarity": copies.pair_similarity(embeddings, pairs[:, 0], pairs[:, 1]),
            "inliers": _inliers(features, keys, pairs, store, workers, progress),
            "copy_candidate": np.isin(codes, copy_pairs[:, 0] * len(features) + copy_pairs[:, 1])}


def copy_search(frame: pd.DataFrame, neighbours: int = NEIGHBOURS, workers: int | None = None,
                progress: bool = True) -> dict:
    """The copy search alone (no re-takes): its candidate pairs, ``inliers`` -1 (not verified)."""
    found = copies.copy_candidates(copies.embed(frame, workers=workers, progress=progress), neighbours, progress)
    count = len(found["a"])
    return {**found, "inliers": np.full(count, -1, np.int32), "copy_candidate": np.ones(count, bool)}


def _cache_path(paths: list[str], neighbours: int, candidates: int, folder: Path) -> Path:
    """The result cache file for these image files (list, sizes, mtimes) and search settings."""
    settings = [CACHE_FORMAT, copies.GRID, copies.BLUR, list(copies.ZOOMS), neighbours, candidates,
                [os.path.abspath(p) for p in paths]]
    digest = hashlib.sha256(json.dumps(settings).encode())
    digest.update(file_stamps(paths).encode())
    return folder / f"duplicates-n{len(paths)}-k{neighbours}-c{candidates}-{digest.hexdigest()[:20]}.npz"


def _cached_search(frame, neighbours, candidates, cache, cache_dir, workers, progress) -> dict:
    """:func:`search` (or :func:`copy_search` when ``candidates`` is 0) through the result cache."""
    paths = [str(p) for p in frame["path"]]
    if not cache:
        return (search(frame, neighbours, candidates, None, workers, progress) if candidates
                else copy_search(frame, neighbours, workers, progress))
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = _cache_path(paths, neighbours, candidates, folder)
    if target.is_file():
        try:
            with np.load(target) as stored:
                return {name: stored[name] for name in RESULT_ARRAYS}
        except (ValueError, OSError, KeyError, EOFError):
            target.unlink(missing_ok=True)  # unreadable cache: search again
    found = (search(frame, neighbours, candidates, FeatureStore(folder / "duplicate-features"), workers, progress)
             if candidates else copy_search(frame, neighbours, workers, progress))
    _write_atomic(target, found)
    return found


def find_duplicates(frame: pd.DataFrame, threshold: int = INLIER_THRESHOLD, *,
                    copy_threshold: float = DUPLICATE_THRESHOLD, neighbours: int = NEIGHBOURS,
                    candidates: int = retakes.CANDIDATES, cache: bool = True, cache_dir: str | Path | None = None,
                    workers: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Pairs of images of one lesion in ``frame``, copies or re-takes, found from the pixels, strongest first.

    Each image is paired with its ``neighbours`` most similar by the copy embedding and its ``candidates``
    nearest by each re-take descriptor; each pair is scored by its copy ``similarity`` and its verified SIFT
    ``inliers``. A pair is returned when ``inliers >= threshold`` or, among the copy search's pairs,
    ``similarity >= copy_threshold``.

    Args:
        frame: metadata from :func:`skinlib.data.load_metadata` (columns ``image_id``, ``lesion_id``,
            ``dx``, ``path``), all images or a subset.
        threshold: inlier matches from which a pair is returned (default :data:`INLIER_THRESHOLD`; 0 with
            ``copy_threshold=-1`` returns every candidate pair).
        copy_threshold: copy similarity from which a pair is returned (default :data:`DUPLICATE_THRESHOLD`).
        neighbours, candidates: neighbours kept per image by the copy search and by each re-take descriptor;
            ``candidates=0``: the copy search alone, in seconds (``inliers`` -1), as before re-takes were sought.
        cache: keep the result in ``cache_dir`` (default :func:`skinlib.config.cache_dir`), named by the image
            files (paths, sizes, modification times) and the settings, and each image's descriptors and each
            pair's score under ``duplicate-features/``, so that new images compute only their own; the
            thresholds apply after the cache, so changing them costs nothing.
        workers: threads (default: all cores).
        progress: show progress bars.

    Returns:
        One row per pair: ``image_id_a``, ``image_id_b``, ``lesion_id_a``, ``lesion_id_b``, ``dx_a``,
        ``dx_b``, ``similarity``, ``inliers`` and ``same_lesion`` (whether the metadata already files both
        under one lesion), most inliers first. Pass it to ``skinlib.data.split(..., duplicates=pairs)``.
    """
    missing = [c for c in ("image_id", "lesion_id", "dx", "path") if c not in frame.columns]
    if missing:
        raise DataError(f"find_duplicates needs the metadata columns {missing}; use skinlib.data.load_metadata.")
    found = _cached_search(frame, neighbours, candidates, cache, cache_dir, workers, progress)
    keep = (found["inliers"] >= threshold) | (found["copy_candidate"] & (found["similarity"] >= copy_threshold))
    a, b = found["a"][keep], found["b"][keep]
    columns = {}
    for column in ("image_id", "lesion_id", "dx"):
        values = frame[column].to_numpy()
        columns[f"{column}_a"], columns[f"{column}_b"] = values[a], values[b]
    pairs = pd.DataFrame(columns).assign(similarity=found["similarity"][keep].astype(np.float64),
                                         inliers=found["inliers"][keep].astype(np.int64))
    pairs["same_lesion"] = pairs["lesion_id_a"] == pairs["lesion_id_b"]
    pairs = pairs.sort_values(["inliers", "similarity"], ascending=False, kind="stable").reset_index(drop=True)
    return pairs[list(PAIR_COLUMNS)]

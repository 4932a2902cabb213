"""Per-image descriptors and per-pair scores of the duplicate search, kept on disk between calls.

Each image is keyed by its file (absolute path, size, modification time) and :data:`FORMAT`, so a new or edited
image computes only its own descriptors, and a pair is verified again only when one of its images changed. Each
call that computes something writes one new batch file (atomically: a temporary file, then a rename); reading
collects the batches that hold the keys asked for.
"""

from __future__ import annotations

import hashlib
import os
import uuid
import warnings
from pathlib import Path

import numpy as np

from skinlib.data.images import file_stat

FORMAT = 2  # bump when the descriptors or the verification change, so older batches are not reused
ARRAYS = ("lab", "hog", "embedding")  # fixed-size descriptors, one row per image
RAGGED = ("points", "descriptors")  # SIFT keypoints: a variable number of rows per image


def image_keys(paths: list[str]) -> np.ndarray:
    """One key per image file: a digest of :data:`FORMAT`, its absolute path, size and modification time."""
    keys = []
    for path in paths:
        info = file_stat(path)
        text = f"{FORMAT}:{os.path.abspath(path)}:{info.st_size}:{info.st_mtime_ns}"
        keys.append(hashlib.sha256(text.encode()).hexdigest()[:24])
    return np.array(keys, dtype="U24")


def _write_atomic(target: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as ``target`` (.npz) through a temporary file; warn (no raise) if impossible."""
    temporary = target.with_name(f".{target.stem}.{uuid.uuid4().hex}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(temporary, target)
    except OSError as error:
        warnings.warn(f"Cannot write the duplicate cache '{target}' ({error}); set SKINLIB_CACHE to a writable "
                      f"folder.", stacklevel=4)
    finally:
        temporary.unlink(missing_ok=True)


def _batch_name(prefix: str, keys: np.ndarray) -> str:
    return f"{prefix}-{len(keys)}-{hashlib.sha256(''.join(map(str, keys)).encode()).hexdigest()[:20]}.npz"


def _batches(folder: Path | None, prefix: str):
    """The readable batch files ``prefix-*.npz`` of ``folder`` (an unreadable one is deleted)."""
    if folder is None or not folder.is_dir():
        return
    for path in sorted(folder.glob(f"{prefix}-*.npz")):
        try:
            with np.load(path) as stored:
                yield stored
        except (ValueError, OSError, KeyError, EOFError):
            path.unlink(missing_ok=True)


class FeatureStore:
    """Descriptors of images and inlier counts of pairs, in ``folder`` (None: nothing is kept)."""

    def __init__(self, folder: str | Path | None):
        self.folder = None if folder is None else Path(folder)

    def load_images(self, keys) -> dict[str, dict[str, np.ndarray]]:
        """The stored descriptors of those of ``keys`` that are stored: key -> {name: array}."""
        wanted, found = set(keys), {}
        for stored in _batches(self.folder, "images"):
            batch_keys = stored["keys"]
            rows = [row for row, key in enumerate(batch_keys) if key in wanted and key not in found]
            if not rows:
                continue
            arrays = {name: stored[name] for name in (*ARRAYS, *RAGGED, "offsets")}
            for row in rows:
                start, stop = arrays["offsets"][row], arrays["offsets"][row + 1]
                found[str(batch_keys[row])] = {**{name: arrays[name][row] for name in ARRAYS},
                                               **{name: arrays[name][start:stop] for name in RAGGED}}
        return found

    def save_images(self, described: dict[str, dict[str, np.ndarray]]) -> None:
        """Keep the descriptors of newly described images (key -> {name: array}) as one batch."""
        if self.folder is None or not described:
            return
        keys = np.array(list(described), dtype="U24")
        items = list(described.values())
        counts = [len(item["points"]) for item in items]
        arrays = {name: np.stack([item[name] for item in items]) for name in ARRAYS}
        arrays.update({name: np.concatenate([item[name] for item in items]) for name in RAGGED})
        arrays.update(keys=keys, offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        _write_atomic(self.folder / _batch_name("images", keys), arrays)

    def load_pairs(self) -> dict[tuple[str, str], int]:
        """Every stored pair score: (key_a, key_b) -> inliers."""
        found = {}
        for stored in _batches(self.folder, "pairs"):
            found.update(zip(zip(stored["key_a"].tolist(), stored["key_b"].tolist()), stored["inliers"].tolist()))
        return found

    def save_pairs(self, key_a: np.ndarray, key_b: np.ndarray, inliers: np.ndarray) -> None:
        """Keep newly verified pair scores as one batch."""
        if self.folder is None or not len(key_a):
            return
        _write_atomic(self.folder / _batch_name("pairs", np.concatenate([key_a, key_b])),
                      {"key_a": key_a, "key_b": key_b, "inliers": np.asarray(inliers, np.int32)})

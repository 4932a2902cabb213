"""Copies of one photo (flipped, turned, resized, mildly cropped, re-encoded): a colour-grid embedding.

The first stage of :func:`skinlib.data.find_duplicates`, beside the re-take search of :mod:`skinlib.data.retakes`.
The embedding (numpy and Pillow only) of an image is built on its central square (where the lesion is; a
90-degree turn of a landscape photo keeps it), area-averaged to a ``GRID`` x ``GRID`` RGB grid:

* band-pass: the grid minus its Gaussian blur (``BLUR`` cells), which drops lighting and vignetting;
* minus its mean over the 8 dihedral views (flips and 90-degree turns), which drops what every centred
  round lesion shares and keeps what makes this one particular;
* centred and scaled to unit length, so a dot product is a correlation in [-1, 1].

Each step commutes with flips and 90-degree turns, so the 8 dihedral views of an image are permutations
of its vector. The similarity of two images is the best correlation over those 8 views and over central
zooms ``ZOOMS`` of either image (a mild crop), which also makes it symmetric. Resizing and JPEG
re-encoding barely change a 16 x 16 grid.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy.ndimage import gaussian_filter
from tqdm.auto import tqdm

from skinlib.errors import DataError, ImageError

GRID = 16  # cells per side of the embedded central square
BLUR = 2.0  # Gaussian sigma (cells) of the low-pass that the band-pass removes
ZOOMS = (1.0, 1.1, 1.2)  # central crops of 1, 1/1.1, 1/1.2 of the square: crops of up to ~10% per side
NEIGHBOURS = 5  # nearest neighbours kept per image in the search
DUPLICATE_THRESHOLD = 0.95
"""Similarity from which a pair counts as a near-duplicate, chosen on all 10,015 HAM10000 images at 200x150
(see notebooks/01_eda.ipynb, "Near-duplicates that lesion_id misses"):

* random pairs of different lesions never reach it: of 20,000, 99.9th percentile 0.78, maximum 0.87;
* altered copies of 200 real images all do when flipped, turned, upsized to 600x450 or cropped by up to 8%
  per side (lowest 0.963), 98% when turned, cropped 5% and re-saved as JPEG quality 50, 91% after JPEG
  quality 30 (lowest 0.889); a 12% crop mostly does not (median 0.87);
* 4.8% of the 3,207 same-lesion pairs pass (repeat photos, nearly identical), and 6 cross-lesion pairs:
  one the same photo under two lesion ids (0.98), two that look like the lesion photographed again,
  three look-alike small naevi. At 0.93 it would be 39 cross-lesion pairs, nearly all look-alikes; at
  0.97 only the identical photo. Merging a look-alike pair only costs the split a little freedom.
"""


def _square_box(width: int, height: int, zoom: float) -> tuple[float, float, float, float]:
    side = min(width, height) / zoom
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def embed_image(image: Image.Image) -> np.ndarray:
    """The embedding of one image at each of :data:`ZOOMS`: float32 (len(ZOOMS), GRID * GRID * 3)."""
    image = ImageOps.exif_transpose(image).convert("RGB")
    grids = np.stack([np.asarray(image.resize((GRID, GRID), Image.Resampling.BOX,
                                              box=_square_box(*image.size, zoom)), dtype=np.float32)
                      for zoom in ZOOMS])
    band = grids - gaussian_filter(grids, sigma=(0, BLUR, BLUR, 0), mode="reflect")
    turns = [np.rot90(band, k, axes=(1, 2)) for k in range(4)]
    band -= sum(turn + turn[:, :, ::-1] for turn in turns) / 8.0  # minus the mean of the 8 dihedral views
    vectors = band.reshape(len(ZOOMS), -1)
    vectors -= vectors.mean(axis=1, keepdims=True)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-6)


def embed_path(path: str) -> np.ndarray:
    """:func:`embed_image` of the image file at ``path`` (decoded at reduced size where the format allows)."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (GRID * 4, GRID * 4))
            return embed_image(image)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise ImageError(f"Cannot read image '{path}': {error}. Re-download or replace the file, or drop "
                         f"its row from the frame.") from error


def embed(frame: pd.DataFrame, workers: int | None = None, progress: bool = True) -> np.ndarray:
    """Embeddings of the images of ``frame`` (its ``path`` column): float32 (N, len(ZOOMS), GRID*GRID*3)."""
    if "path" not in frame.columns:
        raise DataError("embed/find_duplicates need a frame with a `path` column, as made by "
                        "skinlib.data.load_metadata.")
    paths = [str(p) for p in frame["path"]]
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        vectors = list(tqdm(pool.map(embed_path, paths), total=len(paths), desc=f"Embedding {len(paths)} images",
                            disable=not progress, unit="img", mininterval=0.5))
    return np.stack(vectors) if vectors else np.empty((0, len(ZOOMS), GRID * GRID * 3), np.float32)


def _views(embeddings: np.ndarray) -> np.ndarray:
    """All zoom x dihedral views, (n, len(ZOOMS) * 8, d): the embedding commutes with flips and turns,
    so a view of the image is the same flip or turn of its vector's grid."""
    grids = embeddings.reshape(len(embeddings), embeddings.shape[1], GRID, GRID, 3)
    turns = [np.rot90(grids, k, axes=(2, 3)) for k in range(4)]
    views = np.stack(turns + [turn[:, :, :, ::-1] for turn in turns], axis=2)
    return views.reshape(len(embeddings), -1, embeddings.shape[-1])


def pair_similarity(embeddings: np.ndarray, first, second) -> np.ndarray:
    """Similarity of the image pairs (``first[i]``, ``second[i]``) (row positions into ``embeddings``)."""
    first, second = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
    out = np.empty(len(first), dtype=np.float32)
    for start in range(0, len(first), 2048):
        a, b = first[start:start + 2048], second[start:start + 2048]
        forward = (_views(embeddings[a]) @ embeddings[b, 0][:, :, None]).max(axis=(1, 2))
        backward = (_views(embeddings[b]) @ embeddings[a, 0][:, :, None]).max(axis=(1, 2))
        out[start:start + 2048] = np.maximum(forward, backward)
    return out


def nearest_neighbours(embeddings: np.ndarray, k: int = NEIGHBOURS, block: int = 256,
                       progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar other images of each image: (indices, similarities), each (N, k).

    An exhaustive search in blocks of matrix products: each block's views (zooms x dihedral) against the
    plain (zoom 1) embedding of every image.
    """
    count = len(embeddings)
    k = max(0, min(k, count - 1))
    gallery = np.ascontiguousarray(embeddings[:, 0].T)
    indices = np.zeros((count, k), dtype=np.int64)
    similarities = np.zeros((count, k), dtype=np.float32)
    for start in tqdm(range(0, count, block), desc=f"Near-duplicate search over {count} images",
                      disable=not progress or count == 0, unit="block", mininterval=0.5):
        rows = np.arange(start, min(start + block, count))
        views = _views(embeddings[rows])
        scores = (views.reshape(-1, views.shape[-1]) @ gallery).reshape(len(rows), -1, count).max(axis=1)
        scores[np.arange(len(rows)), rows] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k else np.zeros((len(rows), 0), np.int64)
        indices[rows], similarities[rows] = top, np.take_along_axis(scores, top, axis=1)
    return indices, similarities


def copy_candidates(embeddings: np.ndarray, k: int = NEIGHBOURS, progress: bool = True) -> dict[str, np.ndarray]:
    """Every image paired with its ``k`` nearest neighbours, each unordered pair once (``a`` < ``b``), with its
    similarity: the copy search as such."""
    indices, _ = nearest_neighbours(embeddings, k=k, progress=progress)
    first = np.repeat(np.arange(len(embeddings)), indices.shape[1])
    pairs = np.unique(np.sort(np.stack([first, indices.ravel()], axis=1), axis=1), axis=0).reshape(-1, 2)
    return {"a": pairs[:, 0], "b": pairs[:, 1], "similarity": pair_similarity(embeddings, pairs[:, 0], pairs[:, 1])}


def similarity_reference(frame: pd.DataFrame, n_random: int = 20000, seed: int = 0, workers: int | None = None,
                         progress: bool = True) -> pd.DataFrame:
    """Similarities of every same-lesion pair and of ``n_random`` random pairs of different lesions.

    The two distributions a threshold is chosen between. Returns columns ``kind`` ("same lesion" or
    "random"), ``image_id_a``, ``image_id_b`` and ``similarity``.
    """
    embeddings = embed(frame, workers=workers, progress=progress)
    lesions = pd.factorize(frame["lesion_id"])[0]
    same = [(a, b) for rows in pd.Series(lesions).groupby(lesions).indices.values()
            for i, a in enumerate(rows) for b in rows[i + 1:]]
    same = np.array(same, dtype=np.int64).reshape(-1, 2)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(frame), size=(n_random, 2)) if len(frame) else np.zeros((0, 2), np.int64)
    drawn = drawn[lesions[drawn[:, 0]] != lesions[drawn[:, 1]]] if len(frame) else drawn
    ids = frame["image_id"].to_numpy()
    parts = []
    for kind, pairs in (("same lesion", same), ("random", drawn)):
        parts.append(pd.DataFrame({"kind": kind, "image_id_a": ids[pairs[:, 0]], "image_id_b": ids[pairs[:, 1]],
                                   "similarity": pair_similarity(embeddings, pairs[:, 0], pairs[:, 1])}))
    return pd.concat(parts, ignore_index=True)

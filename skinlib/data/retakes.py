"""Re-takes of one lesion (shifted, turned, zoomed, other light): candidates from global descriptors, then SIFT.

The second stage of :func:`skinlib.data.find_duplicates`, on OpenCV and scikit-learn. Per image
(:func:`describe`, cached per image by :mod:`skinlib.data.feature_store`):

* two global descriptors of the central square at each of :data:`ZOOMS`: a Lab colour thumbnail with each
  channel standardised (robust to white balance and exposure) and HOG of a small grayscale image (robust
  to colour, tolerant of small shifts);
* up to :data:`MAX_KEYPOINTS` SIFT keypoints of the contrast-equalised (CLAHE) grayscale image, as RootSIFT
  (stored as uint8).

Candidates (:func:`candidates`): for each image its :data:`CANDIDATES` nearest others by each global descriptor
(PCA-whitened on the images at hand, best cosine over its zooms against the other's full square) and by a
tf-idf bag of visual words (a k-means vocabulary of the SIFT descriptors).

Verification (:func:`verify`): RootSIFT matches that pass Lowe's ratio test, then a RANSAC fit of a similarity
transform (``cv2.estimateAffinePartial2D``: shift, turn, zoom within :data:`MAX_ZOOM`); the score is the number
of inlier matches. Two photos of one lesion share many keypoints in one geometric arrangement; two different
lesions share a handful at most.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from tqdm.auto import tqdm

from skinlib.errors import ImageError

WORK_SIDE = 150  # images are resized (never enlarged) so that the shorter side is this many pixels
ZOOMS = (1.0, 1.15, 1.3, 1.5)  # central squares of side min(h, w) / zoom
THUMB = 12  # Lab thumbnail: THUMB x THUMB x 3
HOG_SIDE = 32  # HOG of a HOG_SIDE x HOG_SIDE grayscale image (cells of 8, blocks of 16, 9 orientations)
MAX_KEYPOINTS = 300
CONTRAST_THRESHOLD = 0.02  # SIFT's (default 0.04): dermoscopy is low-contrast; half finds re-takes' keypoints
PCA_COMPONENTS = 96
CANDIDATES = 15  # nearest others kept per image and per descriptor (from 1,500 images on)
MIN_CANDIDATES = 5  # ... and at least this many (one per 100 images in between)
BRANCHES = 64  # the vocabulary tree: BRANCHES x BRANCHES = 4,096 visual words
VOCABULARY_SAMPLE = 50_000  # descriptors the vocabulary is learnt from
RATIO = 0.8  # Lowe's ratio test
RANSAC_PIXELS = 4.0  # reprojection threshold (pixels at WORK_SIDE)
MIN_MATCHES = 5  # fewer ratio-tested matches than this: no fit is tried (score 0)
RANSAC_ITERATIONS = 500  # enough for a 2-point fit with 10 % inliers at 99.5 % confidence
MAX_ZOOM = 4.0  # a fit zooming by more than this (or less than 1 / this) is not a re-take (re-takes reach ~3x)
ROOT_SCALE = 255.0  # RootSIFT components (in [0, 1]) are stored as uint8 times this

_HOG = cv2.HOGDescriptor((HOG_SIDE, HOG_SIDE), (16, 16), (8, 8), (8, 8), 9)
_CLAHE = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4))


def read_image(path: str) -> np.ndarray:
    """The image at ``path`` as RGB uint8, resized so that its shorter side is at most :data:`WORK_SIDE`."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"Cannot read image '{path}' (missing, unreadable or not an image). Re-download or "
                         f"replace the file, or drop its row from the frame.")
    height, width = image.shape[:2]
    scale = WORK_SIDE / min(height, width)
    if scale < 1:
        image = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _square(image: np.ndarray, zoom: float) -> np.ndarray:
    height, width = image.shape[:2]
    side = max(8, round(min(height, width) / zoom))
    top, left = (height - side) // 2, (width - side) // 2
    return image[top:top + side, left:left + side]


def describe(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """The descriptors of one RGB image: ``lab`` (len(ZOOMS), THUMB*THUMB*3) and ``hog`` (len(ZOOMS), 324)
    float32, SIFT ``points`` (n, 2) float32 (pixels at :data:`WORK_SIDE`) and ``descriptors`` (n, 128) uint8
    RootSIFT."""
    lab, hog = [], []
    for zoom in ZOOMS:
        square = _square(rgb, zoom)
        thumb = cv2.resize(square, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        thumb = cv2.cvtColor(thumb, cv2.COLOR_RGB2Lab).reshape(-1, 3)
        lab.append(((thumb - thumb.mean(0)) / (thumb.std(0) + 1e-3)).ravel())
        gray = cv2.cvtColor(cv2.resize(square, (HOG_SIDE, HOG_SIDE), interpolation=cv2.INTER_AREA),
                            cv2.COLOR_RGB2GRAY)
        hog.append(_HOG.compute(gray).ravel())
    gray = _CLAHE.apply(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    keypoints, raw = cv2.SIFT_create(nfeatures=MAX_KEYPOINTS, contrastThreshold=CONTRAST_THRESHOLD).detectAndCompute(gray, None)
    if raw is None or not keypoints:
        points, descriptors = np.zeros((0, 2), np.float32), np.zeros((0, 128), np.uint8)
    else:
        points = np.array([k.pt for k in keypoints], dtype=np.float32)[:MAX_KEYPOINTS]
        raw = raw[:MAX_KEYPOINTS]
        root = np.sqrt(raw / np.maximum(raw.sum(axis=1, keepdims=True), 1e-6))  # RootSIFT: unit L2 norm
        descriptors = np.round(root * ROOT_SCALE).astype(np.uint8)
    return {"lab": np.stack(lab).astype(np.float32), "hog": np.stack(hog).astype(np.float32),
            "points": points, "descriptors": descriptors}


# ---------------------------------------------------------------------------------------------------------
# Candidates
# ---------------------------------------------------------------------------------------------------------

def _whitened(vectors: np.ndarray) -> np.ndarray:
    """(n, zooms, d) -> PCA-whitened (fitted on the full squares), unit length, float32 (n, zooms, p)."""
    count, zooms, dim = vectors.shape
    components = max(1, min(PCA_COMPONENTS, count - 1, dim))
    pca = PCA(n_components=components, whiten=True, random_state=0).fit(vectors[:, 0])
    out = pca.transform(vectors.reshape(-1, dim)).reshape(count, zooms, -1).astype(np.float32)
    return out / np.maximum(np.linalg.norm(out, axis=2, keepdims=True), 1e-6)


def _top(scores: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    scores[np.arange(len(rows)), rows] = -np.inf
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


def global_neighbours(vectors: np.ndarray, k: int = CANDIDATES, block: int = 128) -> np.ndarray:
    """The ``k`` nearest other images of each image, (n, k): best cosine of any of its zooms against the other's
    full square, after PCA whitening."""
    count = len(vectors)
    k = min(k, count - 1)
    if k <= 0:
        return np.zeros((count, 0), np.int64)
    views = _whitened(vectors)
    gallery = np.ascontiguousarray(views[:, 0].T)
    out = np.empty((count, k), np.int64)
    for start in range(0, count, block):
        rows = np.arange(start, min(start + block, count))
        scores = (views[rows].reshape(-1, views.shape[2]) @ gallery).reshape(len(rows), -1, count).max(axis=1)
        out[rows] = _top(scores, rows, k)
    return out


def _kmeans(sample: np.ndarray, clusters: int, seed: int) -> np.ndarray:
    clusters = max(1, min(clusters, len(sample)))
    return KMeans(n_clusters=clusters, init="random", n_init=1, max_iter=10, random_state=seed).fit(
        sample).cluster_centers_.astype(np.float32)


def _nearest(vectors: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return (vectors @ centres.T - 0.5 * (centres ** 2).sum(axis=1)).argmax(axis=1)


def vocabulary(descriptors: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A two-level vocabulary tree learnt by k-means on a sample of (n, 128) descriptors: the branch centres
    (B, 128) and the leaf centres of each branch (B, B, 128), B = :data:`BRANCHES`; the word of a descriptor is
    branch * B + leaf."""
    rng = np.random.default_rng(seed)
    sample = descriptors if len(descriptors) <= VOCABULARY_SAMPLE else descriptors[
        np.sort(rng.choice(len(descriptors), VOCABULARY_SAMPLE, replace=False))]
    sample = sample.astype(np.float32)
    top = _kmeans(sample, BRANCHES, seed)
    tree = np.repeat(top[:, None, :], BRANCHES, axis=1)  # an empty or small branch keeps its centre
    branch = _nearest(sample, top)
    for number in range(len(top)):
        members = sample[branch == number]
        if len(members) > 1:
            leaves = _kmeans(members, BRANCHES, seed)
            tree[number, :len(leaves)] = leaves
    return top, tree


def assign_words(descriptors: np.ndarray, top: np.ndarray, tree: np.ndarray) -> np.ndarray:
    """The visual word of each descriptor (n, 128) in a :func:`vocabulary` tree: int64 (n,)."""
    vectors = descriptors.astype(np.float32)
    branch = _nearest(vectors, top)
    words = np.empty(len(vectors), np.int64)
    for number in np.unique(branch):
        rows = np.flatnonzero(branch == number)
        words[rows] = number * tree.shape[1] + _nearest(vectors[rows], tree[number])
    return words


def visual_words(descriptors: list[np.ndarray], seed: int = 0) -> sparse.csr_matrix:
    """tf-idf bags of visual words, one unit-length row per image, over a :func:`vocabulary` tree learnt from a
    sample of the descriptors of these images."""
    stacked = np.concatenate(descriptors) if descriptors else np.zeros((0, 128), np.uint8)
    if len(stacked) < 2:
        return sparse.csr_matrix((len(descriptors), 1), dtype=np.float32)
    top, tree = vocabulary(stacked, seed)
    words = tree.shape[0] * tree.shape[1]
    labels = np.concatenate([assign_words(stacked[start:start + 65536], top, tree)
                             for start in range(0, len(stacked), 65536)])
    rows = np.repeat(np.arange(len(descriptors)), [len(d) for d in descriptors])
    counts = sparse.csr_matrix((np.ones(len(labels), np.float32), (rows, labels)), shape=(len(descriptors), words))
    counts.sum_duplicates()
    document_frequency = np.bincount(counts.indices, minlength=words)
    idf = np.log(len(descriptors) / np.maximum(document_frequency, 1)).astype(np.float32)
    weighted = counts.multiply(idf[None, :]).tocsr()
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1))).ravel()
    return sparse.diags(1.0 / np.maximum(norms, 1e-6)).astype(np.float32) @ weighted


def word_neighbours(bags: sparse.csr_matrix, k: int = CANDIDATES, block: int = 512) -> np.ndarray:
    """The ``k`` images of highest tf-idf cosine with each image, (n, k)."""
    count = bags.shape[0]
    k = min(k, count - 1)
    if k <= 0:
        return np.zeros((count, 0), np.int64)
    out = np.empty((count, k), np.int64)
    transposed = bags.T.tocsc()
    for start in range(0, count, block):
        rows = np.arange(start, min(start + block, count))
        out[rows] = _top((bags[rows] @ transposed).toarray(), rows, k)
    return out


def candidates(lab: np.ndarray, hog: np.ndarray, descriptors: list[np.ndarray], k: int = CANDIDATES) -> np.ndarray:
    """Candidate re-take pairs, (m, 2) row positions with a < b, each unordered pair once: the union of each
    image's ``k`` nearest by the Lab thumbnails, by HOG and by visual words (fewer below 1,500 images)."""
    k = min(k, max(MIN_CANDIDATES, len(lab) // 100))  # a few hundred images need fewer: verification is the cost
    lists = [global_neighbours(lab, k), global_neighbours(hog, k), word_neighbours(visual_words(descriptors), k)]
    pairs = [np.stack([np.repeat(np.arange(len(lab)), n.shape[1]), n.ravel()], axis=1) for n in lists]
    pairs = np.sort(np.concatenate(pairs), axis=1)
    return np.unique(pairs, axis=0).reshape(-1, 2)


# ---------------------------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------------------------

def _as_unit(descriptors: np.ndarray) -> np.ndarray:
    return descriptors.astype(np.float32) * np.float32(1.0 / ROOT_SCALE)


def verify(points_a: np.ndarray, descriptors_a: np.ndarray, points_b: np.ndarray, descriptors_b: np.ndarray) -> int:
    """Inlier matches of a RANSAC similarity fit (shift, turn, zoom within :data:`MAX_ZOOM`) between two images'
    ratio-tested RootSIFT matches (descriptors as stored by :func:`describe`, or as float unit vectors); 0 when
    no such fit is found."""
    if len(descriptors_a) < 3 or len(descriptors_b) < 2:
        return 0
    a = descriptors_a if descriptors_a.dtype == np.float32 else _as_unit(descriptors_a)
    b = descriptors_b if descriptors_b.dtype == np.float32 else _as_unit(descriptors_b)
    cosine = a @ b.T
    rows = np.arange(len(a))
    best = cosine.argmax(axis=1)
    first = cosine[rows, best]
    cosine[rows, best] = -2.0
    second = cosine.max(axis=1)
    good = (1.0 - first) < (RATIO ** 2) * (1.0 - second)  # squared distances of unit vectors: 2 - 2 cos
    if good.sum() < MIN_MATCHES:
        return 0
    source, target = points_a[good], points_b[best[good]]
    matrix, inliers = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC,
                                                  ransacReprojThreshold=RANSAC_PIXELS, maxIters=RANSAC_ITERATIONS,
                                                  confidence=0.995)
    if matrix is None or inliers is None:
        return 0
    zoom = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    if not 1.0 / MAX_ZOOM <= zoom <= MAX_ZOOM:
        return 0
    return int(inliers.sum())


def verify_pairs(points: list[np.ndarray], descriptors: list[np.ndarray], pairs: np.ndarray,
                 workers: int | None = None, progress: bool = True) -> np.ndarray:
    """:func:`verify` for each row (a, b) of ``pairs`` (positions into ``points``/``descriptors``), int32."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    out = np.zeros(len(pairs), dtype=np.int32)
    order = np.argsort(pairs[:, 0], kind="stable")  # pairs of one first image together: converted once
    chunks = [order[start:start + 512] for start in range(0, len(pairs), 512)]

    def work(rows: np.ndarray) -> int:
        current, unit = -1, None
        for row in rows:
            a, b = pairs[row]
            if a != current:
                current, unit = a, _as_unit(descriptors[a])
            out[row] = verify(points[a], unit, points[b], descriptors[b])
        return len(rows)

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool, \
            tqdm(total=len(pairs), desc=f"Verifying {len(pairs)} candidate pairs", disable=not progress,
                 unit="pair", mininterval=0.5) as bar:
        for done in pool.map(work, chunks):
            bar.update(done)
    return out

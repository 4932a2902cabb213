"""Decode HAM10000 images into one uint8 array, in parallel, with an on-disk cache.

The study held the whole dataset as float32 (4.8 GB at 192x256). Here images stay uint8 (1.5 GB for all
10,015 at 192x256) until the model, which converts and preprocesses them itself. A decoded array is kept
as a memory-mapped ``.npy`` in :func:`skinlib.config.cache_dir`, named by the image list and size and
checked against each file's size and modification time, so a second call returns at once and a changed
file is noticed. The cache is written to a temporary file and renamed: an interrupted build never
leaves a corrupt cache behind. Beside it, ``<cache>.crc32`` holds a CRC-32 of the middle row of up to
``CHECKED_IMAGES`` images spread evenly over the array (:func:`sample_checksum`: as many pages read, so a cache
hit stays cheap); a cache overwritten in place (zeroed, or another array of the same size) no longer matches it
and is rebuilt with a warning. A few images changed in place between the sampled ones would go unnoticed.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from skinlib.backbones import STUDY_INPUT_SIZE
from skinlib.config import cache_dir as default_cache_dir
from skinlib.errors import ImageError, image_too_large
from skinlib.pixels import eight_bit

CACHE_FORMAT = 1  # bump when decoding changes, so older caches are not reused
CHECKED_IMAGES = 64  # images whose middle row the cache's checksum covers (each costs a page read on a hit)
ROTATING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def decode_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """One image as an RGB uint8 array of ``size`` = (height, width).

    EXIF orientation is applied; a 16-bit greyscale image is brought to 8 bits by its range
    (:func:`skinlib.pixels.eight_bit`), never saturated; the resize is LANCZOS, like the study. For a JPEG at
    least twice the target size, Pillow's draft mode first scales it in the DCT domain (by 1/2, 1/4 or 1/8, never
    below the target), which is several times faster than a full decode.
    """
    height, width = size
    try:
        with Image.open(path) as image:
            orientation = image.getexif().get(0x0112, 1)
            draft_size = (height, width) if orientation in ROTATING_ORIENTATIONS else (width, height)
            image.draft("RGB", draft_size)
            image = eight_bit(ImageOps.exif_transpose(image)).convert("RGB")
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.LANCZOS)
            return np.asarray(image, dtype=np.uint8)
    except Image.DecompressionBombError as error:  # an Exception, not an OSError
        raise image_too_large(path, error) from error
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise ImageError(
            f"Cannot read image '{path}': {error}. Re-download or replace the file, or drop its row "
            f"(load_images(..., errors='skip') skips unreadable images and reports them)."
        ) from error


def image_paths(frame: pd.DataFrame | Iterable[str | Path]) -> list[str]:
    """The image files of a metadata frame (its ``path`` column) or of a list of paths."""
    if isinstance(frame, pd.DataFrame):
        if "path" not in frame.columns:
            raise ValueError("load_images needs a frame with a `path` column, as made by skinlib.data.load_metadata.")
        return [str(p) for p in frame["path"]]
    return [str(p) for p in frame]


def cache_file(paths: list[str], size: tuple[int, int], folder: Path) -> tuple[Path, str]:
    """The cache file for these images at this size, and the name prefix shared by its older versions.

    The prefix hashes the image list and size; the rest hashes each file's size and mtime, so an edited
    image gives a new name.
    """
    listing = json.dumps([CACHE_FORMAT, list(size), [os.path.abspath(p) for p in paths]]).encode()
    prefix = f"images-{size[0]}x{size[1]}-n{len(paths)}-{hashlib.sha256(listing).hexdigest()[:16]}"
    return folder / f"{prefix}-{file_stamps(paths)[:16]}.npy", prefix


def file_stat(path: str) -> os.stat_result:
    """``os.stat`` of an image file, or an :class:`ImageError` saying what to do if it is missing."""
    try:
        return os.stat(path)
    except FileNotFoundError as error:
        raise ImageError(f"Image file '{path}' does not exist. Re-run load_metadata on the current "
                         f"dataset, or restore the file.") from error


def file_stamps(paths: list[str]) -> str:
    """A SHA-256 hex digest of every file's size and modification time: it changes when any image is edited."""
    stats = hashlib.sha256()
    for path in paths:
        info = file_stat(path)
        stats.update(f"{info.st_size}:{info.st_mtime_ns};".encode())
    return stats.hexdigest()


def sample_checksum(images: np.ndarray, checked: int = CHECKED_IMAGES) -> int:
    """CRC-32 of the middle row of ``checked`` images spread evenly over an (N, height, width, 3) array (all of
    them if fewer): about one page read per image checked; it changes when the array is overwritten as a whole
    (zeroed, say) or any checked image is."""
    if images.size == 0:
        return zlib.crc32(b"")
    rows = np.unique(np.linspace(0, len(images) - 1, min(checked, len(images))).round().astype(np.int64))
    return zlib.crc32(np.ascontiguousarray(images[rows, images.shape[1] // 2]).data)


def checksum_file(target: Path) -> Path:
    """Where the cache ``target``'s :func:`sample_checksum` is kept: ``<target>.crc32``, beside it."""
    return target.with_name(target.name + ".crc32")


def cache_problem(target: Path, images: np.ndarray) -> str | None:
    """Why the cached ``images`` read from ``target`` cannot be trusted (checksum absent or different), or None."""
    try:
        stored = int(checksum_file(target).read_text().strip())
    except (OSError, ValueError):
        return f"its checksum file '{checksum_file(target).name}' is missing or unreadable"
    found = sample_checksum(images)
    return None if found == stored else f"its contents changed (CRC-32 {found:08x}, stored {stored:08x})"


def decode_into(out: np.ndarray, paths: list[str], size: tuple[int, int], workers: int, progress: bool,
                errors: str) -> list[int]:
    """Decode ``paths`` into ``out`` with a pool of threads (Pillow releases the GIL); return failed rows."""
    failed: list[tuple[int, ImageError]] = []

    def work(row: int) -> None:
        try:
            out[row] = decode_image(paths[row], size)
        except ImageError as error:
            if errors == "raise":
                raise
            failed.append((row, error))

    description = f"Decoding {len(paths)} images to {size[0]}x{size[1]}"
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in tqdm(pool.map(work, range(len(paths))), total=len(paths), desc=description,
                      disable=not progress, unit="img", mininterval=0.5):
            pass
    for row, error in sorted(failed, key=lambda item: item[0]):
        warnings.warn(f"Skipped row {row}: {error}", stacklevel=3)
    return sorted(row for row, _ in failed)


def build_cache(target: Path, prefix: str, paths: list[str], size: tuple[int, int], workers: int,
                progress: bool) -> np.ndarray:
    """Decode into a temporary memory-mapped ``.npy`` beside ``target``, then rename it into place."""
    temporary = target.with_name(f".{target.stem}.{uuid.uuid4().hex}.tmp")
    try:
        out = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=(len(paths), *size, 3))
        decode_into(out, paths, size, workers, progress, errors="raise")
        out.flush()
        checksum = sample_checksum(out)
        del out
        checksum_file(temporary).write_text(f"{checksum}\n")
        # The checksum first: a reader that finds the array finds its checksum (same key, same pixels, same sum).
        os.replace(checksum_file(temporary), checksum_file(target))
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
        checksum_file(temporary).unlink(missing_ok=True)
    for stale in [*target.parent.glob(f"{prefix}-*.npy"), *target.parent.glob(f"{prefix}-*.npy.crc32")]:
        if stale not in (target, checksum_file(target)):
            stale.unlink(missing_ok=True)
    return np.load(target, mmap_mode="r")


def load_images(frame: pd.DataFrame | Iterable[str | Path], size: tuple[int, int] = STUDY_INPUT_SIZE, *,
                cache: bool = True, cache_dir: str | Path | None = None, workers: int | None = None,
                errors: str = "raise", progress: bool = True):
    """Decode the images of ``frame`` into a uint8 array of shape (N, height, width, 3).

    Args:
        frame: metadata frame with a ``path`` column (from :func:`load_metadata`), or a list of files.
        size: (height, width): the study used 192x256 for the backbones (the default) and 64x64 for its baseline.
        cache: keep (and reuse) the array as a memory-mapped ``.npy`` in ``cache_dir``.
        cache_dir: defaults to :func:`skinlib.config.cache_dir` (``$SKINLIB_CACHE``).
        workers: decoding threads (default: all cores).
        errors: ``"raise"`` (default): an unreadable image raises :class:`ImageError` naming the file.
            ``"skip"``: unreadable images are left out and reported in a warning; the call then returns
            ``(images, kept)`` where ``kept`` is the frame (or list) of the images that were read.
        progress: show a progress bar while decoding.

    Returns:
        The array (read-only and memory-mapped when cached), or ``(images, kept)`` with ``errors="skip"``.
    """
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', not {errors!r}")
    size = (int(size[0]), int(size[1]))
    paths = image_paths(frame)
    workers = workers or os.cpu_count() or 1
    if cache and errors == "raise":
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        target, prefix = cache_file(paths, size, folder)
        if target.is_file():
            try:
                cached = np.load(target, mmap_mode="r")
            except (ValueError, OSError):
                cached, problem = None, "it cannot be read as an array"
            else:
                problem = cache_problem(target, cached)
            if problem is None:
                return cached
            warnings.warn(f"The image cache '{target}' is not used: {problem}. Rebuilding it from the images.",
                          stacklevel=2)
            del cached
            target.unlink(missing_ok=True)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return build_cache(target, prefix, paths, size, workers, progress)
        except OSError as error:
            warnings.warn(f"Cannot write the image cache in '{folder}' ({error}); decoding without a cache. "
                          f"Set SKINLIB_CACHE to a writable folder.", stacklevel=2)
    out = np.empty((len(paths), *size, 3), dtype=np.uint8)
    failed = decode_into(out, paths, size, workers, progress, errors)
    if errors == "raise":
        return out
    keep = np.setdiff1d(np.arange(len(paths)), failed)
    kept = frame.iloc[keep] if isinstance(frame, pd.DataFrame) else [paths[i] for i in keep]
    return out[keep], kept

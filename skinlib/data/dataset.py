"""Where the dataset is: one answer for the notebooks and run_all.py, and the image arrays of a split's parts.

::

    data_dir, images = data.locate(None)          # $SKINLIB_DATA, else data/ham10000 (../data/ham10000 from notebooks/)
    meta = data.load_metadata(data_dir, images=images)
    arrays = data.load_parts(parts, size=(64, 64))     # {"train": (x, y), "val": (x, y), "test": (x, y)}
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from skinlib import config
from skinlib.errors import DataError

OFFICIAL_IMAGES = ("HAM10000_images_part_1", "HAM10000_images_part_2")
MASK_DIRS = ("HAM10000_segmentations_lesion_tschandl", "masks_600x450")
"""Folders of the official lesion masks (``<image_id>_segmentation.png``): the download's, the shared data's."""


def locate(data_dir: str | Path | None = None, images: str | None = None) -> tuple[Path, str | None]:
    """The HAM10000 folder and the image folder inside it.

    ``data_dir`` None means ``$SKINLIB_DATA``, else ``data/ham10000`` (from the project root) or
    ``../data/ham10000`` (from ``notebooks/``). ``images`` None means the official ``HAM10000_images_part_*``
    folders when present, else the first ``images*`` folder (e.g. ``images_200x150``). No image is read here.
    A ``data_dir`` (or ``$SKINLIB_DATA``) that is a file, the metadata CSV for instance, is refused with its folder.
    """
    from_env = data_dir is None and bool(os.environ.get(config.DATA_ENV))
    if data_dir is None:
        root = config.data_root()
        if not root.is_absolute() and not root.exists() and (Path("..") / root).exists():
            root = Path("..") / root
        data_dir = root
    data_dir = Path(data_dir).expanduser()
    if data_dir.is_file():
        where = f"${config.DATA_ENV}" if from_env else "data_dir"
        raise DataError(f"{where} '{data_dir}' is a file, not a folder: point {where} at the HAM10000 folder "
                        f"that holds HAM10000_metadata.csv and the image folders (perhaps '{data_dir.parent}').")
    if images is None and not any((data_dir / name).is_dir() for name in OFFICIAL_IMAGES):
        found = sorted(p.name for p in data_dir.glob("images*") if p.is_dir())
        images = found[0] if found else None
    return data_dir, images


def find_masks(data_dir: str | Path) -> Path | None:
    """The lesion-mask folder inside ``data_dir``, or None."""
    for name in MASK_DIRS:
        if (Path(data_dir) / name).is_dir():
            return Path(data_dir) / name
    return None


def load_parts(parts, size: tuple[int, int], names=("train", "val", "test"), progress: bool = True
               ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{part: (uint8 images at size, int labels)}`` for a ``Split`` (or a dict of frames)."""
    from skinlib.data.images import load_images

    frames = parts.parts() if hasattr(parts, "parts") else dict(parts)
    missing = [name for name in names if name not in frames]
    if missing:
        raise DataError(f"no part(s) {missing} in the split; it has {sorted(frames)}")
    return {name: (load_images(frames[name], size=tuple(size), progress=progress),
                   frames[name]["label"].to_numpy()) for name in names}

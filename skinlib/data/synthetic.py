"""A small HAM10000-shaped dataset that tests and demos can make anywhere, in seconds.

Each class has its own lesion colour and size on a skin-toned background, so a small model can learn
the task; lesions have one to three images each, like the real data, so splits can leak or not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from skinlib.classes import CLASSES
from skinlib.data.metadata import OFFICIAL_IMAGE_DIRS

MASK_DIR = "HAM10000_segmentations_lesion_tschandl"

# class -> (lesion RGB colour, lesion radius as a fraction of the image height)
LESION_LOOK = {
    "akiec": ((170, 60, 50), 0.22),
    "bcc": ((230, 140, 160), 0.30),
    "bkl": ((150, 110, 60), 0.36),
    "df": ((110, 70, 40), 0.16),
    "mel": ((30, 20, 20), 0.40),
    "nv": ((95, 55, 35), 0.26),
    "vasc": ((140, 20, 90), 0.20),
}
DX_TYPES = ("histo", "follow_up", "consensus", "confocal")
SEXES = ("male", "female", "unknown")
SITES = ("back", "lower extremity", "trunk", "upper extremity", "abdomen", "face", "chest", "scalp")


def draw_lesion(rng: np.random.Generator, dx: str, size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    """One synthetic dermoscopy-like image of class ``dx`` and its binary lesion mask."""
    height, width = size
    colour, radius = LESION_LOOK[dx]
    skin = np.array([225, 180, 160]) + rng.integers(-15, 16, size=3)
    pixels = np.clip(skin + rng.normal(0, 6, size=(height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    mask = Image.new("L", (width, height), 0)
    cx = width / 2 + rng.uniform(-0.12, 0.12) * width
    cy = height / 2 + rng.uniform(-0.12, 0.12) * height
    rx = radius * height * rng.uniform(0.85, 1.15)
    ry = rx * rng.uniform(0.7, 1.0)
    box = (cx - rx, cy - ry, cx + rx, cy + ry)
    tint = tuple(int(np.clip(c + rng.integers(-12, 13), 0, 255)) for c in colour)
    ImageDraw.Draw(image).ellipse(box, fill=tint)
    ImageDraw.Draw(mask).ellipse(box, fill=255)
    return image, mask


def make_synthetic(root: str | Path, n_images: int = 70, seed: int = 0,
                   image_size: tuple[int, int] = (60, 80)) -> Path:
    """Write a tiny HAM10000-shaped dataset into ``root`` and return ``root``.

    Layout (as the official download): ``HAM10000_metadata.csv`` (the Kaggle 7 columns),
    ``HAM10000_images_part_1/`` and ``HAM10000_images_part_2/`` with ``ISIC_<7 digits>.jpg``, and
    ``HAM10000_segmentations_lesion_tschandl/ISIC_<7 digits>_segmentation.png`` masks (0/255).

    Args:
        root: destination folder (created).
        n_images: number of images; lesions have 1-3 images each, classes take turns so all seven appear
            once ``n_images`` is at least 7.
        seed: makes the dataset reproducible.
        image_size: (height, width) of each image.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be positive, not {n_images}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    folders = [root / name for name in OFFICIAL_IMAGE_DIRS] + [root / MASK_DIR]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    rows = []
    lesion = 0
    while len(rows) < n_images:
        dx = CLASSES[lesion % len(CLASSES)]
        age = float(rng.integers(4, 18) * 5) if rng.random() > 0.05 else np.nan
        sex, site, dx_type = rng.choice(SEXES), rng.choice(SITES), rng.choice(DX_TYPES)
        for _ in range(min(int(rng.integers(1, 4)), n_images - len(rows))):
            image_id = f"ISIC_{9000000 + len(rows):07d}"
            image, mask = draw_lesion(rng, dx, image_size)
            image.save(folders[len(rows) % 2] / f"{image_id}.jpg", quality=90)
            mask.save(root / MASK_DIR / f"{image_id}_segmentation.png")
            rows.append({"lesion_id": f"HAM_{9000000 + lesion:07d}", "image_id": image_id, "dx": dx,
                         "dx_type": dx_type, "age": age, "sex": sex, "localization": site})
        lesion += 1
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)
    return root

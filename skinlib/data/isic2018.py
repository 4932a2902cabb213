"""The official external test set: ISIC 2018 Task 3 (1,512 ground-truth rows, 1,511 images)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from skinlib.classes import CLASSES
from skinlib.data.metadata import index_images, read_metadata_table
from skinlib.errors import DataError

GROUND_TRUTH_NAMES = ("ISIC2018_Task3_Test_GroundTruth.csv", "ISIC2018_Task3_Test_GroundTruth.tab",
                      "ISIC2018_Task3_Test_GroundTruth")
IMAGE_DIR = "ISIC2018_Task3_Test_Images"
ONE_HOT = tuple(c.upper() for c in CLASSES)  # AKIEC, BCC, BKL, DF, MEL, NV, VASC


def find_ground_truth(root: Path) -> Path:
    """The ground-truth table in ``root`` (or ``root`` itself when it is a file)."""
    if root.is_file():
        return root
    for name in GROUND_TRUTH_NAMES:
        if (root / name).is_file():
            return root / name
    raise DataError(f"No ISIC 2018 Task 3 ground truth in '{root}' (looked for {', '.join(GROUND_TRUTH_NAMES)}). "
                    f"Fetch it with `python -m skinlib download --parts isic2018_test --dest {root}`.")


def load_isic2018_test(root: str | Path, images: str | Path | None = None) -> pd.DataFrame:
    """The ISIC 2018 Task 3 test set as a frame like :func:`load_metadata`'s.

    Accepts the challenge's one-hot ground truth (``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``) or a table with a
    ``dx`` column (the Dataverse form). Images are looked up in ``images`` (default
    ``<root>/ISIC2018_Task3_Test_Images``); rows without an image (ISIC_0035068 in the official release)
    are left out with a warning.

    Returns:
        Columns ``image_id``, ``lesion_id`` (the image id where the table has none), ``dx``, any other
        columns of the table, then ``path`` and ``label``.
    """
    root = Path(root)
    source = find_ground_truth(root)
    table = read_metadata_table(source)
    id_column = "image_id" if "image_id" in table.columns else "image" if "image" in table.columns else None
    if id_column is None:
        raise DataError(f"Ground truth '{source}' has no `image` or `image_id` column; found {list(table.columns)}.")
    table = table.rename(columns={id_column: "image_id"})
    if "dx" not in table.columns:
        absent = [c for c in ONE_HOT if c not in table.columns]
        if absent:
            raise DataError(f"Ground truth '{source}' has neither a `dx` column nor the one-hot columns "
                            f"{list(ONE_HOT)} (missing {absent}).")
        onehot = table[list(ONE_HOT)].astype(float)
        if not (onehot.sum(axis=1) == 1).all():
            row = int((onehot.sum(axis=1) != 1).to_numpy().argmax())
            raise DataError(f"Ground truth '{source}': row {row + 1} is not one-hot over {list(ONE_HOT)}.")
        table = table.drop(columns=list(ONE_HOT)).assign(dx=[CLASSES[i] for i in onehot.to_numpy().argmax(axis=1)])
    table = table.assign(dx=table["dx"].astype("str").str.strip().str.lower(),
                         image_id=table["image_id"].astype("str").str.strip())
    unknown = ~table["dx"].isin(CLASSES)
    if unknown.any():
        raise DataError(f"Ground truth '{source}': unknown dx {sorted(set(table.loc[unknown, 'dx']))}; "
                        f"accepted: {', '.join(CLASSES)}.")
    if "lesion_id" not in table.columns:
        table = table.assign(lesion_id=table["image_id"])
    folder = Path(images) if images is not None else (source.parent / IMAGE_DIR)
    if not folder.is_dir():
        raise DataError(f"ISIC 2018 test image folder '{folder}' does not exist; extract "
                        f"ISIC2018_Task3_Test_Images.zip there or pass images=.")
    index = index_images([folder])
    found = table["image_id"].isin(list(index))
    if not found.any():
        raise DataError(f"None of the {len(table)} images of '{source}' are in '{folder}'.")
    if not found.all():
        left_out = list(table.loc[~found, "image_id"])
        warnings.warn(f"ISIC 2018 test: {len(left_out)} ground-truth row(s) have no image in '{folder}' and are "
                      f"left out: {', '.join(left_out[:5])}" + (" (as expected for ISIC_0035068)"
                                                                if left_out == ["ISIC_0035068"] else ""),
                      stacklevel=2)
        table = table.loc[found].reset_index(drop=True)
    table = table.assign(path=table["image_id"].map(lambda i: str(index[i])).astype("str"),
                         label=table["dx"].map({c: i for i, c in enumerate(CLASSES)}).astype("int64"))
    first = ["image_id", "lesion_id", "dx"]
    return table[first + [c for c in table.columns if c not in first + ["path", "label"]] + ["path", "label"]]

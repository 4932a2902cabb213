"""Read and validate the HAM10000 metadata and find each image on disk.

Accepts the three forms the metadata is distributed in:

* the Kaggle CSV (``lesion_id,image_id,dx,dx_type,age,sex,localization``),
* the Harvard Dataverse original CSV (the same plus ``dataset``),
* the Dataverse tabular download (``.tab``: tab-separated, quoted).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from skinlib.classes import CLASSES
from skinlib.errors import DataError

REQUIRED_COLUMNS = ("lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization")
METADATA_NAMES = (
    "HAM10000_metadata.csv",
    "HAM10000_metadata_dataverse.csv",
    "HAM10000_metadata.tab",
    "HAM10000_metadata",
)
OFFICIAL_IMAGE_DIRS = ("HAM10000_images_part_1", "HAM10000_images_part_2")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # matched case-insensitively: .JPG, .JPEG and .PNG count too


def find_metadata_file(root: str | Path) -> Path:
    """The metadata file in ``root`` (or ``root`` itself when it is a metadata table: .csv, .tab or a known name)."""
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() in (".csv", ".tab") or root.name in METADATA_NAMES:
            return root
        raise DataError(f"'{root}' is a file, not a folder (nor a .csv or .tab metadata table): pass the HAM10000 "
                        f"folder that holds HAM10000_metadata.csv and the image folders (perhaps '{root.parent}').")
    if not root.is_dir():
        raise DataError(
            f"No HAM10000 dataset at '{root}': the folder does not exist. Download it with "
            f"`python -m skinlib download --dest {root}`, or point SKINLIB_DATA (or --data) at the folder "
            f"holding HAM10000_metadata.csv and the image folders."
        )
    for name in METADATA_NAMES:
        if (root / name).is_file():
            return root / name
    raise DataError(
        f"No HAM10000 metadata found in '{root}' (looked for {', '.join(METADATA_NAMES)}). Download the "
        f"dataset with `python -m skinlib download --dest {root}`, or pass the folder that holds it."
    )


def read_metadata_table(path: str | Path) -> pd.DataFrame:
    """Read a metadata CSV or Dataverse ``.tab`` file, detecting the separator; ``age`` (if present) as float.

    Raises :class:`DataError` naming the file for what cannot be used: an empty file, a header without
    rows, a ``;``-separated file (with the fix), an unparsable file, a non-numeric age (with its row).
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = handle.readline()
    except UnicodeDecodeError as error:
        raise DataError(f"Cannot parse the metadata file '{path}': {error}. Is it the HAM10000 CSV?") from error
    if not header.strip():
        raise DataError(f"'{path}' is empty. {restore_hint(path)}")
    separator = detect_separator(header, path)
    try:
        frame = pd.read_csv(path, sep=separator, quotechar='"', encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError, csv.Error, ValueError) as error:
        raise DataError(f"Cannot parse the metadata file '{path}': {error}. Is it the HAM10000 CSV?") from error
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise DataError(f"'{path}' has a header but no data rows: it is truncated or was saved empty. "
                        f"{restore_hint(path)}")
    if "age" in frame.columns:
        frame["age"] = numeric_column(frame["age"], "age", path)
    return frame


def restore_hint(path: Path) -> str:
    """What to do about a broken table: restore it, or delete it and download it again."""
    part = "isic2018_test" if path.name.lower().startswith("isic2018") else "metadata"
    return (f"Restore it, or delete it and download it again (`python -m skinlib download --parts {part} "
            f"--dest {path.parent}`).")


def detect_separator(header: str, path: Path) -> str:
    """``,`` or tab, from the header line; a ``;``-separated file is refused with the way to convert it."""
    counts = {separator: header.count(separator) for separator in (",", "\t", ";")}
    if counts[";"] > max(counts[","], counts["\t"]):
        raise DataError(
            f"'{path}' is separated by semicolons (;), as spreadsheet programs write CSV in some locales; "
            f"skinlib reads comma- or tab-separated tables. Save it again as CSV with commas (for example "
            f"`pd.read_csv(path, sep=';', decimal=',').to_csv(path, index=False)`; check that ages then use "
            f"a decimal point).")
    return "\t" if counts["\t"] > counts[","] else ","


def numeric_column(values: pd.Series, column: str, path: Path) -> pd.Series:
    """``values`` as float64 (empty cells NaN); :class:`DataError` naming the first cell that is not a number."""
    if pd.api.types.is_numeric_dtype(values):
        return values.astype("float64")
    text = values.astype("string").str.strip()
    numbers = pd.to_numeric(text.replace("", pd.NA), errors="coerce")
    bad = numbers.isna() & text.notna() & (text != "")
    if bad.any():
        position = int(bad.to_numpy().argmax())
        raise DataError(
            f"'{path}': column `{column}` has {str(text.iloc[position])!r} at data row {position + 1} "
            f"(line {position + 2}), which is not a number ({int(bad.sum())} such row(s) in all). Write "
            f"the {column} as a number (for example 45), or leave the cell empty where it is not known.")
    return numbers.astype("float64")


def validate_metadata(frame: pd.DataFrame, source: str | Path) -> pd.DataFrame:
    """Check columns, class codes and unique ids; return the frame with ``label`` added."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"Metadata file '{source}' lacks the column(s) {missing}; found {list(frame.columns)}. "
            f"Expected the HAM10000 metadata with columns {list(REQUIRED_COLUMNS)}."
        )
    for column in ("lesion_id", "image_id", "dx"):
        empty = frame.index[frame[column].isna()]
        if len(empty):
            raise DataError(f"Metadata file '{source}': empty `{column}` at data row {empty[0] + 1} "
                            f"(line {empty[0] + 2}); fix or remove that row.")
    frame = frame.assign(
        lesion_id=frame["lesion_id"].astype("str").str.strip(),  # "HAM_0000118 " is the lesion of "HAM_0000118"
        image_id=frame["image_id"].astype("str").str.strip(),
        dx=frame["dx"].astype("str").str.strip().str.lower(),
    )
    unknown = ~frame["dx"].isin(CLASSES)
    if unknown.any():
        row = frame.index[unknown][0]
        raise DataError(
            f"Metadata file '{source}': unknown dx '{frame.at[row, 'dx']}' at data row {row + 1} "
            f"(line {row + 2}); {int(unknown.sum())} row(s) in all. Accepted values: {', '.join(CLASSES)}."
        )
    duplicated = frame["image_id"].duplicated(keep="first")
    if duplicated.any():
        row = frame.index[duplicated][0]
        image_id = frame.at[row, "image_id"]
        first = frame.index[frame["image_id"] == image_id][0]
        raise DataError(
            f"Metadata file '{source}': duplicate image_id '{image_id}' at data rows {first + 1} and "
            f"{row + 1} (lines {first + 2} and {row + 2}); each image must be listed once."
        )
    return frame.assign(label=frame["dx"].map({c: i for i, c in enumerate(CLASSES)}).astype("int64"))


def image_dirs(root: Path, images: str | Path | None) -> list[Path]:
    """Folders to search for ``<image_id>.jpg``: ``images`` if given, else the official layout."""
    if images is not None:
        folder = Path(images)
        folder = folder if folder.is_absolute() else root / folder
        if not folder.is_dir():
            raise DataError(f"Image folder '{folder}' does not exist (from images={str(images)!r}).")
        return [folder]
    found = [root / name for name in OFFICIAL_IMAGE_DIRS if (root / name).is_dir()]
    found += [root / name.lower() for name in OFFICIAL_IMAGE_DIRS if (root / name.lower()).is_dir()]
    if not found:
        raise DataError(
            f"No image folders in '{root}': expected {' and '.join(OFFICIAL_IMAGE_DIRS)} (the official zips, "
            f"extracted), or pass images='<folder>' (for example images='images_200x150')."
        )
    return found


def index_images(folders: list[Path]) -> dict[str, Path]:
    """Map image stem (``ISIC_0024306``) to its file, over all ``folders``; extensions in any case."""
    index: dict[str, Path] = {}
    for folder in folders:
        for entry in sorted(folder.iterdir()):
            if entry.suffix.lower() in IMAGE_SUFFIXES:
                index.setdefault(entry.stem, entry)
    return index


def other_suffixes(folders: list[Path], limit: int = 5) -> list[str]:
    """The file extensions (most frequent first) in ``folders`` that are not images skinlib reads."""
    counts: dict[str, int] = {}
    for folder in folders:
        for entry in folder.iterdir():
            if entry.is_file() and entry.suffix.lower() not in IMAGE_SUFFIXES:
                counts[entry.suffix or "(none)"] = counts.get(entry.suffix or "(none)", 0) + 1
    return [suffix for suffix, _ in sorted(counts.items(), key=lambda item: -item[1])][:limit]


def load_metadata(root: str | Path, images: str | Path | None = None, missing: str = "raise") -> pd.DataFrame:
    """Load HAM10000 metadata with the path of each image and its integer label.

    Args:
        root: the dataset folder (or the metadata file itself).
        images: folder of ``<image_id>.jpg`` files, relative to ``root`` or absolute (for example
            ``"images_200x150"``); by default the official ``HAM10000_images_part_1`` and ``_part_2``.
        missing: ``"raise"`` (default) if any listed image is absent, or ``"drop"`` to keep only the rows
            whose image exists (for a partial image folder).

    Returns:
        The metadata in file order (the study's split depends on it) with ``age`` as float, plus ``path``
        (the image file, str) and ``label`` (index into :data:`skinlib.CLASSES`).
    """
    if missing not in ("raise", "drop"):
        raise ValueError(f"missing must be 'raise' or 'drop', not {missing!r}")
    source = find_metadata_file(root)
    root = source.parent if Path(root).is_file() else Path(root)
    frame = validate_metadata(read_metadata_table(source), source)
    folders = image_dirs(root, images)
    index = index_images(folders)
    paths = frame["image_id"].map(lambda image_id: str(index[image_id]) if image_id in index else None)
    absent = paths.isna()
    if absent.any() and missing == "raise":
        first = ", ".join(frame.loc[absent, "image_id"].head(5))
        others = other_suffixes(folders)
        seen = (f" The folder(s) hold files ending {', '.join(others)}, which skinlib does not read: it reads "
                f"{', '.join(IMAGE_SUFFIXES)} (any case); convert them." if others else "")
        raise DataError(
            f"{int(absent.sum())} of {len(frame)} images listed in '{source}' are missing from "
            f"{', '.join(str(f) for f in folders)} (first: {first}).{seen} Complete the download "
            f"(`python -m skinlib download`), pass the right images= folder, or missing='drop'."
        )
    frame = frame.assign(path=paths.astype("str"))
    if absent.any():
        frame = frame.loc[~absent].reset_index(drop=True)
    columns = [c for c in frame.columns if c not in ("path", "label")] + ["path", "label"]
    return frame[columns]

"""What can be downloaded: the table of HAM10000 parts on Harvard Dataverse, and what is missing locally.

The table holds the facts of dataset version V4 (doi:10.7910/DVN/DBW86T). At download time the
dataset's file listing is asked first and files are matched by name, so the ids, sizes and MD5s here
are only the fallback for when the listing cannot be had.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple

DOI = "doi:10.7910/DVN/DBW86T"
BASE_URL = "https://dataverse.harvard.edu"
LICENCE = "CC BY-NC 4.0 (non-commercial use, with attribution)"
CITATION = ("Tschandl P., Rosendahl C., Kittler H. The HAM10000 dataset, a large collection of multi-source "
            "dermatoscopic images of common pigmented skin lesions. Sci. Data 5, 180161 (2018).")
DEFAULT_PARTS = ("metadata", "images")


@dataclass(frozen=True)
class RemoteFile:
    """One file of the Dataverse dataset and where it lands in the destination folder."""

    name: str
    """Its name in the dataset listing (matched without extension: ``.zip``, ``.tab``, ``.csv``)."""
    datafile_id: int
    """Fallback Dataverse datafile id, used when the listing is unavailable or lacks the file."""
    size: int | None
    """Bytes of the file as fetched (the original for tabular files); None where not recorded."""
    md5: str | None
    """Fallback MD5 of the file as fetched; None where no verified value is known (the download is then
    checked by size and format only, with a warning)."""
    target: str
    """Destination, relative to the dataset folder: a folder for a zip (extracted), else the file name."""
    original: bool = False
    """Tabular file: fetch the uploaded original (``?format=original``), not Dataverse's ``.tab`` copy."""

    @property
    def is_archive(self) -> bool:
        """Whether the file is a zip to extract into :attr:`target`."""
        return self.name.lower().endswith(".zip")

    @property
    def download_name(self) -> str:
        """File name while downloading: the zip's own name, or the target file's."""
        return self.name if self.is_archive else self.target


@dataclass(frozen=True)
class Part:
    """A unit the user can ask for: one or more files."""

    description: str
    files: tuple[RemoteFile, ...]


PARTS: dict[str, Part] = {
    "metadata": Part("the metadata CSV: 10,015 rows of lesion, diagnosis, age, sex, site", (
        RemoteFile("HAM10000_metadata", 4338392, 690_218, "8f85fb1aa29d80a2797247e434deb79d",
                   "HAM10000_metadata.csv", original=True),
    )),
    "images": Part("the 10,015 dermatoscopic images, 600x450 JPEG (two zips)", (
        RemoteFile("HAM10000_images_part_1.zip", 3172585, 1_366_522_108, "4639bfa73ab251610530a97c898e6e46",
                   "HAM10000_images_part_1"),
        RemoteFile("HAM10000_images_part_2.zip", 3172584, 1_403_566_547, "da43d6cc50f6613013be07e8986b384b",
                   "HAM10000_images_part_2"),
    )),
    "masks": Part("lesion segmentation masks, one PNG per image", (
        RemoteFile("HAM10000_segmentations_lesion_tschandl.zip", 3838943, 10_808_743,
                   "6e8d252e09cfdb0189199f15985a5b84", "HAM10000_segmentations_lesion_tschandl"),
    )),
    "isic2018_test": Part("ISIC 2018 Task 3 test set: 1,511 images + ground truth", (
        RemoteFile("ISIC2018_Task3_Test_Images.zip", 3855824, None, "0488b6f65849e310857d9207daa55a21",
                   "ISIC2018_Task3_Test_Images"),
        # No fallback MD5: the value once here (2b5663aa...) is that of the ISIC challenge's one-hot CSV,
        # not of the Dataverse original (datafile 6924466, HAM-style columns), which could not be checked.
        # The live listing's MD5 is used whenever the listing can be read; without it the file is checked
        # by size and format only, and a warning says the checksum could not be verified.
        RemoteFile("ISIC2018_Task3_Test_GroundTruth", 6924466, None, None,
                   "ISIC2018_Task3_Test_GroundTruth.csv", original=True),
    )),
}
"""The downloadable parts, by name: the facts of Dataverse version V4."""


class PlanItem(NamedTuple):
    """A part still to fetch: its missing files and their total size (sizes not recorded count as 0)."""

    part: str
    files: tuple[RemoteFile, ...]
    total_bytes: int
    sizes_known: bool


def check_parts(parts: Iterable[str] | str) -> tuple[str, ...]:
    """Validate part names (``"all"`` means every part) and return them in table order, without repeats."""
    names = [parts] if isinstance(parts, str) else list(parts)
    if "all" in names:
        return tuple(PARTS)
    unknown = [name for name in names if name not in PARTS]
    if unknown:
        raise ValueError(f"Unknown part(s) {unknown}; choose from {', '.join(PARTS)} (or 'all').")
    if not names:
        raise ValueError(f"No part chosen; choose from {', '.join(PARTS)} (or 'all').")
    return tuple(name for name in PARTS if name in names)


def is_installed(dest: str | Path, file: RemoteFile) -> bool:
    """Whether ``file`` is in place under ``dest``: a non-empty file, or a non-empty folder for a zip.

    The downloader only ever renames complete, verified files and fully extracted folders into place,
    so presence means complete; a dataset put there by hand is trusted the same way.
    """
    target = Path(dest) / file.target
    if file.is_archive:
        return target.is_dir() and any(target.iterdir())
    return target.is_file() and target.stat().st_size > 0


def missing_parts(dest: str | Path, parts: Iterable[str] | str = DEFAULT_PARTS) -> list[str]:
    """The names of ``parts`` that are not yet complete in ``dest`` (no network access)."""
    return [name for name in check_parts(parts)
            if not all(is_installed(dest, file) for file in PARTS[name].files)]


def plan(dest: str | Path, parts: Iterable[str] | str = DEFAULT_PARTS) -> list[PlanItem]:
    """What :func:`~skinlib.download.download` would fetch into ``dest``, and how large (no network access)."""
    items = []
    for name in missing_parts(dest, parts):
        files = tuple(file for file in PARTS[name].files if not is_installed(dest, file))
        items.append(PlanItem(name, files, sum(file.size or 0 for file in files),
                              all(file.size is not None for file in files)))
    return items


def format_bytes(count: float) -> str:
    """``1366522108`` -> ``'1.37 GB'`` (decimal units, as Dataverse shows sizes)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.2f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def describe_plan(items: list[PlanItem], dest: str | Path) -> str:
    """A human sentence block for a plan: 'Will download ... (2.77 GB) into data/ham10000'."""
    if not items:
        return f"Nothing to download: the requested parts are already in {dest}."
    total = sum(item.total_bytes for item in items)
    unknown = not all(item.sizes_known for item in items)
    lines = [f"Will download {format_bytes(total)}{' plus files of unlisted size' if unknown else ''} "
             f"from Harvard Dataverse ({DOI}) into {dest}:"]
    for item in items:
        size = format_bytes(item.total_bytes) if item.sizes_known else (
            f"{format_bytes(item.total_bytes)} + ?" if item.total_bytes else "?")
        lines.append(f"  {item.part:<14} {size:>12}  {PARTS[item.part].description}")
    lines.append(f"Licence: {LICENCE}.")
    return "\n".join(lines)

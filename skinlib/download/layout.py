"""The final check: do the downloaded images, masks and tables agree with each other?"""

from __future__ import annotations

import warnings
from pathlib import Path

from skinlib.download.errors import DownloadError
from skinlib.download.parts import PARTS, is_installed
from skinlib.errors import DataError

MASK_SUFFIX = "_segmentation.png"


def installed(dest: Path, part: str) -> bool:
    """Whether every file of ``part`` is in place in ``dest``."""
    return all(is_installed(dest, file) for file in PARTS[part].files)


def folders(dest: Path, part: str) -> list[Path]:
    """The extracted folders of ``part`` in ``dest``."""
    return [dest / file.target for file in PARTS[part].files if file.is_archive]


def disagreement(what: str, listed: set[str], found: set[str], dest: Path) -> DownloadError | None:
    """An error describing the difference between ids ``listed`` in a table and ids ``found`` on disk."""
    absent, extra = sorted(listed - found), sorted(found - listed)
    if not absent and not extra:
        return None
    details = []
    if absent:
        details.append(f"{len(absent)} listed but missing (first: {', '.join(absent[:5])})")
    if extra:
        details.append(f"{len(extra)} not listed (first: {', '.join(extra[:5])})")
    return DownloadError(f"The {what} in {dest} do not agree: {len(listed):,} listed, {len(found):,} on disk; "
                         f"{'; '.join(details)}. Delete the folders and files in question and run the download "
                         f"again.")


def check_images(dest: Path) -> str:
    """HAM10000: every image of the metadata is there, and no other; returns a one-line summary."""
    from skinlib.data.metadata import index_images, load_metadata

    found = set(index_images(folders(dest, "images")))
    error = disagreement("images and the metadata", set(load_listed_ids(dest)), found, dest)
    if error:
        raise error
    return f"{len(load_metadata(dest)):,} images match the metadata"


def load_listed_ids(dest: Path) -> list[str]:
    """The image ids the HAM10000 metadata lists."""
    from skinlib.data.metadata import find_metadata_file, read_metadata_table, validate_metadata

    source = find_metadata_file(dest)
    return list(validate_metadata(read_metadata_table(source), source)["image_id"])


def check_masks(dest: Path) -> str:
    """HAM10000: one segmentation mask per image of the metadata."""
    found = {path.name.removesuffix(MASK_SUFFIX) for folder in folders(dest, "masks")
             for path in folder.glob(f"*{MASK_SUFFIX}")}
    error = disagreement("segmentation masks and the metadata", set(load_listed_ids(dest)), found, dest)
    if error:
        raise error
    return f"{len(found):,} masks match the metadata"


def check_isic2018_test(dest: Path) -> str:
    """ISIC 2018 Task 3: every test image has a ground-truth row (a row may lack its image, as upstream)."""
    from skinlib.data.isic2018 import load_isic2018_test
    from skinlib.data.metadata import index_images

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the one upstream row without an image is expected
        table = load_isic2018_test(dest)
    extra = set(index_images(folders(dest, "isic2018_test"))) - set(table["image_id"])
    if extra:
        raise DownloadError(f"{len(extra)} ISIC 2018 test images in {dest} have no ground-truth row "
                            f"(first: {', '.join(sorted(extra)[:5])}); delete the folder and run again.")
    return f"{len(table):,} ISIC 2018 test images match the ground truth"


def check_dataset(dest: str | Path, parts: tuple[str, ...]) -> list[str]:
    """Cross-check the requested ``parts`` with what else is in ``dest``; raise :class:`DownloadError` if they
    disagree. Returns one summary line per check made (a check needs all its parts installed)."""
    dest = Path(dest)
    checks = (
        (("metadata", "images"), check_images),
        (("metadata", "masks"), check_masks),
        (("isic2018_test",), check_isic2018_test),
    )
    try:
        return [check(dest) for needs, check in checks
                if set(needs) & set(parts) and all(installed(dest, part) for part in needs)]
    except DataError as error:
        raise DownloadError(f"The dataset in {dest} is not usable after the download: {error}") from error

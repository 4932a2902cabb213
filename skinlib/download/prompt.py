"""Before a run: is the dataset there and usable, and if it is absent, may it be downloaded? (run_all.py, make run)

:func:`check_dataset` tells an absent dataset (a download may be offered) from a malformed one (never downloaded
over: the message names the file and what to fix); :func:`offer_download` says what a download would fetch and how
large, then asks on a terminal, or goes ahead when told to.
"""

from __future__ import annotations

import sys
from pathlib import Path

from skinlib.download.parts import DEFAULT_PARTS, describe_plan, missing_parts, plan
from skinlib.download.pipeline import download


def check_dataset(data_dir: Path, images: str | None) -> tuple[str, str, str | None]:
    """``(status, message, images)``: status "ok" (with the image folder to use, found by ``data.locate`` when not
    given), "absent" (no metadata and no image folder: a download may be offered) or "malformed" (files are
    there but unusable: the message says what and how to fix it; never a download)."""
    from skinlib import data
    from skinlib.errors import DataError

    data_dir, images = data.locate(data_dir, images)
    try:
        data.load_metadata(data_dir, images=images)
        return "ok", f"dataset: {data_dir}" + (f" (images from {images}/)" if images else ""), images
    except DataError as error:
        problem = str(error)
    present = data_dir.is_dir() and any(
        path.name.startswith(("HAM10000_metadata", "HAM10000_images", "images")) for path in data_dir.iterdir())
    return ("malformed" if present else "absent"), problem, images


def missing_data_message(data_dir: Path, status: str, problem: str) -> tuple[str, list[str]]:
    """What is wrong and how to fix it; for an absent dataset, the parts a download would fetch."""
    parts = missing_parts(data_dir, DEFAULT_PARTS)
    fetch = f"python -m skinlib download --dest {data_dir}" + (f" --parts {' '.join(parts)}" if parts else "")
    if status == "malformed":
        return (f"The dataset in '{data_dir}' cannot be used: {problem}\nFix the file named above; if official "
                f"files are missing, `{fetch}` fetches only those. Nothing was downloaded."), []
    return (f"{problem}\nPut the metadata CSV and the image folders (HAM10000_images_part_1/, "
            f"HAM10000_images_part_2/) in '{data_dir}', point --data at another folder, or download them: "
            f"`{fetch}`."), parts


def offer_download(data_dir: Path, parts: list[str], assume_yes: bool, stream=None) -> bool:
    """Say what a download would fetch, then ask (or, with ``assume_yes``, go ahead); True when downloaded."""
    stream = stream or sys.stderr
    print(describe_plan(plan(data_dir, parts), data_dir), file=stream)
    if not assume_yes:
        if not sys.stdin.isatty():
            print("Not downloading without a terminal to confirm: rerun with --download-yes (make run "
                  "DOWNLOAD=yes), or download first.", file=stream)
            return False
        try:
            answer = input("Download it now? [y/N] ").strip().lower()
        except EOFError:
            answer = ""
        if answer not in ("y", "yes"):
            return False
    try:
        download(data_dir, parts)
    except Exception as error:
        print(f"Download failed: {error}", file=stream)
        return False
    return True

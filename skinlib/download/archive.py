"""Safe, atomic zip extraction.

Every entry is checked before anything is written: an absolute path or a ``..`` that would land
outside the destination (zip-slip) refuses the whole archive. Entries are extracted into a temporary
folder next to the target, which is renamed into place only when complete, so the target folder is
either absent or whole.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from skinlib.download.errors import DownloadError, UnsafeArchiveError

TEMP_PREFIX = ".extract-"
JUNK = ("__MACOSX/",)  # macOS resource forks some zips carry


def unsafe_reason(name: str) -> str | None:
    """Why the zip entry ``name`` may not be extracted, or None when it stays inside the destination."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        return "absolute path"
    if ".." in path.parts:
        return "'..' leads outside the destination"
    return None


def safe_members(archive: zipfile.ZipFile, source: Path) -> list[zipfile.ZipInfo]:
    """The entries to extract (junk skipped); raises :class:`UnsafeArchiveError` on any escaping entry."""
    members = []
    for info in archive.infolist():
        reason = unsafe_reason(info.filename)
        if reason:
            raise UnsafeArchiveError(
                f"Refusing to extract {source}: entry {info.filename!r} ({reason}) would be written outside the "
                f"destination. Nothing was extracted; the archive may be corrupt or tampered with; delete it "
                f"and report this.")
        if not info.filename.startswith(JUNK):
            members.append(info)
    return members


def content_folder(folder: Path) -> Path:
    """Where the extracted files are: ``folder``, or its only subfolder when the zip wrapped them in one
    (``part_2/ISIC_*.jpg``); a few loose files beside that subfolder (a ``LICENSE.txt``) are moved into it."""
    subfolders = [entry for entry in folder.iterdir() if entry.is_dir()]
    if len(subfolders) != 1:
        return folder
    inner = subfolders[0]
    loose = [entry for entry in folder.iterdir() if entry != inner]
    if len(loose) >= sum(1 for _ in inner.iterdir()) or any((inner / entry.name).exists() for entry in loose):
        return folder  # the bulk of the files is at the top: the subfolder is part of the content
    for entry in loose:
        entry.rename(inner / entry.name)
    return inner


def extract(source: Path, target: Path) -> int:
    """Extract the zip ``source`` as the folder ``target`` (atomically); return the number of files.

    Whether the zip holds its files at the top or inside one folder, they end up directly in ``target``.
    """
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DownloadError(f"Cannot extract {source.name}: {target} already exists and is not an empty folder; "
                            f"move it away and run again.")
    try:
        with zipfile.ZipFile(source) as archive:
            members = safe_members(archive, source)
            if not any(not info.is_dir() for info in members):
                raise DownloadError(f"{source} holds no files; delete it and run again.")
            scratch = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{target.name}-", dir=target.parent))
            try:
                for info in members:
                    archive.extract(info, scratch)
                content = content_folder(scratch)
                if target.exists():
                    target.rmdir()
                os.replace(content, target)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    except zipfile.BadZipFile as error:
        raise DownloadError(f"{source} is not a valid zip ({error}); delete it and run again.") from error
    return sum(1 for info in members if not info.is_dir())


def remove_stale_extractions(dest: Path) -> None:
    """Delete temporary extraction folders an interrupted earlier run left in ``dest``."""
    for leftover in dest.glob(f"{TEMP_PREFIX}*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)

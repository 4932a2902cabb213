"""``download()``: fetch the chosen parts, verify them, unpack them, and check the result.

Nothing half-written is ever where a complete file is expected: downloads grow in
``<dest>/.downloads/<name>.part`` and are renamed only once their MD5 matches; zips are extracted into
a temporary folder and renamed into place. Parts already in place are skipped, so a re-run fetches
only what is missing and an interrupted run resumes. Whatever the outcome, the folders the attempt made
and left empty (``.downloads``, the destination itself) are removed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import Iterable

import requests

from skinlib.config import DEFAULT_DATA
from skinlib.download.archive import extract, remove_stale_extractions
from skinlib.download.dataverse import Source, resolve, try_list_files
from skinlib.download.errors import ChecksumError, DiskSpaceError, DownloadError, HTTPStatusError
from skinlib.download.layout import check_dataset
from skinlib.download.parts import BASE_URL, DEFAULT_PARTS, DOI, PARTS, RemoteFile, check_parts, format_bytes, \
    is_installed
from skinlib.download.transfer import RetryPolicy, fetch

log = logging.getLogger("skinlib.download")

DOWNLOADS = ".downloads"
"""Sub-folder of the destination where files grow (``.part``) and verified zips wait to be extracted."""
SPACE_MARGIN = 50_000_000
LISTING_RETRIES = 3


def download(dest: str | Path = DEFAULT_DATA, parts: Iterable[str] | str = DEFAULT_PARTS, *,
             base_url: str = BASE_URL, doi: str = DOI, retries: int = 8, backoff: float = 2.0,
             session: requests.Session | None = None, progress: bool = True,
             keep_archives: bool = False) -> Path:
    """Download HAM10000 parts from Harvard Dataverse into ``dest``, verified and laid out for
    :func:`skinlib.data.load_metadata`; return ``dest``.

    Args:
        dest: the dataset folder (created if needed).
        parts: names from :data:`PARTS` (``metadata``, ``images``, ``masks``, ``isic2018_test``) or ``"all"``.
        base_url: the Dataverse server.
        doi: the dataset's persistent id.
        retries: tries after a transient failure (dropped connection, 5xx) before giving up; a download
            that keeps receiving bytes never runs out of them. A 429 (rate limited) is retried on its own
            schedule for up to about an hour (see :class:`~skinlib.download.transfer.RetryPolicy`); a
            server that cannot be reached (name not resolved, connection refused) is not retried.
        backoff: first wait in seconds; it doubles after each failure (a ``Retry-After`` wins).
        session: a :class:`requests.Session` to use (one is made and closed otherwise).
        progress: show progress: tqdm bars on a terminal or in a notebook, a log line every 30 s
            otherwise (call :func:`configure_logging` to see log lines from a script).
        keep_archives: keep the verified zips in ``<dest>/.downloads`` after extracting them.

    Raises:
        DownloadError: a file could not be fetched; :class:`ChecksumError`, :class:`UnsafeArchiveError`,
            :class:`DiskSpaceError`, :class:`UnreachableError` (offline: raised within seconds),
            :class:`RateLimitedError` for the particular cases. Every message says what to do.
    """
    names = check_parts(parts)
    dest = Path(dest)
    created = [folder for folder in (dest, *dest.parents) if not folder.exists()]  # deepest first
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return download_into(dest, names, base_url=base_url, doi=doi, retries=retries, backoff=backoff,
                             session=session, progress=progress, keep_archives=keep_archives)
    finally:
        remove_empty_folders([dest / DOWNLOADS, *created])


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove those of ``folders`` that are empty, in order (give the deepest first)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass  # absent or not empty


def download_into(dest: Path, names: tuple[str, ...], *, base_url: str, doi: str, retries: int, backoff: float,
                  session: requests.Session | None, progress: bool, keep_archives: bool) -> Path:
    """The body of :func:`download`, once ``dest`` exists."""
    remove_stale_extractions(dest)
    todo = [file for name in names for file in PARTS[name].files if not is_installed(dest, file)]
    for name in names:
        if all(file not in todo for file in PARTS[name].files):
            log.info("%s: already in %s, skipped", name, dest)
    if todo:
        own_session = session is None
        session = session or requests.Session()
        try:
            entries = try_list_files(session, base_url, doi, RetryPolicy(min(retries, LISTING_RETRIES), backoff))
            sources = [resolve(file, entries) for file in todo]
            check_disk_space(dest, sources)
            policy = RetryPolicy(retries, backoff)
            for source in sources:
                install(session, source, dest, base_url, policy, progress, keep_archives)
        finally:
            if own_session:
                session.close()
    for line in check_dataset(dest, names):
        log.info("Checked: %s.", line)
    return dest


def md5_of(path: Path) -> str:
    """The MD5 hex digest of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()


def paths(dest: Path, source: Source) -> tuple[Path, Path]:
    """(growing ``.part`` file, verified file) for ``source``: a zip waits in ``.downloads``, a table goes
    straight to its place in ``dest``."""
    name = source.file.download_name
    verified = dest / DOWNLOADS / name if source.file.is_archive else dest / source.file.target
    return dest / DOWNLOADS / f"{name}.part", verified


def check_disk_space(dest: Path, sources: list[Source]) -> None:
    """Raise :class:`DiskSpaceError` unless ``dest`` has room to download and unpack ``sources``."""
    to_fetch = to_unpack = 0
    for source in sources:
        part, verified = paths(dest, source)
        size = source.size or 0
        if not verified.exists():
            to_fetch += max(size - (part.stat().st_size if part.exists() else 0), 0)
        if source.file.is_archive:
            to_unpack += size  # JPEG and PNG do not compress: unpacked ~ zipped
    free = shutil.disk_usage(dest).free
    need = to_fetch + to_unpack + SPACE_MARGIN
    if free < need:
        raise DiskSpaceError(
            f"Not enough free disk space in {dest.resolve()}: about {format_bytes(need)} are needed "
            f"({format_bytes(to_fetch)} to download, {format_bytes(to_unpack)} to unpack), "
            f"only {format_bytes(free)} are free. Free some space, or choose another folder with --dest.")


def install(session: requests.Session, source: Source, dest: Path, base_url: str, policy: RetryPolicy,
            progress: bool, keep_archives: bool) -> None:
    """Fetch, verify and put one file in place (extracting a zip)."""
    file = source.file
    _, verified = paths(dest, source)
    if file.is_archive and verified.exists() and source.md5 is not None and md5_of(verified) != source.md5:
        log.warning("%s from an earlier run does not match its MD5; deleted, downloading again", verified)
        verified.unlink()
    if not verified.exists():
        fetch_verified(session, source, dest, base_url, policy, progress)
    if file.is_archive:
        count = extract(verified, dest / file.target)
        log.info("%s: %d files extracted into %s", file.name, count, dest / file.target)
        if not keep_archives:
            verified.unlink()


def fetch_verified(session: requests.Session, source: Source, dest: Path, base_url: str, policy: RetryPolicy,
                   progress: bool) -> None:
    """Download ``source`` and rename it into place once its MD5 matches; one fresh retry on a mismatch."""
    part, verified = paths(dest, source)
    part.parent.mkdir(exist_ok=True)
    name = source.file.download_name
    for attempt in (1, 2):
        # tables are small and their format=original copy is made on the fly: always fetched whole
        try:
            fetch(session, source.url(base_url), part, params=source.params, size=source.size,
                  resume=not source.file.original, policy=policy, progress=progress, label=name)
        except HTTPStatusError as error:
            if error.status == 400 and error.access:
                raise HTTPStatusError(f"{error} {manual_step(source.file, dest)}", status=400, access=True) \
                    from error
            raise
        if source.md5 is None:
            check_unverified(part, source)
            os.replace(part, verified)
            return
        digest = md5_of(part)
        if digest == source.md5:
            os.replace(part, verified)
            log.info("%s: downloaded, MD5 verified", name)
            return
        part.unlink()
        problem = f"MD5 mismatch for {name}: expected {source.md5}, got {digest}; the download was deleted"
        if attempt == 1:
            log.warning("%s. Downloading it again from the start.", problem)
    raise ChecksumError(f"{problem} (twice). The server may be sending a different file than it lists; try "
                        f"again later, or report it with the dataset version at https://doi.org/10.7910/DVN/DBW86T.")


def manual_step(file: RemoteFile, dest: Path) -> str:
    """Where to put ``file`` when it was downloaded by hand."""
    if file.is_archive:
        return (f"For this file: unzip {file.name} so that its files are directly in {dest / file.target}, "
                f"then run again (files in place are not downloaded again).")
    return (f"For this file: save {file.name} (the original CSV, not the tab-separated copy) as "
            f"{dest / file.target}, then run again (files in place are not downloaded again).")


def check_unverified(part: Path, source: Source) -> None:
    """Check a download whose MD5 is not known by its size and format; the ``.part`` is deleted if wrong."""
    name = source.file.download_name
    size = part.stat().st_size
    problem = None
    if source.size is not None and size != source.size:
        problem = f"it has {size:,} bytes instead of {source.size:,}"
    elif source.file.is_archive and not zipfile.is_zipfile(part):
        problem = "it is not a zip archive"
    elif not source.file.is_archive:
        with open(part, "rb") as handle:
            head = handle.read(4096)
        first = head.split(b"\n", 1)[0]
        if not head or head.lstrip()[:1] == b"<" or b"\0" in head or not (b"," in first or b"\t" in first):
            problem = f"it does not look like a CSV table (it begins {head[:40]!r})"
    if problem:
        part.unlink()
        raise DownloadError(f"{name} as downloaded is not usable: {problem}; the download was deleted. The "
                            f"server may have sent an error page: try again later.")
    why = "the dataset listing gives none" if source.listed else "the dataset listing was unavailable"
    log.warning("%s: downloaded, but its checksum could not be verified because %s (checked by size and "
                "format only)", name, why)

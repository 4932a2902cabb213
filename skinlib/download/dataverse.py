"""The Harvard Dataverse side: the dataset's file listing, and which datafile to fetch for each file.

Files are matched by name in the listing of the latest version, so a new dataset version (new ids,
new checksums) does not break the download; the ids and MD5s of :data:`~skinlib.download.PARTS` are the
fallback. Download URLs are always the stable ``/api/access/datafile/<id>``: it redirects to a signed
storage URL that expires, which is never stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

import requests

from skinlib.download.errors import DownloadError, RateLimitedError, UnreachableError
from skinlib.download.parts import RemoteFile
from skinlib.download.transfer import RetryPolicy, get_json

log = logging.getLogger("skinlib.download")

LISTING_PATH = "/api/datasets/:persistentId/versions/:latest/files"
DATAFILE_PATH = "/api/access/datafile/{id}"
EXTENSIONS = (".zip", ".tab", ".csv", ".tsv")


@dataclass(frozen=True)
class Source:
    """Where and what to fetch for one :class:`RemoteFile`: its datafile id, size and MD5."""

    file: RemoteFile
    datafile_id: int
    size: int | None
    md5: str | None
    listed: bool
    """True when the id and checksum come from the live listing, False for the table's fallback."""

    def url(self, base_url: str) -> str:
        """The datafile's access URL (it redirects to the storage)."""
        return base_url.rstrip("/") + DATAFILE_PATH.format(id=self.datafile_id)

    @property
    def params(self) -> dict[str, str]:
        """Query parameters: ``format=original`` for tabular files."""
        return {"format": "original"} if self.file.original else {}


def stem(name: str | None) -> str:
    """A file name without its data extension, lower-cased: ``HAM10000_metadata.tab`` -> ``ham10000_metadata``."""
    name = (name or "").strip().lower()
    for extension in EXTENSIONS:
        if name.endswith(extension):
            return name[: -len(extension)]
    return name


def list_files(session: requests.Session, base_url: str, doi: str, policy: RetryPolicy) -> list[dict]:
    """The ``data`` entries of the dataset's file listing (latest version)."""
    what = f"the file listing of {doi}"
    document = get_json(session, base_url.rstrip("/") + LISTING_PATH, {"persistentId": doi}, policy, what)
    entries = document.get("data") if isinstance(document, dict) else None
    if not isinstance(entries, list) or document.get("status") != "OK":
        raise DownloadError(f"Unexpected answer for {what}: {str(document)[:200]}")
    return entries


def try_list_files(session: requests.Session, base_url: str, doi: str, policy: RetryPolicy) -> list[dict] | None:
    """:func:`list_files`, or None (with a warning) when the listing cannot be had.

    An unreachable server or an exhausted rate limit is raised, not papered over: the files would fail
    the same way.
    """
    try:
        return list_files(session, base_url, doi, policy)
    except (UnreachableError, RateLimitedError):
        raise
    except (DownloadError, ValueError) as error:  # ValueError: the body is not JSON
        log.warning("Could not read the dataset listing (%s); using the known datafile ids instead.", error)
        return None


def match(file: RemoteFile, entries: Iterable[dict]) -> dict | None:
    """The listing's ``dataFile`` for ``file`` (by label, file name or original file name), if any."""
    wanted = stem(file.name)
    for entry in entries:
        data = entry.get("dataFile") or {}
        names = (entry.get("label"), data.get("filename"), data.get("originalFileName"))
        if data.get("id") is not None and wanted in {stem(name) for name in names}:
            return data
    return None


def listed_md5(data: dict) -> str | None:
    """The MD5 a listing entry publishes (``checksum`` if of type MD5, else ``md5``)."""
    checksum = data.get("checksum") or {}
    if str(checksum.get("type", "")).upper() == "MD5" and checksum.get("value"):
        return str(checksum["value"]).lower()
    return str(data["md5"]).lower() if data.get("md5") else None


def resolve(file: RemoteFile, entries: list[dict] | None) -> Source:
    """Pick the datafile for ``file``: from the listing when it names the file, else the table's fallback."""
    data = match(file, entries) if entries is not None else None
    if data is None:
        if entries is not None:
            log.warning("%s is not in the dataset listing; trying the known datafile id %d.",
                        file.name, file.datafile_id)
        return Source(file, file.datafile_id, file.size, file.md5, listed=False)
    # For tabular files the listing's `filesize` is of Dataverse's .tab copy; the MD5 is of the original.
    size = data.get("originalFileSize") if file.original else data.get("filesize")
    return Source(file, int(data["id"]), int(size) if size is not None else file.size,
                  listed_md5(data) or file.md5, listed=True)

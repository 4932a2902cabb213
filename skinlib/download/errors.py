"""Errors of the downloader; each message says what went wrong, where, and what to do next."""

from skinlib.errors import SkinlibError


class DownloadError(SkinlibError):
    """A file could not be fetched, verified or unpacked."""


class ChecksumError(DownloadError):
    """A downloaded file's MD5 differs from the one Dataverse publishes."""


class UnsafeArchiveError(DownloadError):
    """A zip archive holds an entry that would land outside the destination folder (zip-slip)."""


class DiskSpaceError(DownloadError):
    """Not enough free disk space for the download and its unpacking."""

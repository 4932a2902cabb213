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


class UnreachableError(DownloadError):
    """The server cannot be reached at all (no name resolution, connection refused, no route): not retried."""


class RateLimitedError(DownloadError):
    """Dataverse kept answering 429 (too many requests) for about an hour."""


class HTTPStatusError(DownloadError):
    """The server answered with an HTTP error that retrying will not cure (400, 403, 404, ...)."""

    def __init__(self, message: str, *, status: int, access: bool = False):
        super().__init__(message)
        self.status = status
        self.access = access
        """Whether the answer came from the file access API (``/api/access/datafile``)."""

"""Get the data: HAM10000 and the ISIC 2018 test set from Harvard Dataverse (doi:10.7910/DVN/DBW86T).

Example::

    from skinlib import download

    download.missing_parts("data/ham10000")    # ['metadata', 'images'] on a fresh machine (no network)
    print(download.describe_plan(download.plan("data/ham10000"), "data/ham10000"))   # what, how large
    download.download("data/ham10000")         # fetch, verify, unpack, cross-check; resumes if interrupted

Or from a shell: ``python -m skinlib download --dest data/ham10000 [--parts all] [--yes]``. A script
of its own calls ``download.configure_logging()`` first to see the progress and "MD5 verified" lines.
The data is licensed CC BY-NC 4.0 (non-commercial use, with attribution).
"""

from skinlib.download.cli import add_arguments, run
from skinlib.download.errors import (ChecksumError, DiskSpaceError, DownloadError, HTTPStatusError,
                                     RateLimitedError, UnreachableError, UnsafeArchiveError)
from skinlib.download.parts import (BASE_URL, DEFAULT_PARTS, DOI, LICENCE, PARTS, Part, PlanItem, RemoteFile,
                                    describe_plan, missing_parts, plan)
from skinlib.download.pipeline import download
from skinlib.download.progress import configure_logging
from skinlib.download.prompt import check_dataset, missing_data_message, offer_download
from skinlib.download.transfer import USER_AGENT

__all__ = ["BASE_URL", "DEFAULT_PARTS", "DOI", "LICENCE", "PARTS", "USER_AGENT", "ChecksumError", "DiskSpaceError",
           "DownloadError", "HTTPStatusError", "Part", "PlanItem", "RateLimitedError", "RemoteFile",
           "UnreachableError", "UnsafeArchiveError", "add_arguments", "check_dataset", "configure_logging",
           "describe_plan", "download", "missing_data_message", "missing_parts", "offer_download", "plan", "run"]

"""Get the data: HAM10000 and the ISIC 2018 test set from Harvard Dataverse (doi:10.7910/DVN/DBW86T).

Example::

    from skinlib import download

    download.missing_parts("data/ham10000")    # ['metadata', 'images'] on a fresh machine (no network)
    print(download.describe_plan(download.plan("data/ham10000"), "data/ham10000"))   # what, how large
    download.download("data/ham10000")         # fetch, verify, unpack, cross-check; resumes if interrupted

Or from a shell: ``python -m skinlib download --dest data/ham10000 [--parts all] [--yes]``.
The data is licensed CC BY-NC 4.0 (non-commercial use, with attribution).
"""

from skinlib.download.cli import add_arguments, run
from skinlib.download.errors import ChecksumError, DiskSpaceError, DownloadError, UnsafeArchiveError
from skinlib.download.parts import (BASE_URL, DEFAULT_PARTS, DOI, LICENCE, PARTS, Part, PlanItem, RemoteFile,
                                    describe_plan, missing_parts, plan)
from skinlib.download.pipeline import download
from skinlib.download.transfer import USER_AGENT

__all__ = ["BASE_URL", "DEFAULT_PARTS", "DOI", "LICENCE", "PARTS", "USER_AGENT", "ChecksumError", "DiskSpaceError",
           "DownloadError", "Part", "PlanItem", "RemoteFile", "UnsafeArchiveError", "add_arguments",
           "describe_plan", "download", "missing_parts", "plan", "run"]

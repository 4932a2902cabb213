"""HTTP with retries and resumable streaming downloads (requests + tqdm).

Dataverse is slow and at times unstable: connections drop, it answers 429 (too many requests) or 5xx.
Those failures are retried with exponential backoff (a 429's ``Retry-After`` is honoured); a download
that breaks off resumes from the bytes already on disk with an HTTP ``Range`` request.
"""

from __future__ import annotations

import email.utils
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from tqdm.auto import tqdm

from skinlib import __version__
from skinlib.download.errors import DownloadError

log = logging.getLogger("skinlib.download")

USER_AGENT = f"skinlib/{__version__} (HAM10000 dataset downloader; +https://doi.org/10.7910/DVN/DBW86T)"
"""Dataverse answers 403 to the default python-requests User-Agent, so we say who we are."""
RETRIABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
TRANSIENT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
TIMEOUT = (30, 120)  # seconds: to connect, and between two received pieces of data
CHUNK_BYTES = 1 << 16

sleep = time.sleep
"""How the retry loop waits; tests replace it to record the waits without waiting."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry: waits grow as ``backoff * 2**(failures - 1)``."""

    retries: int = 8
    backoff: float = 2.0
    max_wait: float = 300.0

    def wait(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait before the next try; a server's ``Retry-After`` takes precedence."""
        if retry_after is not None:
            return min(retry_after, self.max_wait)
        return min(self.backoff * 2 ** max(failures - 1, 0), self.max_wait)


class RetriableResponse(Exception):
    """A response worth retrying (429, 5xx), with the server's ``Retry-After`` in seconds if it sent one."""

    def __init__(self, response: requests.Response):
        self.status = response.status_code
        self.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        super().__init__(f"HTTP {self.status} {response.reason or ''}".strip())


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: either a number or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Request headers: our User-Agent, and no compression (byte ranges must mean file bytes)."""
    return {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **(extra or {})}


def raise_for_status(response: requests.Response, what: str) -> None:
    """Turn a failed response into :class:`RetriableResponse` (retry) or :class:`DownloadError` (give up)."""
    status = response.status_code
    if status < 400:
        return
    if status in RETRIABLE_STATUS:
        raise RetriableResponse(response)
    hint = {
        403: "the server refused access. Dataverse refuses some clients (for example the default Python "
             f"User-Agent; this downloader sends '{USER_AGENT}'). Try again later, or fetch the file in a "
             "browser from https://doi.org/10.7910/DVN/DBW86T",
        404: "not found. The dataset may have changed; check https://doi.org/10.7910/DVN/DBW86T",
    }.get(status, "the server refused the request")
    raise DownloadError(f"Cannot get {what}: HTTP {status} from {response.url}: {hint}.")


def retry_or_give_up(error: Exception, failures: int, policy: RetryPolicy, what: str, hint: str = "") -> None:
    """Wait before the next try, or raise :class:`DownloadError` once ``policy.retries`` are used up."""
    if failures > policy.retries:
        raise DownloadError(f"Giving up on {what} after {policy.retries} retries; last error: {error}.{hint}") \
            from error
    wait = policy.wait(failures, getattr(error, "retry_after", None))
    log.warning("%s: %s; retry %d of %d in %.1f s", what, error, failures, policy.retries, wait)
    sleep(wait)


def get_json(session: requests.Session, url: str, params: dict, policy: RetryPolicy, what: str) -> dict:
    """GET a JSON document, retrying transient failures."""
    failures = 0
    while True:
        try:
            response = session.get(url, params=params, headers=headers(), timeout=TIMEOUT)
            raise_for_status(response, what)
            return response.json()
        except (*TRANSIENT_ERRORS, RetriableResponse) as error:
            failures += 1
            retry_or_give_up(error, failures, policy, what)


def fetch(session: requests.Session, url: str, part: Path, *, params: dict | None = None, size: int | None,
          resume: bool, policy: RetryPolicy, progress: bool, label: str) -> None:
    """Download ``url`` into the ``part`` file, resuming from its current length when ``resume``.

    Transient failures are retried; failures count only while no new byte arrives, so a slow,
    flaky server still finishes. When ``size`` is known and ``part`` already has it, nothing is fetched.
    The caller checks the MD5 and renames ``part`` into place.
    """
    with tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not progress,
              leave=True, dynamic_ncols=True) as bar:
        failures = 0
        while True:
            if not resume:
                part.unlink(missing_ok=True)
            before = part.stat().st_size if part.exists() else 0
            if size is not None and before > size:
                log.warning("%s: partial file %s is larger than the file (%d > %d bytes); starting over",
                            label, part, before, size)
                part.unlink()
                before = 0
            if size is not None and before == size:
                return
            try:
                stream_once(session, url, part, params, before, bar)
                return
            except (*TRANSIENT_ERRORS, RetriableResponse) as error:
                after = part.stat().st_size if part.exists() else 0
                failures = 1 if after > before else failures + 1
                retry_or_give_up(error, failures, policy, label,
                                 f" The partial download {part} is kept: run again to resume." if resume else "")


def stream_once(session: requests.Session, url: str, part: Path, params: dict | None, offset: int,
                bar: tqdm) -> None:
    """One GET of ``url`` (from byte ``offset`` on, with ``Range``) appended to ``part``."""
    extra = {"Range": f"bytes={offset}-"} if offset else {}
    with session.get(url, params=params, headers=headers(extra), stream=True, timeout=TIMEOUT) as response:
        if response.status_code == 416 and offset:
            return  # nothing left after `offset`: the part is whole; the MD5 check will tell
        raise_for_status(response, part.name.removesuffix(".part"))
        start = content_range_start(response) if response.status_code == 206 else 0
        if start != offset and start != 0:
            raise DownloadError(f"The server sent bytes from {start} on when asked for {offset} on ({url}).")
        mode = "ab" if start else "wb"
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit():
            bar.total = start + int(length)
        bar.reset(total=bar.total)
        bar.update(start)
        with open(part, mode) as out:
            for chunk in response.iter_content(CHUNK_BYTES):
                out.write(chunk)
                bar.update(len(chunk))


def content_range_start(response: requests.Response) -> int:
    """First byte position of a 206 response, from ``Content-Range: bytes <start>-<end>/<total>``."""
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        raise DownloadError(f"Unreadable Content-Range {value!r} from {response.url}.") from None

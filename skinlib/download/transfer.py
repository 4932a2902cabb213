"""HTTP with retries and resumable streaming downloads (requests + tqdm).

Dataverse is slow and at times unstable: connections drop, it answers 429 (too many requests) or 5xx.
Those failures are retried with exponential backoff; a download that breaks off resumes from the bytes
already on disk with an HTTP ``Range`` request. A 429 is retried on a schedule of its own: Dataverse's
rate limits are hourly and its 429 carries no ``Retry-After`` (one that does is honoured), so the waits
grow to 15 minutes and go on for about an hour in all, each announced in a log line.

A server that cannot be reached at all (the host name does not resolve, the connection is refused,
no route to the network) is not retried: :class:`UnreachableError` ends the download at once.
"""

from __future__ import annotations

import email.utils
import errno
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3

from skinlib import __version__
from skinlib.download.errors import DownloadError, HTTPStatusError, RateLimitedError, UnreachableError
from skinlib.download.progress import Progress, progress_bar

log = logging.getLogger("skinlib.download")

USER_AGENT = f"skinlib/{__version__} (HAM10000 dataset downloader; +https://doi.org/10.7910/DVN/DBW86T)"
"""Dataverse answers 403 to the default python-requests User-Agent, so we say who we are."""
RETRIABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
TRANSIENT_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
TIMEOUT = (30, 120)  # seconds: to connect, and between two received pieces of data
CHUNK_BYTES = 1 << 16

sleep = time.sleep
"""How the retry loop waits; tests replace it to record the waits without waiting."""


UNREACHABLE = "cannot reach Harvard Dataverse: check the network or proxy"
"""How every :class:`UnreachableError` message begins."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    Dropped connections and 5xx: up to ``retries`` tries, waits growing as ``backoff * 2**(failures - 1)``
    (at most ``max_wait``). 429 (rate limited): waits ``rate_limit_wait * 2**(k - 1)`` capped at
    ``rate_limit_max_wait`` (60, 120, 240, 480, 900, 900, 900 s), until ``rate_limit_budget`` seconds
    (an hour, the period of Dataverse's limits) would be exceeded; a ``Retry-After`` replaces the
    schedule's wait (capped the same way).
    """

    retries: int = 8
    backoff: float = 2.0
    max_wait: float = 300.0
    rate_limit_wait: float = 60.0
    rate_limit_max_wait: float = 900.0
    rate_limit_budget: float = 3600.0

    def wait(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait before the next try; a server's ``Retry-After`` takes precedence."""
        if retry_after is not None:
            return min(retry_after, self.max_wait)
        return min(self.backoff * 2 ** max(failures - 1, 0), self.max_wait)

    def rate_limit_schedule(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``attempt``-th 429 in a row."""
        wait = retry_after if retry_after is not None else self.rate_limit_wait * 2 ** max(attempt - 1, 0)
        return min(wait, self.rate_limit_max_wait)


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


ACCESS_400 = (
    "Dataverse (6.10 and later) answers 400 to a file download when the dataset asks downloaders to fill "
    "in a guestbook or accept terms of use first, which a script cannot do. Download it by hand from the "
    "dataset page https://doi.org/10.7910/DVN/DBW86T (fill in the form or accept the terms there), then put "
    "it in the dataset folder")


def raise_for_status(response: requests.Response, what: str) -> None:
    """Turn a failed response into :class:`RetriableResponse` (retry) or :class:`HTTPStatusError` (give up)."""
    status = response.status_code
    if status < 400:
        return
    if status in RETRIABLE_STATUS:
        raise RetriableResponse(response)
    access = "/api/access/" in (response.url or "")
    hint = {
        400: ACCESS_400 if access else "the server rejected the request as malformed. The dataset or the "
             "Dataverse API may have changed; check https://doi.org/10.7910/DVN/DBW86T",
        403: "the server refused access. Dataverse refuses some clients (for example the default Python "
             f"User-Agent; this downloader sends '{USER_AGENT}'). Try again later, or fetch the file in a "
             "browser from https://doi.org/10.7910/DVN/DBW86T",
        404: "not found. The dataset may have changed; check https://doi.org/10.7910/DVN/DBW86T",
    }.get(status, "the server refused the request")
    raise HTTPStatusError(f"Cannot get {what}: HTTP {status} from {response.url}: {hint}.", status=status,
                          access=access)


def unreachable_reason(error: BaseException) -> str | None:
    """Why the server cannot be reached at all (name not resolved, connection refused, no route), found
    anywhere in ``error``'s chain; None for other errors, which may be transient."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (socket.gaierror, urllib3.exceptions.NameResolutionError)):
            return "its host name could not be resolved"
        if isinstance(current, ConnectionRefusedError):
            return "the connection was refused"
        if isinstance(current, OSError) and current.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "the network or host is unreachable"
        if isinstance(current, urllib3.exceptions.MaxRetryError):
            stack.append(current.reason)
        stack += [current.__cause__, current.__context__]
        stack += [arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)]
    return None


def unreachable_error(error: BaseException, reason: str, url: str, hint: str) -> UnreachableError:
    """The error that ends a download when the server cannot be reached."""
    host = urlsplit(url).netloc or url
    proxies = {key: value for key, value in requests.utils.get_environ_proxies(url).items() if key != "no"}
    proxy = (f" The environment sets the proxy {', '.join(sorted(set(proxies.values())))}: check it, or unset "
             f"it if the network needs none." if proxies else "")
    return UnreachableError(f"{UNREACHABLE}, then run again ({host}: {reason}).{proxy}{hint}")


class Retrier:
    """The failures of one request or download so far: waits before the next try, or gives up."""

    def __init__(self, policy: RetryPolicy, what: str, hint: str = ""):
        self.policy, self.what, self.hint = policy, what, hint
        self.failures = 0
        self.rate_limited = 0
        self.rate_waited = 0.0

    def progressed(self) -> None:
        """New bytes arrived: the failures so far no longer count."""
        self.failures = self.rate_limited = 0
        self.rate_waited = 0.0

    def failed(self, error: Exception, url: str) -> None:
        """Handle a failed try: wait (via :data:`sleep`) before the next, or raise a :class:`DownloadError`."""
        reason = unreachable_reason(error)
        if reason is not None:
            raise unreachable_error(error, reason, url, self.hint) from error
        if isinstance(error, RetriableResponse) and error.status == 429:
            return self.rate_limit(error)
        self.failures += 1
        if self.failures > self.policy.retries:
            raise DownloadError(f"Giving up on {self.what} after {self.policy.retries} retries; last error: "
                                f"{error}.{self.hint}") from error
        wait = self.policy.wait(self.failures, getattr(error, "retry_after", None))
        log.warning("%s: %s; retry %d of %d in %.1f s", self.what, error, self.failures, self.policy.retries, wait)
        sleep(wait)

    def rate_limit(self, error: RetriableResponse) -> None:
        """A 429: wait on the rate-limit schedule, announced, up to about an hour in all."""
        self.rate_limited += 1
        wait = self.policy.rate_limit_schedule(self.rate_limited, error.retry_after)
        if self.rate_waited + wait > self.policy.rate_limit_budget:
            raise RateLimitedError(
                f"Giving up on {self.what}: Dataverse still answers 429 (too many requests) after "
                f"{self.rate_waited / 60:.0f} min of waiting. Its limits are hourly: run the same command "
                f"again later; finished files are kept.{self.hint}") from error
        log.warning("%s: rate limited by Dataverse; waiting %.0f s (attempt %d); Dataverse limits are hourly "
                    "(skinlib waits up to about %.0f min in all)", self.what, wait, self.rate_limited,
                    self.policy.rate_limit_budget / 60)
        self.rate_waited += wait
        sleep(wait)


def get_json(session: requests.Session, url: str, params: dict, policy: RetryPolicy, what: str) -> dict:
    """GET a JSON document, retrying transient failures."""
    retrier = Retrier(policy, what)
    while True:
        try:
            response = session.get(url, params=params, headers=headers(), timeout=TIMEOUT)
            raise_for_status(response, what)
            return response.json()
        except (*TRANSIENT_ERRORS, RetriableResponse) as error:
            retrier.failed(error, url)


def fetch(session: requests.Session, url: str, part: Path, *, params: dict | None = None, size: int | None,
          resume: bool, policy: RetryPolicy, progress: bool, label: str) -> None:
    """Download ``url`` into the ``part`` file, resuming from its current length when ``resume``.

    Transient failures are retried; failures count only while no new byte arrives, so a slow,
    flaky server still finishes. When ``size`` is known and ``part`` already has it, nothing is fetched.
    The caller checks the MD5 and renames ``part`` into place.
    """
    hint = f" The partial download {part} is kept: run again to resume." if resume else ""
    retrier = Retrier(policy, label, hint)
    with progress_bar(size, label, progress) as bar:
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
                if (part.stat().st_size if part.exists() else 0) > before:
                    retrier.progressed()
                retrier.failed(error, url)


def stream_once(session: requests.Session, url: str, part: Path, params: dict | None, offset: int,
                bar: Progress) -> None:
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

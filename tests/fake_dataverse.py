"""A local stand-in for Harvard Dataverse, so the downloader is tested without the internet.

:class:`FakeDataverse` serves, on 127.0.0.1, the two endpoints the downloader uses:

* ``GET /api/datasets/:persistentId/versions/:latest/files?persistentId=<doi>``: the listing JSON;
* ``GET /api/access/datafile/<id>[?format=original]``: a 303 redirect to a "signed" storage URL
  ``/storage/<id>/<variant>?signature=...`` (as Dataverse redirects to S3), which serves the bytes with
  ``Range`` support. Tabular files are served as a quoted tab-separated copy unless ``format=original``.

Like the real server it answers 403 to the default python-requests User-Agent. Faults are injected per
test (a 429 with ``Retry-After``, a connection dropped mid-file, corrupted bytes, a failing listing),
and every request is recorded so tests can count downloads and bytes.

:func:`build_fake_dataset` zips a :func:`skinlib.data.make_synthetic` dataset into the files of the real
dataset (same names), plus a small ISIC 2018 test set.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import socket
import threading
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

DOI = "doi:10.7910/DVN/DBW86T"
LISTING_PATH = "/api/datasets/:persistentId/versions/:latest/files"


@dataclass
class FakeFile:
    """One file of the fake dataset, as the listing describes it and as it is served."""

    datafile_id: int
    label: str
    content: bytes
    """The bytes served: for a tabular file, the original upload (``format=original``)."""
    tabular: bool = False
    original_name: str | None = None

    @property
    def md5(self) -> str:
        return hashlib.md5(self.content).hexdigest()

    @property
    def tab_content(self) -> bytes:
        """Dataverse's ingested copy of a tabular file: tab-separated, every text field quoted."""
        rows = list(csv.reader(io.StringIO(self.content.decode())))
        out = io.StringIO()
        csv.writer(out, delimiter="\t", quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n").writerows(rows)
        return out.getvalue().encode()

    def listing_entry(self) -> dict:
        """The entry of the listing JSON (sizes and MD5 as Dataverse reports them)."""
        data = {"id": self.datafile_id, "filename": self.label, "md5": self.md5,
                "checksum": {"type": "MD5", "value": self.md5},
                "filesize": len(self.tab_content if self.tabular else self.content)}
        if self.tabular:
            data.update(originalFileName=self.original_name, originalFileSize=len(self.content),
                        originalFileFormat="text/csv", contentType="text/tab-separated-values")
        return {"label": self.label, "restricted": False, "version": 1, "datasetVersionId": 4, "dataFile": data}


@dataclass
class Faults:
    """Misbehaviour to inject; each one-shot fault is consumed when it fires."""

    drop_after: dict[int, int] = field(default_factory=dict)
    """datafile id -> bytes sent before the connection is cut (once)."""
    too_many_requests: dict[int, int] = field(default_factory=dict)
    """datafile id -> number of 429 answers (with ``Retry-After``) before serving it."""
    retry_after: str | None = "1"
    """The 429's ``Retry-After`` header; None sends none (as Dataverse's own rate limiter does)."""
    corrupt: dict[int, int] = field(default_factory=dict)
    """datafile id -> number of times its bytes are served with one byte flipped."""
    status: dict[int, int] = field(default_factory=dict)
    """datafile id -> HTTP status to answer every time (for example 503 or 404)."""
    listing_status: int | None = None
    """Answer the listing with this HTTP status instead of the JSON."""
    storage_url: str | None = None
    """Redirect file downloads to this server (for example one that refuses connections) instead of ours."""


class FakeDataverse:
    """The fake server; use as a context manager: ``with FakeDataverse(files) as server: server.url``."""

    def __init__(self, files: list[FakeFile], doi: str = DOI, faults: Faults | None = None):
        self.files = {file.datafile_id: file for file in files}
        self.doi = doi
        self.faults = faults or Faults()
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, str]]] = []
        """(path with query, request headers) of every request, in order."""
        self.bytes_sent: Counter[int] = Counter()
        """datafile id -> body bytes of that file sent, all requests together."""
        self.ranges: list[tuple[int, str]] = []
        """(datafile id, Range header) of every storage request that had one."""
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self.handler_class())
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a client hanging up is no test failure
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeDataverse:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def count(self, pattern: str) -> int:
        """How many requests' paths match the regular expression ``pattern``."""
        return sum(1 for path, _ in self.requests if re.search(pattern, path))

    def take(self, faults: dict[int, int], datafile_id: int) -> bool:
        """Consume one occurrence of a counted fault for ``datafile_id``; whether it fires."""
        with self.lock:
            if faults.get(datafile_id, 0) > 0:
                faults[datafile_id] -= 1
                return True
        return False

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                with server.lock:
                    server.requests.append((self.path, dict(self.headers)))
                agent = self.headers.get("User-Agent", "")
                if not agent or agent.startswith("python-requests"):
                    return self.send_body(403, b'{"status":"ERROR","message":"Forbidden"}', "application/json")
                url = urlsplit(self.path)
                query = {key: values[0] for key, values in parse_qs(url.query).items()}
                if url.path == LISTING_PATH:
                    return self.listing(query)
                if match := re.fullmatch(r"/api/access/datafile/(\d+)", url.path):
                    return self.access(int(match[1]), query)
                if match := re.fullmatch(r"/storage/(\d+)/(original|tab)", url.path):
                    return self.storage(int(match[1]), match[2], query)
                self.send_body(404, b"not found", "text/plain")

            def send_body(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def listing(self, query: dict) -> None:
                if server.faults.listing_status:
                    return self.send_body(server.faults.listing_status, b"listing unavailable", "text/plain")
                if query.get("persistentId") != server.doi:
                    return self.send_body(404, b'{"status":"ERROR","message":"no such dataset"}',
                                          "application/json")
                document = {"status": "OK", "data": [file.listing_entry() for file in server.files.values()]}
                self.send_body(200, json.dumps(document).encode(), "application/json")

            def access(self, datafile_id: int, query: dict) -> None:
                if datafile_id not in server.files:
                    return self.send_body(404, b'{"status":"ERROR","message":"File not found"}', "application/json")
                if datafile_id in server.faults.status:
                    return self.send_body(server.faults.status[datafile_id], b"failing", "text/plain")
                if server.take(server.faults.too_many_requests, datafile_id):
                    retry_after = server.faults.retry_after
                    return self.send_body(429, b"Too Many Requests", "text/plain",
                                          {"Retry-After": retry_after} if retry_after is not None else {})
                variant = "original" if query.get("format") == "original" else "tab"
                if not server.files[datafile_id].tabular:
                    variant = "original"
                signed = f"/storage/{datafile_id}/{variant}?X-Amz-Expires=3600&X-Amz-Signature=fake{datafile_id}"
                signed = (server.faults.storage_url or "") + signed
                self.send_body(303, b"", "text/plain", {"Location": signed})

            def storage(self, datafile_id: int, variant: str, query: dict) -> None:
                if not query.get("X-Amz-Signature", "").startswith("fake"):
                    return self.send_body(403, b"unsigned", "text/plain")
                file = server.files[datafile_id]
                data = file.content if variant == "original" else file.tab_content
                if server.take(server.faults.corrupt, datafile_id):
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                start, status, extra = 0, 200, {"Accept-Ranges": "bytes"}
                if header := self.headers.get("Range"):
                    with server.lock:
                        server.ranges.append((datafile_id, header))
                    start = int(re.fullmatch(r"bytes=(\d+)-", header)[1])
                    if start >= len(data):
                        return self.send_body(416, b"", "text/plain", {"Content-Range": f"bytes */{len(data)}"})
                    status = 206
                    extra["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                body = data[start:]
                with server.lock:
                    cut = server.faults.drop_after.get(datafile_id)
                    if cut is not None and cut < len(body):
                        del server.faults.drop_after[datafile_id]
                    else:
                        cut = None
                if cut is not None:
                    return self.send_partial(status, body, cut, extra, datafile_id)
                self.send_body(status, body, "application/octet-stream", extra)
                with server.lock:
                    server.bytes_sent[datafile_id] += len(body)

            def send_partial(self, status: int, body: bytes, cut: int, extra: dict, datafile_id: int) -> None:
                """Announce the whole body, send ``cut`` bytes of it, and drop the connection."""
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body[:cut])
                self.wfile.flush()
                with server.lock:
                    server.bytes_sent[datafile_id] += cut
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

        return Handler


def zip_folder(folder: Path, prefix: str = "", extra: dict[str, bytes] | None = None) -> bytes:
    """The files of ``folder`` as a zip, under ``prefix`` (``""`` flat, or ``"name/"``), plus ``extra`` entries."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if prefix:
            archive.writestr(prefix, b"")  # the folder entry, as zip tools write it
        for path in sorted(folder.iterdir()):
            archive.write(path, prefix + path.name)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def evil_zip(prefix: str) -> bytes:
    """A zip with a normal entry and one escaping the destination with ``../``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(prefix + "ISIC_9000000_segmentation.png", b"fine")
        archive.writestr("../escaped.txt", b"zip-slip")
    return buffer.getvalue()


def isic2018_test_files(source: Path, n_images: int = 6) -> tuple[bytes, bytes]:
    """A small ISIC 2018 Task 3 test set made from ``source``'s images: (images zip, one-hot ground truth CSV).

    The ground truth has one row more than there are images, as upstream (ISIC_0035068 has no image).
    """
    import pandas as pd

    meta = pd.read_csv(source / "HAM10000_metadata.csv").head(n_images)
    columns = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    buffer = io.BytesIO()
    rows = []
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("ISIC2018_Task3_Test_Images/", b"")
        archive.writestr("LICENSE.txt", b"CC-BY-NC")  # beside the folder: must end up inside it
        for number, (image_id, dx) in enumerate(zip(meta["image_id"], meta["dx"])):
            test_id = f"ISIC_{34524 + number:07d}"
            image = next(source.glob(f"HAM10000_images_part_*/{image_id}.jpg"))
            archive.write(image, f"ISIC2018_Task3_Test_Images/{test_id}.jpg")
            rows.append([test_id] + [1.0 if c == dx.upper() else 0.0 for c in columns])
    rows.append(["ISIC_0035068", 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["image", *columns])
    writer.writerows(rows)
    return buffer.getvalue(), table.getvalue().encode()


FAKE_IDS = {  # deliberately not the real ids: the downloader must find files by name in the listing
    "HAM10000_images_part_1.zip": 900001,
    "HAM10000_images_part_2.zip": 900002,
    "HAM10000_metadata": 900003,
    "HAM10000_segmentations_lesion_tschandl.zip": 900004,
    "ISIC2018_Task3_Test_Images.zip": 900005,
    "ISIC2018_Task3_Test_GroundTruth": 900006,
}


def build_fake_dataset(root: Path, n_images: int = 24, ids: dict[str, int] | None = None) -> list[FakeFile]:
    """The six files of the real dataset, made from a synthetic one written to ``root/source``.

    ``part_1`` is zipped flat and ``part_2`` inside a folder (both forms exist in the wild); the masks
    zip carries ``__MACOSX`` junk. ``ids`` maps each file name to its datafile id (default :data:`FAKE_IDS`).
    """
    from skinlib.data import make_synthetic

    ids = ids or FAKE_IDS
    source = make_synthetic(root / "source", n_images=n_images, seed=1, image_size=(30, 40))
    masks = "HAM10000_segmentations_lesion_tschandl"
    test_images, ground_truth = isic2018_test_files(source)
    return [
        FakeFile(ids["HAM10000_images_part_1.zip"], "HAM10000_images_part_1.zip",
                 zip_folder(source / "HAM10000_images_part_1")),
        FakeFile(ids["HAM10000_images_part_2.zip"], "HAM10000_images_part_2.zip",
                 zip_folder(source / "HAM10000_images_part_2", "HAM10000_images_part_2/")),
        FakeFile(ids["HAM10000_metadata"], "HAM10000_metadata.tab", (source / "HAM10000_metadata.csv").read_bytes(),
                 tabular=True, original_name="HAM10000_metadata.csv"),
        FakeFile(ids["HAM10000_segmentations_lesion_tschandl.zip"], f"{masks}.zip",
                 zip_folder(source / masks, f"{masks}/", {f"__MACOSX/{masks}/._junk": b"\x00\x05"})),
        FakeFile(ids["ISIC2018_Task3_Test_Images.zip"], "ISIC2018_Task3_Test_Images.zip", test_images),
        FakeFile(ids["ISIC2018_Task3_Test_GroundTruth"], "ISIC2018_Task3_Test_GroundTruth.tab", ground_truth,
                 tabular=True, original_name="ISIC2018_Task3_Test_GroundTruth.csv"),
    ]

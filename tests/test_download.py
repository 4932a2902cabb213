"""skinlib.download against a fake Dataverse on 127.0.0.1 (no internet needed)."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import requests

from skinlib import download as dl
from skinlib.download import archive, parts, transfer
from fake_dataverse import FAKE_IDS, LISTING_PATH, FakeDataverse, Faults, build_fake_dataset, evil_zip

MASKS = "HAM10000_segmentations_lesion_tschandl"


@pytest.fixture(scope="module")
def fake_files(tmp_path_factory) -> list:
    """The six files of the dataset, made small from a synthetic HAM10000 (24 images)."""
    return build_fake_dataset(tmp_path_factory.mktemp("fake_dataverse"))


@pytest.fixture(autouse=True)
def sleeps(monkeypatch) -> list[float]:
    """Record the retry waits instead of waiting; small chunks so a dropped connection keeps some bytes."""
    waits: list[float] = []
    monkeypatch.setattr(transfer, "sleep", waits.append)
    monkeypatch.setattr(transfer, "CHUNK_BYTES", 1024)
    return waits


def by_label(files: list, label: str):
    return next(file for file in files if file.label == label)


def leftovers(dest: Path) -> list[str]:
    """Half-written or temporary things left in ``dest``."""
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*")
                  if p.name.endswith(".part") or p.name.startswith(archive.TEMP_PREFIX))


def run_download(server: FakeDataverse, dest: Path, parts_=dl.DEFAULT_PARTS, **kwargs) -> Path:
    options = {"base_url": server.url, "retries": 3, "backoff": 0.01, "progress": False} | kwargs
    return dl.download(dest, parts_, **options)


def test_download_survives_drop_429_and_bad_checksum_and_ends_verified(fake_files, tmp_path, sleeps):
    part_1 = by_label(fake_files, "HAM10000_images_part_1.zip")
    faults = Faults(drop_after={FAKE_IDS["HAM10000_images_part_1.zip"]: 5000},
                    too_many_requests={FAKE_IDS["HAM10000_images_part_2.zip"]: 1}, retry_after="7",
                    corrupt={FAKE_IDS[f"{MASKS}.zip"]: 1})
    dest = tmp_path / "ham10000"
    with FakeDataverse(fake_files, faults=faults) as server:
        assert requests.get(server.url + LISTING_PATH).status_code == 403  # the default User-Agent is refused
        run_download(server, dest, ("metadata", "images", "masks"))
        agents = {headers["User-Agent"] for _, headers in server.requests[1:]}
        sent = server.bytes_sent[part_1.datafile_id]
        ranges = list(server.ranges)
        mask_fetches = server.count(rf"^/storage/{FAKE_IDS[f'{MASKS}.zip']}/")

    from skinlib.data import load_metadata

    meta = load_metadata(dest)
    assert len(meta) == 24 and meta["path"].map(lambda p: Path(p).is_file()).all()
    assert agents == {dl.USER_AGENT}
    # the drop after 5000 bytes kept 4 whole 1 KiB chunks; the rest came with a Range request
    assert (part_1.datafile_id, "bytes=4096-") in ranges
    assert sent == 5000 + len(part_1.content) - 4096
    assert 7.0 in sleeps  # the 429's Retry-After was honoured
    assert mask_fetches == 2  # the corrupted copy was deleted and fetched again
    assert len(list((dest / MASKS).glob("*_segmentation.png"))) == 24
    assert not (dest / "__MACOSX").exists() and not list(dest.rglob("._junk"))
    assert leftovers(dest) == [] and not (dest / ".downloads").exists()
    assert dl.missing_parts(dest, ("metadata", "images", "masks")) == []


def test_layout_flat_and_foldered_zips_and_original_csv(fake_files, tmp_path):
    dest = tmp_path / "ham10000"
    with FakeDataverse(fake_files) as server:
        run_download(server, dest)
        paths = [path for path, _ in server.requests]
    metadata = by_label(fake_files, "HAM10000_metadata.tab")
    assert (dest / "HAM10000_metadata.csv").read_bytes() == metadata.content  # not the .tab copy
    assert f"/api/access/datafile/{metadata.datafile_id}?format=original" in paths
    assert any(path.startswith(f"/api/access/datafile/{FAKE_IDS['HAM10000_images_part_1.zip']}") for path in paths)
    for folder in ("HAM10000_images_part_1", "HAM10000_images_part_2"):  # flat zip and zip with a folder
        names = [p.name for p in (dest / folder).iterdir()]
        assert len(names) == 12 and all(n.startswith("ISIC_") and n.endswith(".jpg") for n in names)


def test_rerun_is_idempotent(fake_files, tmp_path):
    dest = tmp_path / "ham10000"
    with FakeDataverse(fake_files) as server:
        run_download(server, dest)
        first = len(server.requests)
        before = {p: p.stat().st_mtime_ns for p in dest.rglob("*")}
        run_download(server, dest)
        assert len(server.requests) == first  # nothing asked the second time
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*")} == before


def test_interrupted_download_resumes_with_range(fake_files, tmp_path):
    part_2 = by_label(fake_files, "HAM10000_images_part_2.zip")
    dest = tmp_path / "ham10000"
    with FakeDataverse(fake_files, faults=Faults(drop_after={part_2.datafile_id: 6500})) as server:
        with pytest.raises(dl.DownloadError, match="run again to resume"):
            run_download(server, dest, "images", retries=0)
        partial = dest / ".downloads" / "HAM10000_images_part_2.zip.part"
        kept = partial.stat().st_size
        assert kept == 6144 and not (dest / "HAM10000_images_part_2").exists()
        assert (dest / "HAM10000_images_part_1").is_dir()  # finished before the failure, stays
        part_1_fetches = server.count(r"^/api/access/datafile/900001")
        sent_before = server.bytes_sent[part_2.datafile_id]

        run_download(server, dest, "images")
        assert server.count(r"^/api/access/datafile/900001") == part_1_fetches  # not fetched again
        assert server.ranges[-1] == (part_2.datafile_id, f"bytes={kept}-")
        assert server.bytes_sent[part_2.datafile_id] - sent_before == len(part_2.content) - kept
    assert len(list((dest / "HAM10000_images_part_2").iterdir())) == 12
    assert leftovers(dest) == []


def test_checksum_mismatch_twice_deletes_and_says_so(fake_files, tmp_path, caplog):
    metadata_id = FAKE_IDS["HAM10000_metadata"]
    dest = tmp_path / "ham10000"
    with FakeDataverse(fake_files, faults=Faults(corrupt={metadata_id: 2})) as server:
        with pytest.raises(dl.ChecksumError, match=r"MD5 mismatch for HAM10000_metadata.csv.*deleted"):
            run_download(server, dest, "metadata")
    assert "MD5 mismatch" in caplog.text and "again from the start" in caplog.text
    assert not (dest / "HAM10000_metadata.csv").exists()
    assert leftovers(dest) == []


def test_zip_slip_is_refused_and_nothing_extracted(fake_files, tmp_path):
    masks = by_label(fake_files, f"{MASKS}.zip")
    files = [dataclasses.replace(masks, content=evil_zip(f"{MASKS}/")) if f is masks else f for f in fake_files]
    dest = tmp_path / "deep" / "ham10000"
    with FakeDataverse(files) as server:
        with pytest.raises(dl.UnsafeArchiveError, match=r"'\.\./escaped\.txt'"):
            run_download(server, dest, "masks")
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (dest / MASKS).exists()
    assert leftovers(dest) == []
    assert dl.missing_parts(dest, "masks") == ["masks"]


@pytest.mark.parametrize("name, reason", [
    ("ok/ISIC_1.jpg", None), ("../x", "'..'"), ("a/../../x", "'..'"), ("/etc/passwd", "absolute"),
    ("C:/x", "absolute"), ("..\\x", "'..'"),
])
def test_unsafe_zip_entries(name, reason):
    found = archive.unsafe_reason(name)
    assert (found is None) if reason is None else (reason in found)


def test_listing_unavailable_falls_back_to_known_ids(fake_files, tmp_path, monkeypatch):
    real_ids = {file.name: file.datafile_id for part in dl.PARTS.values() for file in part.files}
    files = build_fake_dataset(tmp_path / "fake", ids=real_ids)
    md5s = {file.label.removesuffix(".tab"): file.md5 for file in files}
    for name in ("metadata", "images"):  # the fallback table must know the fake files' checksums
        part = dl.PARTS[name]
        monkeypatch.setitem(dl.PARTS, name, dataclasses.replace(part, files=tuple(
            dataclasses.replace(file, md5=md5s[file.name], size=None) for file in part.files)))
    dest = tmp_path / "ham10000"
    with FakeDataverse(files, faults=Faults(listing_status=500)) as server:
        run_download(server, dest)
        assert server.count(r"^/api/access/datafile/3172585$") == 1
        assert server.count(r"^/api/access/datafile/4338392\?format=original$") == 1
    assert dl.missing_parts(dest) == []


def test_persistent_failure_gives_up_with_backoff_and_keeps_the_rest(fake_files, tmp_path, sleeps):
    failing = FAKE_IDS["HAM10000_images_part_2.zip"]
    dest = tmp_path / "ham10000"
    with FakeDataverse(fake_files, faults=Faults(status={failing: 503})) as server:
        with pytest.raises(dl.DownloadError, match=r"Giving up on HAM10000_images_part_2.zip after 3 retries.*503"):
            run_download(server, dest, backoff=0.5)
    assert sleeps == [0.5, 1.0, 2.0]  # exponential
    assert not (dest / "HAM10000_images_part_2").exists()
    assert dl.missing_parts(dest) == ["images"]


def test_not_found_is_not_retried(fake_files, tmp_path, sleeps):
    failing = FAKE_IDS["HAM10000_metadata"]
    with FakeDataverse(fake_files, faults=Faults(status={failing: 404})) as server:
        with pytest.raises(dl.DownloadError, match="HTTP 404.*dataset may have changed"):
            run_download(server, tmp_path / "ham10000", "metadata")
        assert server.count(rf"^/api/access/datafile/{failing}") == 1
    assert sleeps == []


def test_disk_space_is_checked_before_downloading(fake_files, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    with FakeDataverse(fake_files) as server:
        with pytest.raises(dl.DiskSpaceError, match=r"Not enough free disk space.*only 1.00 kB are free.*--dest"):
            run_download(server, tmp_path / "ham10000")
        assert server.count(r"^/api/access/") == 0


def test_metadata_and_images_must_agree(fake_files, tmp_path):
    metadata = by_label(fake_files, "HAM10000_metadata.tab")
    extra_row = b"HAM_9999999,ISIC_9999999,nv,histo,50.0,male,back\n"
    files = [dataclasses.replace(f, content=f.content + extra_row) if f is metadata else f for f in fake_files]
    with FakeDataverse(files) as server:
        with pytest.raises(dl.DownloadError, match=r"do not agree.*1 listed but missing \(first: ISIC_9999999\)"):
            run_download(server, tmp_path / "ham10000")


def test_isic2018_test_set(fake_files, tmp_path):
    dest = tmp_path / "ham10000"
    with FakeDataverse(fake_files) as server:
        run_download(server, dest, "isic2018_test")
    from skinlib.data import load_isic2018_test

    with pytest.warns(UserWarning, match="ISIC_0035068"):
        table = load_isic2018_test(dest)
    assert len(table) == 6
    assert sorted(p.name for p in dest.iterdir()) == ["ISIC2018_Task3_Test_GroundTruth.csv", "ISIC2018_Task3_Test_Images"]
    assert (dest / "ISIC2018_Task3_Test_Images" / "LICENSE.txt").is_file()
    assert (dest / "ISIC2018_Task3_Test_GroundTruth.csv").read_text().startswith("image,MEL,")


def test_missing_parts_and_plan(tmp_path):
    assert dl.missing_parts(tmp_path) == ["metadata", "images"]
    assert dl.missing_parts(tmp_path, "all") == list(dl.PARTS)
    (tmp_path / "HAM10000_images_part_1").mkdir()
    (tmp_path / "HAM10000_images_part_1" / "ISIC_0000001.jpg").write_bytes(b"x")
    items = dl.plan(tmp_path, ("images", "masks"))
    assert [(item.part, [f.name for f in item.files]) for item in items] == [
        ("images", ["HAM10000_images_part_2.zip"]), ("masks", [f"{MASKS}.zip"])]
    assert items[0].total_bytes == 1_403_566_547
    text = dl.describe_plan(items, tmp_path)
    assert "1.41 GB" in text and "CC BY-NC 4.0" in text
    with pytest.raises(ValueError, match="Unknown part.*'imgs'.*choose from metadata, images"):
        dl.missing_parts(tmp_path, ["imgs"])


def test_parts_table_matches_the_issue():
    files = {file.name: file for part in dl.PARTS.values() for file in part.files}
    assert files["HAM10000_images_part_1.zip"].datafile_id == 3172585
    assert files["HAM10000_images_part_2.zip"].md5 == "da43d6cc50f6613013be07e8986b384b"
    assert files["HAM10000_metadata"].original and files["HAM10000_metadata"].target == "HAM10000_metadata.csv"
    assert {file.target for file in files.values()} == {
        "HAM10000_metadata.csv", "HAM10000_images_part_1", "HAM10000_images_part_2", MASKS,
        "ISIC2018_Task3_Test_Images", "ISIC2018_Task3_Test_GroundTruth.csv"}


def test_retry_after_parsing():
    assert transfer.parse_retry_after("12") == 12.0
    assert transfer.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert transfer.parse_retry_after("soon") is None and transfer.parse_retry_after(None) is None
    assert transfer.RetryPolicy(backoff=2, max_wait=5).wait(4) == 5  # capped


def cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m skinlib download")
    dl.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_help_documents_sizes_licence_and_resume():
    parser = argparse.ArgumentParser(prog="python -m skinlib download")
    dl.add_arguments(parser)
    text = parser.format_help()
    for needle in ("CC BY-NC 4.0", "2.77 GB", "resume", "--parts", "isic2018_test", "doi:10.7910/DVN/DBW86T"):
        assert needle in text


def test_cli_downloads_and_reports_errors(fake_files, tmp_path, capsys):
    dest = tmp_path / "ham10000"
    with FakeDataverse(fake_files) as server:
        args = cli(["--dest", str(dest), "--parts", "metadata", "--yes", "--base-url", server.url, "--retries", "1"])
        assert dl.run(args) == 0
        assert "Will download" in capsys.readouterr().err
        assert (dest / "HAM10000_metadata.csv").is_file()
        assert dl.run(args) == 0  # already there
        assert "Nothing to download" in capsys.readouterr().err

    with FakeDataverse(fake_files, faults=Faults(status={FAKE_IDS["HAM10000_images_part_1.zip"]: 403})) as server:
        args = cli(["--dest", str(dest), "-y", "-q", "--base-url", server.url])
        assert dl.run(args) == 1
    err = capsys.readouterr().err
    assert "error: Cannot get HAM10000_images_part_1.zip: HTTP 403" in err and "User-Agent" in err

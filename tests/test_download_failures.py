"""skinlib.download when things go wrong: offline, 400 (guestbook), rate limits, no checksum, log output.

Every test feeds the bad situation through the fake Dataverse (or an address where nothing listens) and
checks the message, the exit code where there is one, and that nothing is left behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import socket
import time
from pathlib import Path

import pytest

from skinlib import download as dl
from skinlib.download import progress, transfer
from fake_dataverse import FAKE_IDS, FakeDataverse, Faults, build_fake_dataset

UNREACHABLE = "cannot reach Harvard Dataverse: check the network or proxy"


@pytest.fixture(scope="module")
def fake_files(tmp_path_factory) -> list:
    return build_fake_dataset(tmp_path_factory.mktemp("fake_dataverse"), n_images=12)


@pytest.fixture(autouse=True)
def sleeps(monkeypatch) -> list[float]:
    """The retry waits, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr(transfer, "sleep", waits.append)
    return waits


def refused_url() -> str:
    """A local address where nothing listens (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def everything_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m skinlib download")
    dl.add_arguments(parser)
    return parser.parse_args(argv)


# ------------------------------------------------------------------------------------------------
# 1. offline: fail fast, say so, leave nothing behind
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, reason", [
    (None, "connection was refused"),
    ("http://dataverse.invalid", "host name could not be resolved"),
])
def test_offline_fails_fast_and_leaves_nothing(tmp_path, sleeps, url, reason):
    url = url or refused_url()
    dest = tmp_path / "new" / "ham10000"
    start = time.monotonic()
    with pytest.raises(dl.UnreachableError) as caught:
        dl.download(dest, base_url=url, progress=False)
    elapsed = time.monotonic() - start + sum(sleeps)  # real time plus any (recorded) waits
    message = str(caught.value)
    assert message.startswith(UNREACHABLE) and reason in message
    assert elapsed < 30
    assert not (tmp_path / "new").exists()  # the folders the attempt made are gone


def test_offline_cli_exit_code_and_existing_folder_kept(tmp_path, capsys):
    dest = tmp_path / "ham10000"
    dest.mkdir()
    args = cli(["--dest", str(dest), "--yes", "--base-url", refused_url()])
    start = time.monotonic()
    assert dl.run(args) == 1
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert f"error: {UNREACHABLE}" in err and "Giving up" not in err
    assert dest.is_dir() and everything_under(dest) == []  # made by the user: kept, but no .downloads


def test_unreachable_storage_mid_run_keeps_finished_files(fake_files, tmp_path, sleeps):
    """The listing answers, the file storage refuses: stop at once, keep what was finished."""
    dest = tmp_path / "ham10000"
    (dest / "HAM10000_images_part_1").mkdir(parents=True)
    (dest / "HAM10000_images_part_1" / "ISIC_0000001.jpg").write_bytes(b"x")
    with FakeDataverse(fake_files, faults=Faults(storage_url=refused_url())) as server:
        with pytest.raises(dl.UnreachableError, match=UNREACHABLE):
            dl.download(dest, "images", base_url=server.url, progress=False)
        assert server.count(r"^/api/access/datafile/") == 1  # no retry
    assert sleeps == []
    assert everything_under(dest) == ["HAM10000_images_part_1", "HAM10000_images_part_1/ISIC_0000001.jpg"]


def test_dropped_connection_is_still_retried_and_resumed(fake_files, tmp_path, sleeps, monkeypatch):
    monkeypatch.setattr(transfer, "CHUNK_BYTES", 1024)
    part_1 = FAKE_IDS["HAM10000_images_part_1.zip"]
    with FakeDataverse(fake_files, faults=Faults(drop_after={part_1: 3000}, status={})) as server:
        dl.download(tmp_path / "ham10000", "images", base_url=server.url, progress=False, backoff=0.5)
        assert (part_1, "bytes=2048-") in server.ranges
    assert sleeps == [0.5]


@pytest.mark.parametrize("text, expected", [
    ("", None),
    ("Failed to resolve 'dataverse.harvard.edu'", None),  # words alone do not decide: the exception types do
])
def test_unreachable_reason_needs_the_exception(text, expected):
    assert transfer.unreachable_reason(ValueError(text)) is expected


# ------------------------------------------------------------------------------------------------
# 2. HTTP 400 from the access API: guestbook or terms; how to download by hand
# ------------------------------------------------------------------------------------------------

def test_access_400_explains_guestbook_and_manual_download(fake_files, tmp_path, sleeps, capsys):
    metadata_id = FAKE_IDS["HAM10000_metadata"]
    dest = tmp_path / "ham10000"
    with FakeDataverse(fake_files, faults=Faults(status={metadata_id: 400})) as server:
        with pytest.raises(dl.HTTPStatusError) as caught:
            dl.download(dest, "metadata", base_url=server.url, progress=False)
        assert server.count(rf"^/api/access/datafile/{metadata_id}") == 1  # not retried
        assert dl.run(cli(["--dest", str(dest), "-y", "-q", "--parts", "metadata", "--base-url", server.url])) == 1
    message = str(caught.value)
    for needle in ("HTTP 400", "guestbook", "terms of use", "https://doi.org/10.7910/DVN/DBW86T",
                   f"save HAM10000_metadata (the original CSV, not the tab-separated copy) as {dest / 'HAM10000_metadata.csv'}"):
        assert needle in message
    assert "guestbook" in capsys.readouterr().err
    assert sleeps == [] and not dest.exists()


def test_access_400_for_a_zip_says_where_to_unzip(fake_files, tmp_path):
    part_2 = FAKE_IDS["HAM10000_images_part_2.zip"]
    dest = tmp_path / "ham10000"
    with FakeDataverse(fake_files, faults=Faults(status={part_2: 400})) as server:
        with pytest.raises(dl.HTTPStatusError, match=rf"unzip HAM10000_images_part_2.zip so that its files are directly in "
                                                     rf"{dest / 'HAM10000_images_part_2'}"):
            dl.download(dest, "images", base_url=server.url, progress=False)
    # part 1 was finished and stays; nothing half-written
    assert everything_under(dest) == sorted(["HAM10000_images_part_1"] + [
        f"HAM10000_images_part_1/{name}" for name in
        (p.name for p in (dest / "HAM10000_images_part_1").iterdir())])


# ------------------------------------------------------------------------------------------------
# 3. 429 without Retry-After: hourly limits, waits up to about an hour, each announced
# ------------------------------------------------------------------------------------------------

def test_rate_limit_waits_on_the_hourly_schedule_and_says_so(fake_files, tmp_path, sleeps, caplog):
    metadata_id = FAKE_IDS["HAM10000_metadata"]
    faults = Faults(too_many_requests={metadata_id: 3}, retry_after=None)
    caplog.set_level(logging.INFO, "skinlib.download")
    with FakeDataverse(fake_files, faults=faults) as server:
        dl.download(tmp_path / "ham10000", "metadata", base_url=server.url, progress=False, retries=1)
    assert sleeps == [60, 120, 240]
    assert "rate limited by Dataverse; waiting 60 s (attempt 1); Dataverse limits are hourly" in caplog.text
    assert "waiting 240 s (attempt 3)" in caplog.text
    assert (tmp_path / "ham10000" / "HAM10000_metadata.csv").is_file()


def test_rate_limit_gives_up_after_about_an_hour(fake_files, tmp_path, sleeps):
    metadata_id = FAKE_IDS["HAM10000_metadata"]
    faults = Faults(too_many_requests={metadata_id: 100}, retry_after=None)
    dest = tmp_path / "ham10000"
    with FakeDataverse(fake_files, faults=faults) as server:
        with pytest.raises(dl.RateLimitedError, match=r"429.*60 min of waiting.*hourly.*again later"):
            dl.download(dest, "metadata", base_url=server.url, progress=False)
    assert sleeps == [60, 120, 240, 480, 900, 900, 900] and sum(sleeps) == 3600
    assert not dest.exists()


def test_rate_limit_schedule():
    policy = transfer.RetryPolicy()
    assert [policy.rate_limit_schedule(k) for k in range(1, 9)] == [60, 120, 240, 480, 900, 900, 900, 900]
    assert policy.rate_limit_schedule(1, retry_after=7) == 7
    assert policy.rate_limit_schedule(1, retry_after=7200) == 900


# ------------------------------------------------------------------------------------------------
# 4. no verified fallback MD5 for the ISIC 2018 ground truth
# ------------------------------------------------------------------------------------------------

def real_id_files(tmp_path, monkeypatch, ground_truth: bytes | None = None) -> list:
    """The fake dataset under the real datafile ids; the test-image zip's fallback MD5 made to match."""
    real_ids = {file.name: file.datafile_id for part in dl.PARTS.values() for file in part.files}
    files = build_fake_dataset(tmp_path / "fake", n_images=12, ids=real_ids)
    if ground_truth is not None:
        files = [dataclasses.replace(f, content=ground_truth) if f.label.startswith("ISIC2018_Task3_Test_Gr")
                 else f for f in files]
    md5s = {file.label.removesuffix(".tab"): file.md5 for file in files}
    part = dl.PARTS["isic2018_test"]
    monkeypatch.setitem(dl.PARTS, "isic2018_test", dataclasses.replace(part, files=tuple(
        dataclasses.replace(file, md5=md5s[file.name]) if file.is_archive else file for file in part.files)))
    return files


def test_ground_truth_has_no_unverified_fallback_md5():
    truth = next(f for f in dl.PARTS["isic2018_test"].files if f.name == "ISIC2018_Task3_Test_GroundTruth")
    assert truth.md5 is None and truth.datafile_id == 6924466


def test_ground_truth_without_listing_is_checked_by_format_with_a_warning(tmp_path, monkeypatch, caplog):
    files = real_id_files(tmp_path, monkeypatch)
    dest = tmp_path / "ham10000"
    with FakeDataverse(files, faults=Faults(listing_status=500)) as server:
        dl.download(dest, "isic2018_test", base_url=server.url, progress=False, retries=0)
    assert (dest / "ISIC2018_Task3_Test_GroundTruth.csv").read_text().startswith("image,")
    assert ("ISIC2018_Task3_Test_GroundTruth.csv: downloaded, but its checksum could not be verified because "
            "the dataset listing was unavailable") in caplog.text


def test_ground_truth_without_listing_rejects_an_error_page(tmp_path, monkeypatch):
    files = real_id_files(tmp_path, monkeypatch, ground_truth=b"<!DOCTYPE html><html>Sign in</html>")
    dest = tmp_path / "ham10000"
    with FakeDataverse(files, faults=Faults(listing_status=500)) as server:
        with pytest.raises(dl.DownloadError, match=r"GroundTruth.csv as downloaded is not usable: it does not "
                                                   r"look like a CSV table.*deleted"):
            dl.download(dest, "isic2018_test", base_url=server.url, progress=False, retries=0)
    assert not (dest / "ISIC2018_Task3_Test_GroundTruth.csv").exists()
    assert not list(dest.rglob("*.part")) and not (dest / ".downloads").exists()


# ------------------------------------------------------------------------------------------------
# 5. log output: a handler for the CLI entry points; no tqdm carriage returns in logs
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def clean_logger():
    logger = logging.getLogger("skinlib.download")
    handlers, level = list(logger.handlers), logger.level
    yield logger
    logger.handlers[:], logger.level = handlers, level


def test_configure_logging_shows_md5_lines_once(fake_files, tmp_path, clean_logger):
    stream = io.StringIO()
    dl.configure_logging(stream=stream)
    dl.configure_logging(stream=stream)  # idempotent: one handler
    assert sum(isinstance(h, progress.ConsoleHandler) for h in clean_logger.handlers) == 1
    with FakeDataverse(fake_files) as server:
        dl.download(tmp_path / "ham10000", "metadata", base_url=server.url, progress=False)
    assert stream.getvalue().count("HAM10000_metadata.csv: downloaded, MD5 verified") == 1
    dl.configure_logging(quiet=True)
    assert clean_logger.level == logging.WARNING


def test_progress_off_a_terminal_is_log_lines_not_a_bar(fake_files, tmp_path, clean_logger, monkeypatch, capsys):
    monkeypatch.setattr(progress, "interactive", lambda: False)
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)
    stream = io.StringIO()
    dl.configure_logging(stream=stream)
    with FakeDataverse(fake_files) as server:
        dl.download(tmp_path / "ham10000", "images", base_url=server.url, progress=True)
    assert "\r" not in capsys.readouterr().err
    lines = stream.getvalue().splitlines()
    assert any(line.startswith("HAM10000_images_part_1.zip: ") and "%)" in line for line in lines)
    assert isinstance(progress.progress_bar(10, "x", True), progress.LogProgress)


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(fake_files, tmp_path, monkeypatch, capsys):
    from skinlib.download import pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    dest = tmp_path / "ham10000"
    with FakeDataverse(fake_files) as server:
        monkeypatch.setattr(pipeline, "check_disk_space", interrupted)  # after the listing, before any file
        assert dl.run(cli(["--dest", str(dest), "-y", "-q", "--base-url", server.url])) == 130
    assert "Run the same command again to resume (nothing half-written was left behind)" in capsys.readouterr().err
    assert not dest.exists()

"""load_images: decoding, EXIF orientation, the on-disk cache, and unreadable files."""

import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinlib.data import load_images, load_metadata
from skinlib.data.images import decode_image
from skinlib.errors import ImageError


def test_originals_600x450_to_study_size(real_data, tmp_path):
    meta = load_metadata(real_data, images="images_600x450", missing="drop")
    images = load_images(meta, size=(192, 256), cache_dir=tmp_path, progress=False)
    assert images.shape == (239, 192, 256, 3) and images.dtype == np.uint8
    # Draft decoding then LANCZOS stays close to the study's full decode + LANCZOS.
    with Image.open(meta["path"].iloc[0]) as original:
        study = np.asarray(original.convert("RGB").resize((256, 192), Image.Resampling.LANCZOS))
    assert np.abs(images[0].astype(int) - study.astype(int)).mean() < 3.0
    assert 20 < images.mean() < 235


def test_downsized_images_to_baseline_size(real_data, tmp_path):
    meta = load_metadata(real_data, images="images_200x150").head(300)
    images = load_images(meta, size=(64, 64), cache_dir=tmp_path, progress=False)
    assert images.shape == (300, 64, 64, 3)
    assert images.std() > 10


def test_cache_hit_returns_same_array_without_decoding(synthetic_data, tmp_path, monkeypatch):
    meta = load_metadata(synthetic_data)
    first = load_images(meta, size=(32, 48), cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.npy"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("decoded although the cache was valid")

    monkeypatch.setattr("skinlib.data.images.decode_image", fail)
    again = load_images(meta, size=(32, 48), cache_dir=tmp_path, progress=False)
    assert isinstance(again, np.memmap)
    np.testing.assert_array_equal(first, again)


def test_cache_notices_a_changed_file(synthetic_data, tmp_path):
    root = tmp_path / "data"
    import shutil
    shutil.copytree(synthetic_data, root)
    meta = load_metadata(root)
    cache = tmp_path / "cache"
    before = np.array(load_images(meta, size=(30, 40), cache_dir=cache, progress=False))
    path = meta["path"].iloc[0]
    Image.new("RGB", (80, 60), (0, 255, 0)).save(path)
    stamp = time.time() + 5
    os.utime(path, (stamp, stamp))
    after = load_images(meta, size=(30, 40), cache_dir=cache, progress=False)
    assert not np.array_equal(before[0], after[0])
    assert after[0, 15, 20, 1] > 200 and after[0, 15, 20, 0] < 50
    np.testing.assert_array_equal(before[1:], after[1:])
    assert len(list(cache.glob("*.npy"))) == 1, "the stale cache should be replaced, not kept"


def test_interrupted_build_leaves_no_cache(synthetic_data, tmp_path, monkeypatch):
    meta = load_metadata(synthetic_data)
    real_decode = decode_image
    calls = {"n": 0}

    def interrupted(path, size):
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt
        return real_decode(path, size)

    monkeypatch.setattr("skinlib.data.images.decode_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_images(meta, size=(30, 40), cache_dir=tmp_path, progress=False, workers=1)
    assert list(tmp_path.iterdir()) == [], "an interrupted build must leave neither cache nor temporary file"
    monkeypatch.setattr("skinlib.data.images.decode_image", real_decode)
    images = load_images(meta, size=(30, 40), cache_dir=tmp_path, progress=False)
    assert images.shape == (70, 30, 40, 3) and images.min(axis=(1, 2, 3)).max() > 0


def test_corrupt_image_raises_naming_the_file(synthetic_data, tmp_path):
    import shutil
    root = tmp_path / "data"
    shutil.copytree(synthetic_data, root)
    meta = load_metadata(root)
    bad = meta["path"].iloc[5]
    data = open(bad, "rb").read()
    open(bad, "wb").write(data[: len(data) // 3])  # truncated JPEG
    with pytest.raises(ImageError, match=rf"Cannot read image '{bad}'"):
        load_images(meta, size=(30, 40), cache_dir=tmp_path / "cache", progress=False)
    assert not list((tmp_path / "cache").glob("*.npy"))
    with pytest.warns(UserWarning, match="Skipped row 5"):
        images, kept = load_images(meta, size=(30, 40), errors="skip", progress=False)
    assert images.shape[0] == 69 and len(kept) == 69
    assert meta["image_id"].iloc[5] not in set(kept["image_id"])


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not a jpeg")
    with pytest.raises(ImageError, match="notes.jpg"):
        decode_image(path, (10, 10))


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((40, 80, 3), dtype=np.uint8)
    pixels[:, :40] = (255, 0, 0)  # left half red, right half blue
    pixels[:, 40:] = (0, 0, 255)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    out = decode_image(tmp_path / "rotated.jpg", (80, 40))
    assert out.shape == (80, 40, 3)
    assert out[10, 20, 0] > 200 and out[70, 20, 2] > 200  # red on top, blue below after rotation


def test_unwritable_cache_falls_back_to_memory(synthetic_data, tmp_path):
    meta = load_metadata(synthetic_data).head(5)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.warns(UserWarning):
        images = load_images(meta, size=(8, 8), cache_dir=blocker / "sub", progress=False)
    assert images.shape == (5, 8, 8, 3)


def huge_jpeg(path, width=15000, height=15000):
    """A tiny JPEG whose header says width x height: Pillow checks the pixel count before decoding."""
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 120, 90)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")  # start of frame: length(2) precision(1) height(2) width(2)
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_names_the_file_and_its_pixels(tmp_path):
    big = huge_jpeg(tmp_path / "huge.jpg")
    with pytest.raises(ImageError, match=r"Image '.*huge\.jpg' has 225,000,000 pixels, more than Pillow's safety "
                                         r"limit of [\d,]+ .*downsize it"):
        decode_image(big, (10, 10))


def test_decompression_bomb_is_skipped_with_errors_skip(synthetic_data, tmp_path):
    meta = load_metadata(synthetic_data).head(4)
    paths = list(meta["path"])
    paths.insert(2, str(huge_jpeg(tmp_path / "huge.jpg")))
    with pytest.warns(UserWarning, match=r"Skipped row 2: Image '.*huge\.jpg' has 225,000,000 pixels"):
        images, kept = load_images(paths, size=(8, 8), errors="skip", progress=False)
    assert images.shape == (4, 8, 8, 3) and kept == paths[:2] + paths[3:]
    with pytest.raises(ImageError, match="huge.jpg"):
        load_images(paths, size=(8, 8), cache_dir=tmp_path / "cache", progress=False)
    assert not list((tmp_path / "cache").glob("*.npy")) and not list((tmp_path / "cache").glob(".*tmp"))


def test_a_cache_zeroed_in_place_is_rebuilt_with_a_warning(synthetic_data, tmp_path):
    meta = load_metadata(synthetic_data)
    first = np.array(load_images(meta, size=(30, 40), cache_dir=tmp_path, progress=False))
    (target,) = tmp_path.glob("*.npy")
    assert target.with_name(target.name + ".crc32").is_file()
    header = len(target.read_bytes()) - first.nbytes
    with open(target, "r+b") as handle:  # same size, same header, all pixels zero
        handle.seek(header)
        handle.write(bytes(first.nbytes))
    with pytest.warns(UserWarning, match=r"image cache .* is not used: its contents changed .*Rebuilding"):
        again = load_images(meta, size=(30, 40), cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(first, again)
    target.with_name(target.name + ".crc32").unlink()
    with pytest.warns(UserWarning, match=r"checksum file .*\.npy\.crc32' is missing"):
        np.testing.assert_array_equal(first, load_images(meta, size=(30, 40), cache_dir=tmp_path, progress=False))
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".crc32", ".npy"]


CONCURRENT_READER = """
import sys, warnings
import numpy as np
from skinlib import data
warnings.simplefilter("error")  # a cache found unusable (a half-written one) warns: fail loudly instead
meta = data.load_metadata(sys.argv[1])
for _ in range(3):  # build or read, again and again, while the others do the same
    images = data.load_images(meta, size=(24, 32), cache_dir=sys.argv[2], progress=False, workers=1)
pairs = data.find_duplicates(meta, candidates=0, cache_dir=sys.argv[2], progress=False, workers=1)
np.save(sys.argv[3], np.asarray(images))
pairs.to_csv(sys.argv[3] + ".csv", index=False)
"""


def test_concurrent_writers_and_readers_share_the_caches(synthetic_data, tmp_path):
    """Four processes start at once on one empty cache folder (the image cache and the duplicate search's
    feature store), as a sweep's kernels do: each gets the decoded pixels and the same pairs, none meets a
    half-written file, and no temporary file is left behind."""
    import subprocess
    import sys

    import pandas as pd

    from skinlib.data import find_duplicates

    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    runs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_READER, str(synthetic_data), str(cache),
                              str(tmp_path / f"run{k}.npy")], env=env, stderr=subprocess.PIPE, text=True)
            for k in range(4)]
    errors = [run.communicate(timeout=600)[1] for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, "\n".join(errors)[-3000:]
    meta = load_metadata(synthetic_data)
    expected = load_images(meta, size=(24, 32), cache=False, progress=False)
    pairs = find_duplicates(meta, candidates=0, cache=False, progress=False)
    for k in range(4):
        np.testing.assert_array_equal(np.load(tmp_path / f"run{k}.npy"), expected)
        found = pd.read_csv(tmp_path / f"run{k}.npy.csv", dtype={"image_a": str, "image_b": str})
        assert len(found) == len(pairs)
    assert not [p for p in cache.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name]
